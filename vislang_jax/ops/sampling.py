"""Sampling grids and the bilinear sampler of Spatial Transformer Networks.

Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NIPS 2015,
Sec. 3.2 (parameterised sampling grid, eq. 1) and Sec. 3.3 (differentiable image sampling,
eq. 3-7).

Coordinate convention (shared by every function here, identical to PyTorch's
``affine_grid``/``grid_sample`` with the same ``align_corners``):

* A grid is ``[B, Ho, Wo, 2]`` whose last axis is ``(x, y)``: ``x`` indexes width and ``y``
  indexes height.
* Coordinates are normalised to [-1, 1] along each axis of ``n`` pixels, in one of two ways
  (the keyword-only ``align_corners`` of every function, default False):

  - ``align_corners=False``: -1 and +1 lie on the OUTER EDGES of the image; the centre of
    pixel ``i`` is at ``(2 i + 1) / n - 1`` and ``g`` is at pixel ``((g + 1) n - 1) / 2``.
  - ``align_corners=True``: -1 and +1 are the centres of the corner pixels, as in the Torch
    STN reference (qassemoquab/stnbhwd, whose grid generator writes ``-1 + 2 i / (n - 1)``);
    pixel ``i`` is at ``2 i / (n - 1) - 1`` and ``g`` is at pixel ``(g + 1) (n - 1) / 2``.
    A single pixel (``n = 1``) is at 0, as in PyTorch.

  A grid and the sampler that reads it must use the same convention: then the identity
  transform returns its input in both.
* Every grid function maps the target (output) pixel centres through a transformation
  ``T_theta`` to source (input) coordinates, which ``bilinear_sample`` then reads.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_hw

_PADDING_MODES = ("zeros", "border")


def _check_align_corners(align_corners: bool) -> bool:
  if not isinstance(align_corners, (bool, np.bool_)):
    raise ValueError(f"align_corners must be a bool, got {align_corners!r}.")
  return bool(align_corners)


def _pixel_centres(n: int, align_corners: bool) -> np.ndarray:
  """Normalised coordinates of the ``n`` pixel centres along one axis.

  ``(2i + 1) / n - 1`` (align_corners=False); ``2i / (n - 1) - 1``, or 0 for ``n = 1``
  (align_corners=True).
  """
  if not align_corners:
    return (2.0 * np.arange(n) + 1.0) / n - 1.0
  return 2.0 * np.arange(n) / (n - 1) - 1.0 if n > 1 else np.zeros(1)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _map_target_centres(matrix: jax.Array, out_hw: tuple[int, int],
                        align_corners: bool) -> jax.Array:
  """``matrix @ (x_t, y_t, 1)`` at every target pixel centre: ``[B, R, 3] -> [B, Ho, Wo, R]``."""
  height, width = out_hw
  x = jnp.asarray(_pixel_centres(width, align_corners), matrix.dtype)[None, :]
  y = jnp.asarray(_pixel_centres(height, align_corners), matrix.dtype)[:, None]
  m = matrix[:, :, :, None, None]  # [B, R, 3, 1, 1] against [Ho, Wo]
  # Elementwise multiply-adds rather than a matmul: exact on every backend (no TF32/bf16).
  return jnp.moveaxis(m[:, :, 0] * x + m[:, :, 1] * y + m[:, :, 2], 1, -1)


def affine_grid(theta: jax.Array, out_hw: tuple[int, int], *,
                align_corners: bool = False) -> jax.Array:
  """Affine sampling grid, STN eq. 1: ``(x_s, y_s) = theta @ (x_t, y_t, 1)``.

  Args:
    theta: ``[B, 2, 3]`` float, maps target to source normalised coordinates.
    out_hw: ``(Ho, Wo)``, the output grid size (positive ints).
    align_corners: the normalisation of the target pixel centres (module docstring).

  Returns:
    ``[B, Ho, Wo, 2]`` source coordinates ``(x, y)`` for every target pixel centre, in the
    module's normalised convention (equal to PyTorch ``affine_grid`` with the same
    ``align_corners``).
  """
  out_hw = check_hw("out_hw", out_hw)
  align_corners = _check_align_corners(align_corners)
  theta = jnp.asarray(theta)
  if theta.ndim != 3 or theta.shape[1:] != (2, 3):
    raise ValueError(f"theta must have shape [B, 2, 3]; got {theta.shape}.")
  return _map_target_centres(theta, out_hw, align_corners)


@jax.jit
def _homogeneous_divide(uvw: jax.Array, eps: float) -> jax.Array:
  w = uvw[..., 2:]
  w = jnp.where(w >= 0, jnp.maximum(w, eps), jnp.minimum(w, -eps))
  return uvw[..., :2] / w


def projective_grid(h: jax.Array, out_hw: tuple[int, int], *, eps: float = 1e-6,
                    align_corners: bool = False) -> jax.Array:
  """Projective (homography) sampling grid, the "projective" transformation of STN Sec. 3.2.

  Target pixel centres ``(x_t, y_t, 1)`` are mapped to ``(u, v, w) = h @ (x_t, y_t, 1)`` and
  the source point is ``(u / w, v / w)``. With ``h = [[A], [0, 0, 1]]`` this is
  ``affine_grid(A)``.

  Division guard: ``w`` with ``|w| < eps`` is replaced by ``+-eps`` (its own sign; ``w == 0``
  becomes ``+eps``), so points on or near the horizon land far outside the image and sample
  the padding rather than producing ``inf``/``NaN``; their gradient w.r.t. ``w`` is zero.

  Args:
    h: ``[B, 3, 3]`` float homography from target to source normalised coordinates.
    out_hw: ``(Ho, Wo)``, the output grid size (positive ints).
    eps: smallest ``|w|`` used as a denominator.
    align_corners: the normalisation of the target pixel centres (module docstring).

  Returns:
    ``[B, Ho, Wo, 2]`` source coordinates ``(x, y)``.
  """
  out_hw = check_hw("out_hw", out_hw)
  align_corners = _check_align_corners(align_corners)
  h = jnp.asarray(h)
  if h.ndim != 3 or h.shape[1:] != (3, 3):
    raise ValueError(f"h must have shape [B, 3, 3]; got {h.shape}.")
  return _homogeneous_divide(_map_target_centres(h, out_hw, align_corners), eps)


def tps_control_points(grid_size: int) -> jax.Array:
  """Regular ``grid_size x grid_size`` lattice of thin-plate-spline control points.

  Args:
    grid_size: points per side, at least 2.

  Returns:
    ``[K, 2]`` float32 with ``K = grid_size**2`` points ``(x, y)`` spanning ``[-1, 1]``,
    row-major (``y`` outer, ``x`` inner).
  """
  if not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
    raise ValueError(f"grid_size must be an int >= 2; got {grid_size!r}.")
  return jnp.asarray(_lattice(int(grid_size)), jnp.float32)


def _lattice(grid_size: int) -> np.ndarray:
  ticks = np.linspace(-1.0, 1.0, grid_size)
  y, x = np.meshgrid(ticks, ticks, indexing="ij")
  return np.stack([x.ravel(), y.ravel()], axis=-1)


def _tps_radial(sq_dist: np.ndarray) -> np.ndarray:
  """Bookstein's ``U(r) = r^2 log r^2`` as a function of ``r^2``, with ``U(0) = 0``."""
  return sq_dist * np.log(np.where(sq_dist > 0, sq_dist, 1.0))


@functools.lru_cache(maxsize=32)
def _tps_transfer(points: tuple[tuple[float, float], ...], out_hw: tuple[int, int],
                  align_corners: bool) -> np.ndarray:
  """``[Ho * Wo, K]`` float64 matrix ``M`` with ``grid = M @ source_points``.

  ``M = Phi @ inv(L)[:, :K]`` where ``L = [[U(P, P), [1, P]], [[1, P]^T, 0]]`` is Bookstein's
  system matrix for the fixed target points ``P`` and ``Phi = [U(grid, P), 1, grid]``.
  """
  p = np.asarray(points, np.float64)
  k = p.shape[0]
  affine_p = np.concatenate([np.ones((k, 1)), p], axis=1)  # [K, 3]
  system = np.zeros((k + 3, k + 3))
  system[:k, :k] = _tps_radial(((p[:, None] - p[None]) ** 2).sum(-1))
  system[:k, k:] = affine_p
  system[k:, :k] = affine_p.T
  if np.linalg.matrix_rank(system) < k + 3:
    raise ValueError(
        "control_points give a singular TPS system: they must be distinct and not all on "
        f"one line; got {p.tolist()}.")
  inverse = np.linalg.inv(system)
  y, x = np.meshgrid(_pixel_centres(out_hw[0], align_corners),
                     _pixel_centres(out_hw[1], align_corners), indexing="ij")
  g = np.stack([x.ravel(), y.ravel()], axis=-1)  # [Ho * Wo, 2]
  phi = np.concatenate(
      [_tps_radial(((g[:, None] - p[None]) ** 2).sum(-1)), np.ones((g.shape[0], 1)), g],
      axis=1)
  return phi @ inverse[:, :k]


def tps_grid(offsets: jax.Array, out_hw: tuple[int, int], *,
             control_points: jax.Array | None = None,
             align_corners: bool = False) -> jax.Array:
  """Thin-plate-spline sampling grid (Bookstein 1989; STN Sec. 3.2, Sec. 4.1 and appendix).

  The spline maps each target control point ``P_k`` to the source point
  ``P_k + offsets[:, k]``, with ``U(r) = r^2 log r^2`` radial terms plus an affine part.
  The inverse of the ``(K+3) x (K+3)`` system matrix depends only on the fixed control points
  and is precomputed once (in float64, cached per control points, ``out_hw`` and
  ``align_corners``). Because a TPS reproduces affine maps exactly, the grid is computed as
  ``identity_grid + M @ offsets``: zero offsets give ``affine_grid(identity)``.

  Args:
    offsets: ``[B, K, 2]`` float displacements ``(dx, dy)`` of the source control points.
    out_hw: ``(Ho, Wo)``, the output grid size (positive ints).
    control_points: ``[K, 2]`` concrete (not traced) target control points ``(x, y)`` in
      normalised coordinates; default ``tps_control_points(sqrt(K))``.
    align_corners: the normalisation of the target pixel centres (module docstring).

  Returns:
    ``[B, Ho, Wo, 2]`` source coordinates ``(x, y)``.
  """
  out_hw = check_hw("out_hw", out_hw)
  align_corners = _check_align_corners(align_corners)
  offsets = jnp.asarray(offsets)
  if offsets.ndim != 3 or offsets.shape[-1] != 2:
    raise ValueError(f"offsets must have shape [B, K, 2]; got {offsets.shape}.")
  k = offsets.shape[1]
  if control_points is None:
    side = int(round(np.sqrt(k)))
    if side * side != k or side < 2:
      raise ValueError(
          "offsets must have K = grid_size**2 (grid_size >= 2) points when control_points "
          f"is not given; got K = {k}.")
    points = _lattice(side)
  else:
    try:
      points = np.asarray(control_points, np.float64)
    except jax.errors.TracerArrayConversionError as e:
      raise ValueError("control_points must be a concrete array, not traced.") from e
    if points.shape != (k, 2):
      raise ValueError(
          f"control_points must have shape [K, 2] = [{k}, 2] to match offsets "
          f"{offsets.shape}; got {points.shape}.")
  transfer = _tps_transfer(tuple(map(tuple, points.tolist())), out_hw, align_corners)
  return _tps_apply(jnp.asarray(transfer, offsets.dtype), offsets, out_hw, align_corners)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _tps_apply(transfer: jax.Array, offsets: jax.Array, out_hw: tuple[int, int],
               align_corners: bool) -> jax.Array:
  flow = jnp.einsum("nk,bkc->bnc", transfer, offsets, precision=jax.lax.Precision.HIGHEST)
  identity = _map_target_centres(jnp.eye(2, 3, dtype=offsets.dtype)[None], out_hw,
                                 align_corners)
  return identity + flow.reshape(offsets.shape[0], *out_hw, 2)


def _unnormalize(g: jax.Array, n: int, padding_mode: str,
                 align_corners: bool) -> tuple[jax.Array, jax.Array]:
  """Pixel coordinate of ``g`` and its derivative (``slope``) w.r.t. ``g``.

  ``((g + 1) n - 1) / 2`` with slope ``n / 2`` (align_corners=False), ``(g + 1) (n - 1) / 2``
  with slope ``(n - 1) / 2`` (align_corners=True). ``"border"`` clamps the coordinate to
  ``[0, n - 1]``; as in PyTorch, the slope is kept on the closed interval and 0 strictly
  outside it.
  """
  if align_corners:
    pixel, scale = (g + 1) / 2 * (n - 1), (n - 1) / 2
  else:
    pixel, scale = ((g + 1) * n - 1) / 2, n / 2
  slope = jnp.full_like(g, scale)
  if padding_mode == "border":
    slope = jnp.where((pixel >= 0) & (pixel <= n - 1), slope, 0)
    pixel = jnp.clip(pixel, 0, n - 1)
  return pixel, slope


def _neighbours(g: jax.Array, n: int, padding_mode: str, align_corners: bool):
  """The 2 neighbours ``floor(p)``, ``floor(p) + 1`` of the pixel coordinate ``p`` of ``g``.

  Returns:
    index: 2-tuple of int32 neighbour indices clamped to ``[0, n - 1]`` (always in range).
    inside: 2-tuple of bool, the neighbour lies in ``[0, n - 1]`` (else it reads 0).
    frac: ``p - floor(p)``.
    slope: ``dp / dg`` (``_unnormalize``).
  """
  p, slope = _unnormalize(g, n, padding_mode, align_corners)
  p0 = jnp.floor(p)
  # Clip before the int cast so that far-away (or huge) coordinates cannot overflow.
  index = tuple(jnp.clip(p0 + k, 0, n - 1).astype(jnp.int32) for k in (0, 1))
  inside = ((p0 >= 0) & (p0 <= n - 1), (p0 >= -1) & (p0 <= n - 2))
  return index, inside, p - p0, slope


def _corners(image_hw: tuple[int, int], grid: jax.Array, padding_mode: str,
             align_corners: bool):
  """The 4 neighbours of every grid point, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1).

  Returns:
    index: 4-tuple of ``[B, Ho, Wo]`` int32 rows of ``images.reshape(B * H * W, C)``, always
      in range.
    inside: 4-tuple of ``[B, Ho, Wo]`` bool, the neighbour lies in the image (else it reads 0).
    fx, fy: ``[B, Ho, Wo]`` fractional pixel coordinates ``x - floor(x)``, ``y - floor(y)``.
    dx, dy: ``[B, Ho, Wo]`` derivatives of the pixel coordinates w.r.t. ``grid``.
  """
  height, width = image_hw
  (x0, x1), (in_x0, in_x1), fx, dx = _neighbours(grid[..., 0], width, padding_mode,
                                                 align_corners)
  (y0, y1), (in_y0, in_y1), fy, dy = _neighbours(grid[..., 1], height, padding_mode,
                                                 align_corners)
  b = jnp.arange(grid.shape[0], dtype=jnp.int32)[:, None, None] * height
  row0, row1 = (b + y0) * width, (b + y1) * width
  index = (row0 + x0, row0 + x1, row1 + x0, row1 + x1)
  inside = (in_y0 & in_x0, in_y0 & in_x1, in_y1 & in_x0, in_y1 & in_x1)
  return index, inside, fx, fy, dx, dy


def _gather(rows: jax.Array, index: jax.Array, inside: jax.Array) -> jax.Array:
  """``rows[index]`` with zeros where not ``inside``: ``[..., C]``.

  ``rows`` is ``images.reshape(B * H * W, C)``, or for ``C == 1`` the flat image
  ``images.reshape(-1)``: scalar gathers, fused with their consumer into one loop, cost about
  4x less on CPU than gathers of one-element rows.
  """
  if rows.ndim == 1:
    index = index[..., None]
  return jnp.where(inside[..., None], rows.at[index].get(mode="promise_in_bounds"), 0)


def _corner_weights(fx: jax.Array, fy: jax.Array) -> tuple[jax.Array, ...]:
  """Eq. 5 kernel ``max(0, 1 - |x - m|) max(0, 1 - |y - n|)`` of the 4 neighbours."""
  return (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx


def _rows(images: jax.Array) -> jax.Array:
  """The layout ``_gather`` reads: the flat image for ``C == 1``, else ``[B * H * W, C]``."""
  return images.reshape(-1) if images.shape[-1] == 1 else images.reshape(-1, images.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _bilinear(images: jax.Array, grid: jax.Array, padding_mode: str,
              align_corners: bool) -> jax.Array:
  return _bilinear_fwd(images, grid, padding_mode, align_corners)[0]


def _bilinear_fwd(images, grid, padding_mode, align_corners):
  """Eq. 5. For ``C == 1`` the residuals keep the 4 neighbour values (each the size of the
  output) for eq. 7; for more channels the backward pass gathers them again."""
  index, inside, fx, fy, _, _ = _corners(images.shape[1:3], grid, padding_mode, align_corners)
  rows = _rows(images)
  if rows.ndim == 1:
    values = tuple(_gather(rows, i, m) for i, m in zip(index, inside))
  else:
    values = _gather(rows, jnp.stack(index), jnp.stack(inside))  # one gather for all 4
  v00, v01, v10, v11 = values
  fx, fy = fx[..., None], fy[..., None]
  # The blend written out (not a [4, ...] weight tensor reduced over its leading axis):
  # about 5x faster on CPU.
  out = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11)
  return out, (images, grid, values if rows.ndim == 1 else None)


def _bilinear_bwd(padding_mode, align_corners, residuals, cotangent):
  """Eq. 6 (d/dimages: scatter-add of weight * cotangent) and eq. 7 (d/dgrid).

  Per neighbour k, ``s_k = sum_c cotangent * v_k`` (for ``C > 1`` a gather fused with the
  reduction: no ``[4, B, Ho, Wo, C]`` intermediate is materialised) and one in-place
  scatter-add into the layout of ``_rows``.
  """
  images, grid, values = residuals
  index, inside, fx, fy, dx, dy = _corners(images.shape[1:3], grid, padding_mode,
                                           align_corners)
  rows = _rows(images)
  if values is None:
    values = tuple(_gather(rows, i, m) for i, m in zip(index, inside))
  s00, s01, s10, s11 = (jnp.sum(v * cotangent, axis=-1) for v in values)
  d_rows = jnp.zeros_like(rows)
  if rows.ndim == 1:
    index = tuple(i[..., None] for i in index)
  for i, m, w in zip(index, inside, _corner_weights(fx, fy)):
    update = jnp.where(m[..., None], w[..., None] * cotangent, 0).astype(images.dtype)
    d_rows = d_rows.at[i].add(update, mode="promise_in_bounds")
  d_x = ((1 - fy) * (s01 - s00) + fy * (s11 - s10)) * dx
  d_y = ((1 - fx) * (s10 - s00) + fx * (s11 - s01)) * dy
  d_grid = jnp.stack([d_x, d_y], axis=-1).astype(grid.dtype)
  return d_rows.reshape(images.shape), d_grid


_bilinear.defvjp(_bilinear_fwd, _bilinear_bwd)
# One compile per shape when eager.
_bilinear_sample = jax.jit(_bilinear, static_argnums=(2, 3))


def bilinear_sample(images: jax.Array, grid: jax.Array, *, padding_mode: str = "zeros",
                    align_corners: bool = False) -> jax.Array:
  """Bilinear sampler, STN eq. 3-5, with the hand-written gradients of eq. 6-7.

  ``out[b, i, j] = sum_{n, m} images[b, n, m] max(0, 1 - |x - m|) max(0, 1 - |y - n|)``
  where ``(x, y)`` are the pixel coordinates of ``grid[b, i, j]``: ``((g + 1) W - 1) / 2``,
  ``((g + 1) H - 1) / 2`` (align_corners=False) or ``(g + 1) (W - 1) / 2``,
  ``(g + 1) (H - 1) / 2`` (align_corners=True); only the 4 neighbours of ``(x, y)`` have
  non-zero weight. Equal in value and gradient to PyTorch ``grid_sample(mode="bilinear")``
  with the same ``align_corners`` on ``NCHW`` images, including the one-sided derivative at
  integer pixel coordinates.

  Works under jit, vmap and grad. The gradient is a custom VJP (one fused gather-reduce and
  one scatter-add per neighbour; about 1.7x faster and a third less memory than autodiff on
  CPU for C = 256), so it is first-order and reverse-mode only: no ``jax.jvp``. Single-channel
  images are read and written as scalars of the flat image (about 4x faster on CPU than
  one-element rows).

  Args:
    images: ``[B, H, W, C]`` float source images.
    grid: ``[B, Ho, Wo, 2]`` float source coordinates ``(x, y)`` in the module's normalised
      convention.
    padding_mode: ``"zeros"`` reads pixels outside the image as 0; ``"border"`` clamps the
      coordinates to the image (zero gradient w.r.t. a coordinate that is clamped).
    align_corners: how ``grid`` is normalised (module docstring): -1 and +1 on the outer
      image edges (False) or on the corner pixel centres (True).

  Returns:
    ``[B, Ho, Wo, C]`` sampled values, dtype of ``images`` and ``grid`` promoted.
  """
  images, grid = jnp.asarray(images), jnp.asarray(grid)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [B, H, W, C] (4-D); got {images.shape}.")
  if grid.ndim != 4 or grid.shape[-1] != 2:
    raise ValueError(f"grid must have shape [B, Ho, Wo, 2]; got {grid.shape}.")
  if images.shape[0] != grid.shape[0]:
    raise ValueError(
        f"images and grid must have the same batch size; got images {images.shape} and "
        f"grid {grid.shape}.")
  if padding_mode not in _PADDING_MODES:
    raise ValueError(f"padding_mode must be one of {_PADDING_MODES}; got {padding_mode!r}.")
  return _bilinear_sample(images, grid, padding_mode, _check_align_corners(align_corners))


def box_theta(boxes: jax.Array, image_hw: tuple[int, int]) -> jax.Array:
  """The affine ``theta`` that maps an output grid onto each box (``align_corners=False``).

  A box ``(x0, y0, x1, y1)`` is in pixels with ``x1``, ``y1`` exclusive (the pixel-edge
  convention: the integer box ``(2, 1, 5, 3)`` covers columns 2-4 and rows 1-2), so
  ``bilinear_sample(images, affine_grid(box_theta(boxes, (H, W)), (y1 - y0, x1 - x0)))`` of an
  integer box is exactly ``images[:, y0:y1, x0:x1]``; other output sizes resample the box
  bilinearly (DVSA's region crops, DenseCap's bilinear interpolation), differentiably in the
  box coordinates.

  Args:
    boxes: [..., 4] float ``(x0, y0, x1, y1)`` in pixels.
    image_hw: ``(H, W)`` of the images the boxes lie in.

  Returns:
    [..., 2, 3] float ``theta``: ``x_s = (x1 - x0) / W * x_t + (x0 + x1) / W - 1`` and likewise
    for ``y``.
  """
  height, width = check_hw("image_hw", image_hw)
  boxes = jnp.asarray(boxes, jnp.float32)
  if boxes.shape[-1:] != (4,):
    raise ValueError(f"boxes must have shape [..., 4] (x0, y0, x1, y1); got {boxes.shape}.")
  x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
  zero = jnp.zeros_like(x0)
  row_x = jnp.stack([(x1 - x0) / width, zero, (x0 + x1) / width - 1.0], axis=-1)
  row_y = jnp.stack([zero, (y1 - y0) / height, (y0 + y1) / height - 1.0], axis=-1)
  return jnp.stack([row_x, row_y], axis=-2)
