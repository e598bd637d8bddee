"""DRAW's variational objective and importance-weighted bound (Gregor et al., 2015).

Gregor et al., "DRAW: A Recurrent Neural Network For Image Generation", ICML 2015, section 2.2,
equations (9)-(12): the loss is the negative variational bound ``L = L^x + L^z`` on
``-log p(x)``, in nats. Burda, Grosse, Salakhutdinov, "Importance Weighted Autoencoders",
ICLR 2016, equation (8), gives the tighter ``K``-sample bound used to evaluate the model.

Shapes: ``B`` examples, ``T`` glimpses, ``Z`` latent units per glimpse, ``K`` importance
samples; the latents of a whole sequence are laid out as the DRAW model returns them,
``[T, B, Z]``. Every function returns per-example values; nothing takes ``log`` of a
probability that can be zero (log-densities are formed from ``log sigma`` and
``log_sigmoid`` directly).
"""

import math

import jax
import jax.numpy as jnp

from vislang_jax.checks import check_same_shape


def bernoulli_nll_nats(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Reconstruction loss ``L^x = -log D(x | c_T)`` summed over pixels (eq. 9), in nats.

  ``D`` is a Bernoulli with mean ``sigmoid(logits)``:
  ``-[x log sigmoid(l) + (1 - x) log sigmoid(-l)]``, with ``log sigmoid`` evaluated stably
  for any ``|l|``. ``x`` may hold binary pixels or probabilities in [0, 1].

  Args:
    logits: [B, ...] float, the final canvas ``c_T``.
    x: [B, ...] float in [0, 1], same shape as ``logits``.

  Returns:
    [B] float, the negative log-likelihood of each example.
  """
  if logits.shape != x.shape or logits.ndim < 1:
    raise ValueError(
        f"logits and x must have the same shape [B, ...], got {logits.shape} and {x.shape}.")
  nll = -(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits))
  return jnp.sum(nll.reshape(nll.shape[0], -1), axis=-1)


def kl_to_standard_normal_nats(mu: jax.Array, logsigma: jax.Array) -> jax.Array:
  """Latent loss ``L^z = sum_t KL(N(mu_t, sigma_t^2) || N(0, I))`` in closed form (eq. 10-11).

  ``0.5 sum_{t,z} (mu^2 + sigma^2 - 2 log sigma - 1)``, written with ``log sigma`` so no
  logarithm of ``sigma`` is ever taken.

  Args:
    mu: [T, B, Z] float, means of ``Q(z_t | h_t^enc)``.
    logsigma: [T, B, Z] float, log standard deviations of ``Q``.

  Returns:
    [B] float.
  """
  check_same_shape("[T, B, Z]", mu=mu, logsigma=logsigma)
  kl = 0.5 * (jnp.square(mu) + jnp.exp(2.0 * logsigma) - 2.0 * logsigma - 1.0)
  return jnp.sum(kl, axis=(0, 2))


def draw_loss(logits: jax.Array, x: jax.Array, mu: jax.Array,
              logsigma: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The DRAW loss ``L = L^x + L^z`` per example (eq. 12), in nats.

  Its batch mean is the single-sample Monte Carlo estimate of the negative variational bound
  the paper trains with: ``L^x`` uses the one canvas drawn with the reparameterised sample,
  ``L^z`` is exact given ``mu`` and ``logsigma``.

  Args:
    logits: [B, H, W] or [B, H, W, C] float, the final canvas ``c_T``.
    x: the data, same shape as ``logits``, in [0, 1].
    mu: [T, B, Z] float, ``aux["mu"]`` of the DRAW model.
    logsigma: [T, B, Z] float, ``aux["logsigma"]``.

  Returns:
    ``(loss [B], metrics)`` with ``metrics = {"recon_nats": [B] L^x, "kl_nats": [B] L^z}``.
  """
  if mu.ndim != 3 or mu.shape[1] != logits.shape[0]:
    raise ValueError(
        f"mu must have shape [T, B, Z] with B = logits.shape[0] = {logits.shape[0]}, got "
        f"{mu.shape}.")
  recon = bernoulli_nll_nats(logits, x)
  kl = kl_to_standard_normal_nats(mu, logsigma)
  return recon + kl, {"recon_nats": recon, "kl_nats": kl}


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """``log p(z_1..T) = sum_t log N(z_t; 0, I)``, the DRAW prior (section 2.2).

  Args:
    z: [T, B, Z] float, ``aux["z"]`` of the DRAW model.

  Returns:
    [B] float, in nats.
  """
  check_same_shape("[T, B, Z]", z=z)
  return jnp.sum(-0.5 * jnp.square(z) - 0.5 * math.log(2 * math.pi), axis=(0, 2))


def diag_gaussian_log_prob(z: jax.Array, mu: jax.Array, logsigma: jax.Array) -> jax.Array:
  """``log Q(z_1..T | x) = sum_t log N(z_t; mu_t, diag(sigma_t^2))`` (eq. 1 and 4).

  DRAW's posterior factorises over glimpses given the encoder states, which depend on the
  earlier samples: ``mu_t`` and ``logsigma_t`` are those computed along the same sampled
  trajectory ``z_1..T``, as the DRAW model returns them.

  Args:
    z: [T, B, Z] float, the samples.
    mu: [T, B, Z] float, means of ``Q``.
    logsigma: [T, B, Z] float, log standard deviations of ``Q``.

  Returns:
    [B] float, in nats.
  """
  check_same_shape("[T, B, Z]", z=z, mu=mu, logsigma=logsigma)
  scaled = (z - mu) * jnp.exp(-logsigma)
  log_prob = -0.5 * jnp.square(scaled) - logsigma - 0.5 * math.log(2 * math.pi)
  return jnp.sum(log_prob, axis=(0, 2))


def iwae_bound_nats(log_px_given_z: jax.Array, log_pz: jax.Array,
                    log_qz: jax.Array) -> jax.Array:
  """The K-sample importance-weighted lower bound on ``log p(x)`` (Burda et al., eq. 8).

  ``log (1/K) sum_k p(x | z^k) p(z^k) / q(z^k | x) = logsumexp_k(log w_k) - log K``, with
  ``z^k ~ q(z | x)`` independent. For ``K = 1`` it is the single-sample ELBO estimate
  ``log p(x|z) + log p(z) - log q(z|x)``; its expectation rises with ``K`` towards
  ``log p(x)``. It is a bound on the log-likelihood, not a loss: ``-iwae_bound_nats`` is the
  NLL estimate reported in papers.

  For DRAW: run the model K times on the same batch with independent ``"sample"`` keys and
  stack ``-bernoulli_nll_nats(logits, x)``, ``standard_normal_log_prob(aux["z"])`` and
  ``diag_gaussian_log_prob(aux["z"], aux["mu"], aux["logsigma"])`` along a new axis 0.

  Args:
    log_px_given_z: [K, B] float, ``log p(x | z^k)``.
    log_pz: [K, B] float, ``log p(z^k)``.
    log_qz: [K, B] float, ``log q(z^k | x)``.

  Returns:
    [B] float, the bound in nats.
  """
  check_same_shape("[K, B]", log_px_given_z=log_px_given_z, log_pz=log_pz, log_qz=log_qz)
  log_weights = log_px_given_z + log_pz - log_qz
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])
