"""Tests for vislang_jax.viz.glimpses: boxes where the filterbank reads, enlarge, the grid."""

import numpy as np
import pytest

from vislang_jax.ops import filterbank
from vislang_jax.ops.filterbank import AttentionParams
from vislang_jax.viz import glimpses

H, W = 48, 40


def _outline(top, bottom, left, right, shape):
  mask = np.zeros(shape, bool)
  mask[[top, bottom], left:right + 1] = mask[top:bottom + 1, [left, right]] = True
  return mask


def test_boxes_frame_the_filter_centres_of_the_filterbank():
  """Independently of the box code: the filterbank's own filters (eq. 19-20, 25-26), whose
  centroids are the filter centres mu_i; the box edges lie half a stride beyond the outer
  ones, within the half pixel of rounding."""
  rng = np.random.default_rng(0)
  steps, samples, n = 4, 3, 5
  delta = rng.uniform(1.0, 5.0, (steps, samples))
  # Outer filter centres at least 6 pixels (6 sigma) inside, so no filter is truncated.
  half_span = (n - 1) / 2 * delta
  gx = rng.uniform(7.0 + half_span, W - 6.0 - half_span)
  gy = rng.uniform(7.0 + half_span, H - 6.0 - half_span)
  read = AttentionParams(gx=gx, gy=gy, sigma2=np.ones_like(gx), delta=delta,
                         gamma=np.ones_like(gx))
  images = rng.uniform(0.0, 0.9, (samples, H, W, 1)).astype(np.float32)
  boxes = glimpses.draw_glimpse_boxes(images, read, n=n)
  assert boxes.shape == (samples, steps, H, W, 3) and boxes.dtype == np.float32

  fy, fx = filterbank.gaussian_filterbank(
      *(np.asarray(v, np.float32).ravel() for v in (gx, gy, read.sigma2, delta)),
      n=n, height=H, width=W)
  centre_y = np.asarray(fy) @ np.arange(1, H + 1)  # [T * S, N] filter centroids, 1-based
  centre_x = np.asarray(fx) @ np.arange(1, W + 1)
  for t in range(steps):
    for s in range(samples):
      k, half = t * samples + s, delta[t, s] / 2
      # 0-based edges: outer centres -+ delta / 2.
      expected = (centre_y[k, 0] - half - 1, centre_y[k, -1] + half - 1,
                  centre_x[k, 0] - half - 1, centre_x[k, -1] + half - 1)
      red = np.all(boxes[s, t] == glimpses.BOX_COLOUR, axis=-1)
      rows, cols = np.nonzero(red.any(axis=1))[0], np.nonzero(red.any(axis=0))[0]
      drawn = (rows[0], rows[-1], cols[0], cols[-1])
      np.testing.assert_allclose(drawn, expected, atol=0.5 + 1e-3, err_msg=f"t={t} s={s}")
      np.testing.assert_array_equal(red, _outline(*drawn, (H, W)))
      # Off the outline, the image, grey in all three channels.
      np.testing.assert_array_equal(boxes[s, t][~red], np.repeat(images[s][~red], 3, axis=-1))


def test_boxes_are_drawn_n_delta_wide_around_the_centre_and_clipped_to_the_image():
  images = np.zeros((1, 21, 21, 1), np.float32)
  # Glimpse 1 centred at pixel (11, 11) (1-based), N * delta = 4 * 2.5 = 10 pixels wide;
  # glimpse 2 at (6, 16) and larger than the image on its left.
  read = AttentionParams(gx=np.array([[11.0], [6.0]]), gy=np.array([[11.0], [16.0]]),
                         sigma2=np.ones((2, 1)), delta=np.array([[2.5], [5.0]]),
                         gamma=np.ones((2, 1)))
  boxes = glimpses.draw_glimpse_boxes(images, read, n=4)
  assert boxes.shape == (1, 2, 21, 21, 3)
  red = boxes[0, ..., 0] == 1.0
  expected = np.zeros((2, 21, 21), bool)
  expected[0, [5, 15], 5:16] = expected[0, 5:16, [5, 15]] = True  # 0-based 10 -+ 5
  expected[1, [5, 20], 0:16] = expected[1, 5:21, [0, 15]] = True  # clipped at 0 and 20
  np.testing.assert_array_equal(red, expected)
  np.testing.assert_array_equal(boxes[0, ..., 1], 0.0)


def test_colour_images_keep_their_colours_off_the_box():
  images = np.random.default_rng(1).uniform(0.0, 0.5, (2, 9, 9, 3)).astype(np.float32)
  centre, one = np.full((1, 2), 5.0), np.ones((1, 2))
  read = AttentionParams(gx=centre, gy=centre, sigma2=one, delta=one, gamma=one)
  # 0-based edges 5 - 1 -+ 1.5: rint(2.5) = 2 and rint(5.5) = 6 (half to even).
  boxes = glimpses.draw_glimpse_boxes(images, read, n=3)
  red = _outline(2, 6, 2, 6, (9, 9))
  for s in range(2):
    np.testing.assert_array_equal(boxes[s, 0][~red], images[s][~red])
    np.testing.assert_array_equal(boxes[s, 0][red], np.broadcast_to(glimpses.BOX_COLOUR,
                                                                     (red.sum(), 3)))


@pytest.mark.parametrize("image_shape,read_shape,match", [
    ((2, 9, 9), (1, 2), r"images must have shape \[S, H, W, C\], got \(2, 9, 9\)"),
    ((2, 9, 9, 1), (1, 3), r"read fields must have shape \[T, S\] with S = 2 images, "
                           r"got \(1, 3\)"),
    ((2, 9, 9, 1), (2,), r"read fields .*got \(2,\)"),
])
def test_bad_boxes_arguments_raise(image_shape, read_shape, match):
  read = AttentionParams(*[np.ones(read_shape)] * 5)
  with pytest.raises(ValueError, match=match):
    glimpses.draw_glimpse_boxes(np.zeros(image_shape), read, n=2)


def test_enlarge_by_whole_factors_is_kron_and_repeat():
  patches = np.random.default_rng(2).uniform(size=(2, 3, 4, 4, 2))
  out = glimpses.enlarge(patches, 12, 8)
  assert out.shape == (2, 3, 12, 8, 2)
  np.testing.assert_array_equal(out, np.repeat(np.repeat(patches, 3, axis=-3), 2, axis=-2))
  np.testing.assert_array_equal(out[1, 2, ..., 1], np.kron(patches[1, 2, ..., 1], np.ones((3, 2))))


def test_enlarge_by_fractional_factors_keeps_order_and_near_equal_blocks():
  """6 -> 40 rows and 6 -> 13 columns: each patch pixel fills a run of floor or ceil of the
  ratio, the runs in patch order."""
  patches = np.arange(36.0).reshape(6, 6, 1)
  out = glimpses.enlarge(patches, 40, 13)[..., 0]
  assert out.shape == (40, 13)
  for line, want, size in ((out[:, 0], patches[:, 0, 0], 40), (out[0], patches[0, :, 0], 13)):
    runs = np.split(line, np.nonzero(np.diff(line))[0] + 1)
    np.testing.assert_array_equal([r[0] for r in runs], want)  # one run per pixel, in order
    assert {len(r) for r in runs} <= {size // 6, -(-size // 6)}, [len(r) for r in runs]
  # Separable: pixel (i, j) shows patch pixel (row of i, column of j); value 6 row + column.
  np.testing.assert_array_equal(out, out[:, :1] + out[:1, :])


def test_grid_rows_are_boxes_then_glimpses_at_image_brightness():
  rng = np.random.default_rng(3)
  steps, samples, n = 3, 2, 4
  images = rng.uniform(size=(samples, 8, 8, 1)).astype(np.float32)
  gamma = rng.uniform(0.5, 2.0, (steps, samples))
  centre = np.full((steps, samples), 4.5)
  read = AttentionParams(gx=centre, gy=centre, sigma2=np.ones_like(gamma),
                         delta=np.ones_like(gamma), gamma=gamma)
  seen = rng.uniform(0.0, 0.8, (steps, samples, n, n, 1))
  grid = glimpses.glimpse_grid(images, read, gamma[..., None, None, None] * seen, n=n)
  assert grid.shape == (2 * samples, steps, 8, 8, 3)
  boxes = glimpses.draw_glimpse_boxes(images, read, n=n)
  for s in range(samples):
    np.testing.assert_array_equal(grid[2 * s], boxes[s])
    for t in range(steps):
      # Each glimpse pixel as a 2x2 block, in all three channels: r_t / gamma = `seen`.
      expected = np.kron(seen[t, s, ..., 0], np.ones((2, 2)))
      for c in range(3):
        np.testing.assert_allclose(grid[2 * s + 1, t, ..., c], expected, rtol=1e-6)
