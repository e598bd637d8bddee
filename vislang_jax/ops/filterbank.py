"""DRAW's selective attention: a grid of N x N Gaussian filters (Gregor et al., 2015).

Gregor, Danihelka, Graves, Rezende, Wierstra, "DRAW: A Recurrent Neural Network For Image
Generation", ICML 2015, section 3.2, equations (19)-(29).

Coordinates follow the paper: pixel positions are 1-based, ``a = 1..A`` indexes image columns
(the width axis, ``A = width``), ``b = 1..B`` indexes image rows (the height axis,
``B = height``) and ``i, j = 1..N`` index the filters. A grid centre ``(gx, gy) = ((A+1)/2,
(B+1)/2)`` is the middle of the image.

Shapes: ``...`` is any number of leading batch axes (the docstrings write ``[B]``), ``H`` is
the image height, ``W`` the width, ``N`` the number of filters along each axis and ``C`` an
optional trailing channel axis, to which the same filterbank is applied channel by channel.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vislang_jax.checks import check_positive_int


class AttentionParams(NamedTuple):
  """The five attention parameters of one glimpse, in pixel units (eq. 21-22).

  Attributes:
    gx: [B] float, grid centre along the width axis, in 1-based column coordinates.
    gy: [B] float, grid centre along the height axis, in 1-based row coordinates.
    sigma2: [B] float, isotropic variance of every Gaussian filter, in pixels squared.
    delta: [B] float, stride between neighbouring filter centres, in pixels.
    gamma: [B] float, intensity: ``read`` multiplies by it, ``write`` divides by it.
  """

  gx: jax.Array
  gy: jax.Array
  sigma2: jax.Array
  delta: jax.Array
  gamma: jax.Array


def stride_scale(*, height: int, width: int, n: int) -> float:
  """The factor ``(max(A, B) - 1) / (N - 1)`` that turns delta~ into the stride delta (eq. 22).

  With ``delta~ = 1`` the N filter centres then span the longer image side exactly, from
  pixel 1 to pixel ``max(A, B)``. For ``N = 1`` the single filter sits at the grid centre
  whatever the stride (eq. 19-20 give ``mu_1 = g``), so the factor is defined as
  ``max(A, B) - 1``, the stride that a grid with ``delta~ = 1`` spanning the image would have
  if it had a second filter; it keeps ``delta`` finite and meaningful (the extent of the
  glimpse) for plots and for initialisations that set ``sigma`` from ``delta``.
  """
  check_positive_int("height", height)
  check_positive_int("width", width)
  check_positive_int("n", n)
  return (max(height, width) - 1) / max(n - 1, 1)


def attention_params(raw: jax.Array, *, height: int, width: int, n: int) -> AttentionParams:
  """Maps the decoder's linear output to attention parameters in pixel units (eq. 21-22).

  Args:
    raw: [B, 5] float, ``(g~x, g~y, log sigma^2, log delta~, log gamma)`` along the last
      axis, as produced by a linear layer of ``h_dec`` (eq. 21).
    height: ``B`` in the paper, the image height in pixels.
    width: ``A`` in the paper, the image width in pixels.
    n: ``N``, the number of filters along each axis.

  Returns:
    ``AttentionParams`` with each field [B]: ``gx = (A+1)/2 (g~x + 1)``,
    ``gy = (B+1)/2 (g~y + 1)``, ``sigma2 = exp(log sigma^2)``,
    ``delta = (max(A,B)-1)/(N-1) exp(log delta~)`` (see ``stride_scale`` for ``N = 1``) and
    ``gamma = exp(log gamma)``.

  Raises:
    ValueError: if ``raw`` does not end in an axis of size 5, or a size is not positive.
  """
  scale = stride_scale(height=height, width=width, n=n)
  if raw.ndim < 1 or raw.shape[-1] != 5:
    raise ValueError(f"raw must have shape [..., 5], got shape {raw.shape}.")
  gx_tilde, gy_tilde, log_sigma2, log_delta_tilde, log_gamma = jnp.moveaxis(raw, -1, 0)
  return AttentionParams(
      gx=(width + 1) / 2 * (gx_tilde + 1),
      gy=(height + 1) / 2 * (gy_tilde + 1),
      sigma2=jnp.exp(log_sigma2),
      delta=scale * jnp.exp(log_delta_tilde),
      gamma=jnp.exp(log_gamma),
  )


def _axis_filterbank(g: jax.Array, sigma2: jax.Array, delta: jax.Array, *, n: int,
                     size: int) -> jax.Array:
  """[B] grid centre, variance and stride -> [B, N, size] filters along one image axis."""
  i = jnp.arange(1, n + 1, dtype=g.dtype)
  mu = g[..., None] + (i - n / 2 - 0.5) * delta[..., None]  # [B, N], eq. (19)-(20)
  a = jnp.arange(1, size + 1, dtype=g.dtype)
  # (a - mu)^2 minus the nearest pixel a*'s (a* - mu)^2, written as (a - a*)(a + a* - 2 mu):
  # softmax is invariant to the subtracted term (one per filter), and the largest logit is
  # then exactly 0 (a = a*), so no filter underflows to all zeros when sigma^2 is tiny or
  # the centre far away. Subtracting two squares instead loses it: at |mu| ~ 1e5 each is
  # ~1e10 with a float32 spacing of ~1e3, and XLA may recompute them differently in a
  # fusion, leaving every logit far below 0 and 0 / 0 = nan (seen under jit).
  nearest = jnp.clip(jnp.round(mu), 1, size)[..., None]  # [B, N, 1], a*
  excess = (a - nearest) * (a + nearest - 2 * mu[..., None])  # [B, N, size], >= 0
  return jax.nn.softmax(-excess / (2 * sigma2[..., None, None]), axis=-1)  # eq. (25)-(26)


def gaussian_filterbank(gx: jax.Array, gy: jax.Array, sigma2: jax.Array, delta: jax.Array, *,
                        n: int, height: int, width: int) -> tuple[jax.Array, jax.Array]:
  """The horizontal and vertical Gaussian filterbank matrices (eq. 19-20, 25-26).

  Filter ``i`` along the width axis is centred at ``mu_i^X = gx + (i - N/2 - 0.5) delta`` and
  ``F_X[i, a] = exp(-(a - mu_i^X)^2 / (2 sigma^2)) / Z_X`` with ``Z_X`` making each filter sum
  to one over ``a = 1..A``; likewise ``F_Y`` along the height axis. The normalisation is a
  softmax over the image axis (in log space), so a filter stays normalised in float32 even when
  its centre is far outside the image or ``sigma^2`` is tiny: it then puts its mass on the
  nearest pixel(s) instead of underflowing to zeros.

  Args:
    gx: [B] float, grid centre along the width axis (1-based columns).
    gy: [B] float, grid centre along the height axis (1-based rows).
    sigma2: [B] float, positive filter variance.
    delta: [B] float, stride between filter centres.
    n: ``N``, the number of filters along each axis.
    height: image height ``B`` in pixels.
    width: image width ``A`` in pixels.

  Returns:
    ``(fy, fx)``: ``fy`` [B, N, H] and ``fx`` [B, N, W], each row summing to one.

  Raises:
    ValueError: if the four parameter arrays differ in shape, or a size is not positive.
  """
  check_positive_int("n", n)
  check_positive_int("height", height)
  check_positive_int("width", width)
  shapes = {"gx": gx.shape, "gy": gy.shape, "sigma2": sigma2.shape, "delta": delta.shape}
  if len(set(shapes.values())) != 1:
    raise ValueError(f"gx, gy, sigma2 and delta must have the same shape [B], got {shapes}.")
  fx = _axis_filterbank(gx, sigma2, delta, n=n, size=width)
  fy = _axis_filterbank(gy, sigma2, delta, n=n, size=height)
  return fy, fx


def _check_operand(name: str, array: jax.Array, layout: str, fy: jax.Array, fx: jax.Array,
                  gamma: jax.Array, *, on_image: bool) -> bool:
  """Checks ``array`` against fy [B, Ny, H], fx [B, Nx, W] and gamma [B].

  ``array`` is [B, H, W(, C)] when ``on_image`` and [B, Ny, Nx(, C)] otherwise; returns
  whether it has the trailing channel axis.
  """
  if fy.ndim < 2 or fx.ndim < 2:
    raise ValueError(
        f"fy and fx must have shapes [B, N, H] and [B, N, W], got {fy.shape} and {fx.shape}.")
  batch = fy.shape[:-2]
  if fx.shape[:-2] != batch or gamma.shape != batch:
    raise ValueError(
        f"fy [B, N, H], fx [B, N, W] and gamma [B] must share the batch shape B, got fy "
        f"{fy.shape}, fx {fx.shape} and gamma {gamma.shape}.")
  axis = -1 if on_image else -2
  expected = batch + (fy.shape[axis], fx.shape[axis])
  rank = len(expected)
  if array.ndim not in (rank, rank + 1) or array.shape[:rank] != expected:
    raise ValueError(
        f"{name} must have shape {layout} = {expected}, or that with a trailing channel axis, "
        f"to match fy {fy.shape} and fx {fx.shape}, got {array.shape}.")
  return array.ndim == rank + 1


def read(images: jax.Array, fy: jax.Array, fx: jax.Array, gamma: jax.Array) -> jax.Array:
  """Reads an N x N glimpse: ``gamma F_Y x F_X^T`` (eq. 27).

  Args:
    images: [B, H, W] or [B, H, W, C] float.
    fy: [B, N, H] vertical filterbank from ``gaussian_filterbank``.
    fx: [B, N, W] horizontal filterbank from ``gaussian_filterbank``.
    gamma: [B] float intensity.

  Returns:
    [B, N, N] or [B, N, N, C] glimpse, rows indexed by ``fy``'s filters and columns by
    ``fx``'s.

  Raises:
    ValueError: on a wrong rank or when the image size differs from the filters' image axes.
  """
  colour = _check_operand("images", images, "[B, H, W]", fy, fx, gamma, on_image=True)
  x = images if colour else images[..., None]
  glimpse = gamma[..., None, None, None] * jnp.einsum("...ih,...hwc,...jw->...ijc", fy, x, fx)
  return glimpse if colour else glimpse[..., 0]


def write(patch: jax.Array, fy: jax.Array, fx: jax.Array, gamma: jax.Array) -> jax.Array:
  """Writes an N x N patch onto an image: ``(1 / gamma) F_Y^T w F_X`` (eq. 29).

  ``write`` is ``read``'s adjoint up to the intensity: for every ``x`` and ``w``,
  ``<read(x), w> = gamma^2 <x, write(w)>`` (Frobenius inner products, per example).

  Args:
    patch: [B, N, N] or [B, N, N, C] float, the write patch ``w_t``.
    fy: [B, N, H] vertical filterbank from ``gaussian_filterbank``.
    fx: [B, N, W] horizontal filterbank from ``gaussian_filterbank``.
    gamma: [B] float intensity.

  Returns:
    [B, H, W] or [B, H, W, C] image.

  Raises:
    ValueError: on a wrong rank or when the patch size differs from the number of filters.
  """
  colour = _check_operand("patch", patch, "[B, N, N]", fy, fx, gamma, on_image=False)
  w = patch if colour else patch[..., None]
  image = jnp.einsum("...ih,...ijc,...jw->...hwc", fy, w, fx) / gamma[..., None, None, None]
  return image if colour else image[..., 0]
