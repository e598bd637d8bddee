"""Tests for vislang_jax.ops.pyramid against a NumPy/SciPy float64 transcription of the
Laplacian pyramid (Denton et al. 2015, Sec. 3.1; Burt and Adelson 1983)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import ndimage

from vislang_jax.ops import pyramid

# --- Independent float64 reference: SciPy's correlate1d with its "mirror" border mode
# (c b | a b c d | c b), the binomial taps written out by hand. ---

TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def ref_blur(x, taps):
  for axis in (1, 2):
    x = ndimage.correlate1d(x, taps, axis=axis, mode="mirror")
  return x


def ref_downsample(x):
  return ref_blur(np.asarray(x, np.float64), TAPS)[:, ::2, ::2, :]


def ref_upsample(x):
  x = np.asarray(x, np.float64)
  b, h, w, c = x.shape
  spread = np.zeros((b, 2 * h, 2 * w, c))
  spread[:, ::2, ::2, :] = x
  return ref_blur(spread, 2.0 * TAPS)


_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
_down = _jit(pyramid.downsample)
_up = _jit(pyramid.upsample)
_gaussian = _jit(pyramid.gaussian_pyramid, static_argnames="levels")
_laplacian = _jit(pyramid.laplacian_pyramid, static_argnames="levels")
_reconstruct = _jit(pyramid.reconstruct)


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_blur_kernel_is_the_normalised_binomial():
  np.testing.assert_allclose(pyramid.BLUR_KERNEL, [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16])
  assert pyramid.BLUR_KERNEL.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(2, 2, 2, 1), (1, 4, 6, 3), (3, 8, 4, 2), (1, 12, 10, 1)])
def test_downsample_matches_reference(shape):
  x = _images(shape)
  out = _down(x)
  assert out.shape == (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
  np.testing.assert_allclose(out, ref_downsample(x), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 1, 1), (1, 2, 3, 3), (2, 5, 4, 1), (1, 6, 6, 2)])
def test_upsample_matches_reference(shape):
  x = _images(shape, seed=1)
  out = _up(x)
  assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
  np.testing.assert_allclose(out, ref_upsample(x), atol=1e-6)


def test_upsample_interior_is_the_polyphase_average():
  """Hand-derived: along one axis u(x)[2i] = (x[i-1] + 6 x[i] + x[i+1]) / 8 and
  u(x)[2i+1] = (x[i] + x[i+1]) / 2; a row-constant image isolates the column axis."""
  column = np.random.default_rng(2).uniform(size=7)
  x = np.broadcast_to(column[None, None, :, None], (1, 3, 7, 1)).astype(np.float32)
  row = np.asarray(_up(x))[0, 2, :, 0]
  for i in range(1, 6):
    assert row[2 * i] == pytest.approx((column[i - 1] + 6 * column[i] + column[i + 1]) / 8,
                                       abs=1e-6)
    assert row[2 * i + 1] == pytest.approx((column[i] + column[i + 1]) / 2, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (2, 6, 4, 3), (1, 1, 1, 2)])
def test_constant_images_stay_constant(shape):
  """Borders included: the mirror padding keeps u's even/odd pattern at both ends."""
  value = np.float32(0.37)
  x = np.full(shape, value)
  np.testing.assert_allclose(_up(x), np.full(_up(x).shape, value), atol=1e-7)
  if shape[1] % 2 == 0 and shape[2] % 2 == 0:
    np.testing.assert_allclose(_down(x), np.full(_down(x).shape, value), atol=1e-7)


def test_downsample_and_upsample_are_linear():
  x, y = _images((2, 8, 6, 2), seed=3), _images((2, 8, 6, 2), seed=4)
  a, b = 0.7, -1.9
  for op in (_down, _up):
    np.testing.assert_allclose(op(a * x + b * y), a * op(x) + b * op(y), atol=1e-5)


def test_upsample_is_four_times_the_adjoint_of_downsample_away_from_borders():
  """d = S B and u = 4 B Z with Z = S^T: u = 4 d^T where the blur's mirror padding does
  not reach (3 pixels from every border). Also <d(x), y> = <x, d^T(y)> exactly."""
  x, y = _images((1, 16, 16, 1), seed=5), _images((1, 8, 8, 1), seed=6)
  adjoint = np.asarray(_jit(lambda x, y: jax.vjp(pyramid.downsample, x)[1](y)[0])(x, y))
  assert float(jnp.vdot(_down(x), y)) == pytest.approx(float(np.vdot(x, adjoint)), rel=1e-5)
  np.testing.assert_allclose(np.asarray(_up(y))[:, 3:-3, 3:-3], 4 * adjoint[:, 3:-3, 3:-3],
                             atol=1e-6)
  # At the borders the two differ (mirror padding is not self-adjoint there).
  assert not np.allclose(np.asarray(_up(y))[:, :2], 4 * adjoint[:, :2], atol=1e-3)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_pyramids_match_reference_and_reconstruct_exactly(levels):
  x = _images((2, 16, 24, 3), seed=levels)
  gaussian = _gaussian(x, levels=levels)
  bands = _laplacian(x, levels=levels)
  assert len(gaussian) == len(bands) == levels + 1
  ref = [np.asarray(x, np.float64)]
  for k in range(levels):
    ref.append(ref_downsample(ref[-1]))
  for k in range(levels + 1):
    shape = (2, 16 // 2**k, 24 // 2**k, 3)
    assert gaussian[k].shape == bands[k].shape == shape
    np.testing.assert_allclose(gaussian[k], ref[k], atol=1e-5)
  for k in range(levels):
    np.testing.assert_allclose(bands[k], ref[k] - ref_upsample(ref[k + 1]), atol=1e-5)
  np.testing.assert_allclose(bands[-1], ref[-1], atol=1e-5)
  np.testing.assert_allclose(_reconstruct(bands), x, atol=1e-5)


def test_images_in_unit_range_give_bands_in_minus_one_one():
  x = (_images((4, 8, 8, 1), seed=7) > 0.5).astype(np.float32)  # extreme 0/1 images
  gaussian = _gaussian(x, levels=3)
  bands = _laplacian(x, levels=3)
  for image in gaussian:
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
  for band in bands[:-1]:
    assert float(jnp.abs(band).max()) <= 1.0
  assert float(jnp.abs(bands[0]).max()) > 0.1  # the test image has detail


def test_jit_vmap_and_grad():
  x = _images((3, 2, 8, 8, 2), seed=8)  # an extra leading axis for vmap
  batched = _jit(jax.vmap(functools.partial(pyramid.laplacian_pyramid, levels=2)))(x)
  for i in range(3):
    for band, single in zip(batched, _laplacian(x[i], levels=2)):
      np.testing.assert_allclose(band[i], single, atol=1e-6)
  # reconstruct(laplacian(.)) is the identity, so its Jacobian-vector products are v.
  identity = lambda im: pyramid.reconstruct(pyramid.laplacian_pyramid(im, levels=2))
  v = _images((2, 8, 8, 2), seed=9)
  grad = _jit(jax.grad(lambda im: jnp.vdot(identity(im), v)))(x[0])
  np.testing.assert_allclose(grad, v, atol=1e-5)
  check_grads(jax.jit(pyramid.downsample), (jnp.asarray(x[0]),), order=1, modes=("rev",))
  check_grads(jax.jit(pyramid.upsample), (jnp.asarray(x[0]),), order=1, modes=("rev",))


def test_integer_images_become_float():
  out = _down(np.full((1, 4, 4, 1), 2, np.int32))
  assert jnp.issubdtype(out.dtype, jnp.floating)
  np.testing.assert_allclose(out, 2.0)


@pytest.mark.parametrize("levels,shape,match", [
    (0, (1, 8, 8, 1), r"levels must be an int K >= 1 .* \(here K <= 3\), got 0"),
    (True, (1, 8, 8, 1), "levels must be an int K >= 1.*got True"),
    (2.0, (1, 8, 8, 1), "levels must be an int K >= 1.*got 2.0"),
    (4, (1, 8, 8, 1), r"height 8 and width 8 \(here K <= 3\), got 4"),
    (3, (1, 8, 12, 1), r"height 8 and width 12 \(here K <= 2\), got 3"),
    (1, (1, 8, 7, 1), r"width 7 \(here K <= 0\), got 1"),
])
def test_levels_errors(levels, shape, match):
  with pytest.raises(ValueError, match=match):
    pyramid.laplacian_pyramid(np.zeros(shape), levels=levels)


def test_shape_errors():
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\], got \(8, 8\)"):
    pyramid.gaussian_pyramid(np.zeros((8, 8)), levels=1)
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\], got \(1, 8, 8\)"):
    pyramid.upsample(np.zeros((1, 8, 8)))
  with pytest.raises(ValueError, match=r"even H and W, got \(1, 5, 4, 1\)"):
    pyramid.downsample(np.zeros((1, 5, 4, 1)))
  with pytest.raises(ValueError, match="pyramid must be a sequence of K \\+ 1 >= 2 arrays"):
    pyramid.reconstruct([np.zeros((1, 4, 4, 1))])
  with pytest.raises(ValueError, match=r"pyramid\[0\] must have shape \(1, 4, 4, 1\).*"
                     r"got \(1, 4, 6, 1\)"):
    pyramid.reconstruct([np.zeros((1, 4, 6, 1)), np.zeros((1, 2, 2, 1))])
  with pytest.raises(ValueError, match=r"pyramid\[1\] must have shape \[B, H, W, C\]"):
    pyramid.reconstruct([np.zeros((1, 4, 4, 1)), np.zeros((2, 2, 1))])
