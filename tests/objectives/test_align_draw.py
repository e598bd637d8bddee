"""Tests for vislang_jax.objectives.align_draw against SciPy densities and DRAW's objective."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vislang_jax.objectives import align_draw as objectives
from vislang_jax.objectives import draw as draw_objectives

# Jitted with XLA's backend optimisations off: for these tiny arrays compiling is the cost.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
gaussian_kl_nats = _jit(objectives.gaussian_kl_nats)
gaussian_nll_nats = _jit(objectives.gaussian_nll_nats)
align_draw_loss = _jit(objectives.align_draw_loss, static_argnames="output")


def _latents(rng, shape=(3, 2, 4)):
  return (rng.normal(size=shape), rng.uniform(-1.0, 0.5, size=shape),
          rng.normal(scale=0.7, size=shape), rng.uniform(-0.8, 0.8, size=shape))


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def test_gaussian_kl_equals_a_monte_carlo_estimate_with_scipy_densities():
  rng = np.random.default_rng(0)
  q_mu, q_logsigma, p_mu, p_logsigma = _latents(rng)
  got = gaussian_kl_nats(*_f32(q_mu, q_logsigma, p_mu, p_logsigma))
  assert got.shape == (2,)
  # E_q[log q(z) - log p(z)], summed over steps and units, from 100k samples of q.
  samples = 100_000
  z = q_mu + np.exp(q_logsigma) * rng.standard_normal((samples,) + q_mu.shape)
  log_ratio = (stats.norm.logpdf(z, q_mu, np.exp(q_logsigma))
               - stats.norm.logpdf(z, p_mu, np.exp(p_logsigma))).sum(axis=(1, 3))  # [S, B]
  estimate = log_ratio.mean(0)
  standard_error = log_ratio.std(0) / np.sqrt(samples)
  assert np.all(np.abs(got - estimate) < 4 * standard_error), (got, estimate, standard_error)


def test_gaussian_kl_against_standard_normal_kl_and_its_invariants():
  rng = np.random.default_rng(1)
  q_mu, q_logsigma, p_mu, p_logsigma = _f32(*_latents(rng))
  zeros = jnp.zeros_like(q_mu)
  np.testing.assert_allclose(gaussian_kl_nats(q_mu, q_logsigma, zeros, zeros),
                             draw_objectives.kl_to_standard_normal_nats(q_mu, q_logsigma),
                             rtol=1e-5)
  np.testing.assert_allclose(gaussian_kl_nats(p_mu, p_logsigma, p_mu, p_logsigma), 0.0,
                             atol=1e-6)
  assert bool(jnp.all(gaussian_kl_nats(q_mu, q_logsigma, p_mu, p_logsigma) > 0.0))
  # KL is invariant to a shared shift and scale of both Gaussians (it is a divergence of
  # distributions, not of parameter values).
  shift, log_scale = 1.5, 0.3
  np.testing.assert_allclose(
      gaussian_kl_nats(q_mu * np.exp(log_scale) + shift, q_logsigma + log_scale,
                       p_mu * np.exp(log_scale) + shift, p_logsigma + log_scale),
      gaussian_kl_nats(q_mu, q_logsigma, p_mu, p_logsigma), rtol=1e-5)


def test_gaussian_nll_matches_scipy_with_per_channel_log_sigma():
  rng = np.random.default_rng(2)
  logits = rng.normal(scale=2.0, size=(2, 3, 4, 3))
  x = rng.uniform(size=logits.shape)
  logsigma = np.array([-1.0, 0.0, 0.5])
  expected = -stats.norm.logpdf(x, 1 / (1 + np.exp(-logits)), np.exp(logsigma))
  got = gaussian_nll_nats(*_f32(logits, x, logsigma))
  np.testing.assert_allclose(got, expected.reshape(2, -1).sum(-1), rtol=1e-5)
  # A scalar log sigma is the same as that value on every channel.
  np.testing.assert_allclose(gaussian_nll_nats(*_f32(logits, x, -0.5)),
                             gaussian_nll_nats(*_f32(logits, x, np.full(3, -0.5))), rtol=1e-6)


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_loss_is_reconstruction_plus_kl(output):
  rng = np.random.default_rng(3)
  latents = _f32(*_latents(rng))
  logits, x = _f32(rng.normal(size=(2, 5, 5, 3)), rng.uniform(size=(2, 5, 5, 3)) < 0.5)
  x_logsigma = jnp.array([-0.5, 0.0, 0.2]) if output == "gaussian" else None
  loss, metrics = align_draw_loss(logits, x, *latents, output=output, x_logsigma=x_logsigma)
  recon = (draw_objectives.bernoulli_nll_nats(logits, x) if output == "bernoulli"
           else objectives.gaussian_nll_nats(logits, x, x_logsigma))
  np.testing.assert_allclose(metrics["recon_nats"], recon, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl_nats"], objectives.gaussian_kl_nats(*latents),
                             rtol=1e-6)
  np.testing.assert_allclose(loss, recon + metrics["kl_nats"], rtol=1e-6)
  assert loss.shape == (2,)


def test_loss_gradient_is_finite_and_reaches_the_prior():
  rng = np.random.default_rng(4)
  latents = _f32(*_latents(rng))
  logits, x = _f32(rng.normal(size=(2, 4, 4)), rng.uniform(size=(2, 4, 4)) < 0.5)
  grads = _jit(jax.grad(lambda *a: objectives.align_draw_loss(logits, x, *a)[0].sum(),
                        argnums=(0, 1, 2, 3)))(*latents)
  for g in grads:
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0.0


def test_bad_arguments_raise():
  z = jnp.zeros((3, 2, 4))
  logits = jnp.zeros((2, 4, 4, 3))
  with pytest.raises(ValueError, match=r"output must be one of .*got 'poisson'"):
    objectives.align_draw_loss(logits, logits, z, z, z, z, output="poisson")
  with pytest.raises(ValueError, match=r"x_logsigma must be given exactly when .*None"):
    objectives.align_draw_loss(logits, logits, z, z, z, z, output="gaussian")
  with pytest.raises(ValueError, match=r"x_logsigma .*'bernoulli'.*\(3,\)"):
    objectives.align_draw_loss(logits, logits, z, z, z, z, x_logsigma=jnp.zeros(3))
  with pytest.raises(ValueError, match=r"x_logsigma must broadcast to .*\(2, 4, 4, 3\).*\(2,\)"):
    objectives.align_draw_loss(logits, logits, z, z, z, z, output="gaussian",
                               x_logsigma=jnp.zeros(2))
  with pytest.raises(ValueError, match=r"q_mu must have shape \[T, B, Z\] with B = .*2.*"
                                       r"\(3, 5, 4\)"):
    objectives.align_draw_loss(logits, logits, jnp.zeros((3, 5, 4)), z, z, z)
  with pytest.raises(ValueError, match=r"must share one shape \[T, B, Z\].*'p_mu': \(3, 2, 5\)"):
    objectives.gaussian_kl_nats(z, z, jnp.zeros((3, 2, 5)), z)
