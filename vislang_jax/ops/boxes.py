"""Axis-aligned boxes: layouts, proposals and crops.

Convention: a box is ``(x0, y0, x1, y1)`` in pixels with exclusive ends (the pixel-edge
convention of ``ops.sampling.box_theta``: the integer box ``(2, 1, 5, 3)`` covers columns 2-4
and rows 1-2, so its size is ``(y1 - y0, x1 - x0)``); ``x`` indexes width, ``y`` height. The
data's boxes come as ``(y0, x0, y1, x1)`` (``yxyx_to_xyxy``).

Karpathy & Fei-Fei, "Deep visual-semantic alignments for generating image descriptions",
CVPR 2015, Sec. 3.1.1 crops each region proposal from the image and embeds it with a CNN;
``crop_regions`` does the cropping with the spatial transformer's bilinear sampler
(``ops.sampling``), differentiable in the pixels and the box coordinates.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_hw, check_positive_int, concrete
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


def crop_regions(images: jax.Array, boxes: jax.Array, crop_size: tuple[int, int]) -> jax.Array:
  """Every box of every image resampled to ``crop_size`` with the bilinear sampler.

  ``bilinear_sample(images, affine_grid(box_theta(boxes), crop_size))`` (STN eq. 1, 3-5, zero
  padding): an integer box cropped at its own size is exactly the slice
  ``images[b, y0:y1, x0:x1]``; other sizes are bilinear resamplings (no anti-aliasing), and
  the crop is differentiable in the images and the box coordinates. The ``R`` grids of an
  image are stacked along the output height and read in one sampler call, so the images are
  not copied per box.

  Args:
    images: [B, H, W, C] float.
    boxes: [B, R, 4] float ``(x0, y0, x1, y1)`` pixels (module docstring).
    crop_size: ``(h, w)`` of every crop.

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
  theta = box_theta(boxes, tuple(jnp.shape(images)[1:3])).reshape(-1, 2, 3)
  grid = affine_grid(theta, (out_h, out_w)).reshape(batch, regions * out_h, out_w, 2)
  crops = bilinear_sample(jnp.asarray(images, jnp.float32), grid)
  return crops.reshape(batch, regions, out_h, out_w, -1)
