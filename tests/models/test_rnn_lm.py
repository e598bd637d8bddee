"""Tests for vislang_jax.models.rnn_lm against a float64 NumPy recurrence and a known language.

The NumPy reference re-implements both cells of the module docstring from the Flax
parameters (``h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)``; the LSTM's gates), layer by layer
and step by step. The learned toy language is a first-order Markov chain over four words,
every sentence six words then ``<eos>``: its per-token entropy is computed exactly from the
chain, its most probable sentence by dynamic programming (Viterbi), and a trained model must
reach that entropy and find that sentence through ``decoding``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vislang_jax import decoding
from vislang_jax.models import rnn_lm
from vislang_jax.objectives import sequence

V, BOS, EOS = 8, 1, 2

# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(cell, **overrides):
  sizes = dict(vocab_size=V, cell=cell, embed_dim=5, hidden_size=6, num_layers=2)
  return rnn_lm.RNNLM(**{**sizes, **overrides})


def _tokens(seed=1, batch=3, steps=6):
  tokens = np.random.default_rng(seed).integers(3, V, size=(batch, steps))
  tokens[:, 0] = BOS
  return jnp.asarray(tokens, jnp.int32)


def _params(model, seed=0, recurrent_scale=3.0):
  """Initial parameters with the recurrent kernels scaled up, so the past matters."""
  params = model.init(jax.random.key(seed), _tokens())["params"]
  return {name: ({k: {"kernel": v["kernel"] * recurrent_scale, **{
      b: v[b] for b in v if b != "kernel"}} if k.startswith("h") else v
                  for k, v in value.items()} if name.startswith("layer_") else value)
          for name, value in params.items()}


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_lm(params, tokens, cell):
  """Teacher-forced logits [B, T, V] and top hidden states [B, T, H] in float64."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  layers = [p[f"layer_{l}"] for l in range(sum(k.startswith("layer_") for k in p))]
  batch, steps = tokens.shape
  size = p["out"]["kernel"].shape[0]
  h = [np.zeros((batch, size)) for _ in layers]
  c = [np.zeros((batch, size)) for _ in layers]
  logits, hidden = [], []
  for t in range(steps):
    x = p["embed"]["embedding"][np.asarray(tokens)[:, t]]
    for l, q in enumerate(layers):
      if cell == "vanilla":
        h[l] = np.tanh(h[l] @ q["h"]["kernel"] + x @ q["i"]["kernel"] + q["i"]["bias"])
      else:
        pre = {g: x @ q[f"i{g}"]["kernel"] + h[l] @ q[f"h{g}"]["kernel"] + q[f"h{g}"]["bias"]
               for g in "ifgo"}
        c[l] = _sigmoid(pre["f"]) * c[l] + _sigmoid(pre["i"]) * np.tanh(pre["g"])
        h[l] = _sigmoid(pre["o"]) * np.tanh(c[l])
      x = h[l]
    hidden.append(x)
    logits.append(x @ p["out"]["kernel"] + p["out"]["bias"])
  return np.stack(logits, 1), np.stack(hidden, 1)


@functools.partial(_jit, static_argnums=0)
def _apply(model, params, tokens):
  return model.apply({"params": params}, tokens)


@functools.partial(_jit, static_argnums=0)
def _step_by_step(model, params, tokens):
  """decode_step over the columns of tokens [B, T] -> logits [B, T, V], extras hidden."""
  def body(state, column):
    logits, state, extras = model.decode_step(params, column, state)
    return state, (logits, extras["hidden"])

  state = model.init_decode_state(params, tokens.shape[0])
  _, (logits, hidden) = jax.lax.scan(body, state, tokens.T)
  return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(hidden, 0, 1)


@pytest.mark.parametrize("cell", rnn_lm.CELLS)
def test_teacher_forcing_matches_the_float64_recurrence(cell):
  model = _model(cell)
  params, tokens = _params(model), _tokens()
  logits, aux = _apply(model, params, tokens)
  expected_logits, expected_hidden = _numpy_lm(params, tokens, cell)
  assert logits.shape == (3, 6, V) and aux["hidden"].shape == (3, 6, 6)
  np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(aux["hidden"], expected_hidden, rtol=1e-5, atol=1e-5)
  # The recurrence matters: the last step differs from the same word read from h_0 = 0.
  assert np.abs(expected_logits[:, -1] - _numpy_lm(params, tokens[:, -1:], cell)[0][:, 0]
                ).max() > 1e-2


@pytest.mark.parametrize("cell", rnn_lm.CELLS)
def test_decode_steps_match_teacher_forcing_and_embedded_inputs(cell):
  model = _model(cell)
  params, tokens = _params(model), _tokens()
  logits, aux = _apply(model, params, tokens)
  stepped, hidden = _step_by_step(model, params, tokens)
  np.testing.assert_allclose(stepped, logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(hidden, aux["hidden"], rtol=1e-6, atol=1e-6)

  # decode_step(w) == decode_step_embedded(E[w]) exactly, state and extras included.
  state = model.init_decode_state(params, 3)
  state = model.decode_step(params, tokens[:, 0], state)[1]
  by_token = model.decode_step(params, tokens[:, 1], state)
  embedding = model.input_embedding(params)
  assert embedding.shape == (V, 5)
  by_input = model.decode_step_embedded(params, embedding[tokens[:, 1]], state)
  jax.tree.map(np.testing.assert_array_equal, by_token, by_input)


@pytest.mark.parametrize("cell", rnn_lm.CELLS)
def test_sequence_objectives_roll_the_model_out(cell):
  """objectives.sequence's XENT rollout over decode_step_embedded == teacher forcing."""
  model = _model(cell)
  params, tokens = _params(model), _tokens()
  targets = jnp.concatenate([tokens[:, 1:], jnp.full((3, 1), EOS, jnp.int32)], 1)
  mask = jnp.arange(6) < jnp.array([[6], [4], [2]])
  loss, _ = sequence.sequence_loss(
      jax.random.key(0), regime="xent", step_fn=functools.partial(model.decode_step_embedded,
                                                                  params),
      embedding=model.input_embedding(params), init_state=model.init_decode_state(params, 3),
      targets=targets, mask=mask, bos_id=BOS, eos_id=EOS)
  logits, _ = _apply(model, params, tokens)
  np.testing.assert_allclose(loss, sequence.xent_loss(logits, targets, mask), rtol=1e-5)


def test_dropout_key_draws_training_mode_dropout():
  model = _model("lstm", dropout_rate=0.5)
  params = _params(model)
  state = model.init_decode_state(params, 3)
  inputs = model.input_embedding(params)[_tokens()[:, 1]]
  plain = model.decode_step_embedded(params, inputs, state)[0]
  key = jax.random.key(7)
  dropped = model.decode_step_embedded(params, inputs, state, dropout_key=key)[0]
  again = model.decode_step_embedded(params, inputs, state, dropout_key=key)[0]
  np.testing.assert_array_equal(dropped, again)
  assert np.abs(np.asarray(dropped) - np.asarray(plain)).max() > 1e-3
  # Without dropout (rate 0) a key changes nothing.
  model = _model("lstm")
  np.testing.assert_array_equal(model.decode_step_embedded(params, inputs, state)[0],
                                model.decode_step_embedded(params, inputs, state,
                                                           dropout_key=key)[0])


@pytest.mark.parametrize("cell", rnn_lm.CELLS)
def test_prefix_state_continues_the_sentence(cell):
  model = _model(cell)
  params, tokens = _params(model), _tokens()
  logits, _ = _apply(model, params, tokens)
  # Rows read 2, 4 and 6 inputs of a padded prefix; their first decoding step (fed <bos>,
  # replaced by the pending last input) predicts what the teacher-forced step at that input
  # predicts.
  lengths = np.array([2, 4, 6])
  prefix = np.where(np.arange(6) < lengths[:, None], tokens, 0)
  state = model.init_decode_state(params, prefix=prefix, prefix_lengths=lengths)
  np.testing.assert_array_equal(state.pending, tokens[np.arange(3), lengths - 1])
  first, state, _ = model.decode_step(params, jnp.full((3,), BOS), state)
  np.testing.assert_allclose(first, logits[np.arange(3), lengths - 1], rtol=1e-5, atol=1e-5)
  assert (np.asarray(state.pending) == -1).all()
  # A prefix of <bos> alone is the zero state.
  alone = model.init_decode_state(params, prefix=tokens[:, :1])
  np.testing.assert_allclose(model.decode_step(params, tokens[:, 0], alone)[0], logits[:, 0],
                             rtol=1e-6, atol=1e-6)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match=r"cell must be one of \('vanilla', 'lstm'\), got 'gru'"):
    rnn_lm.RNNLM(vocab_size=V, cell="gru")
  with pytest.raises(ValueError, match="dropout_rate must be a finite float in"):
    rnn_lm.RNNLM(vocab_size=V, dropout_rate=1.0)
  model = _model("vanilla")
  params = _params(model)
  with pytest.raises(ValueError, match=r"tokens_in must have shape \[B, T\]"):
    model.apply({"params": params}, jnp.ones((6,), jnp.int32))
  with pytest.raises(ValueError, match=r"tokens_in must hold ids in \[0, vocab_size\)"):
    model.apply({"params": params}, jnp.full((1, 2), V, jnp.int32))
  with pytest.raises(ValueError, match="exactly one of batch_size and prefix"):
    model.init_decode_state(params)
  with pytest.raises(ValueError, match=r"prefix_lengths must be \[B\] = \(3,\) ints in \[1, P\]"):
    model.init_decode_state(params, prefix=_tokens(), prefix_lengths=np.array([1, 7, 2]))
  with pytest.raises(ValueError, match=r"inputs must have shape \[N, m\] = \(3, 5\)"):
    model.decode_step_embedded(params, jnp.zeros((3, 4)), model.init_decode_state(params, 3))


# The toy language: words 3..6, sentences of six words then <eos>; the first word is drawn
# from START, each next one from row w - 3 of CHAIN.
WORDS, SENTENCE = np.arange(3, 7), 6
START = np.array([0.7, 0.1, 0.1, 0.1])
CHAIN = np.array([[0.1, 0.9, 0.0, 0.0],
                  [0.0, 0.2, 0.8, 0.0],
                  [0.0, 0.0, 0.3, 0.7],
                  [0.6, 0.0, 0.0, 0.4]])


def _sample_language(rng, count):
  """count sentences [count, 7]: six words then <eos>."""
  words = [rng.choice(4, size=count, p=START)]
  for _ in range(SENTENCE - 1):
    words.append(np.array([rng.choice(4, p=CHAIN[w]) for w in words[-1]]))
  return np.concatenate([np.stack(words, 1) + 3, np.full((count, 1), EOS)], 1).astype(np.int32)


def _entropy_per_token():
  """The language's exact entropy per token: sum_t E[H(w_t | w_{t-1})] / 7 (<eos> is sure)."""
  def entropy(p):
    p = p[p > 0]
    return -np.sum(p * np.log(p))

  marginal, total = START, entropy(START)
  for _ in range(SENTENCE - 1):
    total += marginal @ np.array([entropy(row) for row in CHAIN])
    marginal = marginal @ CHAIN
  return total / (SENTENCE + 1)


def _most_probable_sentence():
  """Viterbi over the chain: the most probable sentence [7] and its log-probability."""
  with np.errstate(divide="ignore"):
    log_start, log_chain = np.log(START), np.log(CHAIN)
  score, back = log_start, []
  for _ in range(SENTENCE - 1):
    candidates = score[:, None] + log_chain
    back.append(candidates.argmax(0))
    score = candidates.max(0)
  words = [int(score.argmax())]
  for pointers in reversed(back):
    words.append(int(pointers[words[-1]]))
  return np.array([w + 3 for w in reversed(words)] + [EOS]), float(score.max())


def _teacher_inputs(sentences):
  return np.concatenate([np.full_like(sentences[:, :1], BOS), sentences[:, :-1]], 1)


def _nll_per_token(logits, targets):
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], -1))


@pytest.mark.parametrize("cell", rnn_lm.CELLS)
def test_learns_the_toy_language_to_its_entropy_and_decodes_it(cell):
  rng = np.random.default_rng(0)
  train, held_out = _sample_language(rng, 512), _sample_language(rng, 1000)
  model = rnn_lm.RNNLM(vocab_size=V, cell=cell, embed_dim=8, hidden_size=24)
  optimizer = optax.adam(1e-2)

  @_jit
  def fit(key):  # 300 full-batch Adam steps in one compiled program
    params = model.init(key, train[:1])["params"]

    def step(_, carry):
      params, opt_state = carry
      grads = jax.grad(lambda p: _nll_per_token(
          model.apply({"params": p}, _teacher_inputs(train))[0], train))(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(0, 300, step, (params, optimizer.init(params)))[0]

  params = fit(jax.random.key(0))

  entropy = _entropy_per_token()
  # The true chain's NLL on the same held-out sentences (its sampling noise shared with the
  # model's), and the exact entropy it estimates.
  log_chain = np.log(np.maximum(CHAIN, 1e-300))
  words = held_out[:, :SENTENCE] - 3
  true_nll = -(np.log(START[words[:, 0]]).sum() + log_chain[words[:, :-1], words[:, 1:]].sum()
               ) / held_out.size
  assert true_nll == pytest.approx(entropy, abs=0.02)
  model_nll = float(_nll_per_token(_apply(model, params, _teacher_inputs(held_out))[0],
                                   held_out))
  assert true_nll - 0.01 < model_nll < true_nll + 0.03, (model_nll, true_nll, entropy)

  # Greedy and beam search through vislang_jax.decoding find the most probable sentence.
  best, best_log_prob = _most_probable_sentence()

  @_jit
  def generate(params, key):
    step_fn = functools.partial(model.decode_step, params)
    options = dict(bos_id=BOS, eos_id=EOS, max_len=10)
    state = model.init_decode_state(params, 2)
    return (decoding.greedy(step_fn, state, **options),
            decoding.beam_search(step_fn, state, beam_size=4, **options),
            decoding.sample(key, step_fn, model.init_decode_state(params, 2000), **options))

  greedy, beams, samples = generate(params, jax.random.key(1))
  np.testing.assert_array_equal(beams.tokens[:, 0, :7], np.stack([best, best]))
  np.testing.assert_array_equal(beams.lengths[:, 0], [7, 7])
  assert float(beams.scores[0, 0]) == pytest.approx(best_log_prob, abs=0.15)
  np.testing.assert_array_equal(greedy.tokens[:, :7], np.stack([best, best]))
  # Samples follow the chain: nearly all six words then <eos>, bigram frequencies as CHAIN.
  tokens = np.asarray(samples.tokens)
  sentences = (np.asarray(samples.lengths) == 7) & np.isin(tokens[:, :SENTENCE], WORDS).all(1)
  assert sentences.mean() > 0.97
  tokens = tokens[sentences, :SENTENCE] - 3
  counts = np.zeros((4, 4))
  np.add.at(counts, (tokens[:, :-1], tokens[:, 1:]), 1)
  np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), CHAIN, atol=0.05)
