"""DCGAN generator and discriminator, with GAN-CLS's text conditioning, and the style encoder.

* Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
  Generative Adversarial Networks", ICLR 2016, Sec. 3-4: the generator projects ``z`` to a
  small map with many channels and upsamples it with stride-2 transposed ("fractionally
  strided") convolutions; the discriminator downsamples with stride-2 convolutions (no
  pooling); batch norm everywhere except the generator's output layer and the discriminator's
  input layer; ReLU in the generator (tanh at its output), leaky ReLU (slope 0.2) in the
  discriminator; weights drawn from N(0, 0.02).
* Reed, Akata, Yan, Logeswaran, Schiele, Lee, "Generative Adversarial Text to Image
  Synthesis", ICML 2016, Sec. 4.1 and 4.4: the conditioning vector ``phi(t)`` (a text
  embedding) is compressed by a dense layer and a leaky ReLU and concatenated to ``z`` in the
  generator; in the discriminator the same kind of compression is replicated spatially and
  concatenated to the 4 x 4 feature map, followed by a 1 x 1 convolution, batch norm, leaky
  ReLU and the final score. ``StyleEncoder`` is the style encoder ``S(x) -> z_hat`` of Sec. 4.4
  (train it with ``|| z - S(G(z, phi(t))) ||^2``, ``objectives/gan.py``).

Transposed convolutions: each upsampling layer is ``nn.ConvTranspose(strides=2,
padding="SAME", transpose_kernel=True)``, which is exactly the adjoint (the vector-Jacobian
product) of the stride-2 ``"SAME"`` convolution ``jax.lax.conv_general_dilated`` with the same
``[k, k, C_out, C_in]`` kernel: ``<A x, y> = <x, A^T y>`` (tested). Every ``n x n`` input
becomes ``2n x 2n``; with ``kernel_size=4`` this is Torch's
``SpatialFullConvolution(4, 4, 2, 2, 1, 1)`` of Reed's ``main_cls.lua`` (``kernel_size=5`` is
the 5 x 5 of Newmu/dcgan_code). Flax's default ``transpose_kernel=False`` computes the adjoint
of the convolution with the spatially flipped kernel whose in/out channel axes are swapped.

Any image size: the generator starts from an ``s_h x s_w`` map with ``s = ceil(size / 2**L)``
for ``L`` upsamplings and center-crops the ``2**L``-times larger result to ``H x W`` (28 x 28
digits with ``L = 2``: 7 -> 28 exactly; 60 x 60 canvases with ``L = 4``: 4 -> 64, cropped to
60). The discriminator's ``"SAME"`` convolutions take any size to ``ceil(size / 2**L)``.

Fidelity (paper and code differ):
* Reed's ``main_cls.lua`` adds residual blocks (1x1 and 3x3 convolutions) at the 4 x 4 and
  8 x 8 stages of both networks; the paper does not describe them and we leave them out, as
  in DCGAN. Its discriminator's final 4 x 4 "valid" convolution to one score is our dense
  layer on the flattened last map (the same linear map).
* Reed compresses the text to 128 dimensions in the paper (``cond_dim=128``; the code uses
  256).
* Unconditional discriminators end as DCGAN's (Newmu/dcgan_code): the flattened last map, then
  one dense layer; the 1 x 1 convolution is only there when conditional (Reed).
* Batch norm: ``nn.BatchNorm(momentum=0.9)`` with scale 1 at init (DCGAN's code draws it from
  N(1, 0.02)); layers followed by batch norm have no bias (it would be cancelled).
* The output is ``(tanh(a) + 1) / 2`` in [0, 1] (the library's image convention); the
  discriminator and style encoder map images back to ``2 x - 1`` in [-1, 1], DCGAN's range.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_int, check_positive_int, check_rank

# DCGAN Sec. 4: "All weights were initialized from a zero-centered Normal distribution with
# standard deviation 0.02" (also Reed's weights_init).
KERNEL_INIT = nn.initializers.normal(0.02)
LEAKY_SLOPE = 0.2


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  """The library's batch norm: batch statistics when training, running averages otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)


def start_size(size: int, num_upsamples: int) -> int:
  """``ceil(size / 2**num_upsamples)``: the side of the map that ``num_upsamples`` stride-2
  transposed convolutions grow to at least ``size``."""
  return -(-size // 2**num_upsamples)


def center_crop(x: jax.Array, height: int, width: int) -> jax.Array:
  """The central ``height x width`` window of ``x`` [B, H', W', C] (H' >= height, W' >= width);
  an odd surplus leaves the extra row (column) at the bottom (right)."""
  top = (x.shape[1] - height) // 2
  left = (x.shape[2] - width) // 2
  return x[:, top:top + height, left:left + width]


def check_cond(cond: Any, *, cond_size: int | None, batch: int) -> None:
  """``cond`` must be None when ``cond_size`` is None, else a [B, cond_size] array.

  Raises:
    ValueError: naming ``cond``, with the expected and the given shape.
  """
  if cond_size is None:
    if cond is not None:
      raise ValueError(f"cond must be None for an unconditional model (cond_size=None), got "
                       f"an array of shape {jnp.shape(cond)}.")
    return
  expected = (batch, cond_size)
  if cond is None:
    raise ValueError(f"cond must have shape [B, cond_size] = {expected} (the model was built "
                     f"with cond_size={cond_size}), got None.")
  if jnp.shape(cond) != expected:
    raise ValueError(f"cond must have shape [B, cond_size] = {expected}, got "
                     f"{jnp.shape(cond)}.")


def check_architecture(module: nn.Module, *names: str) -> None:
  """Every attribute in ``names`` a positive int, ``kernel_size`` >= 2, ``cond_size`` None or
  positive (for modules that have them)."""
  for name in names:
    check_positive_int(name, getattr(module, name))
  check_int("kernel_size", module.kernel_size, low=2)
  if getattr(module, "cond_size", None) is not None:
    check_positive_int("cond_size", module.cond_size)


def transposed_conv(features: int, kernel_size: int, *, use_bias: bool = False,
                    name: str | None = None) -> nn.ConvTranspose:
  """The upsampling layer: [B, n, m, C_in] -> [B, 2n, 2m, features], the adjoint of the
  stride-2 ``"SAME"`` convolution ``jax.lax.conv_general_dilated`` with the same kernel
  [k, k, features, C_in] (HWIO of that convolution; ``transpose_kernel=True``)."""
  return nn.ConvTranspose(features, (kernel_size, kernel_size), strides=(2, 2), padding="SAME",
                          transpose_kernel=True, use_bias=use_bias, kernel_init=KERNEL_INIT,
                          name=name)


class CondCompression(nn.Module):
  """Reed Sec. 4.1: ``phi(t)`` [B, cond_size] -> leaky_relu(W phi(t) + b) [B, cond_dim]."""

  cond_dim: int

  @nn.compact
  def __call__(self, cond: jax.Array) -> jax.Array:
    return nn.leaky_relu(nn.Dense(self.cond_dim, kernel_init=KERNEL_INIT)(cond), LEAKY_SLOPE)


class UpsamplingDecoder(nn.Module):
  """A vector to an image-sized map through DCGAN's projection and transposed convolutions.

  ``h`` [B, D] -> dense -> batch norm -> ReLU -> [B, s_h, s_w, features * 2**(L-1)], then ``L``
  stride-2 transposed convolutions halving the channels each time (``features`` at the last
  hidden stage), each but the last followed by batch norm and ReLU; the last has ``channels``
  outputs and a bias. The result is center-cropped to ``height x width`` and returned before
  any output nonlinearity: [B, H, W, C]. Shared by ``Generator`` and GRAN's writer ``f``.

  Attributes:
    height, width, channels: the output size.
    features: channels of the last hidden stage; doubled at each coarser stage.
    num_upsamples: ``L``, the number of stride-2 transposed convolutions.
    kernel_size: the transposed convolutions' square kernel side.
  """

  height: int
  width: int
  channels: int
  features: int = 64
  num_upsamples: int = 4
  kernel_size: int = 4

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool) -> jax.Array:
    levels = self.num_upsamples
    s_h, s_w = start_size(self.height, levels), start_size(self.width, levels)
    width = self.features * 2**(levels - 1)
    x = nn.Dense(s_h * s_w * width, use_bias=False, kernel_init=KERNEL_INIT,
                 name="project")(h)
    x = nn.relu(batch_norm(train, "project_bn")(x))
    x = x.reshape(h.shape[0], s_h, s_w, width)
    for i in range(levels):
      last = i == levels - 1
      out = self.channels if last else self.features * 2**(levels - 2 - i)
      x = transposed_conv(out, self.kernel_size, use_bias=last, name=f"deconv_{i}")(x)
      if not last:
        x = nn.relu(batch_norm(train, f"deconv_bn_{i}")(x))
    return center_crop(x, self.height, self.width)


class ConvTrunk(nn.Module):
  """DCGAN's discriminator trunk: ``L`` stride-2 ``"SAME"`` convolutions, ``features * 2**i``
  channels at stage ``i``, each followed by batch norm (all but the first, the input layer:
  DCGAN Sec. 3) and a leaky ReLU.

  ``x`` [B, H, W, C] -> [B, ceil(H / 2**L), ceil(W / 2**L), features * 2**(L-1)]. Layers are
  named ``conv_i`` and ``bn_i`` (no ``bn_0``).

  Attributes:
    features: channels of the first convolution.
    num_downsamples: ``L``.
    kernel_size: the convolutions' square kernel side.
    negative_slope: the leaky ReLU's slope (0 gives a ReLU).
  """

  features: int = 64
  num_downsamples: int = 4
  kernel_size: int = 4
  negative_slope: float = LEAKY_SLOPE

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_downsamples):
      x = nn.Conv(self.features * 2**i, (self.kernel_size, self.kernel_size), strides=(2, 2),
                  padding="SAME", use_bias=i == 0, kernel_init=KERNEL_INIT, name=f"conv_{i}")(x)
      if i > 0:
        x = batch_norm(train, f"bn_{i}")(x)
      x = nn.leaky_relu(x, self.negative_slope)
    return x


def check_images(images: Any, channels: int | None = None) -> None:
  """``images`` [B, H, W, C] (with ``C = channels`` when given)."""
  check_rank("images", images, "[B, H, W, C]")
  if channels is not None and jnp.shape(images)[-1] != channels:
    raise ValueError(f"images must have shape [B, H, W, C] with C = {channels}, got "
                     f"{jnp.shape(images)}.")


class Generator(nn.Module):
  """DCGAN's generator ``G(z)``, or GAN-CLS's ``G(z, phi(t))`` when ``cond_size`` is set.

  Attributes:
    height, width, channels: the image size.
    z_size: ``Z``, the noise size (100 in both papers).
    features: channels of the last transposed convolution's input; doubled per coarser stage
      (DCGAN's and Reed's ``ngf``, 128 in their code for 64 x 64 images).
    num_upsamples: ``L``, stride-2 transposed convolutions (4 for 64 x 64).
    kernel_size: 4 (Reed's code) or 5 (DCGAN's code).
    cond_size: the size of the raw conditioning vector ``phi(t)``; None: unconditional.
    cond_dim: the size ``phi(t)`` is compressed to (Reed: 128).
  """

  height: int
  width: int
  channels: int
  z_size: int = 100
  features: int = 64
  num_upsamples: int = 4
  kernel_size: int = 4
  cond_size: int | None = None
  cond_dim: int = 128

  def __post_init__(self):
    check_architecture(self, "height", "width", "channels", "z_size", "features",
                       "num_upsamples", "cond_dim")
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jax.Array, cond: jax.Array | None = None, *,
               train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Images from noise (and a conditioning vector).

    Args:
      z: [B, Z] float noise.
      cond: [B, cond_size] float ``phi(t)``, or None for an unconditional generator.
      train: batch statistics (and update ``batch_stats``, pass ``mutable=["batch_stats"]``)
        when True, running averages when False.

    Returns:
      ``(images, {})``: images [B, H, W, C] float in [0, 1], ``(tanh(a) + 1) / 2``.

    Raises:
      ValueError: if ``z`` is not [B, Z] or ``cond`` does not match ``cond_size``.
    """
    if jnp.ndim(z) != 2 or jnp.shape(z)[1] != self.z_size:
      raise ValueError(f"z must have shape [B, Z] with Z = z_size = {self.z_size}, got "
                       f"{jnp.shape(z)}.")
    check_cond(cond, cond_size=self.cond_size, batch=z.shape[0])
    h = z
    if cond is not None:
      h = jnp.concatenate([z, CondCompression(self.cond_dim, name="compress")(cond)], axis=-1)
    a = UpsamplingDecoder(self.height, self.width, self.channels, self.features,
                          self.num_upsamples, self.kernel_size, name="decoder")(h, train=train)
    return (jnp.tanh(a) + 1.0) / 2.0, {}


class Discriminator(nn.Module):
  """DCGAN's discriminator ``D(x)``, or GAN-CLS's ``D(x, phi(t))`` when ``cond_size`` is set.

  Attributes:
    features: channels of the first convolution (``ndf``, 64); doubled per stage.
    num_downsamples: ``L``, stride-2 convolutions (4 takes 64 x 64 to Reed's 4 x 4 stage).
    kernel_size: 4 (Reed's code) or 5 (DCGAN's code).
    cond_size: the size of the raw conditioning vector ``phi(t)``; None: unconditional.
    cond_dim: the size ``phi(t)`` is compressed to before it is replicated (Reed: 128).
  """

  features: int = 64
  num_downsamples: int = 4
  kernel_size: int = 4
  cond_size: int | None = None
  cond_dim: int = 128

  def __post_init__(self):
    check_architecture(self, "features", "num_downsamples", "cond_dim")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, cond: jax.Array | None = None, *,
               train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Real-vs-fake logits (apply a sigmoid for ``D``'s probability).

    Args:
      images: [B, H, W, C] float in [0, 1] (mapped to [-1, 1] inside).
      cond: [B, cond_size] float ``phi(t)``, or None for an unconditional discriminator.
      train: as ``Generator``.

    Returns:
      ``(logits [B], {"features": [B, F]})``, the features being the flattened last map that
      the final dense layer reads (``F = h * w * features * 2**(L-1)`` at the last stage).

    Raises:
      ValueError: if ``images`` is not [B, H, W, C] or ``cond`` does not match ``cond_size``.
    """
    check_images(images)
    check_cond(cond, cond_size=self.cond_size, batch=images.shape[0])
    x = ConvTrunk(self.features, self.num_downsamples, self.kernel_size,
                  name="trunk")(2.0 * images - 1.0, train=train)
    if cond is not None:
      c = CondCompression(self.cond_dim, name="compress")(cond)
      c = jnp.broadcast_to(c[:, None, None, :], x.shape[:3] + c.shape[-1:])
      x = nn.Conv(x.shape[-1], (1, 1), use_bias=False, kernel_init=KERNEL_INIT,
                  name="joint_conv")(jnp.concatenate([x, c], axis=-1))
      x = nn.leaky_relu(batch_norm(train, "joint_bn")(x), LEAKY_SLOPE)
    features = x.reshape(x.shape[0], -1)
    logits = nn.Dense(1, kernel_init=KERNEL_INIT, name="score")(features)[:, 0]
    return logits, {"features": features}


class StyleEncoder(nn.Module):
  """Reed Sec. 4.4's style encoder ``S(x) -> z_hat``: the discriminator's convolutional trunk
  (its own weights) and a dense layer to ``z_size``, trained to invert the generator's noise.

  Style transfer: ``G(S(x), phi(t))`` draws text ``t``'s content in image ``x``'s style.

  Attributes:
    z_size: ``Z``, the generator's noise size.
    features, num_downsamples, kernel_size: as ``Discriminator``.
  """

  z_size: int = 100
  features: int = 64
  num_downsamples: int = 4
  kernel_size: int = 4

  def __post_init__(self):
    check_architecture(self, "z_size", "features", "num_downsamples")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """images [B, H, W, C] float in [0, 1] -> z_hat [B, Z] float."""
    check_images(images)
    x = ConvTrunk(self.features, self.num_downsamples, self.kernel_size,
                  name="trunk")(2.0 * images - 1.0, train=train)
    return nn.Dense(self.z_size, kernel_init=KERNEL_INIT, name="z")(x.reshape(x.shape[0], -1))

