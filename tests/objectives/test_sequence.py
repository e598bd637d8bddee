"""Tests for vislang_jax.objectives.sequence against exact enumeration and finite differences.

The toy model is a two-unit tanh RNN over V = 5 ids (0 pad, 1 bos, 2 eos, 3 and 4 words)
implementing the sequence-model contract. With T = 3 there are 125 token sequences, so
``E[r] = sum_w p(w) r(w)`` and its exact gradient are computed by enumerating them, and the
REINFORCE estimator's exact expectation is ``sum_w stop_gradient(p(w)) grad L(w)`` over the same
sequences, each forced through the teacher-forced rollout (whose logits equal those of a
rollout that sampled it: both feed ``E[w_t]``). A Monte-Carlo run of ``sequence_loss`` itself
must land near the exact gradient too, and for a fixed key it equals the forced computation.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.metrics.bleu import sentence_bleu
from vislang_jax.objectives import sequence as seq

# XLA's backend optimisations off: for a model this small compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

V, M, H, T = 5, 2, 3, 3
BOS, EOS = 1, 2
REFERENCE = np.array([3, 4, 2], np.int32)  # the words "3 4" then <eos>


def _params(seed=0):
  rng = np.random.default_rng(seed)
  shapes = {"E": (V, M), "W": (H, H), "U": (M, H), "b": (H,), "O": (H, V), "c": (V,),
            "h0": (H,)}
  return {name: jnp.asarray(rng.normal(scale=1.0, size=shape), jnp.float32)
          for name, shape in shapes.items()}


def _step(params, inputs, state, *, dropout_key=None):
  """The contract's decode_step_embedded: h' = tanh(h W + x U + b), o = h' O + c."""
  assert dropout_key is None
  hidden = jnp.tanh(state @ params["W"] + inputs @ params["U"] + params["b"])
  return hidden @ params["O"] + params["c"], hidden, {}


def _model(params, batch):
  """step_fn, embedding and init_state of the toy model for `batch` sequences."""
  return (functools.partial(_step, params), params["E"],
          jnp.broadcast_to(jnp.tanh(params["h0"]), (batch, H)))


def _baseline_params(seed=1):
  rng = np.random.default_rng(seed)
  return {"weight": jnp.asarray(rng.normal(size=(T, H)), jnp.float32),
          "bias": jnp.asarray(rng.normal(size=(T,)), jnp.float32)}


def _forced(params, tokens):
  """The teacher-forced rollout that feeds `tokens` [N, T] (no randomness)."""
  step_fn, embedding, state = _model(params, tokens.shape[0])
  return seq.rollout(None, step_fn, embedding, state, tokens, jnp.zeros(tokens.shape, bool),
                     bos_id=BOS, eos_id=EOS, feed="soft", top_k=1,
                     baseline_features=lambda s: s)


def _all_sequences(prefix=()):
  suffixes = itertools.product(range(V), repeat=T - len(prefix))
  return jnp.asarray([tuple(prefix) + s for s in suffixes], jnp.int32)


def _log_prob(logits, tokens, positions):
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]
  return jnp.sum(jnp.where(positions, log_p, 0.0), axis=1)


def _reward(tokens, lengths):
  n = tokens.shape[0]
  refs = jnp.broadcast_to(jnp.asarray(REFERENCE), (n, 1, T))
  return seq.bleu_reward(tokens, lengths, refs, jnp.full((n, 1), T), eos_id=EOS)


def _targets(n):
  return jnp.broadcast_to(jnp.asarray(REFERENCE), (n, T))


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


# ---------------------------------------------------------------------------- XENT, rollout


def test_xent_matches_numpy_float64():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, V)).astype(np.float32)
  targets = rng.integers(0, V, size=(3, 4)).astype(np.int32)
  mask = np.arange(4)[None] < np.array([[4], [2], [0]])
  z = logits.astype(np.float64)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  expected = -(np.take_along_axis(log_p, targets[..., None], -1)[..., 0] * mask).sum(1)
  np.testing.assert_allclose(seq.xent_loss(logits, targets, mask), expected, rtol=1e-5)


def test_teacher_forced_rollout_is_the_manual_loop():
  params = _params()
  tokens = jnp.asarray([[3, 4, 2], [2, 0, 0]], jnp.int32)
  out = _forced(params, tokens)
  state = jnp.broadcast_to(jnp.tanh(params["h0"]), (2, H))
  inputs = jnp.broadcast_to(params["E"][BOS], (2, M))
  for t in range(T):
    logits, state, _ = _step(params, inputs, state)
    np.testing.assert_allclose(out.logits[:, t], logits, rtol=1e-6)
    np.testing.assert_allclose(out.features[:, t], state, rtol=1e-6)
    inputs = params["E"][tokens[:, t]]
  np.testing.assert_array_equal(out.tokens, tokens)
  np.testing.assert_array_equal(out.lengths, [3, 1])  # up to and including the first <eos>


def test_sampled_rollout_equals_forcing_its_own_tokens():
  params = _params()
  step_fn, embedding, state = _model(params, 64)
  out = seq.rollout(jax.random.PRNGKey(0), step_fn, embedding, state, _targets(64),
                    jnp.ones((64, T), bool), bos_id=BOS, eos_id=EOS)
  forced = _forced(params, out.tokens)
  np.testing.assert_allclose(out.logits, forced.logits, rtol=1e-6)
  assert len({tuple(row) for row in np.asarray(out.tokens)}) > 10  # it does sample


def test_samples_follow_the_model_distribution():
  params = _params()
  n = 20000
  step_fn, embedding, state = _model(params, n)
  out = jax.jit(lambda key: seq.rollout(key, step_fn, embedding, state, _targets(n),
                                        jnp.ones((n, T), bool), bos_id=BOS, eos_id=EOS))(
                                            jax.random.PRNGKey(1))
  sequences = _all_sequences()
  forced = _forced(params, sequences)
  probs = np.exp(_log_prob(forced.logits, sequences, jnp.ones((len(sequences), T), bool)))
  codes = np.asarray(out.tokens) @ (V ** np.arange(T)[::-1])
  freq = np.bincount(codes, minlength=V ** T) / n
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
  np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(probs.max() / n))


# ---------------------------------------------------------------------------- REINFORCE


def _expected_reward(params, prefix=()):
  """E[r] over the sequences that start with `prefix`, given that prefix, by enumeration."""
  sequences = _all_sequences(prefix)
  forced = _forced(params, sequences)
  sampled = jnp.broadcast_to(jnp.arange(T) >= len(prefix), sequences.shape)
  probs = jnp.exp(_log_prob(forced.logits, sequences, sampled))
  return jnp.sum(probs * _reward(sequences, forced.lengths))


def _expected_estimator(params, baseline_params, s):
  """The exact expectation of MIXER's gradient with prefix REFERENCE[:s] (s=0: REINFORCE)."""
  sequences = _all_sequences(tuple(REFERENCE[:s]))
  sampled = jnp.broadcast_to(jnp.arange(T) >= s, sequences.shape)

  def loss(p, b):
    forced = _forced(p, sequences)
    positions = sampled & seq.live_positions(forced.lengths, T)
    reward = _reward(sequences, forced.lengths)
    surrogate, baseline_loss, _ = seq.reinforce_loss(
        forced.logits, sequences, positions, reward, seq.linear_baseline(b, forced.features))
    xent = seq.xent_loss(forced.logits, _targets(len(sequences)), ~sampled)
    weight = jax.lax.stop_gradient(jnp.exp(_log_prob(forced.logits, sequences, sampled)))
    return jnp.sum(weight * (xent + surrogate + baseline_loss))

  return jax.grad(loss)(params, baseline_params)


def test_reinforce_estimator_expectation_is_the_exact_gradient():
  params, baseline_params = _params(), _baseline_params()
  exact = _jit(jax.grad(_expected_reward))(params)
  expected = _jit(functools.partial(_expected_estimator, s=0))(params, baseline_params)
  assert float(jnp.linalg.norm(_flat(exact))) > 1e-2
  np.testing.assert_allclose(_flat(expected), -_flat(exact), atol=2e-6)


@pytest.mark.parametrize("s", [1, 2])
def test_mixer_expectation_is_prefix_xent_minus_reward_gradient(s):
  params, baseline_params = _params(2), _baseline_params()
  prefix = tuple(REFERENCE[:s])

  @_jit
  def exact_gradient(p):
    def objective(q):
      forced = _forced(q, _targets(1))
      prefix_xent = seq.xent_loss(forced.logits, _targets(1), jnp.arange(T)[None] < s)[0]
      return prefix_xent - _expected_reward(q, prefix)
    return jax.grad(objective)(p)

  exact = exact_gradient(params)
  expected = _jit(functools.partial(_expected_estimator, s=s))(params, baseline_params)
  np.testing.assert_allclose(_flat(expected), _flat(exact), atol=2e-6)


def _sequence_loss(params, baseline_params, key, *, regime, n, **kwargs):
  step_fn, embedding, state = _model(params, n)
  return seq.sequence_loss(key, regime=regime, step_fn=step_fn, embedding=embedding,
                           init_state=state, targets=_targets(n),
                           mask=jnp.ones((n, T), bool), bos_id=BOS, eos_id=EOS,
                           baseline_params=baseline_params, baseline_features=lambda h: h,
                           **kwargs)


@pytest.mark.parametrize("regime,s", [("reinforce", 0), ("mixer", 1)])
def test_sequence_loss_monte_carlo_matches_the_exact_gradient(regime, s):
  params, baseline_params = _params(2), _baseline_params()
  n = 40000

  @_jit
  def grad(p):
    loss = lambda q: jnp.mean(_sequence_loss(q, baseline_params, jax.random.PRNGKey(3),
                                             regime=regime, n=n, xent_steps=s)[0])
    return jax.grad(loss)(p)

  expected = _flat(_jit(functools.partial(_expected_estimator, s=s))(params, baseline_params))
  error = jnp.linalg.norm(_flat(grad(params)) - expected) / jnp.linalg.norm(expected)
  assert float(error) < 0.05, float(error)


@_jit
def _loss_and_forced_terms(params, baseline_params, s, key):
  """sequence_loss(mixer, s) and the same terms computed from its sample, forced; with grads."""
  n = 16
  step_fn, embedding, state = _model(params, n)
  from_model = jnp.broadcast_to(jnp.arange(T) >= s, (n, T))
  # sequence_loss splits its key into the coins and the rollout's key.
  out = seq.rollout(jax.random.split(key)[1], step_fn, embedding, state, _targets(n),
                    from_model, bos_id=BOS, eos_id=EOS)
  positions = from_model & seq.live_positions(out.lengths, T)

  def loss(p, b):
    total, metrics = _sequence_loss(p, b, key, regime="mixer", n=n, xent_steps=s)
    return jnp.sum(total), metrics

  def forced_loss(p, b):
    forced = _forced(p, out.tokens)
    reward = _reward(out.tokens, forced.lengths)
    surrogate, baseline_loss, _ = seq.reinforce_loss(
        forced.logits, out.tokens, positions, reward, seq.linear_baseline(b, forced.features))
    xent = seq.xent_loss(forced.logits, _targets(n), ~from_model)
    return jnp.sum(xent + surrogate + baseline_loss), {"xent": xent, "reinforce": surrogate}

  grad = lambda f: jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, baseline_params)
  return out.tokens, positions, grad(loss), grad(forced_loss)


@pytest.mark.parametrize("s", [0, 1, 2, 3])
def test_sequence_loss_equals_the_forced_terms_of_its_own_sample(s):
  """The MIXER boundary: t < s ground truth and XENT only, t >= s samples and REINFORCE only."""
  tokens, positions, ((_, metrics), grads), ((_, forced), forced_grads) = (
      _loss_and_forced_terms(_params(2), _baseline_params(), s, jax.random.PRNGKey(4)))
  np.testing.assert_array_equal(tokens[:, :s], _targets(16)[:, :s])
  assert not bool(jnp.any(positions[:, :s]))
  np.testing.assert_allclose(metrics["xent"], forced["xent"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["reinforce"], forced["reinforce"], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(metrics["xent_tokens"], np.full(16, s))
  np.testing.assert_array_equal(metrics["sampled_tokens"], positions.sum(1))
  np.testing.assert_allclose(_flat(grads), _flat(forced_grads), rtol=1e-5, atol=1e-6)


def test_baseline_and_policy_gradients_are_separate():
  params, baseline_params = _params(2), _baseline_params()
  key = jax.random.PRNGKey(5)

  @_jit
  def terms(p, b):
    grad = lambda name: jax.grad(
        lambda p, b: jnp.sum(_sequence_loss(p, b, key, regime="reinforce", n=32)[1][name]),
        argnums=(0, 1))(p, b)
    return grad("reinforce"), grad("baseline_loss")

  (policy_p, policy_b), (base_p, base_b) = terms(params, baseline_params)
  assert float(jnp.abs(_flat(policy_b)).max()) == 0.0  # the advantage is a constant
  assert float(jnp.abs(_flat(policy_p)).max()) > 0.0
  assert float(jnp.abs(_flat(base_p)).max()) == 0.0  # the baseline's input state is a constant
  # d/dw sum_t (b_t - r)^2 / 2 = sum_t (b_t - r) h_t, by hand.
  step_fn, embedding, state = _model(params, 32)
  out = seq.rollout(jax.random.split(key)[1], step_fn, embedding, state, _targets(32),
                    jnp.ones((32, T), bool), bos_id=BOS, eos_id=EOS,
                    baseline_features=lambda h: h)
  features = np.asarray(out.features, np.float64)
  live = np.asarray(seq.live_positions(out.lengths, T))
  reward = np.asarray(_reward(out.tokens, out.lengths), np.float64)
  b = np.einsum("bth,th->bt", features, baseline_params["weight"]) + baseline_params["bias"]
  error = np.where(live, b - reward[:, None], 0.0)
  np.testing.assert_allclose(base_b["weight"], np.einsum("bt,bth->th", error, features),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(base_b["bias"], error.sum(0), rtol=1e-4, atol=1e-5)


def test_bleu_reward_strips_eos_and_stops_at_the_length():
  tokens = jnp.asarray([[3, 4, 2, 3], [3, 4, 2, 0], [4, 3, 3, 3]], jnp.int32)
  lengths = jnp.asarray([3, 3, 4])
  refs = jnp.broadcast_to(jnp.asarray([3, 4, 2, 0]), (3, 1, 4))
  reward = seq.bleu_reward(tokens, lengths, refs, jnp.full((3, 1), 3), eos_id=EOS)
  expected = sentence_bleu(jnp.asarray([[3, 4, 0, 0], [3, 4, 0, 0], [4, 3, 3, 3]]),
                           jnp.asarray([2, 2, 4]), refs, jnp.full((3, 1), 2))
  np.testing.assert_allclose(reward, expected)
  np.testing.assert_allclose(reward[:2], [1.0, 1.0])


# ---------------------------------------------------------------------------- DAD, E2E


def test_dad_feeds_samples_without_gradient_through_the_draw():
  params = _params(3)
  n, key = 256, jax.random.PRNGKey(6)
  targets = _targets(n)
  from_model = seq.model_choices(jax.random.PRNGKey(7), regime="dad", shape=(n, T),
                                 probability=0.5)
  assert abs(float(jnp.mean(from_model)) - 0.5) < 0.06

  def dad(p):
    step_fn, embedding, state = _model(p, n)
    out = seq.rollout(key, step_fn, embedding, state, targets, from_model, bos_id=BOS,
                      eos_id=EOS)
    return jnp.sum(seq.xent_loss(out.logits, targets, jnp.ones((n, T), bool))), out.tokens

  (_, tokens), grads = _jit(jax.value_and_grad(dad, has_aux=True))(params)
  np.testing.assert_array_equal(np.where(from_model, 0, tokens), np.where(from_model, 0, targets))
  assert bool(jnp.any(jnp.where(from_model, tokens != targets, False)))

  def teacher_forced_on_the_same_inputs(p):
    out = _forced(p, tokens)
    return jnp.sum(seq.xent_loss(out.logits, targets, jnp.ones((n, T), bool)))

  forced_grads = _jit(jax.grad(teacher_forced_on_the_same_inputs))(params)
  np.testing.assert_allclose(_flat(grads), _flat(forced_grads), rtol=1e-5, atol=1e-6)


def test_dad_probability_schedule():
  schedule = jax.jit(functools.partial(seq.dad_probability, start=0.0, end=0.75,
                                       anneal_steps=100))
  np.testing.assert_allclose([schedule(s) for s in (0, 50, 100, 500)], [0.0, 0.375, 0.75, 0.75])
  assert float(seq.dad_probability(0, start=0.2, end=0.6, anneal_steps=0)) == pytest.approx(0.6)


def test_top_k_weights_are_the_renormalised_softmax():
  logits = np.array([[0.3, -1.0, 2.0, 0.1, 1.5]], np.float32)
  weights = np.asarray(seq.top_k_weights(jnp.asarray(logits), k=2))
  z = np.exp(np.float64([2.0, 1.5]))
  np.testing.assert_allclose(weights[0], [0, 0, z[0] / z.sum(), 0, z[1] / z.sum()], rtol=1e-6)
  np.testing.assert_allclose(seq.top_k_weights(jnp.asarray(logits), k=V)[0],
                             jax.nn.softmax(logits[0]), rtol=1e-6)


def test_e2e_gradient_matches_finite_differences():
  params = _params(4)
  n, k = 4, 2

  def loss(p):
    return jnp.sum(_sequence_loss(p, None, jax.random.PRNGKey(8), regime="e2e", n=n,
                                  probability=1.0, top_k=k)[0])

  grads = _jit(jax.grad(loss))(params)
  loss = _jit(loss)
  direction = jax.tree.map(
      lambda x, key: jax.random.normal(key, x.shape),
      params, dict(zip(params, jax.random.split(jax.random.PRNGKey(9), len(params)))))
  eps = 1e-3
  shifted = lambda sign: jax.tree.map(lambda x, d: x + sign * eps * d, params, direction)
  numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
  analytic = jnp.vdot(_flat(grads), _flat(direction))
  np.testing.assert_allclose(analytic, numeric, rtol=2e-3)


# ---------------------------------------------------------------------------- schedules, errors


def test_mixer_schedule_follows_algorithm_1():
  schedule = jax.jit(functools.partial(seq.mixer_xent_steps, max_len=10, xent_steps=100,
                                       mixed_steps=50, delta=3))
  steps = [0, 99, 100, 149, 150, 200, 250, 299, 300, 10_000]
  np.testing.assert_array_equal([int(schedule(s)) for s in steps],
                                [10, 10, 7, 7, 4, 1, 0, 0, 0, 0])
  seq.check_mixer_schedule(max_len=10, xent_steps=100, mixed_steps=50, delta=3, num_steps=101)


@pytest.mark.parametrize("kwargs,name", [
    ({"delta": 0}, "delta"), ({"xent_steps": 200}, "xent_steps"),
    ({"xent_steps": 199}, None), ({"mixed_steps": 0}, "mixed_steps")])
def test_mixer_schedule_that_never_reaches_reinforce_is_an_error(kwargs, name):
  args = dict(max_len=10, xent_steps=100, mixed_steps=50, delta=3, num_steps=200) | kwargs
  if name is None:
    seq.check_mixer_schedule(**args)
  else:
    with pytest.raises(ValueError, match=name):
      seq.check_mixer_schedule(**args)


def test_named_errors():
  params = _params()
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="regime must be one of"):
    _sequence_loss(params, None, key, regime="mle", n=2)
  for k in (0, V + 1, 1.5):
    with pytest.raises(ValueError, match="top_k"):
      _sequence_loss(params, None, key, regime="e2e", n=2, probability=1.0, top_k=k)
  with pytest.raises(ValueError, match="top_k is only used"):
    _sequence_loss(params, None, key, regime="dad", n=2, probability=0.5, top_k=2)
  for p in (-0.1, 1.5):
    with pytest.raises(ValueError, match="probability"):
      _sequence_loss(params, None, key, regime="dad", n=2, probability=p)
  with pytest.raises(ValueError, match="start must be"):
    seq.dad_probability(0, start=1.5, end=1.0, anneal_steps=10)
  with pytest.raises(ValueError, match="baseline_params"):
    step_fn, embedding, state = _model(params, 2)
    seq.sequence_loss(key, regime="reinforce", step_fn=step_fn, embedding=embedding,
                      init_state=state, targets=_targets(2), mask=jnp.ones((2, T), bool),
                      bos_id=BOS, eos_id=EOS)
  with pytest.raises(ValueError, match="from_model must have shape"):
    step_fn, embedding, state = _model(params, 2)
    seq.rollout(key, step_fn, embedding, state, _targets(2), jnp.ones((2, T + 1), bool),
                bos_id=BOS, eos_id=EOS)
