"""Semantic segmentation: fully convolutional networks and the deconvolution network.

* Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR
  2015 (released code: shelhamer/fcn.berkeleyvision.org, ``voc-fcn{32,16,8}s/net.py``,
  ``surgery.py``). ``FCN``: a downsampling path of five stride-2 stages (VGG-16's conv
  stack, or a small conv + ReLU + max-pool per stage for digits), VGG's fully connected
  layers as convolutions ``fc6`` (7 x 7, 4096) and ``fc7`` (1 x 1, 4096) with dropout 0.5
  (Sec. 3.1, 4.1; VGG backbone only), a 1 x 1 class-score layer ``score_fr``, and upsampling
  by transposed convolutions (Sec. 3.3). Skip architecture (Sec. 4.2, Fig. 3):
    32s: logits = up32(score_fr)
    16s: fuse4 = up2(score_fr) + score_pool4(pool4);  logits = up16(fuse4)
    8s:  fuse3 = up2'(fuse4) + score_pool3(pool3);     logits = up8(fuse3)
  ``up2``/``up2'`` are learned stride-2 transposed convolutions (kernel 4, no bias)
  initialised to bilinear interpolation; the final ``up32``/``up16``/``up8`` is fixed to
  bilinear interpolation ("The final layer deconvolutional filters are fixed to bilinear
  interpolation, while intermediate upsampling layers are initialized to bilinear upsampling,
  and then learned", Sec. 4.3), a parameter-free ``ops.unpooling.bilinear_upsample``. The
  score layers start at zero (Sec. 4.2: "The new parameters acting on pool4 are
  zero-initialized so that the net starts with unmodified predictions", likewise for pool3;
  Sec. 4.3: "We initialize the class scoring convolution layer to zero"), so at
  initialisation the skips add nothing and 16s / 8s begin where the coarser net does.
* Noh, Hong, Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015
  (HyeonwooNoh/DeconvNet). ``DeconvNet``: an encoder of conv blocks, each ended by a max-pool
  that records its switches, and a mirrored decoder: unpooling at those switches
  (``ops.unpooling.unpool``) followed by transposed convolutions that densify the sparse
  map, the last of each block narrowing to the next block's width; batch normalisation after
  every (transposed) convolution (Sec. 4.1); a final 1 x 1 layer gives per-pixel class scores.

Transposed convolutions are ``nn.ConvTranspose(..., padding="SAME", transpose_kernel=True)``:
the exact adjoint of the ``"SAME"`` convolution ``lax.conv_general_dilated`` of the same
stride with the same kernel (``models/dcgan.py``; tested), ``n -> n f`` for stride ``f``.

Alignment, paper and code differ: the released nets pad the input by 100 pixels so that
``fc6`` (a 7 x 7 "valid" convolution) sees any image, and crop every fused map back with
fixed offsets (``crop`` in ``net.py``). Here every convolution is ``"SAME"`` (``fc6``
included) and pools floor, so for ``H, W`` divisible by 32 the maps after pool3/pool4/pool5
are exactly ``H/8``, ``H/16``, ``H/32`` and the fusions align with no crop; a bilinear
``up_f`` of a stride-``f`` map puts output pixel ``p`` at input coordinate
``(p + 0.5) / f - 0.5``, the centre of the receptive field. Other sizes raise a ValueError
that names the image size (pad or crop images to a multiple of 32 first).

Fidelity: no 100-pixel padding (above). DeconvNet's fully connected bottleneck (a 7 x 7
"valid" convolution to 1 x 1 and its 7 x 7 transposed convolution back) and the VGG-16
encoder at 224 x 224 are left out: ``DeconvNet`` keeps the switches, unpooling and mirrored
transposed convolutions at digit scale (``widths`` per block, two convolutions per block as
in the first two of VGG-16's blocks). Noh's two-stage training, proposals and the CRF are
experiment-level and not here.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_choice, check_float, check_positive_int, check_rank
from vislang_jax.models.dcgan import batch_norm
from vislang_jax.models.vgg import VGGFeatures
from vislang_jax.ops.unpooling import (bilinear_kernel, bilinear_upsample, max_pool_with_argmax,
                                       unpool, upsampling_kernel_size)

VARIANTS = ("32s", "16s", "8s")
BACKBONES = ("convnet", "vgg16")
# The stride of the final (fixed, bilinear) upsampling of each variant.
FINAL_STRIDES = {"32s": 32, "16s": 16, "8s": 8}
NUM_STAGES = 5  # stride-2 stages of the downsampling path: an output stride of 32


def check_image_size(images: Any, multiple: int, *, reason: str) -> None:
  """A ValueError naming the image size unless ``images`` [B, H, W, C] has ``H`` and ``W``
  divisible by ``multiple``."""
  check_rank("images", images, "[B, H, W, C]")
  height, width = images.shape[1:3]
  if height % multiple or width % multiple:
    raise ValueError(f"images must have a height and width divisible by {multiple} ({reason}), "
                     f"got image size {height} x {width}; pad or crop the images first.")


def bilinear_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
  """A Flax initializer: ``bilinear_kernel`` for a [k, k, C, C] kernel (``key`` unused).

  Raises:
    ValueError: for a kernel that is not square or whose in and out channels differ.
  """
  del key
  if len(shape) != 4 or shape[0] != shape[1] or shape[2] != shape[3]:
    raise ValueError(f"shape must be [k, k, C, C] for a bilinear kernel (square, as many outputs "
                     f"as inputs), got {tuple(shape)}.")
  return jnp.asarray(bilinear_kernel(shape[0], shape[2]), dtype)


def bilinear_upsampling(features: int, factor: int, *, name: str) -> nn.ConvTranspose:
  """A learned stride-``factor`` transposed convolution initialised to bilinear upsampling:
  [B, h, w, features] -> [B, h f, w f, features], kernel ``2 f - f % 2``, no bias (FCN's
  ``upscore2`` / ``upscore_pool4``; Sec. 3.3, 4.2, 4.3)."""
  k = upsampling_kernel_size(factor)
  return nn.ConvTranspose(features, (k, k), strides=(factor, factor), padding="SAME",
                          transpose_kernel=True, use_bias=False, kernel_init=bilinear_init,
                          name=name)


def _score(num_classes: int, name: str) -> nn.Conv:
  """A 1 x 1 class-score layer, zero at initialisation (FCN Sec. 4.2, 4.3)."""
  return nn.Conv(num_classes, (1, 1), kernel_init=nn.initializers.zeros, name=name)


class FCN(nn.Module):
  """A fully convolutional network: [B, H, W, C] images -> [B, H, W, num_classes] logits.

  Attributes:
    num_classes: classes per pixel, background included (21 for Pascal VOC).
    variant: "32s", "16s" or "8s": no skip, the pool4 skip, the pool4 and pool3 skips.
    backbone: "convnet" (``widths[i]`` channels, a 3 x 3 conv + ReLU + 2 x 2 max-pool per
      stage; submodules ``stage_{i}``) or "vgg16" (``VGGFeatures(16)`` read at pool3, pool4
      and pool5, submodule ``vgg`` with the parameters ``vgg_params_from_torch`` makes, for
      3-channel ImageNet-normalised input; then ``fc6``, ``fc7``).
    widths: the five stage widths of the "convnet" backbone (unused by "vgg16").
    fc_width: channels of ``fc6`` and ``fc7`` (4096 in the paper; "vgg16" only).
    dropout_rate: dropout after ``fc6`` and ``fc7`` when training (0.5; "vgg16" only).
  """

  num_classes: int
  variant: str = "8s"
  backbone: str = "convnet"
  widths: Sequence[int] = (16, 32, 64, 64, 64)
  fc_width: int = 4096
  dropout_rate: float = 0.5

  def __post_init__(self):
    check_positive_int("num_classes", self.num_classes)
    check_choice("variant", self.variant, VARIANTS)
    check_choice("backbone", self.backbone, BACKBONES)
    if len(self.widths) != NUM_STAGES:
      raise ValueError(f"widths must hold {NUM_STAGES} stage widths, got {self.widths!r}.")
    for i, width in enumerate(self.widths):
      check_positive_int(f"widths[{i}]", width)
    check_positive_int("fc_width", self.fc_width)
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-pixel class scores.

    Args:
      images: [B, H, W, C] float, ``H`` and ``W`` divisible by 32.
      train: dropout on (needs a "dropout" rng; "vgg16" only).

    Returns:
      ``(logits [B, H, W, num_classes], {"coarse_scores": [B, H/32, W/32, num_classes]})``,
      the second the output of ``score_fr``.

    Raises:
      ValueError: naming the image size when ``H`` or ``W`` is not a multiple of 32.
    """
    check_image_size(images, 2**NUM_STAGES, reason="five stride-2 pools")
    x = jnp.asarray(images, jnp.float32)
    if self.backbone == "vgg16":
      taps = VGGFeatures(depth=16, name="vgg")(
          x, layers=("pool3", "pool4", "pool5"))
      pool3, pool4, x = taps["pool3"], taps["pool4"], taps["pool5"]
      for name, k in (("fc6", 7), ("fc7", 1)):
        x = nn.relu(nn.Conv(self.fc_width, (k, k), padding="SAME", name=name)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    else:
      pools = []
      for i, width in enumerate(self.widths):
        x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"stage_{i}")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        pools.append(x)
      pool3, pool4 = pools[2], pools[3]
    coarse = _score(self.num_classes, "score_fr")(x)
    scores = coarse
    if self.variant in ("16s", "8s"):
      scores = (bilinear_upsampling(self.num_classes, 2, name="upscore2")(scores)
                + _score(self.num_classes, "score_pool4")(pool4))
    if self.variant == "8s":
      scores = (bilinear_upsampling(self.num_classes, 2, name="upscore_pool4")(scores)
                + _score(self.num_classes, "score_pool3")(pool3))
    logits = bilinear_upsample(scores, factor=FINAL_STRIDES[self.variant])
    return logits, {"coarse_scores": coarse}


class DeconvNet(nn.Module):
  """Noh et al.'s deconvolution network: [B, H, W, C] -> [B, H, W, num_classes] logits.

  Encoder block ``i``: ``convs_per_block`` 3 x 3 convolutions of ``widths[i]`` channels, each
  with batch norm and ReLU (``enc_{i}_{j}``, ``enc_bn_{i}_{j}``), then a 2 x 2 max-pool of
  stride 2 that records its switches. Decoder block ``i`` (from the deepest): unpool with
  block ``i``'s switches to its pre-pool size, then ``convs_per_block`` 3 x 3 transposed
  convolutions with batch norm and ReLU (``dec_{i}_{j}``, ``dec_bn_{i}_{j}``), of
  ``widths[i]`` channels except the last, of ``widths[i - 1]`` (``widths[0]`` for block 0).
  A 1 x 1 convolution ``score`` gives the logits.

  Attributes:
    num_classes: classes per pixel, background included.
    widths: channels of each encoder block (and its mirrored decoder block).
    convs_per_block: (transposed) convolutions per block (VGG-16 has 2, 2, 3, 3, 3).
    use_batch_norm: batch norm after every (transposed) convolution (the paper's); without
      it the layers have biases and there is no ``batch_stats`` collection.
  """

  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  convs_per_block: int = 2
  use_batch_norm: bool = True

  def __post_init__(self):
    check_positive_int("num_classes", self.num_classes)
    if not self.widths:
      raise ValueError(f"widths must hold at least one block width, got {self.widths!r}.")
    for i, width in enumerate(self.widths):
      check_positive_int(f"widths[{i}]", width)
    check_positive_int("convs_per_block", self.convs_per_block)
    super().__post_init__()

  def _normalise(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    if self.use_batch_norm:
      x = batch_norm(train, name)(x)
    return nn.relu(x)

  @nn.compact
  def __call__(self, images: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, dict[str, Any]]:
    """Per-pixel class scores.

    Args:
      images: [B, H, W, C] float, ``H`` and ``W`` divisible by ``2**len(widths)``.
      train: batch statistics (and their running averages updated: apply with
        ``mutable=["batch_stats"]``) when True, running averages otherwise.

    Returns:
      ``(logits [B, H, W, num_classes], {"switches": (s_0, ..., s_{L-1})})`` with ``s_i``
      [B, H / 2**(i+1), W / 2**(i+1), widths[i]] int32, flat indices into block ``i``'s
      pre-pool map (``ops.unpooling.max_pool_with_argmax``).

    Raises:
      ValueError: naming the image size when ``H`` or ``W`` is not a multiple of
        ``2**len(widths)``.
    """
    levels = len(self.widths)
    check_image_size(images, 2**levels, reason=f"{levels} stride-2 pools")
    x = jnp.asarray(images, jnp.float32)
    switches, sizes = [], []
    for i, width in enumerate(self.widths):
      for j in range(self.convs_per_block):
        x = nn.Conv(width, (3, 3), padding="SAME", use_bias=not self.use_batch_norm,
                    name=f"enc_{i}_{j}")(x)
        x = self._normalise(x, train, f"enc_bn_{i}_{j}")
      sizes.append(x.shape[1:3])
      x, s = max_pool_with_argmax(x)
      switches.append(s)
    for i in reversed(range(levels)):
      x = unpool(x, switches[i], output_hw=sizes[i])
      for j in range(self.convs_per_block):
        last = j == self.convs_per_block - 1
        width = self.widths[max(i - 1, 0)] if last else self.widths[i]
        x = nn.ConvTranspose(width, (3, 3), padding="SAME", transpose_kernel=True,
                             use_bias=not self.use_batch_norm, name=f"dec_{i}_{j}")(x)
        x = self._normalise(x, train, f"dec_bn_{i}_{j}")
    logits = nn.Conv(self.num_classes, (1, 1), name="score")(x)
    return logits, {"switches": tuple(switches)}
