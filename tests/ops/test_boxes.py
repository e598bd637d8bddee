"""Tests for vislang_jax.ops.boxes: layouts, grid proposals, the inside check and the
sampler's crops against direct slicing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vislang_jax.ops import boxes


def test_yxyx_to_xyxy_reorders_numpy_and_jax_alike():
  yxyx = np.array([[[1, 2, 3, 4], [-1, -1, -1, -1]]], np.int32)
  expected = np.array([[[2, 1, 4, 3], [-1, -1, -1, -1]]], np.int32)
  out = boxes.yxyx_to_xyxy(yxyx)
  assert isinstance(out, np.ndarray) and out.dtype == np.int32
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(boxes.yxyx_to_xyxy(jnp.asarray(yxyx)), expected)
  with pytest.raises(ValueError, match=r"boxes must have shape \[..., 4\], got \(2, 3\)"):
    boxes.yxyx_to_xyxy(np.zeros((2, 3)))


@pytest.mark.parametrize("image_hw, grid", [((60, 60), (2, 2)), ((7, 10), (3, 4))])
def test_grid_boxes_tile_the_image(image_hw, grid):
  height, width = image_hw
  cells = boxes.grid_boxes(image_hw, grid)
  assert cells.shape == (grid[0] * grid[1], 4) and cells.dtype == np.float32
  # Row-major: the first cell is the top left one, the second its right neighbour.
  np.testing.assert_allclose(cells[0], [0, 0, width / grid[1], height / grid[0]], rtol=1e-6)
  np.testing.assert_allclose(cells[1, 1], 0)
  # Equal areas that add up to the image, and every pixel centre in exactly one cell.
  areas = (cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])
  np.testing.assert_allclose(areas, height * width / len(cells), rtol=1e-5)
  y, x = np.mgrid[:height, :width] + 0.5
  inside = ((cells[:, 0, None, None] <= x) & (x < cells[:, 2, None, None])
            & (cells[:, 1, None, None] <= y) & (y < cells[:, 3, None, None]))
  np.testing.assert_array_equal(inside.sum(0), 1)
  boxes.check_boxes_inside(cells, image_hw)
  with pytest.raises(ValueError, match="grid must be a pair"):
    boxes.grid_boxes(image_hw, (0, 2))


def test_check_boxes_inside_names_the_image_and_the_first_bad_box():
  good = np.array([[0, 0, 10, 8], [2, 3, 5, 4]], np.float32)
  boxes.check_boxes_inside(good, (8, 10))
  for bad in ([0, 0, 11, 8], [-1, 0, 4, 4], [0, 0, 10, 9], [3, 2, 3, 5]):
    with pytest.raises(ValueError, match=(
        r"regions must lie inside the 8x10 \(HxW\) image .* got \(x0, y0, x1, y1\) = "
        + re_list(bad) + r" at index \(1,\)")):
      boxes.check_boxes_inside(np.array([good[0], bad], np.float32), (8, 10), name="regions")
  # Masked-out boxes (padding, e.g. the data's -1 rows) are not checked.
  padded = np.array([[[0, 0, 4, 4], [-1, -1, -1, -1]]], np.float32)
  boxes.check_boxes_inside(padded, (8, 10), mask=np.array([[True, False]]))
  with pytest.raises(ValueError, match=r"index \(0, 1\)"):
    boxes.check_boxes_inside(padded, (8, 10))
  with pytest.raises(ValueError, match="mask must have shape"):
    boxes.check_boxes_inside(padded, (8, 10), mask=np.array([True, False]))
  # Traced boxes are unknown: no check, no error.
  jax.jit(lambda b: boxes.check_boxes_inside(b, (8, 10)) or b)(padded)


def re_list(values):
  return r"\[" + r", ".join(f"{float(v)}" for v in values) + r"\]"


def test_crop_regions_of_integer_boxes_at_their_size_equal_slicing():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  # Three 4x5 (h x w) boxes per image, at the corners and inside.
  corners = np.array([[[0, 0], [6, 5], [3, 2]], [[1, 4], [0, 5], [6, 0]]])  # (x0, y0)
  xyxy = np.concatenate([corners, corners + [5, 4]], axis=-1).astype(np.float32)
  crops = boxes.crop_regions(images, xyxy, (4, 5))
  assert crops.shape == (2, 3, 4, 5, 3) and crops.dtype == jnp.float32
  for b in range(2):
    for r, (x0, y0, x1, y1) in enumerate(xyxy[b].astype(int)):
      np.testing.assert_allclose(crops[b, r], images[b, y0:y1, x0:x1], atol=1e-5)
  # The whole image at its own size is the image; at half size, the 2x2 means.
  even = images[:, :8, :10]
  whole = boxes.crop_regions(even, np.array([[[0, 0, 10, 8]]] * 2, np.float32), (4, 5))
  means = even.reshape(2, 4, 2, 5, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(whole[:, 0], means, atol=1e-5)
  with pytest.raises(ValueError, match=r"boxes must have shape \[B, R, 4\] with B = 2"):
    boxes.crop_regions(images, xyxy[:1], (4, 5))


def test_box_iou_against_pixel_counts():
  rng = np.random.default_rng(0)
  xs, ys = (np.sort(rng.integers(0, 12, size=(40, 2)), axis=1) for _ in range(2))
  a = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)  # some empty boxes too
  b = np.roll(a, 7, axis=0)
  got = np.asarray(boxes.box_iou(a[:, None], b[None]))  # every pair

  def pixels(box):
    mask = np.zeros((12, 12), bool)
    mask[box[1]:box[3], box[0]:box[2]] = True  # rows y0:y1, columns x0:x1
    return mask

  for i in range(len(a)):
    for j in range(len(b)):
      p, q = pixels(a[i]), pixels(b[j])
      union = np.sum(p | q)
      expected = np.sum(p & q) / union if union else 0.0
      assert got[i, j] == pytest.approx(expected, abs=1e-6), (a[i], b[j])


# --- DenseCap's box ops: layouts, offsets, anchors, clipping, NMS, sampling, RoI pooling ---


def iou64(a, b):
  """NumPy float64 IoU of boxes a [..., 4] and b [..., 4] (broadcast), 0 for empty unions."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  area = lambda c: (np.clip(c[..., 2] - c[..., 0], 0, None)
                    * np.clip(c[..., 3] - c[..., 1], 0, None))
  union = area(a) + area(b) - w * h
  return np.where(union > 0, w * h / np.where(union > 0, union, 1), 0.0)


def random_boxes(rng, n, size=20.0):
  """[n, 4] float boxes with corners in [0, size), non-empty."""
  x = np.sort(rng.uniform(0, size, size=(n, 2)), axis=1)
  y = np.sort(rng.uniform(0, size, size=(n, 2)), axis=1)
  return np.stack([x[:, 0], y[:, 0], x[:, 1] + 0.5, y[:, 1] + 0.5], axis=1).astype(np.float32)


def test_box_iou_of_float_boxes_against_numpy_float64():
  rng = np.random.default_rng(1)
  a, b = random_boxes(rng, 30), random_boxes(rng, 20)
  np.testing.assert_allclose(boxes.box_iou(a[:, None], b[None]), iou64(a[:, None], b[None]),
                             atol=1e-6)


def test_cxcywh_layouts_by_hand_and_round_trip():
  xyxy = np.array([[2, 1, 5, 3], [0, 0, 1, 1]], np.int32)
  expected = np.array([[3.5, 2, 3, 2], [0.5, 0.5, 1, 1]], np.float32)
  out = boxes.xyxy_to_cxcywh(xyxy)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(boxes.cxcywh_to_xyxy(expected), xyxy)
  rng = np.random.default_rng(2)
  b = rng.normal(size=(3, 5, 4)).astype(np.float32)
  np.testing.assert_allclose(boxes.cxcywh_to_xyxy(boxes.xyxy_to_cxcywh(b)), b, atol=1e-6)
  np.testing.assert_allclose(boxes.xyxy_to_cxcywh(boxes.cxcywh_to_xyxy(b)), b, atol=1e-6)
  for fn in (boxes.xyxy_to_cxcywh, boxes.cxcywh_to_xyxy):
    with pytest.raises(ValueError, match=r"boxes must have shape \[..., 4\], got \(2, 5\)"):
      fn(np.zeros((2, 5)))


def offsets64(b, a):
  """The paper's (t_x, t_y, t_w, t_h), NumPy float64, straight from its equations."""
  b, a = np.asarray(b, np.float64), np.asarray(a, np.float64)
  x, y = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
  w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
  xa, ya = (a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2
  wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
  return np.stack([(x - xa) / wa, (y - ya) / ha, np.log(w / wa), np.log(h / ha)], axis=-1)


def boxes64(t, a):
  """x = x_a + t_x w_a, y = y_a + t_y h_a, w = w_a e^t_w, h = h_a e^t_h, as (x0, y0, x1, y1)."""
  t, a = np.asarray(t, np.float64), np.asarray(a, np.float64)
  xa, ya = (a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2
  wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
  x, y = xa + t[..., 0] * wa, ya + t[..., 1] * ha
  w, h = wa * np.exp(t[..., 2]), ha * np.exp(t[..., 3])
  return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def test_offsets_against_the_papers_equations_and_round_trips():
  rng = np.random.default_rng(3)
  gt = random_boxes(rng, 6)
  anchors = random_boxes(rng, 6)
  t = boxes.encode_offsets(gt, anchors)
  np.testing.assert_allclose(t, offsets64(gt, anchors), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(boxes.decode_offsets(t, anchors), gt, rtol=1e-5, atol=1e-4)
  offsets = rng.normal(scale=0.5, size=(6, 4)).astype(np.float32)
  decoded = boxes.decode_offsets(offsets, anchors)
  np.testing.assert_allclose(decoded, boxes64(offsets, anchors), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(boxes.encode_offsets(decoded, anchors), offsets, atol=1e-5)
  # The zero offset is the anchor; leading axes broadcast (every box against every anchor).
  np.testing.assert_allclose(boxes.decode_offsets(np.zeros(4), anchors), anchors, atol=1e-5)
  np.testing.assert_allclose(boxes.encode_offsets(gt[:, None], anchors[None]),
                             offsets64(gt[:, None], anchors[None]), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"anchors must have shape \[..., 4\]"):
    boxes.encode_offsets(gt, anchors[:, :3])
  with pytest.raises(ValueError, match=r"offsets must have shape \[..., 4\]"):
    boxes.decode_offsets(offsets[:, :2], anchors)


def test_offsets_gradients_match_finite_differences():
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    gt, anchors = (jnp.asarray(random_boxes(rng, 3), jnp.float64) for _ in range(2))
    offsets = jnp.asarray(rng.normal(scale=0.3, size=(3, 4)))
    check_grads(jax.jit(boxes.encode_offsets), (gt, anchors), order=1)
    check_grads(jax.jit(boxes.decode_offsets), (offsets, anchors), order=1)


def test_anchor_boxes_hand_worked():
  # A 8x12 (HxW) image, a 2x3 feature map: 4x4-pixel cells centred at x = 2, 6, 10 and
  # y = 2, 6; two anchors per cell, 4 wide 2 high and 2 wide 4 high.
  anchors = boxes.anchor_boxes((8, 12), (2, 3), [(4, 2), (2, 4)])
  assert anchors.shape == (2 * 3 * 2, 4) and anchors.dtype == np.float32
  np.testing.assert_array_equal(anchors[:4], [[0, 1, 4, 3], [1, 0, 3, 4],  # cell (0, 0)
                                              [4, 1, 8, 3], [5, 0, 7, 4]])  # cell (0, 1)
  np.testing.assert_array_equal(anchors[(1 * 3 + 2) * 2 + 1], [9, 4, 11, 8])  # cell (1, 2)
  centres = np.asarray(boxes.xyxy_to_cxcywh(anchors)).reshape(2, 3, 2, 4)
  np.testing.assert_array_equal(centres[..., 0], np.array([2, 6, 10])[None, :, None]
                                + np.zeros((2, 3, 2)))
  np.testing.assert_array_equal(centres[..., 1], np.array([2, 6])[:, None, None]
                                + np.zeros((2, 3, 2)))
  np.testing.assert_array_equal(centres[..., 2:], np.broadcast_to([[4, 2], [2, 4]], (2, 3, 2, 2)))
  # Non-integer strides: a 10x10 image, a 3x4 map: centres at (c + 0.5) 10 / 4, (r + 0.5) 10 / 3.
  odd = boxes.xyxy_to_cxcywh(boxes.anchor_boxes((10, 10), (3, 4), np.array([[3.0, 5.0]])))
  np.testing.assert_allclose(np.asarray(odd)[:, :2].reshape(3, 4, 2),
                             np.stack(np.meshgrid((np.arange(4) + 0.5) * 2.5,
                                                  (np.arange(3) + 0.5) * 10 / 3), -1), rtol=1e-6)
  # An anchor may exceed the image in one dimension (DenseCap's 724-pixel anchors).
  assert boxes.anchor_boxes((8, 12), (1, 1), [(20, 8)]).shape == (1, 4)


@pytest.mark.parametrize("args, message", [
    (((8, 12), (9, 3), [(4, 2)]),
     r"feature_hw must be at most image_hw = \(8, 12\) .* got \(9, 3\)"),
    (((8, 12), (2, 13), [(4, 2)]), r"feature_hw must be at most image_hw"),
    (((8, 12), (0, 3), [(4, 2)]), r"feature_hw must be a pair of positive ints"),
    (((8, 12), (2, 3), []), r"anchor_sizes must be k >= 1 pairs .* got \[\]"),
    (((8, 12), (2, 3), [(4, 0)]), r"anchor_sizes must be k >= 1 pairs"),
    (((8, 12), (2, 3), [(4, -2)]), r"anchor_sizes must be k >= 1 pairs"),
    (((8, 12), (2, 3), [(4, 2, 1)]), r"anchor_sizes must be k >= 1 pairs"),
    (((8, 12), (2, 3), [(4, 2), (3,)]), r"anchor_sizes must be k >= 1 pairs"),
    (((8, 12), (2, 3), [(4, np.inf)]), r"anchor_sizes must be k >= 1 pairs"),
    (((8, 12), (2, 3), [(4, 2), (13, 9)]),
     r"anchor_sizes must fit the 8x12 \(HxW\) image .* got \(w, h\) = \(13.0, 9.0\) at index 1"),
])
def test_anchor_boxes_errors(args, message):
  with pytest.raises(ValueError, match=message):
    boxes.anchor_boxes(*args)


def test_clip_boxes_to_the_canvas():
  b = np.array([[-3, 2, 5, 12], [1, 1, 4, 4], [20, -5, 30, -1]], np.float32)
  clipped = boxes.clip_boxes(b, (10, 12))
  np.testing.assert_array_equal(clipped, [[0, 2, 5, 10], [1, 1, 4, 4], [12, 0, 12, 0]])
  assert np.asarray(boxes.xyxy_to_cxcywh(clipped))[2, 2] == 0  # wholly outside: empty
  grad = jax.grad(lambda x: boxes.clip_boxes(x, (10, 12)).sum())(b)
  np.testing.assert_array_equal(grad, [[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
  with pytest.raises(ValueError, match="image_hw must be a pair"):
    boxes.clip_boxes(b, (10,))


def nms_reference(b, scores, threshold, max_output, valid):
  """Greedy NMS in pure Python with float64 IoU: highest score first, lower index on ties."""
  kept = []
  for i in sorted(range(len(b)), key=lambda i: (-scores[i], i)):
    if len(kept) == max_output:
      break
    if valid[i] and all(iou64(b[i], b[j]) <= threshold for j in kept):
      kept.append(i)
  return kept


def check_nms(indices, keep, expected, max_output):
  indices, keep = np.asarray(indices), np.asarray(keep)
  assert indices.shape == keep.shape == (max_output,) and indices.dtype == np.int32
  np.testing.assert_array_equal(keep, np.arange(max_output) < len(expected))
  assert indices[keep].tolist() == expected
  np.testing.assert_array_equal(indices[~keep], 0)


@pytest.mark.parametrize("threshold, max_output", [(0.0, 5), (0.25, 5), (0.5, 60), (0.73, 60)])
def test_nms_against_the_python_reference_under_jit_and_vmap(threshold, max_output):
  rng = np.random.default_rng(int(threshold * 100))
  batch, n = 4, 40
  centres = rng.uniform(0, 24, size=(batch, n, 2))
  sizes = rng.uniform(1, 8, size=(batch, n, 2))
  b = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
  b[:, 30:] = b[:, :10] + rng.uniform(-0.4, 0.4, size=(batch, 10, 4))  # near duplicates
  b = b.astype(np.float32)
  scores = rng.integers(0, 6, size=(batch, n)) / 6.0  # many ties
  valid = rng.uniform(size=(batch, n)) < 0.85
  valid[-1] = True  # one image without a mask: every box may be kept
  expected = [nms_reference(b[i], scores[i], threshold, max_output, valid[i])
              for i in range(batch)]
  # The cap is reached (5), or every box is kept or suppressed (60 > 40), some suppressed.
  assert (all(len(e) == 5 for e in expected) if max_output == 5 else
          sum(map(len, expected)) < valid.sum())
  nms = functools.partial(boxes.non_max_suppression, iou_threshold=threshold,
                          max_output=max_output)
  batched = jax.jit(jax.vmap(lambda x, s, v: nms(x, s, valid=v)))(b, scores, valid)
  for i in range(batch):
    check_nms(batched[0][i], batched[1][i], expected[i], max_output)


def test_nms_by_hand_and_errors():
  b = np.array([[0, 0, 4, 4], [1, 1, 5, 5], [6, 6, 9, 9], [0, 0, 4, 4], [0, 0, 2, 4]],
               np.float32)
  scores = np.array([0.5, 0.9, 0.3, 0.9, 0.1])
  # 1 first (ties with 3, lower index); IoU(1, 3) = 9 / 23 > 0.3 drops 3 and 0; 2 is apart;
  # IoU(1, 4) = 3 / 19 <= 0.3 keeps 4.
  indices, keep = boxes.non_max_suppression(b, scores, iou_threshold=0.3, max_output=6)
  np.testing.assert_array_equal(indices, [1, 2, 4, 0, 0, 0])
  np.testing.assert_array_equal(keep, [True] * 3 + [False] * 3)
  # IoU exactly at the threshold stays (DenseCap keeps IoU <= threshold): IoU(0, 4) = 0.5.
  indices, keep = boxes.non_max_suppression(b[[0, 4]], scores[[0, 4]], iou_threshold=0.5,
                                            max_output=2)
  np.testing.assert_array_equal(keep, [True, True])
  # Threshold 1 keeps even identical boxes, each once, by score; so is an empty box.
  indices, keep = boxes.non_max_suppression(b, scores, iou_threshold=1.0, max_output=6)
  np.testing.assert_array_equal(indices[keep], [1, 3, 0, 2, 4])
  indices, keep = boxes.non_max_suppression(np.zeros((2, 4)), np.ones(2), iou_threshold=0.5,
                                            max_output=3)
  np.testing.assert_array_equal(indices[keep], [0, 1])
  # Invalid boxes neither survive nor suppress.
  indices, keep = boxes.non_max_suppression(b, scores, iou_threshold=0.3, max_output=6,
                                            valid=np.array([True, False, True, False, True]))
  np.testing.assert_array_equal(indices[keep], [0, 2])
  for kwargs, message in [
      (dict(iou_threshold=1.5, max_output=2),
       r"iou_threshold must be a finite float in \[0, 1\], got 1.5"),
      (dict(iou_threshold=-0.1, max_output=2), r"iou_threshold must be a finite float >= 0.0"),
      (dict(iou_threshold=0.5, max_output=0), r"max_output must be a positive int, got 0"),
      (dict(iou_threshold=0.5, max_output=2, valid=np.ones(4, bool)),
       r"valid must have shape \[5\] \(one flag per box\), got \(4,\)")]:
    with pytest.raises(ValueError, match=message):
      boxes.non_max_suppression(b, scores, **kwargs)
  with pytest.raises(ValueError, match=r"scores must have shape \[5\]"):
    boxes.non_max_suppression(b, scores[:4], iou_threshold=0.5, max_output=2)
  with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\] with N >= 1"):
    boxes.non_max_suppression(b[None], scores, iou_threshold=0.5, max_output=2)


def sampling_scene(rng, image=32):
  """192 jittered anchors over a 32x32 image (8x8 cells, 3 sizes), 3 real ground-truth boxes
  and 2 padding rows that copy anchors (they would make those anchors positive if used)."""
  anchors = boxes.anchor_boxes((image, image), (8, 8), [(8, 8), (12, 7), (7, 12)])
  anchors = anchors + rng.uniform(-0.5, 0.5, size=anchors.shape).astype(np.float32)
  valid = np.all((anchors >= 0) & (anchors <= image), axis=1)
  centres = rng.uniform(8, image - 8, size=(3, 2))
  sizes = rng.uniform(7, 13, size=(3, 2))
  gt = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
  gt = np.concatenate([gt, anchors[[40, 99]]]).astype(np.float32)
  return anchors, valid, gt, np.array([True, True, True, False, False])


def reference_sets(anchors, valid, gt, gt_mask, high, low):
  """NumPy float64 positives and negatives of DenseCap's rule, for checking samples."""
  iou = np.where(gt_mask, iou64(anchors[:, None], gt[None]), -1.0)
  max_iou = iou.max(axis=1)
  best = np.zeros(len(anchors), bool)
  for g in np.flatnonzero(gt_mask):  # each ground truth's best box, valid or not
    best[np.argmax(iou[:, g])] = True
  positive = (valid & (max_iou >= high)) | best
  negative = valid & ~positive & (max_iou < low)
  if not negative.any():
    negative = valid & ~positive
  return positive, negative, iou


def check_sample(sample, positive_ref, negative_ref, iou, gt_mask, batch_size, fraction):
  indices, positive, matched, mask = (np.asarray(x) for x in sample)
  assert indices.shape == positive.shape == matched.shape == mask.shape == (batch_size,)
  assert indices.dtype == matched.dtype == np.int32
  num_pos = min(int(positive_ref.sum()), int(batch_size * fraction))
  num_neg = min(int(negative_ref.sum()), batch_size - num_pos)
  np.testing.assert_array_equal(positive, np.arange(batch_size) < num_pos)  # positives first
  np.testing.assert_array_equal(mask, np.arange(batch_size) < num_pos + num_neg)
  chosen = indices[mask]
  assert len(set(chosen.tolist())) == len(chosen)  # without replacement
  assert positive_ref[indices[positive]].all()
  assert negative_ref[indices[mask & ~positive]].all()
  # Each positive is matched to a real ground truth of its highest IoU.
  assert gt_mask[matched[positive]].all()
  np.testing.assert_allclose(iou[indices[positive], matched[positive]],
                             iou[indices[positive]].max(axis=1), atol=1e-6)
  np.testing.assert_array_equal(indices[~mask], 0)
  np.testing.assert_array_equal(matched[~positive], 0)


# Three regimes: positives within the cap; more positives than the cap (8-10 at IoU >= 0.5
# for 4 slots); too few negatives to fill the slots (96 valid anchors for 100).
@pytest.mark.parametrize("batch_size, fraction, high, low, capped, short", [
    (8, 0.5, 0.7, 0.3, False, False), (16, 0.25, 0.5, 0.3, True, False),
    (100, 0.5, 0.6, 0.5, False, True)])
def test_sample_boxes_proportions_and_invariants(batch_size, fraction, high, low, capped,
                                                 short):
  seeds = range(3)
  scenes = [sampling_scene(np.random.default_rng(seed)) for seed in seeds]
  anchors, valid = scenes[0][0], scenes[0][1]  # one anchor set, three ground truths
  gts = np.stack([s[2] for s in scenes])
  gt_mask = scenes[0][3]

  def draw(key, gt):
    return boxes.sample_boxes(key, anchors, gt, gt_mask=gt_mask, valid=valid,
                              batch_size=batch_size, positive_fraction=fraction,
                              high_threshold=high, low_threshold=low)

  keys = jax.random.split(jax.random.key(7), len(gts))
  out = jax.jit(jax.vmap(draw))(keys, gts)
  for i in seeds:
    refs = reference_sets(anchors, valid, gts[i], gt_mask, high, low)
    assert refs[0].sum() >= 3 and not refs[0][~valid].any()
    check_sample([x[i] for x in out], *refs, gt_mask, batch_size, fraction)
    assert (refs[0].sum() > int(batch_size * fraction)) == capped
    assert (np.asarray(out.mask[i]).sum() < batch_size) == short


def test_sample_boxes_draws_uniformly_without_replacement():
  anchors, valid, gt, gt_mask = sampling_scene(np.random.default_rng(0))
  positive, negative, _ = reference_sets(anchors, valid, gt, gt_mask, 0.5, 0.3)
  assert positive.sum() == 10
  draw = jax.jit(jax.vmap(lambda key: boxes.sample_boxes(
      key, anchors, gt, gt_mask=gt_mask, valid=valid, batch_size=4, high_threshold=0.5)))
  keys = jax.random.split(jax.random.key(0), 400)
  out = draw(keys)
  assert np.asarray(out.positive).sum(1).tolist() == [2] * 400
  # Each of the 10 positives is drawn in 2 of 10 samples (80 of 400, sd 8); each negative
  # in 2 of 73.
  counts = np.bincount(np.asarray(out.indices)[:, :2].ravel(), minlength=len(anchors))
  assert np.all(np.abs(counts[positive] - 80) < 32), counts[positive]
  counts = np.bincount(np.asarray(out.indices)[:, 2:].ravel(), minlength=len(anchors))
  assert counts[~negative].sum() == 0 and (counts[negative] > 0).mean() > 0.9
  assert counts[negative].max() < 30  # about 11 each
  # The key decides the sample: the same key, the same sample (one image or vmapped);
  # another key, another.
  first = jax.jit(functools.partial(boxes.sample_boxes, batch_size=4, high_threshold=0.5))(
      keys[0], anchors, gt, gt_mask=gt_mask, valid=valid)
  for x, y in zip(first, out):
    np.testing.assert_array_equal(x, y[0])
  assert len({tuple(row) for row in np.asarray(out.indices).tolist()}) > 300


def test_sample_boxes_special_cases_by_hand():
  key = jax.random.key(3)
  sample_boxes = jax.jit(boxes.sample_boxes, static_argnames=(  # eager: 3x the time
      "batch_size", "positive_fraction", "high_threshold", "low_threshold"))
  gt = np.array([[0, 0, 10, 10], [0, 0, 1, 1]], np.float32)
  # Every box positive or in between (IoU 0.5, 0.5, 0.64): DenseCap then takes the
  # non-positive boxes as negatives.
  b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 5, 10], [0, 0, 8, 8]], np.float32)
  out = sample_boxes(key, b, gt, gt_mask=np.array([True, False]), batch_size=4)
  assert out.positive.tolist() == [True, False, False, False] and out.mask.all()
  assert out.indices[0] == 0 and sorted(out.indices[1:].tolist()) == [1, 2, 3]
  # No ground truth: every valid box is a negative.
  out = sample_boxes(key, b, gt, gt_mask=np.array([False, False]), batch_size=6,
                     valid=np.array([True, True, False, True]))
  assert not out.positive.any() and out.mask.tolist() == [True] * 3 + [False] * 3
  assert sorted(out.indices[:3].tolist()) == [0, 1, 3]
  # A ground truth's best box is positive even when it is not valid (DenseCap's BoxSampler):
  # box 0 (IoU 1) is out of bounds but positive; box 1 (IoU 0.75 < 0.8) is neither; box 2
  # (0.25) and box 3 (0) are the negatives.
  gt = np.array([[0, 0, 4, 4]], np.float32)
  b = np.array([[0, 0, 4, 4], [0, 0, 4, 3], [0, 0, 2, 2], [10, 10, 12, 12]], np.float32)
  out = sample_boxes(key, b, gt, gt_mask=np.array([True]), batch_size=4,
                     valid=np.array([False, True, True, True]), high_threshold=0.8)
  assert out.positive.tolist() == [True, False, False, False]
  assert out.mask.tolist() == [True, True, True, False]
  assert out.indices[0] == 0 and sorted(out.indices[1:3].tolist()) == [2, 3]
  assert out.indices[3] == 0 and out.matched.tolist() == [0, 0, 0, 0]
  # Even a best box that overlaps its ground truth nowhere: the image keeps a positive (whose
  # regression target pulls it back) when every box has drifted off the image.
  far = np.array([[20, 20, 30, 30], [40, 40, 44, 44]], np.float32)
  out = sample_boxes(key, far, gt, gt_mask=np.array([True]), batch_size=2,
                     valid=np.array([False, False]))
  assert out.positive.tolist() == [True, False] and out.indices[0] == 0
  # IoU exactly at the high threshold is positive (the paper's >=), below the low one negative.
  out = sample_boxes(key, b, gt, gt_mask=np.array([True]), batch_size=4,
                     high_threshold=0.75, low_threshold=0.25)
  assert sorted(out.indices[:2].tolist()) == [0, 1] and out.positive.sum() == 2
  assert out.mask.sum() == 3 and out.indices[2] == 3  # 0.25 is not below 0.25
  # No positive share: negatives only.
  out = sample_boxes(key, b, gt, gt_mask=np.array([True]), batch_size=4,
                     positive_fraction=0.0)
  assert not out.positive.any() and sorted(out.indices[:2].tolist()) == [2, 3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), r"batch_size must be a positive int, got 0"),
    (dict(batch_size=4, low_threshold=0.8),
     r"low_threshold must be at most high_threshold = 0.7, got 0.8"),
    (dict(batch_size=4, high_threshold=1.2),
     r"high_threshold must be a finite float in \[0, 1\], got 1.2"),
    (dict(batch_size=4, low_threshold=-0.2),
     r"low_threshold must be a finite float >= 0.0, got -0.2"),
    (dict(batch_size=4, positive_fraction=1.5),
     r"positive_fraction must be a finite float in \[0, 1\]"),
    (dict(batch_size=4, gt_mask=np.ones(3, bool)),
     r"gt_mask must have shape \[2\] \(one flag per ground-truth box\), got \(3,\)"),
    (dict(batch_size=4, valid=np.ones(2, bool)),
     r"valid must have shape \[4\] \(one flag per box\)"),
    (dict(batch_size=4, gt_boxes=np.zeros((0, 4))),
     r"gt_boxes must have shape \[N, 4\] with N >= 1"),
    (dict(batch_size=4, gt_boxes=np.zeros((2, 5))),
     r"gt_boxes must have shape \[N, 4\].* got \(2, 5\)"),
    (dict(batch_size=4, boxes=np.zeros((4, 3))), r"boxes must have shape \[N, 4\].* got \(4, 3\)"),
])
def test_sample_boxes_errors(kwargs, message):
  args = dict(boxes=np.ones((4, 4)), gt_boxes=np.ones((2, 4)), gt_mask=np.ones(2, bool))
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    boxes.sample_boxes(jax.random.key(0), args.pop("boxes"), args.pop("gt_boxes"), **args)


@pytest.mark.parametrize("image_hw, feature_hw", [((24, 32), (6, 8)), ((12, 24), (6, 8))])
def test_crop_regions_of_a_feature_map_equal_slicing(image_hw, feature_hw):
  # Boxes in image pixels that are integer in feature-map pixels (scale 4 x 4, or 3 wide and
  # 2 high): cropped at their feature-map size they are the feature map's slices.
  rng = np.random.default_rng(5)
  features = rng.normal(size=(2, *feature_hw, 3)).astype(np.float32)
  scale = np.array([image_hw[1] / feature_hw[1], image_hw[0] / feature_hw[0]] * 2)
  cells = np.array([[[0, 0, 3, 2], [5, 4, 8, 6]], [[2, 1, 5, 3], [4, 3, 7, 5]]])  # 3x2 regions
  crops = boxes.crop_regions(features, (cells * scale).astype(np.float32), (2, 3),
                             image_hw=image_hw)
  assert crops.shape == (2, 2, 2, 3, 3)
  for b in range(2):
    for r, (x0, y0, x1, y1) in enumerate(cells[b]):
      np.testing.assert_allclose(crops[b, r], features[b, y0:y1, x0:x1], atol=1e-5)
  # Without image_hw the boxes are in the feature map's own pixels.
  np.testing.assert_allclose(boxes.crop_regions(features, cells.astype(np.float32), (2, 3)),
                             crops, atol=1e-6)
  with pytest.raises(ValueError, match="image_hw must be None or a pair"):
    boxes.crop_regions(features, cells.astype(np.float32), (2, 3), image_hw=(0, 4))


def test_crop_regions_gradients_to_box_coordinates_match_finite_differences():
  # DenseCap backpropagates through the bilinear RoI pooling into the box coordinates.
  # Fractional boxes (image pixels of a 12x16 image, a 6x8 feature map) whose sampling points
  # stay away from the integer feature coordinates where bilinear weights have kinks.
  rng = np.random.default_rng(6)
  features = jnp.asarray(rng.normal(size=(1, 6, 8, 2)), jnp.float32)
  b = jnp.asarray([[[1.3, 2.1, 9.7, 8.6], [4.4, 0.7, 14.2, 11.1]]], jnp.float32)
  crop = functools.partial(boxes.crop_regions, crop_size=(3, 2), image_hw=(12, 16))
  check_grads(jax.jit(crop), (features, b), order=1, modes=("rev",), eps=1e-2, atol=2e-2,
              rtol=2e-2)
  grad = jax.grad(lambda x: crop(features, x).sum())(b)
  assert np.all(np.abs(np.asarray(grad)) > 1e-3)  # every coordinate moves the crop
