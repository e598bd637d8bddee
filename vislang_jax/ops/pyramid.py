"""Gaussian and Laplacian image pyramids: the ``d``, ``u`` and band-pass images of LAPGAN.

Denton, Chintala, Szlam, Fergus, "Deep Generative Image Models using a Laplacian Pyramid of
Adversarial Networks", NeurIPS 2015, Sec. 3.1 (after Burt and Adelson, "The Laplacian
pyramid as a compact image code", 1983):

    d(I): blur and decimate, a j x j image becomes j/2 x j/2
    u(I): smooth and expand, a j x j image becomes 2j x 2j
    Gaussian pyramid  G(I) = [I_0, I_1, ..., I_K],  I_0 = I,  I_{k+1} = d(I_k)
    Laplacian pyramid L(I) = [h_0, ..., h_{K-1}, I_K],  h_k = I_k - u(I_{k+1})      (eq. 1)
    reconstruction    I_k = u(I_{k+1}) + h_k, from I_K down to I_0                   (eq. 2)

The reconstruction is exact for any ``u`` and ``d`` (each ``h_k`` stores what ``u`` misses).

Kernels. The paper does not name them; its released code (facebook/eyescream,
``cifar/datasets/coarse_to_fine_cifar10.lua``, ``lsun/donkey_lsun.lua``) resizes with
torch's ``image.scale`` in bilinear mode (down to the coarse size and back up), with no
blur before decimation. We follow instead the pyramid the paper builds on (its ref. [1],
Burt and Adelson), which blurs before it decimates: the separable 5-tap binomial kernel ``w = [1, 4, 6, 4, 1] / 16`` (sums to one), so that

    d(I) = S(B(I))          blur with w along H and W, then keep pixels (0, 2, 4, ...)
    u(I) = 4 B(Z(I))        insert zeros after every pixel along H and W, then blur with w
                            (each axis with 2w = [1, 4, 6, 4, 1] / 8, 4w in total)

with ``S`` subsampling and ``Z`` its adjoint, zero insertion (``<S x, y> = <x, Z y>``). Away
from the borders ``u = 4 d^T``. An output of ``u`` at an even position averages its input
with weights ``(1, 6, 1) / 8``, at an odd position ``(4, 4) / 8``: ``u`` interpolates with
non-negative weights that sum to one, so images in [0, 1] stay in [0, 1] and band-pass
images ``h_k`` of such images lie in [-1, 1].

Borders: ``B`` pads by mirror reflection about the edge pixel without repeating it (NumPy's
``"reflect"``, SciPy's ``"mirror"``: ``c b | a b c d | c b``). With it the zero-inserted
signal keeps its even/odd pattern at both ends, so ``u`` and ``d`` of a constant image are
that constant everywhere, borders included (edge padding would not give this for ``u``).

Every function is linear in the images, pure, and works under ``jax.jit``, ``jax.vmap``
and ``jax.grad``, for any batch size and channel count.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_rank, is_int

# Burt and Adelson's 5-tap binomial blur, [1, 4, 6, 4, 1] / 16 (sums to one).
BLUR_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def check_levels(levels: Any, *, height: int, width: int, name: str = "levels") -> int:
  """``levels`` as an int ``K >= 1`` with ``2**K`` dividing ``height`` and ``width``.

  Raises:
    ValueError: naming ``name``, the image size and the largest ``K`` that fits, otherwise.
  """
  if not is_int(levels) or levels < 1 or height % 2**levels or width % 2**levels:
    fits = 0
    while height % 2**(fits + 1) == 0 and width % 2**(fits + 1) == 0:
      fits += 1
    raise ValueError(
        f"{name} must be an int K >= 1 with 2**K dividing the image height {height} and "
        f"width {width} (here K <= {fits}), got {levels!r}.")
  return int(levels)


def _as_images(images: Any) -> jax.Array:
  """``images`` [B, H, W, C] as a float array (integers become float32)."""
  check_rank("images", images, "[B, H, W, C]")
  images = jnp.asarray(images)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    images = images.astype(jnp.float32)
  return images


def _reflect_indices(size: int, pad: int) -> np.ndarray:
  """Indices of positions ``-pad .. size + pad - 1`` mirrored into ``[0, size)``.

  Mirror about the edge pixel without repeating it (``c b | a b c d | c b``), repeated for
  ``pad >= size`` (period ``2 (size - 1)``); a single pixel repeats itself.
  """
  positions = np.arange(-pad, size + pad)
  if size == 1:
    return np.zeros_like(positions)
  period = 2 * (size - 1)
  positions = np.mod(positions, period)
  return np.where(positions >= size, period - positions, positions)


def _correlate_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
  """``x`` correlated along ``axis`` with the odd-length ``taps``, mirror-padded, same size."""
  size = x.shape[axis]
  pad = len(taps) // 2
  padded = jnp.take(x, _reflect_indices(size, pad), axis=axis)
  out = 0.0
  for i, tap in enumerate(taps):
    out = out + float(tap) * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
  return out


def blur(images: jax.Array, *, gain: float = 1.0) -> jax.Array:
  """``B``: the separable binomial blur, ``gain * w`` along H and then along W.

  Args:
    images: [B, H, W, C] float.
    gain: scales the kernel along each axis (``u`` uses 2: ``4 w`` in 2-D).

  Returns:
    [B, H, W, C], mirror-padded at the borders (module docstring).
  """
  images = _as_images(images)
  taps = gain * BLUR_KERNEL
  return _correlate_axis(_correlate_axis(images, taps, axis=1), taps, axis=2)


def downsample(images: jax.Array) -> jax.Array:
  """``d``: blur, then keep every second pixel (rows and columns 0, 2, 4, ...).

  Args:
    images: [B, H, W, C] float, H and W even.

  Returns:
    [B, H / 2, W / 2, C].

  Raises:
    ValueError: if ``images`` is not [B, H, W, C] with even H and W.
  """
  images = _as_images(images)
  _, height, width, _ = images.shape
  if height % 2 or width % 2:
    raise ValueError(f"images must have shape [B, H, W, C] with even H and W, got "
                     f"{images.shape}.")
  return blur(images)[:, ::2, ::2, :]


def upsample(images: jax.Array) -> jax.Array:
  """``u``: insert a zero after every pixel along H and W, then blur with ``4 w``.

  Args:
    images: [B, h, w, C] float.

  Returns:
    [B, 2h, 2w, C]: even rows/columns average their pixel with its neighbours (1, 6, 1) / 8,
    odd ones the two pixels around them (4, 4) / 8 (per axis).
  """
  images = _as_images(images)
  batch, height, width, channels = images.shape
  spread = jnp.zeros((batch, 2 * height, 2 * width, channels), images.dtype)
  spread = spread.at[:, ::2, ::2, :].set(images)
  return blur(spread, gain=2.0)


def gaussian_pyramid(images: jax.Array, *, levels: int) -> list[jax.Array]:
  """``[I_0, I_1, ..., I_K]`` with ``I_0 = images`` and ``I_{k+1} = d(I_k)``.

  Args:
    images: [B, H, W, C] float, ``2**levels`` dividing H and W.
    levels: ``K >= 1``, the number of ``d`` steps.

  Returns:
    ``K + 1`` arrays, ``I_k`` [B, H / 2**k, W / 2**k, C].

  Raises:
    ValueError: for another rank, or ``levels`` that is not an int >= 1 with ``2**levels``
      dividing H and W.
  """
  images = _as_images(images)
  check_levels(levels, height=images.shape[1], width=images.shape[2])
  pyramid = [images]
  for _ in range(levels):
    pyramid.append(downsample(pyramid[-1]))
  return pyramid


def laplacian_pyramid(images: jax.Array, *, levels: int) -> list[jax.Array]:
  """``[h_0, ..., h_{K-1}, I_K]`` with ``h_k = I_k - u(I_{k+1})`` (eq. 1).

  Args:
    images: [B, H, W, C] float, ``2**levels`` dividing H and W.
    levels: ``K >= 1``.

  Returns:
    ``K + 1`` arrays: the band-pass images ``h_k`` [B, H / 2**k, W / 2**k, C], then the
    low-pass residual ``I_K`` [B, H / 2**K, W / 2**K, C].

  Raises:
    ValueError: as ``gaussian_pyramid``.
  """
  gaussian = gaussian_pyramid(images, levels=levels)
  bands = [fine - upsample(coarse) for fine, coarse in zip(gaussian[:-1], gaussian[1:])]
  return bands + [gaussian[-1]]


def reconstruct(pyramid: Sequence[jax.Array]) -> jax.Array:
  """``I_0`` from ``[h_0, ..., h_{K-1}, I_K]`` by ``I_k = u(I_{k+1}) + h_k`` (eq. 2).

  Args:
    pyramid: ``K + 1 >= 2`` arrays, ``pyramid[k]`` [B, H_k, W_k, C] with ``H_k = 2 H_{k+1}``
      and ``W_k = 2 W_{k+1}``, as ``laplacian_pyramid`` returns.

  Returns:
    [B, H_0, W_0, C]; exactly (up to float rounding) the image ``laplacian_pyramid`` took.

  Raises:
    ValueError: for fewer than two arrays or shapes that do not halve level by level.
  """
  if not isinstance(pyramid, Sequence) or len(pyramid) < 2:
    raise ValueError(f"pyramid must be a sequence of K + 1 >= 2 arrays [h_0, ..., h_(K-1), "
                     f"I_K], got {type(pyramid).__name__} of length "
                     f"{len(pyramid) if isinstance(pyramid, Sequence) else None}.")
  for k, level in enumerate(pyramid):
    check_rank(f"pyramid[{k}]", level, "[B, H, W, C]")
  image = _as_images(pyramid[-1])
  for k in range(len(pyramid) - 2, -1, -1):
    batch, height, width, channels = image.shape
    expected = (batch, 2 * height, 2 * width, channels)
    if tuple(np.shape(pyramid[k])) != expected:
      raise ValueError(f"pyramid[{k}] must have shape {expected} (twice the height and width "
                       f"of pyramid[{k + 1}]), got {tuple(np.shape(pyramid[k]))}.")
    image = upsample(image) + pyramid[k]
  return image
