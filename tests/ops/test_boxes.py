"""Tests for vislang_jax.ops.boxes: layouts, grid proposals, the inside check and the
sampler's crops against direct slicing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
