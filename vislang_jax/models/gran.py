"""GRAN: the generative recurrent adversarial network's generator (Im et al., 2016).

Im, Kim, Jiang, Memisevic, "Generating images with recurrent adversarial networks", 2016,
Sec. 3.1 (eq. 3-6). The generator draws on a canvas in ``T`` steps, ``t = 1..T``:

    h_{c,t} = g(dC_{t-1})           (h_{c,1} = 0: "decoder-starting")    (3)
    h_z     = tanh(BN(W z))                                                (4)
    dC_t    = f([h_z, h_{c,t}])                                            (5)
    C_t     = C_{t-1} + dC_t,  C_0 = 0,  image = sigmoid(C_T)              (6)

``f`` (the writer) is a DCGAN decoder (``dcgan.UpsamplingDecoder``: a dense projection to a
small map, then stride-2 transposed convolutions, linear output) and ``g`` (the reader) its
mirror: stride-2 convolutions, then a dense layer and tanh to a ``z_size`` code. Both are
shared across steps (one set of parameters whatever ``T``). The discriminator is DCGAN's
(``dcgan.Discriminator``); the losses are in ``objectives/gan.py``.

Noise: ``noise="same"`` feeds the same ``z`` [B, Z] at every step (the paper's eq. 5 and the
released code, which draws ``Zs`` [T, B, Z] but reads ``Zs[0]`` at every step);
``noise="fresh"`` takes ``z`` [T, B, Z], a new sample per step (the paper's comparison of
injecting noise at every step).

Fidelity choices (jiwoongim/GRAN, ``recGenI28.py`` / ``recGenI32.py``):
* ``g`` reads the previous step's write ``dC_{t-1}`` (the paper's eq. 3 and the code's
  ``backward(Ct)`` on the output of ``forward``), not the accumulated canvas, and step 1
  starts from ``h_{c,1} = 0`` (the code's ``H_Ct = 0``), so ``g`` never reads ``C_0``.
  ``read="canvas"`` is a variant (not in the paper): ``g`` reads ``sigmoid(C_{t-1})``, the
  image drawn so far, as DRAW's read does.
* Batch norm sits where the code has it, on the dense layers of ``h_z`` (eq. 4), of ``f``'s
  projection and of ``g``'s code, and on ``g``'s convolutions except its input layer (the
  code normalises that one too; DCGAN leaves input layers alone). ``f``'s hidden transposed
  convolutions are also normalised (DCGAN's generator, which the paper's ``f`` follows; the
  code's ``Deconv_layer`` has none).
* Recurrent batch norm: the layers' scale and offset are shared across steps but their
  statistics are per step (``batch_stats`` gain a leading [T] axis), as in Cooijmans et al.,
  "Recurrent Batch Normalization" (2017): each step's inputs have their own distribution
  (``h_{c,1} = 0``), and a shared running average would mix them at evaluation. The code
  normalises with the batch's statistics at every step, in training and sampling alike.
* ``g`` uses ReLU (the code's ``atype='relu'``) and ``f`` ReLU then a linear output (the
  sigmoid comes after the sum, eq. 6). Weights are drawn from N(0, 0.02) as in DCGAN (the code
  draws Glorot-uniform).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_choice, check_int, check_positive_int
from vislang_jax.models.dcgan import KERNEL_INIT, ConvTrunk, UpsamplingDecoder, batch_norm

NOISES = ("same", "fresh")
READS = ("write", "canvas")


class NoiseProjection(nn.Module):
  """Eq. (4): ``h_z = tanh(BN(W z))`` [B, z_size] (no bias: batch norm's offset replaces it)."""

  z_size: int

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    h = nn.Dense(self.z_size, use_bias=False, kernel_init=KERNEL_INIT, name="dense")(z)
    return jnp.tanh(batch_norm(train, "bn")(h))


class Reader(nn.Module):
  """``g``: [B, H, W, C] -> ``tanh(BN(W flatten(trunk(x))))`` [B, z_size], the trunk being
  ``dcgan.ConvTrunk`` with ReLU (``num_downsamples`` stride-2 convolutions)."""

  z_size: int
  features: int = 64
  num_downsamples: int = 4
  kernel_size: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = ConvTrunk(self.features, self.num_downsamples, self.kernel_size, negative_slope=0.0,
                  name="trunk")(x, train=train)
    h = nn.Dense(self.z_size, use_bias=False, kernel_init=KERNEL_INIT,
                 name="dense")(x.reshape(x.shape[0], -1))
    return jnp.tanh(batch_norm(train, "bn")(h))


class GRANStep(nn.Module):
  """One step of eq. (3)-(6), scanned by ``GRAN``.

  Carry ``(C_{t-1}, r_{t-1})``, both [B, H, W, C], with ``r`` what ``g`` reads (``dC_{t-1}``
  or ``sigmoid(C_{t-1})``); inputs ``(z_t [B, Z], first)`` with ``first`` True at ``t = 1``
  (then ``h_{c,1} = 0``). Outputs ``(sigmoid(C_t), dC_t)``.
  """

  height: int
  width: int
  channels: int
  z_size: int
  features: int
  num_upsamples: int
  kernel_size: int
  read: str
  train: bool

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
               ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    canvas, previous = carry
    z, first = inputs
    h_c = Reader(self.z_size, self.features, self.num_upsamples, self.kernel_size,
                 name="reader")(previous, train=self.train)
    h_c = jnp.where(first, jnp.zeros_like(h_c), h_c)  # (3), h_{c,1} = 0
    h_z = NoiseProjection(self.z_size, name="noise_projection")(z, train=self.train)  # (4)
    write = UpsamplingDecoder(self.height, self.width, self.channels, self.features,
                              self.num_upsamples, self.kernel_size, name="writer")(
                                  jnp.concatenate([h_z, h_c], axis=-1), train=self.train)  # (5)
    canvas = canvas + write  # (6)
    previous = write if self.read == "write" else jax.nn.sigmoid(canvas)
    return (canvas, previous), (jax.nn.sigmoid(canvas), write)


class GRAN(nn.Module):
  """GRAN's recurrent generator: ``T`` writes onto a canvas, image ``sigmoid(C_T)``.

  Attributes:
    height, width, channels: the image size.
    steps: ``T``, the number of writes (3 in the code's CIFAR-10 and LSUN runs).
    z_size: ``Z``, the noise size and that of ``g``'s code ``h_{c,t}`` (100 in the code).
    features: channels of ``f``'s last hidden stage and ``g``'s first; doubled per coarser
      stage.
    num_upsamples: ``L``, the stride-2 (transposed) convolutions of ``f`` (and of ``g``).
    kernel_size: their square kernel side.
    noise: ``"same"`` (one ``z`` [B, Z] for every step) or ``"fresh"`` (``z`` [T, B, Z]).
    read: what ``g`` reads: ``"write"`` (``dC_{t-1}``, the paper's eq. 3) or ``"canvas"``
      (``sigmoid(C_{t-1})``).
  """

  height: int
  width: int
  channels: int
  steps: int = 3
  z_size: int = 100
  features: int = 64
  num_upsamples: int = 4
  kernel_size: int = 4
  noise: str = "same"
  read: str = "write"

  def __post_init__(self):
    for name in ("height", "width", "channels", "steps", "z_size", "features",
                 "num_upsamples"):
      check_positive_int(name, getattr(self, name))
    check_int("kernel_size", self.kernel_size, low=2)
    check_choice("noise", self.noise, NOISES)
    check_choice("read", self.read, READS)
    super().__post_init__()

  def noise_shape(self, batch: int) -> tuple[int, ...]:
    """The shape ``z`` must have: [B, Z] for ``"same"``, [T, B, Z] for ``"fresh"``."""
    if self.noise == "same":
      return (batch, self.z_size)
    return (self.steps, batch, self.z_size)

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Draws images in ``T`` steps.

    Args:
      z: [B, Z] float noise (``noise="same"``) or [T, B, Z] (``noise="fresh"``).
      train: batch statistics (pass ``mutable=["batch_stats"]`` to update each step's running
        averages) when True, each step's running averages when False.

    Returns:
      ``(images, aux)``: images [B, H, W, C] float in [0, 1], ``sigmoid(C_T)``; aux
      ``{"canvases": [T, B, H, W, C] sigmoid(C_t) for t = 1..T, "writes": [T, B, H, W, C]
      dC_t}`` (``C_t`` is the cumulative sum of the writes).

    Raises:
      ValueError: if ``z`` does not have the shape ``noise`` asks for.
    """
    batch = jnp.shape(z)[-2] if jnp.ndim(z) >= 2 else 0
    layout = "[B, Z]" if self.noise == "same" else "[T, B, Z]"
    if jnp.ndim(z) != len(layout.split(",")) or jnp.shape(z) != self.noise_shape(batch):
      raise ValueError(f"z must have shape {layout} with Z = z_size = {self.z_size}"
                       + ("" if self.noise == "same" else f" and T = steps = {self.steps}")
                       + f" for noise={self.noise!r}, got {jnp.shape(z)}.")
    zs = jnp.broadcast_to(z, (self.steps,) + z.shape) if self.noise == "same" else z
    first = jnp.arange(self.steps) == 0
    scan = nn.scan(GRANStep, variable_broadcast="params", variable_axes={"batch_stats": 0},
                   split_rngs={"params": False}, length=self.steps)
    step = scan(self.height, self.width, self.channels, self.z_size, self.features,
                self.num_upsamples, self.kernel_size, self.read, train, name="step")
    blank = jnp.zeros((batch, self.height, self.width, self.channels), jnp.float32)  # C_0
    previous = blank if self.read == "write" else jax.nn.sigmoid(blank)
    _, (canvases, writes) = step((blank, previous), (zs, first))
    return canvases[-1], {"canvases": canvases, "writes": writes}
