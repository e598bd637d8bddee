"""objectives/gan.py against float64 NumPy values computed from the discriminator's
probabilities, hand-derived gradients in the logit, and the GRAN/Goodfellow argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.objectives.gan import (discriminator_loss, generator_loss,
                                        interpolate_embeddings,
                                        matching_aware_discriminator_loss, style_loss)


def _logit(p):
  """``log(p / (1 - p))`` in float64, as float32 logits."""
  p = np.asarray(p, np.float64)
  return np.log(p / (1.0 - p)).astype(np.float32)


P_REAL = np.array([0.8, 0.3, 0.999])
P_FAKE = np.array([0.1, 0.6, 0.5])


def test_discriminator_loss_is_the_cross_entropy_of_eq_1():
  got = discriminator_loss(_logit(P_REAL), _logit(P_FAKE))
  assert got.shape == (3,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, -np.log(P_REAL) - np.log(1.0 - P_FAKE), rtol=1e-5)
  # d/da_real = -(1 - D(x)), d/da_fake = D(G(z)).
  g_real, g_fake = jax.grad(lambda r, f: jnp.sum(discriminator_loss(r, f)), argnums=(0, 1))(
      _logit(P_REAL), _logit(P_FAKE))
  np.testing.assert_allclose(g_real, -(1.0 - P_REAL), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_fake, P_FAKE, rtol=1e-5)


def test_generator_losses_non_saturating_and_minimax():
  got = generator_loss(_logit(P_FAKE))
  np.testing.assert_allclose(got, -np.log(P_FAKE), rtol=1e-5)
  got = generator_loss(_logit(P_FAKE), saturating=True)
  np.testing.assert_allclose(got, np.log(1.0 - P_FAKE), rtol=1e-5)
  assert generator_loss(_logit(P_FAKE)).dtype == jnp.float32


def test_matching_aware_terms_on_a_toy_batch():
  s_r = np.array([0.9, 0.6, 0.2])   # real image, right text
  s_w = np.array([0.3, 0.7, 0.05])  # real image, wrong text
  s_f = np.array([0.1, 0.4, 0.95])  # fake image, right text
  logits = _logit(s_r), _logit(s_w), _logit(s_f)
  want = -np.log(s_r) - (np.log(1.0 - s_w) + np.log(1.0 - s_f)) / 2.0  # Reed Alg. 1
  np.testing.assert_allclose(matching_aware_discriminator_loss(*logits), want, rtol=1e-5)
  grads = jax.grad(lambda r, w, f: jnp.sum(matching_aware_discriminator_loss(r, w, f)),
                   argnums=(0, 1, 2))(*logits)
  np.testing.assert_allclose(grads[0], -(1.0 - s_r), rtol=1e-5)
  np.testing.assert_allclose(grads[1], s_w / 2.0, rtol=1e-5)
  np.testing.assert_allclose(grads[2], s_f / 2.0, rtol=1e-5)
  # The released code's cls_weight: 0 is the plain GAN loss on (right, fake), 1 drops the fake.
  np.testing.assert_allclose(
      matching_aware_discriminator_loss(*logits, wrong_weight=0.0),
      discriminator_loss(logits[0], logits[2]), rtol=1e-6)
  np.testing.assert_allclose(matching_aware_discriminator_loss(*logits, wrong_weight=1.0),
                             -np.log(s_r) - np.log(1.0 - s_w), rtol=1e-5)


def test_saturating_gradient_vanishes_when_fakes_are_rejected():
  """Goodfellow Sec. 3 / GRAN: at D(G(z)) = 1e-3 the minimax loss's gradient in the logit is
  -D = -1e-3, the non-saturating one's -(1 - D) ~ -1."""
  fake = _logit([1e-3, 1e-3])
  sat = jax.grad(lambda a: jnp.sum(generator_loss(a, saturating=True)))(fake)
  non_sat = jax.grad(lambda a: jnp.sum(generator_loss(a)))(fake)
  np.testing.assert_allclose(sat, -1e-3, rtol=1e-4)
  np.testing.assert_allclose(non_sat, -(1.0 - 1e-3), rtol=1e-5)
  assert np.all(np.abs(non_sat) > 900 * np.abs(sat))


def test_finite_values_and_gradients_at_extreme_logits():
  big = np.array([100.0, -100.0], np.float32)
  small = -big
  losses = {
      "discriminator": lambda a, b: discriminator_loss(a, b),
      "generator": lambda a, b: generator_loss(a) + generator_loss(b),
      "saturating": lambda a, b: generator_loss(a, saturating=True) + generator_loss(
          b, saturating=True),
      "matching": lambda a, b: matching_aware_discriminator_loss(a, b, a),
  }
  for name, loss in losses.items():
    value = loss(big, small)
    grads = jax.grad(lambda a, b: jnp.sum(loss(a, b)), argnums=(0, 1))(big, small)
    assert np.all(np.isfinite(value)), name
    assert all(np.all(np.isfinite(g)) for g in grads), name
  # Confidently right costs ~0; confidently wrong costs ~|logit| with unit gradient.
  np.testing.assert_allclose(discriminator_loss(big, small), [0.0, 200.0], atol=1e-5)
  np.testing.assert_allclose(generator_loss(big), [0.0, 100.0], atol=1e-5)
  np.testing.assert_allclose(generator_loss(big, saturating=True), [-100.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(jax.grad(lambda a: jnp.sum(generator_loss(a)))(big), [0.0, -1.0],
                             atol=1e-6)


def test_interpolation_endpoints_and_per_pair_beta():
  rng = np.random.default_rng(0)
  t1 = rng.normal(size=(3, 4)).astype(np.float32)
  t2 = rng.normal(size=(3, 4)).astype(np.float32)
  np.testing.assert_allclose(interpolate_embeddings(t1, t2, beta=1.0), t1, rtol=1e-6)
  np.testing.assert_allclose(interpolate_embeddings(t1, t2, beta=0.0), t2, rtol=1e-6)
  np.testing.assert_allclose(interpolate_embeddings(t1, t2), (t1 + t2) / 2, rtol=1e-6)
  beta = np.array([1.0, 0.0, 0.25], np.float32)
  want = np.stack([t1[0], t2[1], 0.25 * t1[2] + 0.75 * t2[2]])
  np.testing.assert_allclose(interpolate_embeddings(t1, t2, beta=jnp.asarray(beta)), want,
                             rtol=1e-6, atol=1e-7)
  traced = jax.jit(lambda b: interpolate_embeddings(t1, t2, beta=b))(beta)
  np.testing.assert_allclose(traced, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("beta", [-0.1, 1.1, float("nan"), True, np.array([0.5, 1.5, 0.0])])
def test_beta_outside_the_unit_interval_is_rejected(beta):
  t = np.zeros((3, 2), np.float32)
  with pytest.raises(ValueError, match="beta must"):
    interpolate_embeddings(t, t, beta=beta)


def test_style_loss_value_and_gradients():
  z = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
  z_hat = np.array([[0.5, -1.0, 0.5], [1.0, 2.0, -2.0]], np.float32)
  np.testing.assert_allclose(style_loss(z, z_hat), [0.25 + 1.0, 1.0 + 4.0 + 4.0], rtol=1e-6)
  g_z, g_hat = jax.grad(lambda a, b: jnp.sum(style_loss(a, b)), argnums=(0, 1))(z, z_hat)
  np.testing.assert_array_equal(g_z, 0.0)  # z is the target
  np.testing.assert_allclose(g_hat, 2.0 * (z_hat - z), rtol=1e-6)


def test_jit_and_vmap_over_batches_match_eager():
  rng = np.random.default_rng(1)
  a, b, c = (rng.normal(size=(2, 5)).astype(np.float32) * 3 for _ in range(3))
  calls = [
      (discriminator_loss, (a, b)),
      (generator_loss, (a,)),
      (lambda x: generator_loss(x, saturating=True), (a,)),
      (matching_aware_discriminator_loss, (a, b, c)),
      (lambda x, y: style_loss(x, y), (a[:, None], b[:, None])),
      (lambda x, y: interpolate_embeddings(x, y, beta=0.3), (a[:, None], b[:, None])),
  ]
  for fn, args in calls:
    eager = np.stack([fn(*(x[i] for x in args)) for i in range(2)])
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(*args), eager, rtol=1e-6, atol=1e-6)


def test_named_shape_errors():
  with pytest.raises(ValueError, match=r"real_logits, fake_logits must share one shape \[B\]"):
    discriminator_loss(np.zeros(3), np.zeros(4))
  with pytest.raises(ValueError, match=r"real_logits, fake_logits must have shape \[B\], "
                     r"got \(3, 1\)"):
    discriminator_loss(np.zeros((3, 1)), np.zeros((3, 1)))
  with pytest.raises(ValueError, match=r"fake_logits must have shape \[B\], got \(2, 2\)"):
    generator_loss(np.zeros((2, 2)))
  with pytest.raises(ValueError, match="real_wrong_logits"):
    matching_aware_discriminator_loss(np.zeros(3), np.zeros(2), np.zeros(3))
  with pytest.raises(ValueError, match=r"wrong_weight must be a finite float in \[0, 1\]"):
    matching_aware_discriminator_loss(np.zeros(3), np.zeros(3), np.zeros(3), wrong_weight=2.0)
  with pytest.raises(ValueError, match="saturating must be a bool"):
    generator_loss(np.zeros(3), saturating="yes")
  with pytest.raises(ValueError, match=r"t1, t2 must share one shape \[B, D\]"):
    interpolate_embeddings(np.zeros((3, 4)), np.zeros((3, 5)))
  with pytest.raises(ValueError, match=r"beta must be a float or have shape \[B\]"):
    interpolate_embeddings(np.zeros((3, 4)), np.zeros((3, 4)), beta=np.full((2,), 0.5))
  with pytest.raises(ValueError, match=r"z, z_hat must share one shape \[B, Z\]"):
    style_loss(np.zeros((2, 3)), np.zeros((2, 4)))
