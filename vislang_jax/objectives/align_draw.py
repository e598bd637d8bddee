"""alignDRAW's variational objective (Mansimov et al., 2016, section 3.3).

Mansimov, Parisotto, Ba, Salakhutdinov, "Generating Images from Captions with Attention",
ICLR 2016. The model is trained to maximise a variational lower bound on
``log P(x | y)``; the loss is its negative, in nats, per example:

    -L = E_Q[-log P(x | y, Z_1:T)]
         + KL(Q(Z_1 | x, y) || P(Z_1))
         + sum_{t=2..T} KL(Q(Z_t | Z_1:t-1, y, x) || P(Z_t | Z_1:t-1, y)),

estimated with one reparameterised sample ``Z_1:T ~ Q``: the reconstruction term uses the
canvas drawn with that sample, each KL is exact (both distributions are diagonal Gaussians)
given the posterior and prior parameters computed along that sample's trajectory. Unlike
DRAW's loss (``objectives/draw.py``) the prior is not ``N(0, I)`` but the learned
``P(Z_t | Z_1:t-1, y) = N(mu(h^gen_{t-1}), sigma(h^gen_{t-1}))``; the model returns its
parameters for every step, ``P(Z_1)`` included (``aux["p_mu"][0]``).

Shapes: ``B`` examples, ``T`` steps, ``Z`` latent units per step; latents are laid out as the
model returns them, ``[T, B, Z]``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_choice, check_same_shape
from vislang_jax.objectives.draw import bernoulli_nll_nats

OUTPUTS = ("bernoulli", "gaussian")  # P(x | y, Z) for binary or colour images


def gaussian_kl_nats(q_mu: jax.Array, q_logsigma: jax.Array, p_mu: jax.Array,
                     p_logsigma: jax.Array) -> jax.Array:
  """``sum_t KL(N(q_mu_t, q_sigma_t^2) || N(p_mu_t, p_sigma_t^2))`` in closed form, in nats.

  Per latent unit, ``KL = log(p_sigma / q_sigma) + (q_sigma^2 + (q_mu - p_mu)^2) /
  (2 p_sigma^2) - 1/2``, written with log standard deviations only (no logarithm is taken),
  then summed over steps and units. With ``p = N(0, I)`` it is
  ``objectives.draw.kl_to_standard_normal_nats``.

  Args:
    q_mu: [T, B, Z] float, means of the posterior ``Q(Z_t | ...)``.
    q_logsigma: [T, B, Z] float, its log standard deviations.
    p_mu: [T, B, Z] float, means of the prior ``P(Z_t | Z_1:t-1, y)``.
    p_logsigma: [T, B, Z] float, its log standard deviations.

  Returns:
    [B] float.

  Raises:
    ValueError: unless the four arrays share one shape [T, B, Z].
  """
  check_same_shape("[T, B, Z]", q_mu=q_mu, q_logsigma=q_logsigma, p_mu=p_mu,
                   p_logsigma=p_logsigma)
  variance_ratio = jnp.exp(2.0 * (q_logsigma - p_logsigma))  # q_sigma^2 / p_sigma^2
  scaled_gap = jnp.square((q_mu - p_mu) * jnp.exp(-p_logsigma))  # (q_mu - p_mu)^2 / p_sigma^2
  kl = p_logsigma - q_logsigma + 0.5 * (variance_ratio + scaled_gap) - 0.5
  return jnp.sum(kl, axis=(0, 2))


def gaussian_nll_nats(logits: jax.Array, x: jax.Array, x_logsigma: jax.Array) -> jax.Array:
  """``-log N(x; sigmoid(logits), sigma^2)`` summed over pixels, in nats (colour images).

  ``0.5 ((x - sigmoid(l)) / sigma)^2 + log sigma + 0.5 log(2 pi)`` per pixel: the negative
  log-density of a diagonal Gaussian whose mean is the canvas squashed to [0, 1]. A density,
  so it can be negative when ``sigma`` is small.

  Args:
    logits: [B, ...] float, the final canvas ``c_T``.
    x: [B, ...] float in [0, 1], same shape.
    x_logsigma: float ``log sigma``, broadcastable to ``x`` without changing its shape: a
      scalar, one per channel ([C], the model's ``aux["x_logsigma"]``) or one per pixel.

  Returns:
    [B] float.
  """
  if logits.shape != x.shape or logits.ndim < 1:
    raise ValueError(
        f"logits and x must have the same shape [B, ...], got {logits.shape} and {x.shape}.")
  logsigma = jnp.asarray(x_logsigma)
  try:
    broadcast = np.broadcast_shapes(logsigma.shape, x.shape)
  except ValueError:
    broadcast = None
  if broadcast != x.shape:
    raise ValueError(f"x_logsigma must broadcast to x's shape {x.shape} (a scalar, [C] or a "
                     f"per-pixel array), got shape {logsigma.shape}.")
  scaled = (x - jax.nn.sigmoid(logits)) * jnp.exp(-logsigma)
  nll = 0.5 * jnp.square(scaled) + logsigma + 0.5 * math.log(2 * math.pi)
  return jnp.sum(nll.reshape(nll.shape[0], -1), axis=-1)


def align_draw_loss(logits: jax.Array, x: jax.Array, q_mu: jax.Array, q_logsigma: jax.Array,
                    p_mu: jax.Array, p_logsigma: jax.Array, *, output: str = "bernoulli",
                    x_logsigma: jax.Array | None = None
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The negative variational bound on ``log P(x | y)`` per example (section 3.3), in nats.

  ``loss = -log P(x | y, Z_1:T) + sum_t KL(Q(Z_t | .) || P(Z_t | .))`` for the model's one
  posterior sample; its batch mean is the single-sample estimate the paper trains with.

  Args:
    logits: [B, H, W] or [B, H, W, C] float, the final canvas ``c_T``.
    x: the images, same shape as ``logits``, in [0, 1].
    q_mu: [T, B, Z] float, ``aux["q_mu"]``.
    q_logsigma: [T, B, Z] float, ``aux["q_logsigma"]``.
    p_mu: [T, B, Z] float, ``aux["p_mu"]``.
    p_logsigma: [T, B, Z] float, ``aux["p_logsigma"]``.
    output: ``"bernoulli"`` (``P(x | y, Z)`` a Bernoulli with mean ``sigmoid(c_T)``,
      ``objectives.draw.bernoulli_nll_nats``) or ``"gaussian"`` (a Gaussian with that mean,
      ``gaussian_nll_nats``).
    x_logsigma: the Gaussian's log standard deviation, required for ``"gaussian"`` (the
      model's learned ``aux["x_logsigma"]`` [C], or a fixed value) and not accepted for
      ``"bernoulli"``.

  Returns:
    ``(loss [B], metrics)`` with ``metrics = {"recon_nats": [B] -log P(x | y, Z),
    "kl_nats": [B] the summed KL}``.

  Raises:
    ValueError: for an unknown ``output``, ``x_logsigma`` missing or superfluous, or
      mismatched shapes.
  """
  check_choice("output", output, OUTPUTS)
  if (output == "gaussian") != (x_logsigma is not None):
    raise ValueError(f"x_logsigma must be given exactly when output == 'gaussian', got "
                     f"output={output!r} and x_logsigma="
                     f"{None if x_logsigma is None else jnp.shape(x_logsigma)}.")
  if q_mu.ndim != 3 or q_mu.shape[1] != logits.shape[0]:
    raise ValueError(
        f"q_mu must have shape [T, B, Z] with B = logits.shape[0] = {logits.shape[0]}, got "
        f"{q_mu.shape}.")
  if output == "bernoulli":
    recon = bernoulli_nll_nats(logits, x)
  else:
    recon = gaussian_nll_nats(logits, x, x_logsigma)
  kl = gaussian_kl_nats(q_mu, q_logsigma, p_mu, p_logsigma)
  return recon + kl, {"recon_nats": recon, "kl_nats": kl}
