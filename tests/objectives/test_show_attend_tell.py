"""Tests for vislang_jax.objectives.show_attend_tell: NumPy references and exact gradients.

The REINFORCE test is a toy problem with a known answer: one step, a categorical over L
locations with logits theta, and a caption likelihood ``log p(y | s) = r(s)`` that depends on
the drawn location only, so ``d E_s[r(s)] / d theta`` is available in closed form and the
surrogate's per-sample gradients must average to ``lambda_r`` times it. The hard-attention
surrogate's gradient is also checked against a float64 NumPy transcription of the released
code's update (kelvinxu/arctic-captions ``capgen.py``, ``train()``: the ``known_grads`` on
``alphas`` and the ``baseline_time`` update), chained through the softmax by hand.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.objectives import show_attend_tell as sat

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
soft_attention_loss = _jit(sat.soft_attention_loss, static_argnames="penalty")
hard_attention_loss = _jit(
    sat.hard_attention_loss,
    static_argnames=("entropy_weight", "reinforce_weight", "baseline_decay"))

B, T, V, L = 3, 6, 7, 5


def _batch(seed=0):
  """Random logits, targets, a ragged mask (lengths 6, 4, 1) and attention weights."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(B, T, V)).astype(np.float32)
  targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
  mask = np.arange(T)[None] < np.array([[6], [4], [1]])
  alpha = rng.dirichlet(np.ones(L), size=(B, T)).astype(np.float32)
  return logits, targets, mask, alpha


def _nll64(logits, targets, mask):
  x = np.asarray(logits, np.float64)
  log_probs = x - x.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  return -(picked * mask).sum(1)


def test_soft_loss_is_masked_nll_plus_doubly_stochastic_penalty():
  logits, targets, mask, alpha = _batch()
  loss, metrics = soft_attention_loss(logits, targets, mask, alpha, penalty=0.5)
  nll = _nll64(logits, targets, mask)
  penalty = ((1.0 - (alpha * mask[..., None]).sum(1)) ** 2).sum(-1)  # eq. (14), real t only
  np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
  np.testing.assert_allclose(metrics["num_tokens"], [6, 4, 1])
  np.testing.assert_allclose(metrics["nll_per_token"], nll / [6, 4, 1], rtol=1e-5)
  np.testing.assert_allclose(metrics["attention_penalty"], penalty, rtol=1e-5)
  np.testing.assert_allclose(loss, nll + 0.5 * penalty, rtol=1e-5)
  # A single real step: sum_t alpha_t is alpha_0, whatever the padded steps hold.
  np.testing.assert_allclose(metrics["attention_penalty"][2], ((1 - alpha[2, 0]) ** 2).sum(),
                             rtol=1e-5)


def test_padding_changes_neither_the_loss_nor_gets_a_gradient():
  logits, targets, mask, alpha = _batch(1)
  # Garbage at the pad positions: huge logits, other targets, other attention.
  logits2, targets2, alpha2 = logits.copy(), targets.copy(), alpha.copy()
  logits2[~mask] = 1e4
  targets2[~mask] = 0
  alpha2[~mask] = np.eye(L, dtype=np.float32)[0]
  for given in ((logits, targets, alpha), (logits2, targets2, alpha2)):
    loss, _ = soft_attention_loss(given[0], given[1], mask, given[2])
    np.testing.assert_allclose(loss, soft_attention_loss(logits, targets, mask, alpha)[0],
                               rtol=1e-6)
  grads = _jit(jax.grad(lambda l, a: jnp.sum(sat.soft_attention_loss(
      l, targets2, mask, a)[0]), argnums=(0, 1)))(logits2, alpha2)
  for grad in grads:
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
    assert np.all(np.abs(np.asarray(grad)[mask]).sum(-1) > 0)
  _, metrics, _ = hard_attention_loss(logits2, targets2, mask, np.full((B, T), -1e3, np.float32),
                                      np.where(mask, 0.0, 1e3).astype(np.float32),
                                      jnp.float32(0.0), entropy_weight=1.0)
  np.testing.assert_allclose(metrics["nll"], _nll64(logits, targets, mask), rtol=1e-5)
  np.testing.assert_allclose(metrics["log_prob_locations"], -1e3 * mask.sum(1))
  np.testing.assert_allclose(metrics["entropy"], 0.0)


def test_doubly_stochastic_penalty_is_zero_when_attention_sums_to_one_over_time():
  # Over L = 5 real steps, attention to location t at step t covers each location once.
  alpha = np.eye(L, dtype=np.float32)[None].repeat(2, 0)
  mask = np.ones((2, L), bool)
  mask[1, -1] = False  # the second caption misses a step: location 4 is never attended
  np.testing.assert_allclose(sat.doubly_stochastic_penalty(alpha, mask), [0.0, 1.0])


def _toy_problem(seed=0, n=20_000):
  """Theta, rewards r(s) < 0 and n locations drawn from softmax(theta)."""
  rng = np.random.default_rng(seed)
  theta = rng.normal(size=L)
  reward = -rng.uniform(0.5, 3.0, size=L)
  p = np.exp(theta) / np.exp(theta).sum()
  locations = rng.choice(L, size=n, p=p)
  return theta, reward, p, locations


def _per_sample_grads(theta, reward, locations, baseline, *, entropy_weight,
                      reinforce_weight):
  """The gradients of the per-example surrogate w.r.t. theta, one row per drawn location."""
  n = locations.shape[0]
  r = reward[locations]
  # Two words; log p(y = 0 | s) = r(s): logits [r, log(1 - e^r)] normalise exactly.
  logits = jnp.asarray(np.stack([r, np.log1p(-np.exp(r))], -1)[:, None], jnp.float32)
  targets = jnp.zeros((n, 1), jnp.int32)
  mask = jnp.ones((n, 1), bool)

  def surrogate(theta):
    log_alpha = jax.nn.log_softmax(theta)
    entropy = -jnp.sum(jnp.exp(log_alpha) * log_alpha)
    loss, _, _ = sat.hard_attention_loss(
        logits, targets, mask, log_alpha[locations][:, None], jnp.full((n, 1), entropy),
        jnp.float32(baseline), entropy_weight=entropy_weight,
        reinforce_weight=reinforce_weight)
    return loss

  return np.asarray(_jit(jax.jacfwd(surrogate))(jnp.asarray(theta, jnp.float32)), np.float64)


@pytest.mark.parametrize("use_baseline, reinforce_weight", [(False, 1.0), (True, 0.1)])
def test_reinforce_gradient_is_unbiased_on_a_toy_problem(use_baseline, reinforce_weight):
  theta, reward, p, locations = _toy_problem()
  entropy_weight = 0.1
  baseline = float(p @ reward) if use_baseline else 0.0
  kwargs = dict(entropy_weight=entropy_weight, reinforce_weight=reinforce_weight)
  grads = -_per_sample_grads(theta, reward, locations, baseline, **kwargs)
  # One token, so the per-token reward is r(s). d/dtheta_j of lambda_r E[r] + lambda_e H is
  # lambda_r p_j (r_j - E[r]) - lambda_e p_j (log p_j + H).
  entropy = -(p * np.log(p)).sum()
  exact = (reinforce_weight * p * (reward - p @ reward)
           - entropy_weight * p * (np.log(p) + entropy))
  mean = grads.mean(0)
  standard_error = grads.std(0, ddof=1) / np.sqrt(len(grads))
  assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean, exact, standard_error)
  assert np.abs(exact).max() > 10 * standard_error.max()  # the test has power
  if use_baseline:  # the baseline centres the reward: much smaller variance, same mean
    no_baseline = -_per_sample_grads(theta, reward, locations, 0.0, **kwargs)
    assert grads.std(0).max() < 0.5 * no_baseline.std(0).max()


def test_reward_and_baseline_are_constants_of_the_surrogate():
  logits, targets, mask, _ = _batch(2)
  rng = np.random.default_rng(3)
  log_prob = np.log(rng.uniform(0.1, 1.0, size=(B, T))).astype(np.float32)
  entropy = rng.uniform(0.0, 1.5, size=(B, T)).astype(np.float32)
  sampled = np.array([True, False, True])
  baseline = jnp.float32(-2.0)  # nats per token
  kwargs = dict(entropy_weight=0.3, sampled=sampled)  # reinforce_weight: 0.1

  def total(logits, log_prob, entropy, baseline):
    loss, _, _ = sat.hard_attention_loss(logits, targets, mask, log_prob, entropy,
                                         baseline, **kwargs)
    return jnp.sum(loss)

  g_logits, g_log_prob, g_entropy, g_baseline = _jit(jax.grad(total, argnums=(0, 1, 2, 3)))(
      logits, log_prob, entropy, baseline)
  # The likelihood term alone reaches the logits: the reward is held fixed.
  g_nll = _jit(jax.grad(lambda l: jnp.sum(sat.caption_nll(l, targets, mask)[0])))(logits)
  np.testing.assert_allclose(g_logits, g_nll, rtol=1e-6, atol=1e-7)
  assert float(g_baseline) == 0.0
  reward = -_nll64(logits, targets, mask) / mask.sum(1)  # per token, <eos> included
  np.testing.assert_allclose(g_log_prob, -0.1 * ((reward + 2.0) * sampled)[:, None] * mask,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(g_entropy, -0.3 * mask, rtol=1e-6)  # every example, real steps
  loss, metrics, _ = hard_attention_loss(logits, targets, mask, log_prob, entropy, baseline,
                                         **kwargs)
  np.testing.assert_allclose(metrics["reward"], reward, rtol=1e-5)
  np.testing.assert_allclose(metrics["advantage"], (reward + 2.0) * sampled, rtol=1e-5)
  expected = (_nll64(logits, targets, mask)
              - 0.1 * (reward + 2.0) * sampled * (log_prob * mask).sum(1)
              - 0.3 * (entropy * mask).sum(1))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_baseline_is_a_moving_average_of_the_sampled_examples_reward():
  logits, targets, mask, _ = _batch(4)
  zeros = np.zeros((B, T), np.float32)
  reward = -_nll64(logits, targets, mask) / mask.sum(1)  # lengths 6, 4, 1
  b = jnp.float32(-2.0)
  _, _, new = hard_attention_loss(logits, targets, mask, zeros, zeros, b, entropy_weight=0.0)
  np.testing.assert_allclose(new, 0.9 * -2.0 + 0.1 * reward.mean(), rtol=1e-5)
  sampled = np.array([False, True, True])
  _, _, new = hard_attention_loss(logits, targets, mask, zeros, zeros, b, entropy_weight=0.0,
                                  baseline_decay=0.5, sampled=sampled)
  np.testing.assert_allclose(new, 0.5 * -2.0 + 0.5 * reward[1:].mean(), rtol=1e-5)
  _, _, new = hard_attention_loss(logits, targets, mask, zeros, zeros, b, entropy_weight=0.0,
                                  sampled=np.zeros(B, bool))
  assert float(new) == -2.0  # nothing sampled: the baseline keeps its value


def _softmax64(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_hard_gradient_matches_the_released_code_update():
  """jax.grad of the batch-mean surrogate = arctic-captions' update, in float64 NumPy.

  capgen.py (``RL_sumCost=True``) differentiates ``cost.mean()`` (the batch mean of the
  summed NLL) with ``known_grads={alphas: (baseline_time - masked_cost.mean(0))[None, :,
  None] / 10. * (-alphas_sample / alphas) + alpha_entropy_c * (tensor.log(alphas) + 1)}``,
  per example and not divided by the batch size; its batches hold captions of one length
  (every mask entry 1, as here). With ``reinforce_weight = B / 10``, ``entropy_weight = B
  alpha_entropy_c`` and ``b = -baseline_time`` the surrogate must give the same gradient with
  respect to the attention logits and the word logits, and the same baseline update
  ``baseline_time * 0.9 + 0.1 * masked_cost.mean()``. An example whose context was the
  expectation has ``alphas_sample = alphas`` there.
  """
  rng = np.random.default_rng(5)
  att_logits = rng.normal(scale=1.5, size=(B, T, L))
  logits = rng.normal(scale=2.0, size=(B, T, V))
  targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
  alpha = _softmax64(att_logits)
  locations = np.array([[rng.choice(L, p=a) for a in row] for row in alpha])
  mask = np.ones((B, T), bool)
  sampled = np.array([True, True, False])
  baseline_time, alpha_entropy_c = 1.7, 0.002  # the code's baseline is on the cost scale

  def surrogate(att_logits, logits, sampled):
    log_alpha = jax.nn.log_softmax(att_logits)
    log_prob = jnp.take_along_axis(log_alpha, jnp.asarray(locations)[..., None], -1)[..., 0]
    entropy = -jnp.sum(jnp.exp(log_alpha) * log_alpha, -1)
    loss, _, new = sat.hard_attention_loss(
        logits, targets, mask, log_prob, entropy, jnp.float32(-baseline_time),
        entropy_weight=B * alpha_entropy_c, reinforce_weight=B / 10, sampled=sampled)
    return jnp.mean(loss), new

  (g_att, g_logits), _ = _jit(jax.grad(surrogate, argnums=(0, 1), has_aux=True))(
      jnp.asarray(att_logits, jnp.float32), jnp.asarray(logits, jnp.float32), sampled)

  # The code, transcribed: masked_cost [B, T] (time second here), per-token mean over time.
  probs = _softmax64(logits)
  masked_cost = -np.log(np.take_along_axis(probs, targets[..., None], -1)[..., 0]) * mask
  one_hot = np.eye(L)[locations]
  alphas_sample = np.where(sampled[:, None, None], one_hot, alpha)
  known = ((baseline_time - masked_cost.mean(1))[:, None, None] / 10. * (-alphas_sample / alpha)
           + alpha_entropy_c * (np.log(alpha) + 1))  # d cost / d alphas
  expected_att = alpha * (known - (alpha * known).sum(-1, keepdims=True))  # softmax's VJP
  expected_logits = (probs - np.eye(V)[targets]) * mask[..., None] / B  # of cost.mean()
  np.testing.assert_allclose(g_att, expected_att, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_logits, expected_logits, rtol=1e-4, atol=1e-7)
  assert np.abs(expected_att[:2]).max() > 10 * np.abs(expected_att[2]).max()  # REINFORCE there
  # Every example sampled (the code's coin is per batch): the same baseline update.
  _, new = _jit(surrogate)(jnp.asarray(att_logits, jnp.float32),
                           jnp.asarray(logits, jnp.float32), np.ones(B, bool))
  np.testing.assert_allclose(-float(new), baseline_time * 0.9 + 0.1 * masked_cost.mean(),
                             rtol=1e-5)


def test_bad_arguments_raise_value_errors_naming_them():
  logits, targets, mask, alpha = _batch()
  zeros = np.zeros((B, T), np.float32)
  b = jnp.float32(0.0)
  cases = [
      (lambda: sat.soft_attention_loss(logits[0], targets, mask, alpha),
       r"logits must have shape \[B, T, V\]"),
      (lambda: sat.soft_attention_loss(logits, targets[:, 1:], mask, alpha),
       r"targets must have shape \[B, T\]"),
      (lambda: sat.soft_attention_loss(logits, targets, mask[:2], alpha),
       r"mask must have shape \[B, T\]"),
      (lambda: sat.soft_attention_loss(logits, targets, mask, alpha[:, :2]),
       r"alpha must have shape \[B, T, L\]"),
      (lambda: sat.soft_attention_loss(logits, np.full_like(targets, V), mask, alpha),
       r"targets must hold ids in \[0, vocab_size\) = \[0, 7\), got ids in \[7, 7\]"),
      (lambda: sat.soft_attention_loss(logits, targets.astype(np.float32), mask, alpha),
       "targets must hold integer"),
      (lambda: sat.soft_attention_loss(logits, targets, mask, alpha, penalty=-1.0),
       "penalty must be a finite float >= 0.0, got -1.0"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros[:, :2], zeros, b,
                                       entropy_weight=0.0),
       r"log_prob_locations must have shape \[B, T\]"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros, zeros[..., None],
                                       b, entropy_weight=0.0),
       r"entropy must have shape \[B, T\]"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros, zeros,
                                       jnp.zeros(B), entropy_weight=0.0),
       "baseline must be a scalar"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros, zeros, b,
                                       entropy_weight=0.0, sampled=np.ones(2, bool)),
       r"sampled must have shape \[B\]"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros, zeros, b,
                                       entropy_weight=0.0, baseline_decay=1.0),
       r"baseline_decay must be a finite float in \[0.0, 1.0\), got 1.0"),
      (lambda: sat.hard_attention_loss(logits, targets, mask, zeros, zeros, b,
                                       entropy_weight=float("nan")),
       "entropy_weight must be a finite float"),
  ]
  for call, match in cases:
    with pytest.raises(ValueError, match=match):
      call()
