"""DRAW: a recurrent variational auto-encoder that draws with attention (Gregor et al., 2015).

Gregor, Danihelka, Graves, Rezende, Wierstra, "DRAW: A Recurrent Neural Network For Image
Generation", ICML 2015. One glimpse ``t = 1..T`` of the network (section 2, eq. 3-8):

    x^_t  = x - sigmoid(c_{t-1})                                  (3)
    r_t   = read(x, x^_t, h^dec_{t-1})                            (4)
    h^enc_t = RNN^enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])            (5)
    z_t  ~ Q(z_t | h^enc_t) = N(mu_t, diag(sigma_t^2))            (6)
    h^dec_t = RNN^dec(h^dec_{t-1}, z_t)                           (7)
    c_t   = c_{t-1} + write(h^dec_t)                              (8)

with ``c_0``, ``h^enc_0`` and ``h^dec_0`` (and the LSTM cells) zero. ``read`` and ``write``
either see the whole image (section 3.1) or go through an N x N grid of Gaussian filters whose
five parameters are a linear function of ``h^dec`` (section 3.2, ``ops/filterbank.py``).
The loss is in ``objectives/draw.py``.

Randomness: the reparameterised samples ``z_t = mu_t + sigma_t eps_t`` take ``eps`` from the
``"sample"`` rng stream (``rngs={"params": k1, "sample": k2}`` at init,
``rngs={"sample": k}`` at apply), or from an explicit ``noise`` argument.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_int, check_positive_int
from vislang_jax.ops import filterbank

# The attention layers' kernels start small, so that every example's first glimpses sit near
# the bias-defined default: a grid centred on the image, spanning it, with overlapping filters.
_ATTENTION_KERNEL_INIT = nn.initializers.variance_scaling(1e-2, "fan_in", "truncated_normal")


class AttentionLayer(nn.Module):
  """A linear layer of ``h^dec`` to the five attention parameters (eq. 21-22) and filterbank.

  It is initialised so that an initial glimpse covers the whole image: the bias gives
  ``g~x = g~y = 0`` (the grid centred on the image), ``delta~ = 1`` (the N centres spanning
  the longer side, from its first pixel to its last), ``gamma = 1``, and a filter standard
  deviation of half the stride (``max(delta, 1) / 2``), so that neighbouring filters overlap
  and together cover every pixel; the kernel starts at 1e-2 of the usual variance.
  """

  height: int
  width: int
  n: int

  @nn.compact
  def __call__(self, h_dec: jax.Array
               ) -> tuple[filterbank.AttentionParams, jax.Array, jax.Array]:
    """[B, dec] -> (parameters, each [B]; fy [B, N, H]; fx [B, N, W])."""
    delta = filterbank.stride_scale(height=self.height, width=self.width, n=self.n)
    log_sigma2 = 2.0 * math.log(max(delta, 1.0) / 2.0)
    bias = jnp.array([0.0, 0.0, log_sigma2, 0.0, 0.0])
    raw = nn.Dense(5, kernel_init=_ATTENTION_KERNEL_INIT,
                   bias_init=lambda key, shape, dtype=jnp.float32: bias.astype(dtype))(h_dec)
    att = filterbank.attention_params(raw, height=self.height, width=self.width, n=self.n)
    fy, fx = filterbank.gaussian_filterbank(att.gx, att.gy, att.sigma2, att.delta, n=self.n,
                                            height=self.height, width=self.width)
    return att, fy, fx


def check_grid_size(name: str, value: Any, *, height: int, width: int) -> int:
  """``value``, the ``N`` of an N x N filterbank grid on a ``height x width`` image, as an
  int; a ValueError naming ``name`` unless it is in ``[1, min(height, width)]``."""
  return check_int(f"{name} (the N of an N x N grid on a {height}x{width} image)", value,
                   low=1, high=min(height, width))


def as_image_batch(x: jax.Array, *, height: int, width: int,
                   channels: int) -> tuple[jax.Array, bool]:
  """Checks a batch of images and gives it a channel axis.

  Args:
    x: [B, H, W] (only when ``channels == 1``) or [B, H, W, C] images.
    height, width, channels: the ``(H, W, C)`` the model was built for.

  Returns:
    ``(images, squeeze)``: ``images`` [B, H, W, C] float32, and whether ``x`` had no channel
    axis (outputs shaped like ``x`` then drop it again).

  Raises:
    ValueError: if ``x`` has another shape.
  """
  image_shape = (height, width, channels)
  squeeze = x.ndim == 3 and channels == 1
  if (x.shape + (1,) if squeeze else x.shape)[1:] != image_shape:
    expected = "[B, H, W] or [B, H, W, C]" if channels == 1 else "[B, H, W, C]"
    raise ValueError(
        f"x must have shape {expected} with (H, W, C) = {image_shape}, got {x.shape}.")
  return jnp.asarray(x[..., None] if squeeze else x, jnp.float32), squeeze


def latent_noise(module: nn.Module, noise: jax.Array | None,
                 shape: tuple[int, int, int]) -> jax.Array:
  """The standard normal ``eps`` [T, B, Z] = ``shape`` of the reparameterised samples.

  ``noise`` when given (its shape checked), else drawn from ``module``'s ``"sample"`` stream.

  Raises:
    ValueError: if ``noise`` does not have shape ``shape``.
  """
  if noise is None:
    return jax.random.normal(module.make_rng("sample"), shape)
  if noise.shape != shape:
    raise ValueError(f"noise must have shape [T, B, Z] = {shape}, got {noise.shape}.")
  return noise


def record_noise(keys: jax.Array, *, glimpses: int, z_size: int) -> jax.Array:
  """Standard normal ``eps`` [T, B, Z] for the ``noise`` argument, one key per example.

  Column ``b`` is drawn from ``keys[b]`` alone, so an example gets the same samples in any
  batch (with ``train.evaluate.record_keys``, in any evaluation and process).

  Args:
    keys: [B, ...] PRNG keys, one per example.
    glimpses: ``T``.
    z_size: ``Z``.
  """
  eps = jax.vmap(lambda key: jax.random.normal(key, (glimpses, z_size)))(keys)
  return jnp.swapaxes(eps, 0, 1)


def zero_lstm_state(batch: int, size: int) -> tuple[jax.Array, jax.Array]:
  """The zero ``(cell, hidden)`` carry, each [batch, size], of an ``nn.OptimizedLSTMCell``."""
  return jnp.zeros((batch, size)), jnp.zeros((batch, size))


def scan_aux(outs: dict[str, Any], squeeze: bool) -> dict[str, Any]:
  """The ``aux`` of a scanned model from its stacked step outputs.

  ``outs["canvas"]`` [T, B, H, W, C] becomes ``aux["canvases"]`` (without the channel axis
  when ``squeeze``); every other entry is kept, except those that are None (a step output
  that a configuration does not have, e.g. ``read`` without read attention).
  """
  canvases = outs.pop("canvas")
  aux = {"canvases": canvases[..., 0] if squeeze else canvases}
  aux.update((key, value) for key, value in outs.items() if value is not None)
  return aux


class FilterbankRead(nn.Module):
  """DRAW's read with attention, eq. (4) and (27): an N x N glimpse of ``x`` and ``x^``.

  Attributes:
    height: image height in pixels.
    width: image width in pixels.
    n: ``N``, the side of the filter grid.
  """

  height: int
  width: int
  n: int

  @nn.compact
  def __call__(self, x: jax.Array, x_hat: jax.Array,
               h: jax.Array) -> tuple[jax.Array, filterbank.AttentionParams]:
    """[B, H, W, C] ``x`` and ``x^``, [B, D] ``h`` -> ([B, 2 N N C] glimpse, parameters [B]).

    The glimpse is ``gamma F_Y x F_X^T`` and ``gamma F_Y x^ F_X^T``, concatenated on the
    channel axis and flattened; the attention parameters are a function of ``h``.
    """
    att, fy, fx = AttentionLayer(self.height, self.width, self.n, name="attention")(h)
    glimpse = filterbank.read(jnp.concatenate([x, x_hat], axis=-1), fy, fx, att.gamma)
    return glimpse.reshape(glimpse.shape[0], -1), att


class FilterbankWrite(nn.Module):
  """DRAW's write with attention, eq. (28)-(29): an N x N patch from ``h`` onto the canvas.

  Attributes:
    height: image height in pixels.
    width: image width in pixels.
    n: ``N``, the side of the written patch.
    channels: image channels ``C``.
  """

  height: int
  width: int
  n: int
  channels: int

  @nn.compact
  def __call__(self, h: jax.Array) -> tuple[jax.Array, filterbank.AttentionParams]:
    """[B, D] ``h`` -> ([B, H, W, C] ``(1 / gamma) F_Y^T w F_X``, parameters each [B]).

    ``w`` [B, N, N, C] is a linear function of ``h`` (eq. 28), and so are the attention
    parameters.
    """
    patch = nn.Dense(self.n * self.n * self.channels, name="patch")(h)
    patch = patch.reshape(h.shape[0], self.n, self.n, self.channels)
    att, fy, fx = AttentionLayer(self.height, self.width, self.n, name="attention")(h)
    return filterbank.write(patch, fy, fx, att.gamma), att


class DRAW(nn.Module):
  """The DRAW network of Gregor et al. (2015), unrolled over ``glimpses`` steps with nn.scan.

  Attributes:
    height: image height ``B`` in pixels.
    width: image width ``A`` in pixels.
    channels: image channels ``C``; ``1`` also accepts [B, H, W] images without a channel axis.
    glimpses: ``T``, the number of read/write steps.
    read_n: ``N`` of the read grid (the read is ``2 read_n^2 C`` numbers: x and x^).
    write_n: ``N`` of the write grid.
    z_size: latent units per glimpse.
    enc_size: encoder LSTM size.
    dec_size: decoder LSTM size.
    read_attention: read through the Gaussian filterbank (True) or read the whole of x and x^
      (False, section 3.1; ``read_n`` is then unused).
    write_attention: write a ``write_n x write_n`` patch through its own filterbank (True) or
      the whole canvas from a linear layer (False; ``write_n`` is then unused). The paper's
      "DRAW without attention" turns both flags off; they are separate so a run can ablate one.
  """

  height: int
  width: int
  channels: int = 1
  glimpses: int = 10
  read_n: int = 2
  write_n: int = 5
  z_size: int = 10
  enc_size: int = 256
  dec_size: int = 256
  read_attention: bool = True
  write_attention: bool = True

  def __post_init__(self):
    for name in ("height", "width", "channels", "glimpses", "z_size", "enc_size", "dec_size"):
      check_positive_int(name, getattr(self, name))
    for name, used in (("read_n", self.read_attention), ("write_n", self.write_attention)):
      if used:
        check_grid_size(name, getattr(self, name), height=self.height, width=self.width)
    super().__post_init__()

  def setup(self):
    self.encoder = nn.OptimizedLSTMCell(self.enc_size)
    self.decoder = nn.OptimizedLSTMCell(self.dec_size)
    self.q_mu = nn.Dense(self.z_size)
    self.q_logsigma = nn.Dense(self.z_size)
    if self.read_attention:
      self.reader = FilterbankRead(self.height, self.width, self.read_n)
    if self.write_attention:
      self.writer = FilterbankWrite(self.height, self.width, self.write_n, self.channels)
    else:
      self.write_canvas = nn.Dense(self.height * self.width * self.channels)

  def _read(self, x: jax.Array, x_hat: jax.Array,
            h_dec: jax.Array) -> tuple[jax.Array, filterbank.AttentionParams | None]:
    """Eq. (4): [B, H, W, C] x and x^, [B, dec] h^dec -> [B, 2 N N C] (or [B, 2 H W C])."""
    if self.read_attention:
      return self.reader(x, x_hat, h_dec)
    return jnp.concatenate([x, x_hat], axis=-1).reshape(x.shape[0], -1), None

  def _write(self, h_dec: jax.Array) -> tuple[jax.Array, filterbank.AttentionParams | None]:
    """Eq. (8)'s write(h^dec_t): [B, dec] -> [B, H, W, C] canvas update."""
    if self.write_attention:
      return self.writer(h_dec)
    update = self.write_canvas(h_dec)
    return update.reshape(h_dec.shape[0], self.height, self.width, self.channels), None

  def _decode_step(self, carry: tuple[jax.Array, Any],
                   z: jax.Array) -> tuple[tuple[jax.Array, Any], dict[str, Any]]:
    """Eq. (7)-(8): one decoder step from the sample ``z`` [B, Z]; ``carry = (c, state)``."""
    canvas, dec_state = carry
    dec_state, h_dec = self.decoder(dec_state, z)
    update, write_att = self._write(h_dec)
    canvas = canvas + update
    return (canvas, dec_state), {"canvas": canvas, "write": write_att}

  def _infer_step(self, carry: tuple[jax.Array, Any, Any], x: jax.Array,
                  eps: jax.Array) -> tuple[tuple[jax.Array, Any, Any], dict[str, Any]]:
    """Eq. (3)-(8): one glimpse; ``carry = (c_{t-1}, encoder state, decoder state)``."""
    canvas, enc_state, dec_state = carry
    h_dec = dec_state[1]
    x_hat = x - jax.nn.sigmoid(canvas)
    r, read_att = self._read(x, x_hat, h_dec)
    enc_state, h_enc = self.encoder(enc_state, jnp.concatenate([r, h_dec], axis=-1))
    mu = self.q_mu(h_enc)
    logsigma = self.q_logsigma(h_enc)
    z = mu + jnp.exp(logsigma) * eps  # reparameterisation
    (canvas, dec_state), out = self._decode_step((canvas, dec_state), z)
    out.update(mu=mu, logsigma=logsigma, z=z, read=read_att)
    return (canvas, enc_state, dec_state), out

  def __call__(self, x: jax.Array, *,
               noise: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """Encodes and redraws ``x`` over ``glimpses`` steps.

    Args:
      x: [B, H, W] (only when ``channels == 1``) or [B, H, W, C] float images in [0, 1].
      noise: optional [T, B, Z] standard normal ``eps`` of the reparameterisation; drawn from
        the ``"sample"`` rng stream when None.

    Returns:
      ``(logits, aux)``: ``logits`` = ``c_T``, the same shape as ``x``, the logits of the
      Bernoulli means ``sigmoid(c_T)``; ``aux`` holds ``canvases`` [T, B, H, W(, C)], every
      ``c_1..c_T`` (the last one equals ``logits``); ``mu``, ``logsigma`` and ``z``
      [T, B, Z], the posterior parameters and the samples drawn from it (``z`` gives the
      ``log p(z)`` and ``log q(z|x)`` terms of ``objectives.draw.iwae_bound_nats``); and,
      when that attention is on, ``read`` and/or ``write``: ``AttentionParams`` with each
      field [T, B] (pixel units, 1-based, see ``ops/filterbank.py``); step ``t`` reads with
      parameters from ``h^dec_{t-1}`` and writes with parameters from ``h^dec_t``.

    Raises:
      ValueError: if ``x`` or ``noise`` has the wrong shape.
    """
    x, squeeze = as_image_batch(x, height=self.height, width=self.width, channels=self.channels)
    batch = x.shape[0]
    noise = latent_noise(self, noise, (self.glimpses, batch, self.z_size))
    carry = (jnp.zeros_like(x), zero_lstm_state(batch, self.enc_size),
             zero_lstm_state(batch, self.dec_size))
    scan = nn.scan(DRAW._infer_step, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(nn.broadcast, 0), length=self.glimpses)
    (canvas, _, _), outs = scan(self, carry, x, noise)
    return canvas[..., 0] if squeeze else canvas, scan_aux(outs, squeeze)

  def generate(self, num_samples: int, glimpses: int | None = None) -> jax.Array:
    """Draws new images with the decoder alone: ``z_t ~ N(0, I)``, eq. (7)-(8).

    Args:
      num_samples: ``S``, the number of images, drawn as one batch.
      glimpses: steps to draw for; ``self.glimpses`` when None.

    Returns:
      [T, S, H, W] (``channels == 1``) or [T, S, H, W, C] canvas logits ``c_1..c_T``, as in
      ``aux["canvases"]``; ``jax.nn.sigmoid`` of them are the Bernoulli means to plot.
    """
    steps = self.glimpses if glimpses is None else glimpses
    check_positive_int("num_samples", num_samples)
    check_positive_int("glimpses", steps)
    z = jax.random.normal(self.make_rng("sample"), (steps, num_samples, self.z_size))
    carry = (jnp.zeros((num_samples, self.height, self.width, self.channels)),
             zero_lstm_state(num_samples, self.dec_size))
    scan = nn.scan(DRAW._decode_step, variable_broadcast="params", split_rngs={"params": False})
    _, outs = scan(self, carry, z)
    return outs["canvas"][..., 0] if self.channels == 1 else outs["canvas"]


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "T"))
def generate(model: DRAW, params: Any, key: jax.Array, num_samples: int,
             T: int | None = None) -> jax.Array:  # noqa: N803 (the paper's T)
  """Jitted ``DRAW.generate``: ``num_samples`` images drawn over ``T`` steps from the prior.

  Args:
    model: the DRAW module (static: its fields define the computation).
    params: its ``"params"`` collection, ``variables["params"]`` (e.g. ``TrainState.params``).
    key: PRNG key for ``z_t ~ N(0, I)``.
    num_samples: ``S`` (static).
    T: steps to draw for (static); ``model.glimpses`` when None.

  Returns:
    [T, S, H, W] or [T, S, H, W, C] canvas logits ``c_1..c_T``; apply ``jax.nn.sigmoid`` for
    images.
  """
  return model.apply({"params": params}, num_samples, T, method=DRAW.generate,
                     rngs={"sample": key})
