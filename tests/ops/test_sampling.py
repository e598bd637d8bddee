"""Tests for vislang_jax.ops.sampling against PyTorch, NumPy and SciPy references, finite
differences and invariants, in both coordinate conventions (align_corners False and True)."""

import functools

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from vislang_jax.ops import sampling

MODES = ("zeros", "border")
ALIGN = (False, True)


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="module")
def torch():
  return pytest.importorskip("torch")


def _identity(batch: int) -> np.ndarray:
  return np.tile(np.eye(2, 3, dtype=np.float32)[None], (batch, 1, 1))


def _numpy_centres(n: int, align_corners: bool) -> np.ndarray:
  """The normalised pixel centres of one axis, written from the two conventions' definitions:
  edges at -1 and +1, so centre i at (i + 1/2) / n of the way (False); corner centres at -1
  and +1, so centre i at i / (n - 1) of the way, a lone pixel in the middle (True)."""
  if not align_corners:
    return -1 + 2 * (np.arange(n) + 0.5) / n
  return -1 + 2 * np.arange(n) / max(n - 1, 1) + (n == 1)


def _numpy_pixel_centres(height: int, width: int, align_corners: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
  """[H, W] normalised x and y of the pixel centres."""
  y, x = np.meshgrid(_numpy_centres(height, align_corners), _numpy_centres(width, align_corners),
                     indexing="ij")
  return x, y


def _numpy_affine_grid(theta: np.ndarray, out_hw, align_corners: bool) -> np.ndarray:
  """Eq. 1 in float64: theta @ (x_t, y_t, 1) at every target pixel centre."""
  x, y = _numpy_pixel_centres(*out_hw, align_corners)
  return np.einsum("bij,hwj->bhwi", theta, np.stack([x, y, np.ones_like(x)], axis=-1))


def _numpy_bilinear_sample(images: np.ndarray, grid: np.ndarray, mode: str,
                           align_corners: bool) -> np.ndarray:
  """Eq. 5 summed over EVERY pixel in float64 (no floor, no 4-neighbour gather):
  out = sum_{n, m} U_nm max(0, 1 - |x - m|) max(0, 1 - |y - n|), with (x, y) the pixel
  coordinates of the grid point: the inverse of _numpy_centres' affine map from pixel
  index to normalised coordinate, clamped to the image for "border"."""
  _, height, width, _ = images.shape

  def pixel(g, n):
    first, last = _numpy_centres(n, align_corners)[[0, -1]]
    p = (g - first) / (last - first) * (n - 1) if n > 1 else (
        (g + 1) / 2 - 0.5 if not align_corners else np.zeros_like(g))
    return np.clip(p, 0, n - 1) if mode == "border" else p

  x, y = pixel(grid[..., 0], width), pixel(grid[..., 1], height)
  wx = np.maximum(0, 1 - np.abs(x[..., None] - np.arange(width)))  # [B, Ho, Wo, W]
  wy = np.maximum(0, 1 - np.abs(y[..., None] - np.arange(height)))  # [B, Ho, Wo, H]
  return np.einsum("bhwn,bhwm,bnmc->bhwc", wy, wx, images)


def _torch_reference(torch, images, theta, out_hw, cotangent, mode, align_corners):
  """PyTorch affine_grid + grid_sample: grid, output and grads of sum(output * cotangent)."""
  f = torch.nn.functional
  images_t = torch.tensor(images.transpose(0, 3, 1, 2), requires_grad=True)
  theta_t = torch.tensor(theta, requires_grad=True)
  size = (images.shape[0], images.shape[3], *out_hw)
  grid_t = f.affine_grid(theta_t, size, align_corners=align_corners)
  grid_t.retain_grad()
  out_t = f.grid_sample(images_t, grid_t, mode="bilinear", padding_mode=mode,
                        align_corners=align_corners)
  (out_t * torch.tensor(cotangent.transpose(0, 3, 1, 2))).sum().backward()
  return dict(grid=grid_t.detach().numpy(), out=out_t.detach().numpy().transpose(0, 2, 3, 1),
              d_images=images_t.grad.numpy().transpose(0, 2, 3, 1),
              d_grid=grid_t.grad.numpy(), d_theta=theta_t.grad.numpy())


@functools.partial(jax.jit, static_argnums=(2, 4, 5))
def _jax_result(images, theta, out_hw, cotangent, mode, align_corners):
  """The same quantities as _torch_reference, by reverse mode through grid and sampler."""
  grid, grid_vjp = jax.vjp(
      lambda t: sampling.affine_grid(t, out_hw, align_corners=align_corners), theta)
  out, out_vjp = jax.vjp(functools.partial(sampling.bilinear_sample, padding_mode=mode,
                                           align_corners=align_corners), images, grid)
  d_images, d_grid = out_vjp(cotangent)
  (d_theta,) = grid_vjp(d_grid)
  return dict(grid=grid, out=out, d_images=d_images, d_grid=d_grid, d_theta=d_theta)


def _compare_with_torch(torch, rng, *, batch, image_hw, channels, out_hw, mode, scale,
                        align_corners):
  images = rng.normal(size=(batch, *image_hw, channels))
  # Large scale / shift: many sampling points fall outside the image.
  theta = rng.normal(size=(batch, 2, 3)) * scale
  cotangent = rng.normal(size=(batch, *out_hw, channels))
  expected = _torch_reference(torch, images, theta, out_hw, cotangent, mode, align_corners)
  actual = _jax_result(jnp.asarray(images), jnp.asarray(theta), out_hw, cotangent, mode,
                       align_corners)
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("out_hw", [(5, 7), (3, 2), (1, 1), (1, 4)])
def test_affine_grid_matches_numpy_transcription(x64, out_hw, align_corners):
  theta = np.random.default_rng(10).normal(size=(3, 2, 3))
  np.testing.assert_allclose(
      sampling.affine_grid(jnp.asarray(theta), out_hw, align_corners=align_corners),
      _numpy_affine_grid(theta, out_hw, align_corners), rtol=1e-12, atol=1e-12)


def test_align_corners_puts_the_corner_pixel_centres_at_plus_minus_one():
  identity = _identity(1)
  corners = sampling.affine_grid(identity, (4, 6), align_corners=True)[0]
  np.testing.assert_allclose(corners[0, 0], [-1, -1], atol=1e-7)
  np.testing.assert_allclose(corners[-1, -1], [1, 1], atol=1e-7)
  edges = sampling.affine_grid(identity, (4, 6))[0]
  np.testing.assert_allclose(edges[0, 0], [-5 / 6, -3 / 4], atol=1e-7)  # half a pixel in


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("image_hw, out_hw", [((6, 5), (4, 7)), ((1, 4), (3, 2))])
def test_bilinear_sample_matches_numpy_transcription(x64, mode, align_corners, image_hw,
                                                     out_hw):
  rng = np.random.default_rng(11)
  images = rng.normal(size=(2, *image_hw, 3))
  grid = rng.uniform(-1.6, 1.6, size=(2, *out_hw, 2))  # in and outside the image
  actual = sampling.bilinear_sample(jnp.asarray(images), jnp.asarray(grid), padding_mode=mode,
                                    align_corners=align_corners)
  np.testing.assert_allclose(actual, _numpy_bilinear_sample(images, grid, mode, align_corners),
                             rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Since version 1.3.0")  # torch on 1x1 align_corners grids
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("out_hw", [(5, 7), (3, 2), (1, 1)])
def test_affine_grid_matches_torch(x64, torch, out_hw, align_corners):
  theta = np.random.default_rng(0).normal(size=(3, 2, 3))
  expected = torch.nn.functional.affine_grid(
      torch.tensor(theta), (3, 1, *out_hw), align_corners=align_corners).numpy()
  np.testing.assert_allclose(
      sampling.affine_grid(jnp.asarray(theta), out_hw, align_corners=align_corners), expected,
      rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])  # the single-channel and the row layouts
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("image_hw, out_hw", [((6, 5), (4, 7)), ((8, 8), (3, 3))])
def test_bilinear_sample_values_and_grads_match_torch(x64, torch, mode, image_hw, out_hw,
                                                      align_corners, channels):
  _compare_with_torch(torch, np.random.default_rng(1), batch=2, image_hw=image_hw,
                      channels=channels, out_hw=out_hw, mode=mode, scale=1.5,
                      align_corners=align_corners)


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("mode", MODES)
def test_single_channel_layout_matches_the_row_layout(x64, mode, align_corners):
  # A 1-channel image takes the flat scalar path; as channel 0 of a 2-channel image (whose
  # other channel gets a zero cotangent) it takes the row path: same values and gradients.
  rng = np.random.default_rng(13)
  images = jnp.asarray(rng.normal(size=(3, 6, 5, 1)))
  grid = jnp.asarray(rng.uniform(-1.4, 1.4, size=(3, 4, 7, 2)))  # in and outside the image
  grid = grid.at[0, 0, :3].set(jnp.array([[-1.0, 0.6], [1.0, 1.0], [-0.2, -1.0]]))  # edges
  cotangent = jnp.asarray(rng.normal(size=(3, 4, 7, 1)))
  sample = functools.partial(sampling.bilinear_sample, padding_mode=mode,
                             align_corners=align_corners)
  out, vjp = jax.vjp(sample, images, grid)
  two = jnp.concatenate([images, jnp.asarray(rng.normal(size=images.shape))], axis=-1)
  out_two, vjp_two = jax.vjp(sample, two, grid)
  d_images, d_grid = vjp(cotangent)
  d_two, d_grid_two = vjp_two(jnp.concatenate([cotangent, jnp.zeros_like(cotangent)], -1))
  np.testing.assert_allclose(out, out_two[..., :1], rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(d_images, d_two[..., :1], rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(d_grid, d_grid_two, rtol=1e-12, atol=1e-12)


@hypothesis.settings(max_examples=6, deadline=None, derandomize=True, database=None)
@hypothesis.given(batch=st.integers(1, 2), image_hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
                  channels=st.integers(1, 3),
                  out_hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
                  mode=st.sampled_from(MODES), scale=st.floats(0.1, 2.0),
                  seed=st.integers(0, 2**16), align_corners=st.booleans())
def test_bilinear_sample_matches_torch_property(torch, batch, image_hw, channels, out_hw, mode,
                                                scale, seed, align_corners):
  with jax.enable_x64(True):
    _compare_with_torch(torch, np.random.default_rng(seed), batch=batch, image_hw=image_hw,
                        channels=channels, out_hw=out_hw, mode=mode, scale=scale,
                        align_corners=align_corners)


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("mode", MODES)
def test_bilinear_sample_finite_difference_grads(x64, mode, align_corners):
  rng = np.random.default_rng(2)
  height, width = 5, 6
  images = jnp.asarray(rng.normal(size=(2, height, width, 2)))
  # Pixel coordinates from just outside to just beyond the image, with fractional parts kept
  # away from the integers where bilinear interpolation (and the border clamp) has kinks.
  pixel = rng.integers(-2, [width + 1, height + 1], size=(2, 4, 3, 2)) + rng.uniform(
      0.1, 0.9, size=(2, 4, 3, 2))
  sizes = np.array([width, height])
  grid = jnp.asarray(2 * pixel / (sizes - 1) - 1 if align_corners else (2 * pixel + 1) / sizes - 1)
  sample = functools.partial(sampling.bilinear_sample, padding_mode=mode,
                             align_corners=align_corners)
  check_grads(sample, (images, grid), order=1, modes=("rev",))  # custom VJP: no jvp


@pytest.mark.parametrize("make_grid, params", [
    (lambda h: sampling.projective_grid(h, (3, 4)), np.eye(3) + 0.1 * np.ones((2, 3, 3))),
    (lambda o: sampling.tps_grid(o, (3, 4)), 0.1 * np.ones((2, 9, 2))),
])
def test_grids_are_differentiable_under_jit(x64, make_grid, params):
  params = jnp.asarray(params)
  np.testing.assert_allclose(jax.jit(make_grid)(params), make_grid(params), rtol=1e-12)
  check_grads(jax.jit(make_grid), (params,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hw", [(5, 7), (1, 1), (1, 3)])
def test_identity_transform_returns_input(mode, hw, align_corners):
  images = np.random.default_rng(7).normal(size=(3, *hw, 2)).astype(np.float32)
  grid = sampling.affine_grid(_identity(3), hw, align_corners=align_corners)
  out = sampling.bilinear_sample(images, grid, padding_mode=mode, align_corners=align_corners)
  np.testing.assert_allclose(out, images, atol=1e-6)


def test_mixed_conventions_are_not_the_identity():
  images = np.random.default_rng(7).normal(size=(1, 5, 7, 1)).astype(np.float32)
  grid = sampling.affine_grid(_identity(1), (5, 7), align_corners=True)
  assert np.abs(np.asarray(sampling.bilinear_sample(images, grid)) - images).max() > 0.1


def test_align_corners_identity_onto_half_plus_one_pixels_takes_every_other_pixel():
  # With corner centres at +-1, output pixel i of k + 1 lands on input pixel 2i of 2k + 1.
  images = np.random.default_rng(12).normal(size=(2, 5, 7, 3)).astype(np.float32)
  out = sampling.bilinear_sample(
      images, sampling.affine_grid(_identity(2), (3, 4), align_corners=True), align_corners=True)
  np.testing.assert_allclose(out, images[:, ::2, ::2], atol=1e-6)


def test_downsampling_by_two_averages_two_by_two_blocks():
  images = np.random.default_rng(8).normal(size=(2, 8, 6, 3)).astype(np.float32)
  out = sampling.bilinear_sample(images, sampling.affine_grid(_identity(2), (4, 3)))
  expected = images.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  assert out.shape == (2, 4, 3, 3)
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_projective_grid_with_affine_homography_equals_affine_grid():
  theta = np.random.default_rng(9).normal(size=(3, 2, 3)).astype(np.float32)
  h = np.concatenate([theta, np.tile(np.float32([[[0, 0, 1]]]), (3, 1, 1))], axis=1)
  np.testing.assert_allclose(sampling.projective_grid(h, (4, 5)),
                             sampling.affine_grid(theta, (4, 5)), atol=1e-6)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid_matches_numpy_homogeneous_division(x64, align_corners):
  h = np.eye(3) + 0.3 * np.random.default_rng(3).normal(size=(2, 3, 3))
  height, width = 3, 4
  x, y = _numpy_pixel_centres(height, width, align_corners)
  uvw = np.einsum("bij,hwj->bhwi", h, np.stack([x, y, np.ones_like(x)], axis=-1))
  np.testing.assert_allclose(
      sampling.projective_grid(jnp.asarray(h), (height, width), align_corners=align_corners),
      uvw[..., :2] / uvw[..., 2:], rtol=1e-12)


def test_projective_grid_is_finite_on_the_horizon():
  # Third row (1, 0, 0): w = x_t, which is 0 on the middle column of a 3-wide grid.
  h = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
  grid, d_h = jax.value_and_grad(lambda h: sampling.projective_grid(h, (3, 3)).sum())(h)
  assert np.isfinite(grid) and np.isfinite(d_h).all()


def test_tps_control_points_regular_lattice():
  points = sampling.tps_control_points(3)
  assert points.shape == (9, 2)
  np.testing.assert_allclose(points[:3], [[-1, -1], [0, -1], [1, -1]])
  np.testing.assert_allclose(points[4], [0, 0])


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("control_points", [None, sampling.tps_control_points(4)])
def test_tps_grid_zero_offsets_is_identity(control_points, align_corners):
  grid = sampling.tps_grid(jnp.zeros((2, 16, 2)), (5, 7), control_points=control_points,
                           align_corners=align_corners)
  np.testing.assert_allclose(
      grid, sampling.affine_grid(_identity(2), (5, 7), align_corners=align_corners), atol=1e-6)


def test_tps_grid_reproduces_affine_maps(x64):
  points = np.asarray(sampling.tps_control_points(3), np.float64)
  theta = np.random.default_rng(4).normal(size=(2, 2, 3))
  offsets = points @ theta[:, :, :2].transpose(0, 2, 1) + theta[:, None, :, 2] - points
  np.testing.assert_allclose(sampling.tps_grid(jnp.asarray(offsets), (4, 6)),
                             sampling.affine_grid(jnp.asarray(theta), (4, 6)), atol=1e-10)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_grid_matches_scipy_thin_plate_spline(x64, align_corners):
  interpolate = pytest.importorskip("scipy.interpolate")
  rng = np.random.default_rng(5)
  points = rng.uniform(-1, 1, size=(7, 2))
  offsets = 0.2 * rng.normal(size=(1, 7, 2))
  height, width = 4, 5
  x, y = _numpy_pixel_centres(height, width, align_corners)
  # SciPy's kernel r^2 log r is U(r) / 2: the interpolant is the same.
  spline = interpolate.RBFInterpolator(points, points + offsets[0],
                                       kernel="thin_plate_spline", degree=1)
  expected = spline(np.stack([x.ravel(), y.ravel()], axis=-1)).reshape(1, height, width, 2)
  actual = sampling.tps_grid(jnp.asarray(offsets), (height, width), control_points=points,
                             align_corners=align_corners)
  np.testing.assert_allclose(actual, expected, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_jit_and_vmap_match_eager(mode):
  rng = np.random.default_rng(6)
  images = rng.normal(size=(3, 2, 6, 5, 3)).astype(np.float32)  # extra leading vmap axis
  theta = (np.eye(2, 3) + 0.5 * rng.normal(size=(3, 2, 2, 3))).astype(np.float32)
  cotangent = rng.normal(size=(3, 2, 3, 4, 3)).astype(np.float32)

  def loss(images, theta, cotangent):
    grid = sampling.affine_grid(theta, (3, 4))
    out = sampling.bilinear_sample(images, grid, padding_mode=mode)
    return jnp.sum(out * cotangent), out

  eager = [jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(*args)
           for args in zip(images, theta, cotangent)]
  eager = jax.tree.map(lambda *xs: np.stack(xs), *eager)
  chex.clear_trace_counter()
  traced = chex.assert_max_traces(loss, n=1)
  batched = jax.jit(jax.vmap(jax.value_and_grad(traced, argnums=(0, 1), has_aux=True)))
  for _ in range(2):
    chex.assert_trees_all_close(batched(images, theta, cotangent), eager, rtol=1e-5, atol=1e-5)


IMAGES = jnp.zeros((2, 4, 4, 1))
GRID = jnp.zeros((2, 3, 3, 2))


@pytest.mark.parametrize("call, argument", [
    (lambda: sampling.bilinear_sample(IMAGES[0], GRID), "images"),
    (lambda: sampling.bilinear_sample(IMAGES, GRID[..., :1]), "grid"),
    (lambda: sampling.bilinear_sample(IMAGES, GRID[0]), "grid"),
    (lambda: sampling.bilinear_sample(IMAGES[:1], GRID), "batch size"),
    (lambda: sampling.bilinear_sample(IMAGES, GRID, padding_mode="reflect"), "padding_mode"),
    (lambda: sampling.affine_grid(jnp.zeros((2, 3, 3)), (3, 3)), "theta"),
    (lambda: sampling.affine_grid(jnp.zeros((2, 3)), (3, 3)), "theta"),
    (lambda: sampling.affine_grid(_identity(2), (0, 3)), "out_hw"),
    (lambda: sampling.affine_grid(_identity(2), (3,)), "out_hw"),
    (lambda: sampling.projective_grid(jnp.zeros((2, 2, 3)), (3, 3)), "h"),
    (lambda: sampling.projective_grid(jnp.zeros((2, 3, 3)), (3, -1)), "out_hw"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 16)), (3, 3)), "offsets"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 16, 3)), (3, 3)), "offsets"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 15, 2)), (3, 3)), "offsets"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 9, 2)), (3, 3),
                               control_points=sampling.tps_control_points(4)), "control_points"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 3, 2)), (3, 3),
                               control_points=jnp.array([[0, 0], [1, 1], [2, 2]])),
     "control_points"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 16, 2)), (0, 3)), "out_hw"),
    (lambda: sampling.tps_control_points(1), "grid_size"),
    (lambda: sampling.affine_grid(_identity(2), (3, 3), align_corners=1), "align_corners"),
    (lambda: sampling.projective_grid(jnp.zeros((2, 3, 3)), (3, 3), align_corners="yes"),
     "align_corners"),
    (lambda: sampling.tps_grid(jnp.zeros((2, 9, 2)), (3, 3), align_corners=None),
     "align_corners"),
    (lambda: sampling.bilinear_sample(IMAGES, GRID, align_corners=0), "align_corners"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_traced_control_points_raise_value_error():
  with pytest.raises(ValueError, match="control_points"):
    jax.jit(lambda p: sampling.tps_grid(jnp.zeros((1, 9, 2)), (3, 3), control_points=p))(
        sampling.tps_control_points(3))


def test_box_theta_crops_integer_boxes_exactly_and_checks_its_arguments():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
  boxes = np.array([[2, 1, 5, 3], [0, 0, 9, 7]], np.float32)
  for b, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
    grid = sampling.affine_grid(sampling.box_theta(boxes[b:b + 1], (7, 9)), (y1 - y0, x1 - x0))
    crop = sampling.bilinear_sample(images[b:b + 1], grid)
    np.testing.assert_allclose(crop[0], images[b, y0:y1, x0:x1], atol=1e-5)
  with pytest.raises(ValueError, match="boxes must have shape"):
    sampling.box_theta(np.zeros((2, 3)), (7, 9))
