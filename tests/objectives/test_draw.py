"""Tests for vislang_jax.objectives.draw against NumPy/SciPy references and known bounds."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vislang_jax.objectives import draw as objectives

# Tests call the objectives jitted (eager dispatch compiles every primitive apart), with XLA's
# backend optimisations off: for these tiny arrays compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
bernoulli_nll_nats = _jit(objectives.bernoulli_nll_nats)
kl_to_standard_normal_nats = _jit(objectives.kl_to_standard_normal_nats)
standard_normal_log_prob = _jit(objectives.standard_normal_log_prob)
diag_gaussian_log_prob = _jit(objectives.diag_gaussian_log_prob)
draw_loss = _jit(objectives.draw_loss)
iwae_bound_nats = _jit(objectives.iwae_bound_nats)


def test_bernoulli_nll_matches_float64_reference_including_large_logits():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=5.0, size=(3, 4, 5))
  logits[0, 0, :] = [-1e3, -80.0, 0.0, 80.0, 1e3]
  x = (rng.uniform(size=logits.shape) < 0.5).astype(np.float64)
  x[1] = rng.uniform(size=(4, 5))  # probabilities in [0, 1] are valid targets too
  # log(1 + e^l) - x l, per pixel, in float64.
  expected = (np.logaddexp(0.0, logits) - x * logits).reshape(3, -1).sum(-1)
  got = bernoulli_nll_nats(jnp.asarray(logits, jnp.float32), jnp.asarray(x, jnp.float32))
  assert got.shape == (3,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_bernoulli_nll_and_its_gradient_are_finite_at_saturated_logits():
  logits = jnp.array([[-1e4, -100.0, 100.0, 1e4]])
  for x in (jnp.zeros((1, 4)), jnp.ones((1, 4))):
    value, grad = _jit(jax.value_and_grad(
        lambda l: objectives.bernoulli_nll_nats(l, x).sum()))(logits)
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
  # A confidently wrong pixel costs |l| nats, a confidently right one nothing.
  np.testing.assert_allclose(bernoulli_nll_nats(logits, jnp.zeros((1, 4))),
                             [1e4 + 100.0], rtol=1e-6)


def test_kl_matches_numpy_formula_and_monte_carlo():
  rng = np.random.default_rng(1)
  mu = rng.normal(size=(3, 2, 4))
  logsigma = rng.uniform(-1.0, 0.5, size=(3, 2, 4))
  sigma = np.exp(logsigma)
  formula = (0.5 * (mu**2 + sigma**2 - 2 * logsigma - 1)).sum(axis=(0, 2))
  got = kl_to_standard_normal_nats(jnp.asarray(mu, jnp.float32),
                                              jnp.asarray(logsigma, jnp.float32))
  np.testing.assert_allclose(got, formula, rtol=1e-5)
  # E_q[log q(z) - log p(z)] with SciPy's densities, 100k samples.
  z = mu + sigma * rng.standard_normal((100_000,) + mu.shape)
  log_ratio = stats.norm.logpdf(z, mu, sigma) - stats.norm.logpdf(z)
  monte_carlo = log_ratio.sum(axis=(1, 3)).mean(0)
  np.testing.assert_allclose(got, monte_carlo, rtol=0.03)


def test_log_probs_match_scipy():
  rng = np.random.default_rng(2)
  z, mu = rng.normal(size=(2, 3, 2, 4))
  logsigma = rng.uniform(-2.0, 1.0, size=(3, 2, 4))
  as32 = lambda a: jnp.asarray(a, jnp.float32)
  np.testing.assert_allclose(standard_normal_log_prob(as32(z)),
                             stats.norm.logpdf(z).sum(axis=(0, 2)), rtol=1e-5)
  np.testing.assert_allclose(diag_gaussian_log_prob(as32(z), as32(mu), as32(logsigma)),
                             stats.norm.logpdf(z, mu, np.exp(logsigma)).sum(axis=(0, 2)),
                             rtol=1e-5)


def test_terms_stay_finite_for_extreme_log_sigma():
  mu = jnp.zeros((1, 1, 2))
  logsigma = jnp.array([[[-60.0, 30.0]]])  # sigma^2 underflows to 0 / is 1e26
  assert bool(jnp.isfinite(kl_to_standard_normal_nats(mu, logsigma)).all())
  assert bool(jnp.isfinite(diag_gaussian_log_prob(mu, mu, logsigma)).all())
  grad = _jit(jax.grad(lambda s: objectives.diag_gaussian_log_prob(mu, mu, s).sum()))(logsigma)
  assert bool(jnp.isfinite(grad).all())


def test_draw_loss_is_reconstruction_plus_kl_per_example():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  x = jnp.asarray(rng.uniform(size=(2, 4, 4, 3)) < 0.5, jnp.float32)
  mu, logsigma = jnp.asarray(rng.normal(size=(2, 5, 2, 3)) * 0.5, jnp.float32)
  loss, metrics = draw_loss(logits, x, mu, logsigma)
  assert loss.shape == (2,) and set(metrics) == {"recon_nats", "kl_nats"}
  np.testing.assert_allclose(metrics["recon_nats"], bernoulli_nll_nats(logits, x))
  np.testing.assert_allclose(metrics["kl_nats"],
                             kl_to_standard_normal_nats(mu, logsigma))
  np.testing.assert_allclose(loss, metrics["recon_nats"] + metrics["kl_nats"], rtol=1e-6)


# A toy latent-variable model with a known marginal: p(z) = N(0, 1), p(x | z) = N(x; z, 1),
# so p(x) = N(x; 0, 2) and the exact posterior is N(x / 2, 1 / 2). Latents are [T=1, B, Z=1].

def _toy_log_weights(rng, x, q_mu, q_sigma, k, batch):
  """[K, B] log p(x | z), log p(z) and log q(z | x) for z ~ q = N(q_mu, q_sigma^2)."""
  z = q_mu + q_sigma * rng.standard_normal((k, batch))
  log_px_given_z = jnp.asarray(stats.norm.logpdf(x, z, 1.0), jnp.float32)
  latents = jnp.asarray(z.reshape(1, k * batch, 1), jnp.float32)  # [T, K B, Z]
  full = lambda v: jnp.full(latents.shape, v, jnp.float32)
  log_pz = standard_normal_log_prob(latents).reshape(k, batch)
  log_qz = diag_gaussian_log_prob(latents, full(q_mu), full(math.log(q_sigma))).reshape(k, batch)
  return log_px_given_z, log_pz, log_qz


def test_iwae_with_one_sample_is_the_elbo_sample_estimate():
  log_px_given_z, log_pz, log_qz = _toy_log_weights(np.random.default_rng(4), 1.5, 0.2, 0.8,
                                                    k=1, batch=6)
  np.testing.assert_allclose(iwae_bound_nats(log_px_given_z, log_pz, log_qz),
                             (log_px_given_z + log_pz - log_qz)[0], rtol=1e-6)


def test_iwae_is_exact_with_the_true_posterior():
  x = 1.5
  bound = iwae_bound_nats(
      *_toy_log_weights(np.random.default_rng(5), x, x / 2, math.sqrt(0.5), k=3, batch=4))
  np.testing.assert_allclose(bound, stats.norm.logpdf(x, 0.0, math.sqrt(2.0)), rtol=1e-5)


def test_iwae_bound_tightens_with_k_towards_log_px():
  x, batch = 1.5, 4000
  rng = np.random.default_rng(6)
  elbo = iwae_bound_nats(*_toy_log_weights(rng, x, 0.2, 0.8, k=1, batch=batch))
  iwae = iwae_bound_nats(*_toy_log_weights(rng, x, 0.2, 0.8, k=20, batch=batch))
  log_px = stats.norm.logpdf(x, 0.0, math.sqrt(2.0))
  # The mismatched q leaves an ELBO gap of ~0.3 nats; 20 samples close most of it. Standard
  # errors of the means are ~0.01 and ~0.001.
  assert float(elbo.mean()) + 0.1 < float(iwae.mean()) <= log_px + 0.005
  assert float(iwae.mean()) > log_px - 0.05


@pytest.mark.parametrize("call,match", [
    (lambda: objectives.bernoulli_nll_nats(jnp.zeros((2, 3)), jnp.zeros((2, 4))),
     r"logits and x .*\(2, 3\) and \(2, 4\)"),
    (lambda: objectives.kl_to_standard_normal_nats(jnp.zeros((3, 2, 4)), jnp.zeros((3, 2))),
     r"mu, logsigma .*\[T, B, Z\].*'logsigma': \(3, 2\)"),
    (lambda: objectives.draw_loss(jnp.zeros((2, 4, 4)), jnp.zeros((2, 4, 4)),
                                  jnp.zeros((3, 5, 2)), jnp.zeros((3, 5, 2))),
     r"mu .*B = logits.shape\[0\] = 2.*\(3, 5, 2\)"),
    (lambda: objectives.diag_gaussian_log_prob(jnp.zeros((3, 2, 4)), jnp.zeros((3, 2, 4)),
                                               jnp.zeros((3, 2, 5))), r"'logsigma': \(3, 2, 5\)"),
    (lambda: objectives.iwae_bound_nats(jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros((4,))),
     r"\[K, B\].*'log_qz': \(4,\)"),
    (lambda: objectives.standard_normal_log_prob(jnp.zeros((2, 3))),
     r"z must have shape \[T, B, Z\], got \(2, 3\)"),
    (lambda: objectives.iwae_bound_nats(jnp.zeros((4,)), jnp.zeros((4,)), jnp.zeros((4,))),
     r"log_px_given_z, log_pz, log_qz must have shape \[K, B\], got \(4,\)"),
])
def test_value_errors_name_argument_expected_and_given(call, match):
  with pytest.raises(ValueError, match=match):
    call()
