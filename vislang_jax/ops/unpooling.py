"""Max pooling that records its switches, unpooling at them, and FCN's bilinear filter.

* Noh, Hong, Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015,
  Sec. 3.2.1 (after Zeiler and Fergus): "unpooling ... records the locations of maximum
  activations selected during pooling operation in switch variables, which are employed to
  place each activation back to its original pooled location". ``max_pool_with_argmax``
  returns those switches; ``unpool`` puts values back at them and zeros elsewhere, a sparse
  map that the deconvolution network's transposed convolutions then densify. With
  non-overlapping windows (``window == stride``) ``unpool`` is the adjoint of the pooling's
  selection: ``<unpool(y, s), x> = <y, pooled-by-switches x>``.
* Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR
  2015, Sec. 3.3 and 4.3: upsampling by a factor ``f`` is a transposed ("backwards strided")
  convolution of stride ``f`` whose filter is initialised to bilinear interpolation;
  ``bilinear_kernel`` is ``upsample_filt`` of the released code (shelhamer/
  fcn.berkeleyvision.org, ``surgery.py``) placed on the channel diagonal, as ``surgery.interp``
  does, so that each channel is upsampled on its own. Used with
  ``nn.ConvTranspose(strides=(f, f), padding="SAME")`` and ``k = 2 f - f % 2`` it maps an
  ``n x n`` map to ``n f x n f`` and equals bilinear resizing with half-pixel centres
  (``jax.image.resize(..., "bilinear")``) away from the border (tested).
  ``bilinear_upsample`` is that transposed convolution with the filter fixed, FCN's final
  upsampling layer ("The final layer deconvolutional filters are fixed to bilinear
  interpolation", Sec. 4.3).

Layout: channels last, ``[B, H, W, C]``. Pooling windows are "VALID" (no padding, sizes
floored as torch's ``max_pool2d``): ``h = (H - window) // stride + 1``. Every function is
pure and works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_hw, check_positive_int, check_rank


def _pooled_size(n: int, window: int, stride: int, name: str) -> int:
  if n < window:
    raise ValueError(f"{name} must be at least window={window}, got {n}.")
  return (n - window) // stride + 1


def max_pool_with_argmax(x: jax.Array, *, window: int = 2,
                         stride: int = 2) -> tuple[jax.Array, jax.Array]:
  """Max pooling over ``window x window`` patches that also returns where each maximum was.

  Args:
    x: [B, H, W, C] float.
    window: the square window's side.
    stride: the step between windows (``window`` for non-overlapping pooling).

  Returns:
    ``(pooled, switches)``: pooled [B, h, w, C], the maximum of each window, and switches
    [B, h, w, C] int32, the flat index ``row * W + col`` into ``H * W`` of that maximum (the
    convention of torch's ``max_pool2d(return_indices=True)``). Ties go to the first
    position in row-major order. The gradient of ``pooled`` goes to the maximum alone.

  Raises:
    ValueError: for a non-positive ``window``/``stride``, ``x`` not of rank 4 or smaller
      than the window.
  """
  window = check_positive_int("window", window)
  stride = check_positive_int("stride", stride)
  check_rank("x", x, "[B, H, W, C]")
  height, width = x.shape[1:3]
  h = _pooled_size(height, window, stride, "x's height")
  w = _pooled_size(width, window, stride, "x's width")
  # Window offsets (di, dj) in row-major order, so argmax's first maximum is the first in
  # row-major order of the image too.
  offsets = [(di, dj) for di in range(window) for dj in range(window)]
  candidates = jnp.stack(
      [x[:, di:di + stride * (h - 1) + 1:stride, dj:dj + stride * (w - 1) + 1:stride]
       for di, dj in offsets], axis=-1)  # [B, h, w, C, window**2]
  choice = jnp.argmax(candidates, axis=-1)
  pooled = jnp.take_along_axis(candidates, choice[..., None], axis=-1)[..., 0]
  offset_rows = jnp.asarray([di for di, _ in offsets], jnp.int32)[choice]
  offset_cols = jnp.asarray([dj for _, dj in offsets], jnp.int32)[choice]
  rows = stride * jnp.arange(h, dtype=jnp.int32)[None, :, None, None] + offset_rows
  cols = stride * jnp.arange(w, dtype=jnp.int32)[None, None, :, None] + offset_cols
  return pooled, rows * width + cols


def unpool(x: jax.Array, switches: jax.Array, *, output_hw: Any) -> jax.Array:
  """Noh et al.'s unpooling: each value of ``x`` back at its recorded switch, zeros elsewhere.

  Args:
    x: [B, h, w, C] float, e.g. a pooled map or the decoder's map at that scale.
    switches: [B, h, w, C] int, flat indices into ``H * W`` (``max_pool_with_argmax``).
    output_hw: ``(H, W)``, the size of the map that was pooled.

  Returns:
    [B, H, W, C]: ``out[b, s // W, s % W, c] = x[b, i, j, c]`` with ``s = switches[b, i, j,
    c]``; positions that no switch names are 0. Overlapping windows whose switches coincide
    name one position, which holds their (equal, in a max-pooled map) value once.

  Raises:
    ValueError: for ``x`` and ``switches`` of different shapes or ranks other than 4, or
      a bad ``output_hw``.
  """
  height, width = check_hw("output_hw", output_hw)
  check_rank("x", x, "[B, h, w, C]")
  if jnp.shape(switches) != jnp.shape(x):
    raise ValueError(f"switches must have x's shape [B, h, w, C] = {jnp.shape(x)}, got "
                     f"{jnp.shape(switches)}.")
  batch, _, _, channels = x.shape

  def place(values: jax.Array, index: jax.Array) -> jax.Array:  # one map: [h w] -> [H W]
    return jnp.zeros(height * width, x.dtype).at[index].set(values)

  # Indices stay below H * W (no overflow of int32 flat indices over the whole batch).
  per_map = jax.vmap(jax.vmap(place, in_axes=-1, out_axes=-1))
  out = per_map(x.reshape(batch, -1, channels), switches.reshape(batch, -1, channels))
  return out.reshape(batch, height, width, channels)


def bilinear_kernel(kernel_size: int, channels: int) -> np.ndarray:
  """FCN's bilinear upsampling filter on the channel diagonal: [k, k, C, C] float32.

  ``upsample_filt(k)`` of fcn.berkeleyvision.org's ``surgery.py``: with ``f = ceil(k / 2)``
  and centre ``c = f - 1`` (odd ``k``) or ``f - 0.5`` (even ``k``),
  ``filt[i, j] = (1 - |i - c| / f) (1 - |j - c| / f)``. Entry ``[:, :, a, b]`` is ``filt``
  for ``a == b`` and 0 otherwise (``surgery.interp``), so channels do not mix. For a
  transposed convolution of stride ``f`` take ``k = 2 f - f % 2`` (4 for 2, 16 for 8, 64
  for 32). The filter is symmetric under flipping, so it means the same with either
  ``transpose_kernel`` setting of ``nn.ConvTranspose``.

  Raises:
    ValueError: for a non-positive ``kernel_size`` or ``channels``.
  """
  kernel_size = check_positive_int("kernel_size", kernel_size)
  channels = check_positive_int("channels", channels)
  factor = (kernel_size + 1) // 2
  centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  profile = 1 - np.abs(np.arange(kernel_size) - centre) / factor
  kernel = np.zeros((kernel_size, kernel_size, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(profile, profile)[:, :, None]
  return kernel


def upsampling_kernel_size(factor: int) -> int:
  """``2 f - f % 2``: the bilinear filter's side for upsampling by ``f`` (FCN's net.py)."""
  return 2 * factor - factor % 2


def bilinear_upsample(x: jax.Array, *, factor: int) -> jax.Array:
  """FCN's fixed upsampling: [B, h, w, C] -> [B, h f, w f, C], each channel on its own.

  The stride-``f`` transposed convolution (``"SAME"`` padding, the adjoint of the stride-``f``
  ``"SAME"`` convolution) with ``bilinear_kernel(2 f - f % 2, C)``: bilinear interpolation
  with half-pixel centres, output pixel ``p`` reading input coordinate ``(p + 0.5) / f - 0.5``.
  Within ``f`` pixels of the border the missing neighbours count as zeros (the transposed
  convolution's zero padding), where ``jax.image.resize`` would clamp to the edge.

  Raises:
    ValueError: for a non-positive ``factor`` or ``x`` not of rank 4.
  """
  factor = check_positive_int("factor", factor)
  check_rank("x", x, "[B, h, w, C]")
  kernel = bilinear_kernel(upsampling_kernel_size(factor), x.shape[-1])
  return jax.lax.conv_transpose(x, jnp.asarray(kernel, x.dtype), (factor, factor), "SAME",
                                dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)
