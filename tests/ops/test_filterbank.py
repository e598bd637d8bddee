"""Tests for vislang_jax.ops.filterbank against the DRAW paper's equations (19)-(29)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from vislang_jax.ops import filterbank as fb


# --- Independent float64 transcription of the paper, one scalar at a time. ---

def ref_attention_params(raw, height, width, n):
  """Eq. (21)-(22) for one example; N = 1 uses the stride factor max(A, B) - 1."""
  gx_t, gy_t, log_s2, log_d, log_g = (float(v) for v in raw)
  a, b = width, height
  return ((a + 1) / 2 * (gx_t + 1), (b + 1) / 2 * (gy_t + 1), math.exp(log_s2),
          (max(a, b) - 1) / max(n - 1, 1) * math.exp(log_d), math.exp(log_g))


def ref_filter_matrix(g, sigma2, delta, n, size):
  """F[i, a] = exp(-(a - mu_i)^2 / (2 sigma^2)) / Z, mu_i = g + (i - N/2 - 0.5) delta."""
  f = np.zeros((n, size))
  for i in range(1, n + 1):
    mu = g + (i - n / 2 - 0.5) * delta
    for a in range(1, size + 1):
      f[i - 1, a - 1] = math.exp(-(a - mu) ** 2 / (2 * sigma2))
    f[i - 1] /= f[i - 1].sum()
  return f


def ref_read(image, fy, fx, gamma):
  """gamma F_Y x F_X^T, eq. (27), for one [H, W] image."""
  n_y, n_x = fy.shape[0], fx.shape[0]
  out = np.zeros((n_y, n_x))
  for i in range(n_y):
    for j in range(n_x):
      out[i, j] = gamma * sum(fy[i, b] * image[b, a] * fx[j, a]
                              for b in range(image.shape[0]) for a in range(image.shape[1]))
  return out


def ref_write(patch, fy, fx, gamma):
  """(1 / gamma) F_Y^T w F_X, eq. (29), for one [N, N] patch."""
  height, width = fy.shape[1], fx.shape[1]
  out = np.zeros((height, width))
  for b in range(height):
    for a in range(width):
      out[b, a] = sum(fy[i, b] * patch[i, j] * fx[j, a]
                      for i in range(patch.shape[0]) for j in range(patch.shape[1])) / gamma
  return out


# Tests call the ops jitted (eager dispatch compiles every primitive apart), with XLA's backend
# optimisations off: for these tiny arrays compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
_read = _jit(fb.read)
_write = _jit(fb.write)
_filterbank = _jit(fb.gaussian_filterbank, static_argnames=("n", "height", "width"))


def _random_raw(rng, batch):
  raw = rng.uniform(-1.0, 1.0, size=(batch, 5))
  raw[:, 2] = rng.uniform(-1.0, 2.0, size=batch)  # log sigma^2
  raw[:, 3] = rng.uniform(-1.5, 0.3, size=batch)  # log delta~
  raw[:, 4] = rng.uniform(-0.5, 0.5, size=batch)  # log gamma
  return raw.astype(np.float32)


def _filters(params, *, n, height, width):
  return fb.gaussian_filterbank(params.gx, params.gy, params.sigma2, params.delta, n=n,
                                height=height, width=width)


@functools.partial(_jit, static_argnames=("n", "height", "width"))
def _params_and_filters(raw, *, n, height, width):
  params = fb.attention_params(raw, height=height, width=width, n=n)
  return params, _filters(params, n=n, height=height, width=width)


# --- attention_params and gaussian_filterbank against the transcription. ---

@pytest.mark.parametrize("height,width,n", [(7, 9, 3), (10, 6, 4), (5, 5, 1)])
def test_attention_params_and_filterbank_match_equations(height, width, n):
  raw = _random_raw(np.random.default_rng(0), batch=4)
  params, (fy, fx) = _params_and_filters(jnp.asarray(raw), n=n, height=height, width=width)
  assert fy.shape == (4, n, height) and fx.shape == (4, n, width)
  for k in range(4):
    gx, gy, sigma2, delta, gamma = ref_attention_params(raw[k], height, width, n)
    np.testing.assert_allclose(
        [float(params.gx[k]), float(params.gy[k]), float(params.sigma2[k]),
         float(params.delta[k]), float(params.gamma[k])],
        [gx, gy, sigma2, delta, gamma], rtol=1e-5)
    np.testing.assert_allclose(fx[k], ref_filter_matrix(gx, sigma2, delta, n, width),
                               atol=1e-6)
    np.testing.assert_allclose(fy[k], ref_filter_matrix(gy, sigma2, delta, n, height),
                               atol=1e-6)


def test_centred_grid_with_unit_delta_tilde_spans_the_longer_side():
  raw = jnp.array([[0.0, 0.0, math.log(1e-6), 0.0, 0.0]])
  _, (fy, fx) = _params_and_filters(raw, n=4, height=6, width=11)
  # The 4 centres are at columns 1, 4.33, 7.67, 11: the first and last filters sit on the
  # border pixels.
  assert int(jnp.argmax(fx[0, 0])) == 0 and int(jnp.argmax(fx[0, -1])) == 10


@pytest.mark.parametrize("gx,gy,sigma2", [
    (1e4, -1e4, 1.0),      # centre far outside the image
    (4.5, 3.5, 1e-8),      # tiny variance
    (-50.0, 200.0, 1e-8),  # both
    (4.5, 3.5, 1e6),       # huge variance: uniform
])
def test_filters_sum_to_one_in_extreme_cases(gx, gy, sigma2):
  fy, fx = _filterbank(jnp.array([gx]), jnp.array([gy]), jnp.array([sigma2]),
                                  jnp.array([1.0]), n=3, height=6, width=8)
  assert bool(jnp.all(jnp.isfinite(fy))) and bool(jnp.all(jnp.isfinite(fx)))
  np.testing.assert_allclose(fy.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(fx.sum(-1), 1.0, rtol=1e-6)


def test_filter_far_outside_puts_its_mass_on_the_nearest_border_pixel():
  fy, fx = _filterbank(jnp.array([1e4]), jnp.array([-1e4]), jnp.array([0.5]),
                                  jnp.array([1.0]), n=2, height=6, width=8)
  np.testing.assert_allclose(fx[0, :, -1], 1.0)
  np.testing.assert_allclose(fy[0, :, 0], 1.0)


@settings(max_examples=10, deadline=None)
@given(height=st.integers(1, 12), width=st.integers(1, 12), n=st.integers(1, 6),
       seed=st.integers(0, 2**16))
# a stride of exp(12): the centres sit ~8e4 pixels away; subtracting the nearest pixel's
# squared distance (~6e9) from the others' gave nan filters under jit (CI, 2026-12-03)
@example(height=1, width=2, n=2, seed=7931)
def test_filters_sum_to_one_property(height, width, n, seed):
  raw = np.random.default_rng(seed).normal(scale=3.0, size=(3, 5)).astype(np.float32)
  _, (fy, fx) = _params_and_filters(jnp.asarray(raw), n=n, height=height, width=width)
  np.testing.assert_allclose(fy.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(fx.sum(-1), 1.0, rtol=1e-5)


# --- read and write. ---

@pytest.mark.parametrize("channels", [None, 3])
def test_read_and_write_match_equations(channels):
  rng = np.random.default_rng(1)
  height, width, n = 6, 7, 3
  raw = _random_raw(rng, batch=2)
  params, (fy, fx) = _params_and_filters(jnp.asarray(raw), n=n, height=height, width=width)
  extra = () if channels is None else (channels,)
  images = rng.normal(size=(2, height, width) + extra).astype(np.float32)
  patches = rng.normal(size=(2, n, n) + extra).astype(np.float32)
  glimpses = _read(jnp.asarray(images), fy, fx, params.gamma)
  canvases = _write(jnp.asarray(patches), fy, fx, params.gamma)
  assert glimpses.shape == (2, n, n) + extra
  assert canvases.shape == (2, height, width) + extra
  fy64, fx64 = np.asarray(fy, np.float64), np.asarray(fx, np.float64)
  for k in range(2):
    gamma = float(params.gamma[k])
    for c in range(channels or 1):
      pick = (lambda a: a[k]) if channels is None else (lambda a: a[k, ..., c])
      np.testing.assert_allclose(pick(glimpses), ref_read(pick(images), fy64[k], fx64[k], gamma),
                                 rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(pick(canvases),
                                 ref_write(pick(patches), fy64[k], fx64[k], gamma),
                                 rtol=1e-4, atol=1e-5)


def test_centred_unit_stride_tiny_sigma_reads_the_image_back_exactly():
  size = 5
  images = jnp.asarray(np.random.default_rng(2).uniform(size=(2, size, size)), jnp.float32)
  centre = jnp.full((2,), (size + 1) / 2)
  fy, fx = _filterbank(centre, centre, jnp.full((2,), 1e-8), jnp.ones((2,)),
                                  n=size, height=size, width=size)
  np.testing.assert_array_equal(fy[0], np.eye(size))
  np.testing.assert_array_equal(_read(images, fy, fx, jnp.ones((2,))), images)
  np.testing.assert_array_equal(_write(images, fy, fx, jnp.ones((2,))), images)


def test_write_is_the_adjoint_of_read_up_to_gamma_squared():
  # <gamma Fy x Fx^T, w> = gamma tr(Fx x^T Fy^T w) = gamma <x, Fy^T w Fx> = gamma^2 <x, write(w)>.
  rng = np.random.default_rng(3)
  params, (fy, fx) = _params_and_filters(jnp.asarray(_random_raw(rng, 3)), n=4, height=6,
                                         width=8)
  x = jnp.asarray(rng.normal(size=(3, 6, 8, 2)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 4, 4, 2)), jnp.float32)
  lhs = jnp.sum(_read(x, fy, fx, params.gamma) * w, axis=(1, 2, 3))
  rhs = params.gamma**2 * jnp.sum(x * _write(w, fy, fx, params.gamma), axis=(1, 2, 3))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-5)


# --- transformations. ---

def _read_from_raw(raw, images, n=3, height=6, width=7):
  params = fb.attention_params(raw, height=height, width=width, n=n)
  fy, fx = _filters(params, n=n, height=height, width=width)
  return fb.read(images, fy, fx, params.gamma)


def _all_ops(raw, images, patch, n=3, height=6, width=7):
  """Every op composed: raw parameters -> filterbank -> a read of images and a write of patch."""
  params = fb.attention_params(raw, height=height, width=width, n=n)
  fy, fx = _filters(params, n=n, height=height, width=width)
  return fy, fx, fb.read(images, fy, fx, params.gamma), fb.write(patch, fy, fx, params.gamma)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    raw = jnp.asarray(_random_raw(rng, 2), jnp.float64)
    images = jnp.asarray(rng.uniform(size=(2, 6, 7)), jnp.float64)
    patch = jnp.asarray(rng.normal(size=(2, 3, 3)), jnp.float64)
    # One check of all ops and arguments at once; check_grads transforms the function, so it
    # takes a jit without compiler options.
    check_grads(jax.jit(_all_ops), (raw, images, patch), order=1, modes=("rev",))


def test_jit_and_vmap_agree_with_the_reference():
  rng = np.random.default_rng(5)
  raw = _random_raw(rng, 4)
  images = rng.uniform(size=(4, 6, 7, 3)).astype(np.float32)
  expected = np.zeros((4, 3, 3, 3))
  for k in range(4):
    gx, gy, sigma2, delta, gamma = ref_attention_params(raw[k], 6, 7, 3)
    fy, fx = ref_filter_matrix(gy, sigma2, delta, 3, 6), ref_filter_matrix(gx, sigma2, delta, 3, 7)
    for c in range(3):
      expected[k, ..., c] = ref_read(images[k, ..., c], fy, fx, gamma)
  raw, images = jnp.asarray(raw), jnp.asarray(images)
  np.testing.assert_allclose(_jit(_read_from_raw)(raw, images), expected, rtol=1e-4, atol=1e-6)
  # vmap over an extra leading axis, and the op's own support for leading batch axes.
  vmapped = _jit(jax.vmap(_read_from_raw))(raw.reshape(2, 2, 5), images.reshape(2, 2, 6, 7, 3))
  np.testing.assert_allclose(vmapped.reshape(4, 3, 3, 3), expected, rtol=1e-4, atol=1e-6)
  batched = _jit(_read_from_raw)(raw.reshape(2, 2, 5), images.reshape(2, 2, 6, 7, 3))
  np.testing.assert_allclose(batched.reshape(4, 3, 3, 3), expected, rtol=1e-4, atol=1e-6)
  per_example = _jit(jax.vmap(lambda r, x: _read_from_raw(r[None], x[None])[0]))(raw, images)
  np.testing.assert_allclose(per_example, expected, rtol=1e-4, atol=1e-6)


# --- errors. ---

def _valid_filters():
  params, filters = _params_and_filters(jnp.zeros((2, 5)), n=3, height=6, width=7)
  return (*filters, params.gamma)


@pytest.mark.parametrize("call,match", [
    (lambda: fb.attention_params(jnp.zeros((2, 4)), height=6, width=7, n=3),
     r"raw .*\[\.\.\., 5\].*\(2, 4\)"),
    (lambda: fb.attention_params(jnp.zeros((2, 5)), height=6, width=7, n=0), r"n must .*0"),
    (lambda: fb.gaussian_filterbank(*jnp.ones((4, 2)), n=0, height=6, width=7), r"n must .*0"),
    (lambda: fb.gaussian_filterbank(*jnp.ones((4, 2)), n=3, height=0, width=7),
     r"height .*0"),
    (lambda: fb.gaussian_filterbank(jnp.ones(2), jnp.ones(3), jnp.ones(2), jnp.ones(2), n=3,
                                    height=6, width=7), r"same shape.*'gy': \(3,\)"),
    (lambda: fb.read(jnp.zeros((2, 6)), *_valid_filters()),
     r"images .*\[B, H, W\] = \(2, 6, 7\).*got \(2, 6\)"),
    (lambda: fb.read(jnp.zeros((2, 6, 8)), *_valid_filters()),
     r"images .*\(2, 6, 7\).*got \(2, 6, 8\)"),
    (lambda: fb.read(jnp.zeros((2, 6, 7)), *_valid_filters()[:2], jnp.ones(3)),
     r"gamma \[B\] .*gamma \(3,\)"),
    (lambda: fb.write(jnp.zeros((2, 3, 3, 1, 1)), *_valid_filters()),
     r"patch .*\[B, N, N\] = \(2, 3, 3\).*got \(2, 3, 3, 1, 1\)"),
    (lambda: fb.write(jnp.zeros((2, 4, 3)), *_valid_filters()),
     r"patch .*\(2, 3, 3\).*got \(2, 4, 3\)"),
])
def test_value_errors_name_argument_expected_and_given(call, match):
  with pytest.raises(ValueError, match=match):
    call()
