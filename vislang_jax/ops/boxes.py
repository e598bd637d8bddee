"""Axis-aligned boxes: layouts, proposals and crops.

Convention: a box is ``(x0, y0, x1, y1)`` in pixels with exclusive ends (the pixel-edge
convention of ``ops.sampling.box_theta``: the integer box ``(2, 1, 5, 3)`` covers columns 2-4
and rows 1-2, so its size is ``(y1 - y0, x1 - x0)``); ``x`` indexes width, ``y`` height. The
data's boxes come as ``(y0, x0, y1, x1)`` (``yxyx_to_xyxy``).

Karpathy & Fei-Fei, "Deep visual-semantic alignments for generating image descriptions",
CVPR 2015, Sec. 3.1.1 crops each region proposal from the image and embeds it with a CNN;
``crop_regions`` does the cropping with the spatial transformer's bilinear sampler
(``ops.sampling``), differentiable in the pixels and the box coordinates.

Johnson, Karpathy & Fei-Fei, "DenseCap: Fully convolutional localization networks for dense
captioning", CVPR 2016, Sec. 3.1.2 (the localization layer): ``anchor_boxes`` lays k
anchors over every cell of the feature map, ``encode_offsets`` / ``decode_offsets`` are its
box regression parameterisation, ``sample_boxes`` its training-time box sampling,
``non_max_suppression`` its test-time pruning, and ``crop_regions(..., image_hw=...)`` its
bilinear interpolation of each box into a fixed grid of the feature map.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_hw, check_positive_int, concrete
from vislang_jax.ops.sampling import affine_grid, bilinear_sample, box_theta


def _check_box_axis(name: str, boxes) -> None:
  if np.ndim(boxes) < 1 or np.shape(boxes)[-1] != 4:
    raise ValueError(f"{name} must have shape [..., 4], got {np.shape(boxes)}.")


def yxyx_to_xyxy(boxes: jax.Array) -> jax.Array:
  """``(y0, x0, y1, x1)`` boxes to ``(x0, y0, x1, y1)``: [..., 4] -> [..., 4], same type.

  NumPy in, NumPy out (data pipelines); JAX in, JAX out.
  """
  _check_box_axis("boxes", boxes)
  return boxes[..., [1, 0, 3, 2]]


def _as_float(boxes: jax.Array) -> jax.Array:
  """A JAX array of a floating dtype: float32 for integer boxes, else unchanged."""
  boxes = jnp.asarray(boxes)
  return boxes if jnp.issubdtype(boxes.dtype, jnp.floating) else boxes.astype(jnp.float32)


def xyxy_to_cxcywh(boxes: jax.Array) -> jax.Array:
  """``(x0, y0, x1, y1)`` boxes to centres and sizes ``(cx, cy, w, h)``: [..., 4] -> [..., 4].

  ``cx = (x0 + x1) / 2``, ``w = x1 - x0`` (exclusive ends: DenseCap's Lua code, with
  inclusive 1-based ends, adds and subtracts 1 here; the pixel-edge convention needs neither).
  Integer boxes come out float32, floating ones keep their dtype.
  """
  _check_box_axis("boxes", boxes)
  boxes = _as_float(boxes)
  x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
  return jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def cxcywh_to_xyxy(boxes: jax.Array) -> jax.Array:
  """``(cx, cy, w, h)`` to ``(x0, y0, x1, y1)``: [..., 4] -> [..., 4], the inverse of
  ``xyxy_to_cxcywh``."""
  _check_box_axis("boxes", boxes)
  boxes = _as_float(boxes)
  cx, cy, w, h = (boxes[..., i] for i in range(4))
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _area(boxes: jax.Array) -> jax.Array:
  """[..., 4] -> [...]: each box's area, 0 for an empty box."""
  return (jnp.clip(boxes[..., 2] - boxes[..., 0], 0)
          * jnp.clip(boxes[..., 3] - boxes[..., 1], 0))


def box_iou(boxes_a: jax.Array, boxes_b: jax.Array) -> jax.Array:
  """Intersection over union of boxes, broadcast over the leading axes.

  Args:
    boxes_a, boxes_b: [..., 4] float ``(x0, y0, x1, y1)`` (module convention), leading axes
      broadcastable (``a[:, None]`` against ``b[None]`` gives every pair).

  Returns:
    [...] float32 in [0, 1]: ``|a & b| / |a | b|``; 0 where the union is empty.
  """
  _check_box_axis("boxes_a", boxes_a)
  _check_box_axis("boxes_b", boxes_b)
  a = jnp.asarray(boxes_a, jnp.float32)
  b = jnp.asarray(boxes_b, jnp.float32)
  width = jnp.clip(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
  height = jnp.clip(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0)
  inter = width * height
  union = _area(a) + _area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def encode_offsets(boxes: jax.Array, anchors: jax.Array) -> jax.Array:
  """The offsets ``(t_x, t_y, t_w, t_h)`` that move each anchor onto its box.

  DenseCap Sec. 3.1.2 (R-CNN's parameterisation): an anchor with centre ``(x_a, y_a)`` and
  size ``(w_a, h_a)`` and offsets ``t`` give the box ``x = x_a + t_x w_a``,
  ``y = y_a + t_y h_a``, ``w = w_a exp(t_w)``, ``h = h_a exp(t_h)``, so
  ``t_x = (x - x_a) / w_a``, ``t_y = (y - y_a) / h_a``, ``t_w = log(w / w_a)``,
  ``t_h = log(h / h_a)`` (DenseCap's InvertBoxTransform: the regression targets). The zero
  offset is the anchor itself. Boxes and anchors must be non-empty (``log 0 = -inf``); the
  result is differentiable in both, and a loss takes it as a target under
  ``jax.lax.stop_gradient``.

  Args:
    boxes: [..., 4] float ``(x0, y0, x1, y1)`` pixels (e.g. ground-truth boxes).
    anchors: [..., 4] float ``(x0, y0, x1, y1)``, leading axes broadcastable with ``boxes``'.

  Returns:
    [..., 4] float ``(t_x, t_y, t_w, t_h)``, the broadcast leading axes.
  """
  _check_box_axis("boxes", boxes)
  _check_box_axis("anchors", anchors)
  x, y, w, h = (xyxy_to_cxcywh(boxes)[..., i] for i in range(4))
  xa, ya, wa, ha = (xyxy_to_cxcywh(anchors)[..., i] for i in range(4))
  return jnp.stack([(x - xa) / wa, (y - ya) / ha, jnp.log(w / wa), jnp.log(h / ha)], axis=-1)


def decode_offsets(offsets: jax.Array, anchors: jax.Array) -> jax.Array:
  """The boxes that offsets ``(t_x, t_y, t_w, t_h)`` make of their anchors (DenseCap Sec.
  3.1.2, ApplyBoxTransform): ``x = x_a + t_x w_a``, ``y = y_a + t_y h_a``,
  ``w = w_a exp(t_w)``, ``h = h_a exp(t_h)``; the inverse of ``encode_offsets``.

  Differentiable in the offsets and the anchors; ``exp`` is not clamped (DenseCap does not
  clamp either; it starts the offset convolution at zero).

  Args:
    offsets: [..., 4] float ``(t_x, t_y, t_w, t_h)``.
    anchors: [..., 4] float ``(x0, y0, x1, y1)`` pixels, leading axes broadcastable with
      ``offsets``'.

  Returns:
    [..., 4] float ``(x0, y0, x1, y1)`` pixels, the broadcast leading axes.
  """
  _check_box_axis("offsets", offsets)
  _check_box_axis("anchors", anchors)
  offsets = _as_float(offsets)
  tx, ty, tw, th = (offsets[..., i] for i in range(4))
  xa, ya, wa, ha = (xyxy_to_cxcywh(anchors)[..., i] for i in range(4))
  return cxcywh_to_xyxy(jnp.stack(
      [xa + tx * wa, ya + ty * ha, wa * jnp.exp(tw), ha * jnp.exp(th)], axis=-1))


def grid_boxes(image_hw: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
  """A ``rows x cols`` grid of equal boxes tiling the image: fixed region proposals.

  Cell ``(r, c)`` is ``(c W / cols, r H / rows, (c + 1) W / cols, (r + 1) H / rows)``, so the
  cells cover the image without overlap (integer boxes when ``cols`` divides ``W`` and
  ``rows`` divides ``H``; fractional edges are cropped bilinearly otherwise).

  Args:
    image_hw: ``(H, W)`` of the images.
    grid: ``(rows, cols)``, positive ints.

  Returns:
    [rows * cols, 4] float32 NumPy ``(x0, y0, x1, y1)``, row-major (``r`` outer, ``c``
    inner): a constant, to concatenate with per-example boxes in a pipeline or a model.
  """
  height, width = check_hw("image_hw", image_hw)
  rows, cols = check_hw("grid", grid)
  r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
  r, c = r.ravel(), c.ravel()
  return np.stack([c * width / cols, r * height / rows, (c + 1) * width / cols,
                   (r + 1) * height / rows], axis=-1).astype(np.float32)


def anchor_boxes(image_hw: tuple[int, int], feature_hw: tuple[int, int],
                 anchor_sizes: Sequence[tuple[float, float]] | np.ndarray) -> np.ndarray:
  """DenseCap's anchors (Sec. 3.1.2): ``k`` boxes of fixed sizes centred on every cell of a
  feature map, in the pixels of the image it was computed from.

  Cell ``(r, c)`` of an ``Hf x Wf`` feature map of an ``H x W`` image has its centre at
  ``((c + 0.5) W / Wf, (r + 0.5) H / Hf)``: the centre of the image patch it covers (for a
  stride-16 network, pixel ``16 c + 8``; DenseCap's MakeAnchors takes the receptive field
  centres ``x0 + s c`` of its CNN, the same points for its VGG-16). Anchors may reach past
  the image edges (DenseCap's largest anchors, 724 pixels, exceed its 720-pixel images);
  at train time the boxes outside the image are left out of the sampling (``sample_boxes``'s
  ``valid``).

  Args:
    image_hw: ``(H, W)`` of the image, positive ints.
    feature_hw: ``(Hf, Wf)`` of the feature map, at most ``(H, W)`` (a cell covers at least
      one pixel).
    anchor_sizes: ``k`` pairs ``(w, h)`` of positive widths and heights in image pixels
      (DenseCap: 3 aspect ratios x 4 scales, 12 anchors); none may exceed the image in both
      width and height (such an anchor holds the whole image wherever it is placed).

  Returns:
    [Hf * Wf * k, 4] float32 NumPy ``(x0, y0, x1, y1)``, ordered (row, column, anchor)
    row-major: anchor ``a`` of cell ``(r, c)`` is row ``(r Wf + c) k + a``, the layout of a
    ``[Hf, Wf, k, 4]`` convolution output reshaped to ``[Hf * Wf * k, 4]``. A constant.

  Raises:
    ValueError: for a feature map larger than the image, sizes that are not ``k >= 1``
      positive finite pairs, or an anchor larger than the image in both dimensions.
  """
  height, width = check_hw("image_hw", image_hw)
  rows, cols = check_hw("feature_hw", feature_hw)
  if rows > height or cols > width:
    raise ValueError(f"feature_hw must be at most image_hw = {(height, width)} in each "
                     f"dimension (a feature-map cell covers at least one image pixel), got "
                     f"{(rows, cols)}.")
  try:
    sizes = np.asarray(anchor_sizes, np.float64)
  except (TypeError, ValueError):
    sizes = np.zeros((0,))
  if sizes.ndim != 2 or sizes.shape[1] != 2 or not len(sizes) or not np.all(
      np.isfinite(sizes) & (sizes > 0)):
    raise ValueError(f"anchor_sizes must be k >= 1 pairs (w, h) of positive finite pixel "
                     f"sizes, shape [k, 2], got {anchor_sizes!r}.")
  too_big = (sizes[:, 0] > width) & (sizes[:, 1] > height)
  if too_big.any():
    index = int(np.argmax(too_big))
    raise ValueError(f"anchor_sizes must fit the {height}x{width} (HxW) image in width or "
                     f"height (an anchor larger in both covers the whole image from every "
                     f"cell), got (w, h) = {tuple(sizes[index].tolist())} at index {index}.")
  r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
  cx = ((c + 0.5) * width / cols)[..., None]  # [Hf, Wf, 1]
  cy = ((r + 0.5) * height / rows)[..., None]
  w, h = sizes[:, 0], sizes[:, 1]  # [k]
  anchors = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
  return anchors.reshape(-1, 4).astype(np.float32)


def clip_boxes(boxes: jax.Array, image_hw: tuple[int, int]) -> jax.Array:
  """Boxes clipped to the image canvas: ``0 <= x <= W``, ``0 <= y <= H`` for both corners.

  DenseCap clips its test-time proposals to the image before NMS (LocalizationLayer with
  ``clip_boxes``). A box wholly outside the image comes out empty (``x1 - x0 == 0`` or
  ``y1 - y0 == 0``): DenseCap drops those (its ``valid``); here the caller masks them, e.g.
  ``non_max_suppression(..., valid=(w > 0) & (h > 0))``. The gradient passes where a
  coordinate is inside the canvas and is zero where it was clipped.

  Args:
    boxes: [..., 4] ``(x0, y0, x1, y1)`` pixels.
    image_hw: ``(H, W)``.

  Returns:
    [..., 4] float, the clipped boxes (float32 for integer boxes).
  """
  height, width = check_hw("image_hw", image_hw)
  _check_box_axis("boxes", boxes)
  boxes = _as_float(boxes)
  return jnp.clip(boxes, 0, jnp.asarray([width, height, width, height], boxes.dtype))


def check_boxes_inside(boxes: jax.Array, image_hw: tuple[int, int], *, name: str = "boxes",
                       mask: jax.Array | None = None) -> None:
  """A ValueError unless every (unmasked) box is non-empty and lies inside the image.

  Inside means ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``. Traced boxes (inside
  ``jax.jit``) are not checked: their values are unknown.

  Args:
    boxes: [..., 4] ``(x0, y0, x1, y1)`` pixels.
    image_hw: ``(H, W)``.
    name: the argument named in the message.
    mask: [...] bool, the boxes to check (None: all).

  Raises:
    ValueError: naming ``name``, the image size and the first offending box and its index.
  """
  height, width = check_hw("image_hw", image_hw)
  _check_box_axis(name, boxes)
  values = concrete(boxes)
  if values is None:
    return
  x0, y0, x1, y1 = np.moveaxis(values, -1, 0)
  bad = ~((0 <= x0) & (x0 < x1) & (x1 <= width) & (0 <= y0) & (y0 < y1) & (y1 <= height))
  if mask is not None:
    if tuple(np.shape(mask)) != values.shape[:-1]:
      raise ValueError(f"mask must have shape {values.shape[:-1]} (the boxes' leading axes), "
                       f"got {np.shape(mask)}.")
    keep = concrete(mask)
    if keep is None:
      return
    bad &= keep.astype(bool)
  if bad.any():
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name} must lie inside the {height}x{width} (HxW) image with "
                     f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}, got "
                     f"(x0, y0, x1, y1) = {values[index].tolist()} at index {index} "
                     f"({int(bad.sum())} bad).")


def _check_unit(name: str, value: float) -> float:
  """`value` as a float, or a ValueError unless it is a finite float in [0, 1]."""
  value = check_float(name, value, low=0.0)
  if value > 1:
    raise ValueError(f"{name} must be a finite float in [0, 1], got {value!r}.")
  return value


def _check_mask(name: str, mask: jax.Array | None, length: int, what: str) -> jax.Array:
  """A [length] bool mask (all True for None), or a ValueError naming its expected shape."""
  if mask is None:
    return jnp.ones((length,), bool)
  if tuple(np.shape(mask)) != (length,):
    raise ValueError(f"{name} must have shape [{length}] (one flag per {what}), got "
                     f"{np.shape(mask)}.")
  return jnp.asarray(mask, bool)


def _check_boxes_n4(name: str, boxes: jax.Array) -> int:
  """The number of boxes N, or a ValueError unless ``boxes`` has shape [N, 4], N >= 1."""
  if np.ndim(boxes) != 2 or np.shape(boxes)[-1] != 4 or np.shape(boxes)[0] < 1:
    raise ValueError(f"{name} must have shape [N, 4] with N >= 1 (one image's boxes), got "
                     f"{np.shape(boxes)}.")
  return int(np.shape(boxes)[0])


def non_max_suppression(boxes: jax.Array, scores: jax.Array, *, iou_threshold: float,
                        max_output: int, valid: jax.Array | None = None
                        ) -> tuple[jax.Array, jax.Array]:
  """Greedy non-maximum suppression of one image's boxes, with a fixed number of outputs.

  DenseCap Sec. 3.1.2 (test time; box_utils.nms): repeatedly keep the highest-scoring box
  left and drop every remaining box whose IoU with it exceeds ``iou_threshold`` (a box with
  IoU equal to the threshold stays, as in DenseCap), until ``max_output`` boxes are kept or
  none is left. Equal scores keep the lower index first. Boxes with ``valid`` False (e.g.
  outside the image, or padding) are never kept and suppress nothing.

  Jittable and vmappable (one image per call; ``jax.vmap`` for a batch): the boxes are
  sorted once, then a ``lax.while_loop`` of at most ``max_output`` steps takes the first
  surviving box in score order and computes its IoU with all ``N`` boxes: ``O(max_output N)``
  time, ``O(N)`` memory (no ``N x N`` IoU matrix). Not differentiable (indices only).

  Args:
    boxes: [N, 4] float ``(x0, y0, x1, y1)`` pixels.
    scores: [N] float, higher is better.
    iou_threshold: in [0, 1] (DenseCap: 0.7 for the proposals at test time, 0.3 among final
      detections).
    max_output: the fixed output length, a positive int (may exceed N).
    valid: [N] bool, the boxes that may be kept; None: all.

  Returns:
    ``(indices, keep)``: indices [max_output] int32 into ``boxes``, the kept boxes by
    descending score, 0 where padding; keep [max_output] bool, True for the kept boxes (a
    prefix: the first ``sum(keep)`` slots).
  """
  n = _check_boxes_n4("boxes", boxes)
  if tuple(np.shape(scores)) != (n,):
    raise ValueError(f"scores must have shape [{n}] (one per box), got {np.shape(scores)}.")
  iou_threshold = _check_unit("iou_threshold", iou_threshold)
  max_output = check_positive_int("max_output", max_output)
  valid = _check_mask("valid", valid, n, "box")
  boxes = jax.lax.stop_gradient(_as_float(boxes))
  scores = jax.lax.stop_gradient(jnp.asarray(scores))
  order = jnp.argsort(-scores, stable=True)  # descending; ties keep the lower index first
  sorted_boxes, alive = boxes[order], valid[order]
  positions = jnp.arange(n)

  def cond(carry):
    step, alive, _, _ = carry
    return (step < max_output) & alive.any()

  def body(carry):
    step, alive, indices, keep = carry
    best = jnp.argmax(alive)  # the first surviving box in score order
    iou = box_iou(sorted_boxes[best], sorted_boxes)
    alive = alive & (iou <= iou_threshold) & (positions != best)
    return step + 1, alive, indices.at[step].set(order[best]), keep.at[step].set(True)

  init = (jnp.int32(0), alive, jnp.zeros((max_output,), jnp.int32),
          jnp.zeros((max_output,), bool))
  _, _, indices, keep = jax.lax.while_loop(cond, body, init)
  return indices, keep


class BoxSample(NamedTuple):
  """``sample_boxes``' minibatch of ``S`` slots, positives first, then negatives, then empty.

  Attributes:
    indices: [S] int32 into the sampled boxes (0 in empty slots).
    positive: [S] bool, the positive slots (a prefix).
    matched: [S] int32, the ground-truth box each positive is matched to: its highest-IoU
      ground-truth box (0 elsewhere).
    mask: [S] bool, the filled slots (a prefix: positives and negatives).
  """
  indices: jax.Array
  positive: jax.Array
  matched: jax.Array
  mask: jax.Array


def _random_first(key_priority: jax.Array, chosen: jax.Array, count: int) -> jax.Array:
  """[count] int32: the indices of the ``chosen`` entries in random order (priorities in
  [0, 1)), then the others; padded with 0 when there are fewer than ``count`` entries."""
  n = chosen.shape[0]
  _, indices = jax.lax.top_k(jnp.where(chosen, key_priority, -1.0), min(count, n))
  return jnp.pad(indices, (0, count - min(count, n))).astype(jnp.int32)


def sample_boxes(key: jax.Array, boxes: jax.Array, gt_boxes: jax.Array, *, gt_mask: jax.Array,
                 valid: jax.Array | None = None, batch_size: int,
                 positive_fraction: float = 0.5, high_threshold: float = 0.7,
                 low_threshold: float = 0.3) -> BoxSample:
  """DenseCap's training-time box sampling (Sec. 3.1.2, BoxSampler) for one image.

  A ``valid`` box is positive when its IoU with some ground-truth box is at least
  ``high_threshold``; so is the best box of each ground-truth box (its highest IoU among all
  the boxes, the lower index on ties), valid or not; a valid box is negative when its IoU
  with every ground-truth box is below ``low_threshold`` and it is not positive.
  Up to ``floor(batch_size * positive_fraction)`` positives are drawn uniformly without
  replacement, the rest of the ``batch_size`` slots are filled with negatives drawn the
  same way, and the remaining slots are left empty (``mask`` False). Each positive is
  matched to its highest-IoU ground-truth box. Sampling without replacement uses one uniform
  priority per box and ``lax.top_k`` (fixed shapes: jittable and vmappable over images).

  Fidelity to DenseCap: thresholds as in the paper, IoU >= 0.7 positive and < 0.3 negative
  (the released LocalizationLayer defaults its low threshold to 0.5 and tests IoU > 0.7).
  As in the code, a ground truth's best box is positive even when it is out of bounds or
  overlaps it hardly at all, so every image with ground truth has positives: when the
  proposals drift off the image (nothing else valid), the positives' regression targets
  still pull them back (without it, training can stall with no sampled box at all); and if
  there are no negatives at all, the valid non-positive boxes are sampled as negatives
  instead. Unlike the code, when negatives are too few the slots stay empty instead of
  repeating negatives (sampled with replacement in the code), so no box appears twice. With
  no ground truth (``gt_mask`` all False) every valid box is a negative.

  Args:
    key: PRNG key.
    boxes: [N, 4] float ``(x0, y0, x1, y1)`` pixels, the candidates (anchors or proposals).
    gt_boxes: [G, 4] float ``(x0, y0, x1, y1)`` pixels, padded to a fixed G >= 1.
    gt_mask: [G] bool, the real ground-truth boxes (False: padding).
    valid: [N] bool, the boxes that may be sampled (DenseCap: those inside the image); None:
      all.
    batch_size: S, the number of slots, a positive int (DenseCap: 256).
    positive_fraction: the largest share of positives, in [0, 1] (DenseCap: 1/2).
    high_threshold: IoU at or above which a box is positive, in [0, 1].
    low_threshold: IoU below which a box is negative, in [0, high_threshold].

  Returns:
    ``BoxSample`` (indices, positive, matched, mask), each [S]. The first ``P`` slots are
    positives and the next ``M`` negatives, with ``P = min(#positives, floor(S f))`` and
    ``M = min(#negatives, S - P)``. Integers and flags only: no gradient flows through.
  """
  n = _check_boxes_n4("boxes", boxes)
  g = _check_boxes_n4("gt_boxes", gt_boxes)
  gt_mask = _check_mask("gt_mask", gt_mask, g, "ground-truth box")
  valid = _check_mask("valid", valid, n, "box")
  batch_size = check_positive_int("batch_size", batch_size)
  positive_fraction = _check_unit("positive_fraction", positive_fraction)
  high_threshold = _check_unit("high_threshold", high_threshold)
  low_threshold = _check_unit("low_threshold", low_threshold)
  if low_threshold > high_threshold:
    raise ValueError(f"low_threshold must be at most high_threshold = {high_threshold}, got "
                     f"{low_threshold}.")
  boxes = jax.lax.stop_gradient(_as_float(boxes))
  gt_boxes = jax.lax.stop_gradient(_as_float(gt_boxes))

  iou = jnp.where(gt_mask, box_iou(boxes[:, None], gt_boxes[None]), -1.0)  # [N, G]
  max_iou, matched = iou.max(axis=1), iou.argmax(axis=1)  # [N]
  best = iou.argmax(axis=0)  # [G], each ground truth's best box, valid or not
  is_best = jnp.zeros((n,), jnp.int32).at[best].add(gt_mask.astype(jnp.int32)) > 0
  positive = (valid & (max_iou >= high_threshold)) | is_best
  negative = valid & ~positive & (max_iou < low_threshold)
  negative = jnp.where(negative.any(), negative, valid & ~positive)  # DenseCap's fallback

  max_positives = int(batch_size * positive_fraction)
  priority = jax.random.uniform(key, (n,))
  candidates = jnp.concatenate([_random_first(priority, positive, max_positives),
                                _random_first(priority, negative, batch_size)])
  num_pos = jnp.minimum(positive.sum(), max_positives)
  num_neg = jnp.minimum(negative.sum(), batch_size - num_pos)
  slots = jnp.arange(batch_size)
  is_positive = slots < num_pos
  mask = slots < num_pos + num_neg
  indices = jnp.where(is_positive, candidates[jnp.minimum(slots, max(max_positives - 1, 0))],
                      candidates[max_positives + jnp.maximum(slots - num_pos, 0)])
  indices = jnp.where(mask, indices, 0).astype(jnp.int32)
  return BoxSample(indices=indices, positive=is_positive,
                   matched=jnp.where(is_positive, matched[indices], 0).astype(jnp.int32),
                   mask=mask)


def crop_regions(images: jax.Array, boxes: jax.Array, crop_size: tuple[int, int], *,
                 image_hw: tuple[int, int] | None = None) -> jax.Array:
  """Every box of every image resampled to ``crop_size`` with the bilinear sampler.

  ``bilinear_sample(images, affine_grid(box_theta(boxes, image_hw), crop_size))`` (STN eq. 1,
  3-5, zero padding): an integer box cropped at its own size is exactly the slice
  ``images[b, y0:y1, x0:x1]``; other sizes are bilinear resamplings (no anti-aliasing), and
  the crop is differentiable in the images and the box coordinates. The ``R`` grids of an
  image are stacked along the output height and read in one sampler call, so the images are
  not copied per box.

  With ``image_hw``, ``images`` is a feature map of an ``image_hw`` image at another
  resolution and the boxes are in the image's pixels: DenseCap's bilinear RoI pooling (Sec.
  3.1.2, BilinearRoiPooling with ``setImageSize``). The box's place relative to the image is
  the same on the feature map, so a box ``(x0, y0, x1, y1)`` reads the feature-map region
  ``(x0 Wf / W, y0 Hf / H, x1 Wf / W, y1 Hf / H)``: when that region is integer and cropped
  at its own size, the crop is exactly its slice of the feature map.

  Args:
    images: [B, H, W, C] float (or [B, Hf, Wf, C] features of ``image_hw`` images).
    boxes: [B, R, 4] float ``(x0, y0, x1, y1)`` pixels (module docstring) of ``images`` or,
      given ``image_hw``, of the ``image_hw`` images.
    crop_size: ``(h, w)`` of every crop.
    image_hw: ``(H, W)`` of the images the boxes are in pixels of; None: ``images``' own.

  Returns:
    [B, R, h, w, C] crops, float32.
  """
  out_h, out_w = check_hw("crop_size", crop_size)
  if jnp.ndim(images) != 4:
    raise ValueError(f"images must have shape [B, H, W, C], got {jnp.shape(images)}.")
  if jnp.ndim(boxes) != 3 or jnp.shape(boxes)[-1] != 4 or jnp.shape(boxes)[0] != jnp.shape(
      images)[0]:
    raise ValueError(f"boxes must have shape [B, R, 4] with B = {jnp.shape(images)[0]} (the "
                     f"images'), got {jnp.shape(boxes)}.")
  batch, regions = jnp.shape(boxes)[:2]
  check_positive_int("boxes.shape[1] (R)", regions)
  image_hw = check_hw("image_hw", image_hw, allow_none=True) or tuple(jnp.shape(images)[1:3])
  theta = box_theta(boxes, image_hw).reshape(-1, 2, 3)
  grid = affine_grid(theta, (out_h, out_w)).reshape(batch, regions * out_h, out_w, 2)
  crops = bilinear_sample(jnp.asarray(images, jnp.float32), grid)
  return crops.reshape(batch, regions, out_h, out_w, -1)
