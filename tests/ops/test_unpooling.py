"""Tests for vislang_jax.ops.unpooling: switches against hand cases and torch's
max_pool2d(return_indices=True) / max_unpool2d, gradients routed to the argmax, and FCN's
bilinear filter against its closed form and its fixed upsampling against bilinear resizing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vislang_jax.ops import unpooling


def test_hand_case_switches_and_unpool():
  # One 4 x 4 channel: the maxima of the four 2 x 2 windows are 5 (row 1, col 0), 7 (0, 3),
  # 9 (3, 1) and 8 (2, 2); the tie 7 / 7 in the top-right window goes to (0, 3), the first in
  # row-major order.
  x = np.array([[1, 0, 2, 7],
                [5, 3, 6, 7],
                [0, 4, 8, 1],
                [2, 9, 0, 3]], np.float32)[None, :, :, None]
  pooled, switches = unpooling.max_pool_with_argmax(jnp.asarray(x))
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 7], [9, 8]])
  np.testing.assert_array_equal(switches[0, :, :, 0], [[1 * 4 + 0, 0 * 4 + 3],
                                                      [3 * 4 + 1, 2 * 4 + 2]])
  out = unpooling.unpool(pooled, switches, output_hw=(4, 4))
  expected = np.zeros((4, 4), np.float32)
  expected[1, 0], expected[0, 3], expected[3, 1], expected[2, 2] = 5, 7, 9, 8
  np.testing.assert_array_equal(out[0, :, :, 0], expected)


def test_tie_goes_to_first_in_row_major_order():
  x = jnp.ones((1, 2, 2, 1))
  _, switches = unpooling.max_pool_with_argmax(x)
  assert int(switches[0, 0, 0, 0]) == 0


@pytest.mark.parametrize("window, stride, hw", [(2, 2, (6, 8)), (3, 2, (7, 6)), (2, 2, (5, 7))])
def test_matches_torch(window, stride, hw):
  x = np.random.default_rng(0).normal(size=(2, 3) + hw).astype(np.float32)  # NCHW, no ties
  ref, ref_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), window, stride,
                                                return_indices=True)
  pooled, switches = unpooling.max_pool_with_argmax(
      jnp.asarray(x.transpose(0, 2, 3, 1)), window=window, stride=stride)
  np.testing.assert_array_equal(pooled, ref.numpy().transpose(0, 2, 3, 1))
  np.testing.assert_array_equal(switches, ref_idx.numpy().transpose(0, 2, 3, 1))
  if window == stride:  # torch's max_unpool2d is defined for non-overlapping windows
    out = unpooling.unpool(pooled, switches, output_hw=hw)
    ref_out = torch.nn.functional.max_unpool2d(ref, ref_idx, window, stride, output_size=hw)
    np.testing.assert_array_equal(out, ref_out.numpy().transpose(0, 2, 3, 1))


def test_unpool_of_max_pool_keeps_the_maxima():
  x = jax.random.normal(jax.random.key(1), (2, 6, 8, 3))
  pooled, switches = unpooling.max_pool_with_argmax(x)
  out = unpooling.unpool(pooled, switches, output_hw=(6, 8))
  windows = np.asarray(out).reshape(2, 3, 2, 4, 2, 3)
  xs = np.asarray(x).reshape(2, 3, 2, 4, 2, 3)
  # Each window holds exactly one nonzero, equal to the window's maximum, at its place.
  assert ((windows != 0).sum(axis=(2, 4)) == 1).all()
  np.testing.assert_array_equal(windows.sum(axis=(2, 4)), xs.max(axis=(2, 4)))
  kept = windows != 0
  np.testing.assert_array_equal(windows[kept], xs[kept])


def test_gradient_routes_to_the_argmax():
  x = jax.random.normal(jax.random.key(2), (1, 4, 6, 2))
  weights = jax.random.normal(jax.random.key(3), (1, 2, 3, 2))
  grad = jax.grad(lambda v: jnp.sum(unpooling.max_pool_with_argmax(v)[0] * weights))(x)
  pooled, switches = unpooling.max_pool_with_argmax(x)
  # The gradient is the weight unpooled to the argmax: zero everywhere else.
  np.testing.assert_allclose(grad, unpooling.unpool(weights, switches, output_hw=(4, 6)))
  assert int((np.asarray(grad) != 0).sum()) == weights.size


def test_unpool_is_the_adjoint_of_the_switch_selection():
  x = jax.random.normal(jax.random.key(4), (2, 4, 4, 3))
  y = jax.random.normal(jax.random.key(5), (2, 2, 2, 3))
  _, switches = unpooling.max_pool_with_argmax(jax.random.normal(jax.random.key(6), x.shape))
  selected = jnp.take_along_axis(x.reshape(2, 16, 3), switches.reshape(2, 4, 3), axis=1)
  np.testing.assert_allclose(jnp.vdot(unpooling.unpool(y, switches, output_hw=(4, 4)), x),
                             jnp.vdot(y, selected.reshape(y.shape)), rtol=1e-5)


def test_jit_and_vmap():
  x = jax.random.normal(jax.random.key(7), (3, 2, 4, 4, 1))

  def round_trip(v):
    pooled, switches = unpooling.max_pool_with_argmax(v)
    return unpooling.unpool(pooled, switches, output_hw=(4, 4))

  np.testing.assert_array_equal(jax.jit(jax.vmap(round_trip))(x),
                                jnp.stack([round_trip(v) for v in x]))


@pytest.mark.parametrize("kernel_size", [1, 4, 5, 16, 64])
def test_bilinear_kernel_closed_form(kernel_size):
  # Caffe's BilinearFiller (filler.hpp), an independent form of the same filter for the
  # kernel sizes k = 2 f - f % 2 it is meant for: f = ceil(k / 2), c = (2 f - 1 - f % 2) / 2f,
  # w(i, j) = (1 - |i / f - c|) (1 - |j / f - c|).
  kernel = unpooling.bilinear_kernel(kernel_size, 3)
  assert kernel.shape == (kernel_size, kernel_size, 3, 3)
  f = np.ceil(kernel_size / 2)
  c = (2 * f - 1 - f % 2) / (2 * f)
  for i in range(kernel_size):
    for j in range(kernel_size):
      value = (1 - abs(i / f - c)) * (1 - abs(j / f - c))
      np.testing.assert_allclose(kernel[i, j], value * np.eye(3), rtol=1e-6, atol=1e-7)


def test_bilinear_kernel_by_hand():
  # Stride 2: taps 1/4, 3/4, 3/4, 1/4 along each axis.
  profile = np.array([0.25, 0.75, 0.75, 0.25])
  np.testing.assert_allclose(unpooling.bilinear_kernel(4, 1)[:, :, 0, 0],
                             np.outer(profile, profile))


@pytest.mark.parametrize("factor", [2, 3, 8, 32])
def test_bilinear_upsample_is_bilinear_resizing_away_from_the_border(factor):
  x = jax.random.normal(jax.random.key(8), (2, 4, 3, 2))
  out = jax.jit(unpooling.bilinear_upsample, static_argnames="factor")(x, factor=factor)
  resized = jax.image.resize(x, (2, 4 * factor, 3 * factor, 2), "bilinear", antialias=False)
  assert out.shape == resized.shape
  inner = (slice(None), slice(factor, -factor), slice(factor, -factor))
  np.testing.assert_allclose(out[inner], resized[inner], rtol=1e-5, atol=1e-5)
  # Channels are upsampled on their own.
  np.testing.assert_allclose(unpooling.bilinear_upsample(x[..., :1], factor=factor),
                             out[..., :1], rtol=1e-6, atol=1e-6)


def test_errors():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="window must be a positive int, got 0"):
    unpooling.max_pool_with_argmax(x, window=0)
  with pytest.raises(ValueError, match=r"x must have shape \[B, H, W, C\]"):
    unpooling.max_pool_with_argmax(jnp.zeros((4, 4)))
  with pytest.raises(ValueError, match="x's height must be at least window=5, got 4"):
    unpooling.max_pool_with_argmax(x, window=5)
  pooled, switches = unpooling.max_pool_with_argmax(x)
  with pytest.raises(ValueError, match="switches must have x's shape"):
    unpooling.unpool(pooled, switches[:, :1], output_hw=(4, 4))
  with pytest.raises(ValueError, match="output_hw must be a pair"):
    unpooling.unpool(pooled, switches, output_hw=4)
  with pytest.raises(ValueError, match="channels must be a positive int"):
    unpooling.bilinear_kernel(4, 0)
  with pytest.raises(ValueError, match="factor must be a positive int, got 0"):
    unpooling.bilinear_upsample(x, factor=0)
