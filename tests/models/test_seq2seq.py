"""Tests for vislang_jax.models.seq2seq against a float64 NumPy RNNsearch and encoder-decoder.

The NumPy reference re-implements the LSTM recurrences, the bidirectional encoder (each
sentence reversed within its length by Python slicing), ``s_0 = tanh(W_s h_1^bwd)``,
eq. (5)-(6) and the maxout deep output of Bahdanau et al. (2015), Appendix A, one sentence
and one step at a time from the Flax parameters, so encoder states, alignments and logits
are checked against an independent computation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vislang_jax import decoding
from vislang_jax.models.seq2seq import DecodeState, Seq2Seq

B, S, T, VS, VT = 3, 6, 5, 11, 9
BOS, EOS = 1, 2
LENGTHS = (6, 3, 1)

# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(attention=True, **kwargs):
  sizes = dict(embed_dim=8, hidden_size=12, attention_dim=10, maxout_dim=7)
  return Seq2Seq(source_vocab_size=VS, target_vocab_size=VT, attention=attention,
                 **{**sizes, **kwargs})


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  source = rng.integers(3, VS, size=(B, S))
  lengths = np.array(LENGTHS)
  source[np.arange(S) >= lengths[:, None]] = 0
  target_in = rng.integers(3, VT, size=(B, T))
  target_in[:, 0] = BOS
  return (jnp.asarray(source, jnp.int32), jnp.asarray(lengths, jnp.int32),
          jnp.asarray(target_in, jnp.int32))


def _sharpen(params, factor=100.0):
  """Scales ``v_a``, so that the alignment is far from uniform."""
  if "att_v" not in params:
    return params
  return dict(params, att_v=params["att_v"] * factor)


@functools.cache
def _setup(attention=True, reverse_source=False):
  model = _model(attention, reverse_source=reverse_source)
  source, lengths, target_in = _batch()
  params = _jit(model.init)(jax.random.key(0), source, lengths, target_in)["params"]
  return model, _sharpen(params), source, lengths, target_in


@functools.partial(_jit, static_argnums=0)
def _encode(model, params, source, lengths):
  return model.init_decode_state(params, source, lengths)


@functools.partial(_jit, static_argnums=0)
def _apply(model, params, source, lengths, target_in):
  return model.apply({"params": params}, source, lengths, target_in)


# ---- the float64 reference ----

def _np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _lstm(p, c, h, x):
  """Flax's LSTM cell: gates i, f, g, o from x (no bias) and h (with bias)."""
  gate = {k: x @ p["i" + k]["kernel"] + h @ p["h" + k]["kernel"] + p["h" + k]["bias"]
          for k in "ifgo"}
  c = _sigmoid(gate["f"]) * c + _sigmoid(gate["i"]) * np.tanh(gate["g"])
  return c, _sigmoid(gate["o"]) * np.tanh(c)


def _run(p, xs, n):
  """The LSTM over the rows of ``xs`` from a zero state: its outputs and final (c, h)."""
  c, h, outputs = np.zeros(n), np.zeros(n), []
  for x in xs:
    c, h = _lstm(p, c, h, x)
    outputs.append(h)
  return np.stack(outputs), (c, h)


def _reference(model, params, source, length, target_in):
  """One sentence: (annotations [L, 2n] or None, s_0, logits [T, K], alignment [T, L])."""
  p, n = _np(params), model.hidden_size
  words = p["source_embed"]["embedding"][np.asarray(source)[:length]]
  if not model.attention:
    order = words[::-1] if model.reverse_source else words
    _, (c, h) = _run(p["encoder_fwd"]["cell"], order, n)
    annotations = None
  else:
    forward, _ = _run(p["encoder_fwd"]["cell"], words, n)
    backward, _ = _run(p["encoder_bwd"]["cell"], words[::-1], n)
    annotations = np.concatenate([forward, backward[::-1]], axis=1)  # h_j = [fwd; bwd]
    h = np.tanh(annotations[0, n:] @ p["init_state"]["kernel"] + p["init_state"]["bias"])
    c = np.zeros(n)
    keys = annotations @ p["att_keys"]["kernel"] + p["att_keys"]["bias"]
  logits, alignment = [], []
  for token in np.asarray(target_in):
    e = p["target_embed"]["embedding"][token]
    if model.attention:
      scores = np.tanh(h @ p["att_query"]["kernel"] + keys) @ p["att_v"]  # eq. (6)
      a = np.exp(scores - scores.max())
      a /= a.sum()
      context = a @ annotations  # eq. (5)
      t = (h @ p["out_state"]["kernel"] + p["out_state"]["bias"]
           + e @ p["out_embed"]["kernel"] + context @ p["out_context"]["kernel"])
      t = np.maximum(t[0::2], t[1::2])  # maxout over pairs (2j-1, 2j)
      c, h = _lstm(p["decoder"], c, h, np.concatenate([e, context]))
      alignment.append(a)
    else:
      c, h = _lstm(p["decoder"], c, h, e)
      t = h
    logits.append(t @ p["out_logits"]["kernel"] + p["out_logits"]["bias"])
  return annotations, logits and np.stack(logits), alignment and np.stack(alignment)


# ---- tests ----

@pytest.mark.parametrize("attention", [True, False])
def test_shapes(attention):
  model, params, source, lengths, target_in = _setup(attention)
  logits, aux = _apply(model, params, source, lengths, target_in)
  assert logits.shape == (B, T, VT)
  assert aux["hidden"].shape == (B, T, 12)
  assert ("alignment" in aux) == attention
  if attention:
    assert aux["alignment"].shape == (B, T, S)
  state = _encode(model, params, source, lengths)
  assert isinstance(state, DecodeState)
  leaves = jax.tree.leaves(state)
  assert len(leaves) == (5 if attention else 2) and all(x.shape[0] == B for x in leaves)


@pytest.mark.parametrize("attention,reverse_source", [(True, False), (False, False),
                                                      (False, True)])
def test_matches_float64_reference(attention, reverse_source):
  model, params, source, lengths, target_in = _setup(attention, reverse_source)
  logits, aux = _apply(model, params, source, lengths, target_in)
  state = _encode(model, params, source, lengths)
  for b, length in enumerate(LENGTHS):
    annotations, ref_logits, ref_alignment = _reference(model, params, source[b], length,
                                                        target_in[b])
    np.testing.assert_allclose(logits[b], ref_logits, rtol=2e-5, atol=2e-5)
    if attention:
      np.testing.assert_allclose(state.annotations[b, :length], annotations, rtol=2e-5,
                                 atol=2e-6)
      np.testing.assert_allclose(aux["alignment"][b, :, :length], ref_alignment, rtol=2e-5,
                                 atol=2e-6)
  if attention:  # the paper's alignments are far from uniform here (v_a sharpened)
    assert float(jnp.max(aux["alignment"][0])) > 0.5


@pytest.mark.parametrize("attention", [True, False])
def test_padding_is_ignored(attention):
  """Garbage ids past each length change nothing; no alignment weight lands on padding."""
  model, params, source, lengths, target_in = _setup(attention)
  garbage = np.random.default_rng(7).integers(0, VS, size=source.shape)
  noisy = jnp.where(jnp.arange(S) < lengths[:, None], source, garbage)
  assert not np.array_equal(noisy, source)
  clean_logits, clean_aux = _apply(model, params, source, lengths, target_in)
  noisy_logits, noisy_aux = _apply(model, params, noisy, lengths, target_in)
  np.testing.assert_allclose(noisy_logits, clean_logits, rtol=1e-6, atol=1e-6)
  if attention:
    alignment = np.asarray(noisy_aux["alignment"])
    padding = np.arange(S) >= np.asarray(lengths)[:, None]  # [B, S]
    assert np.all(alignment[np.broadcast_to(padding[:, None], alignment.shape)] == 0.0)
    np.testing.assert_allclose(alignment.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(alignment, clean_aux["alignment"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("attention", [True, False])
def test_decode_step_matches_teacher_forcing_and_embedded_step(attention):
  model, params, source, lengths, target_in = _setup(attention)
  logits, aux = _apply(model, params, source, lengths, target_in)
  state = _encode(model, params, source, lengths)
  step = _jit(functools.partial(model.decode_step, params))
  step_embedded = _jit(functools.partial(model.decode_step_embedded, params))
  embedding = model.input_embedding(params)
  assert embedding.shape == (VT, 8)
  for t in range(T):
    tokens = target_in[:, t]
    step_logits, new_state, extras = step(tokens, state)
    e_logits, e_state, e_extras = step_embedded(embedding[tokens], state)
    for a, b in zip(jax.tree.leaves((step_logits, new_state, extras)),
                    jax.tree.leaves((e_logits, e_state, e_extras))):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extras["hidden"], aux["hidden"][:, t], rtol=1e-5, atol=1e-6)
    if attention:
      np.testing.assert_allclose(extras["alignment"], aux["alignment"][:, t], rtol=1e-5,
                                 atol=1e-6)
    state = new_state


@pytest.mark.parametrize("attention", [True, False])
def test_dropout_key_changes_logits_not_state(attention):
  model, params, source, lengths, _ = _setup(attention)
  state = _encode(model, params, source, lengths)
  model = model.clone(dropout_rate=0.5)  # dropout has no parameters
  inputs = model.input_embedding(params)[jnp.full((B,), BOS)]
  step = _jit(functools.partial(model.decode_step_embedded, params))
  plain = step(inputs, state)
  dropped = step(inputs, state, dropout_key=jax.random.key(3))
  again = step(inputs, state, dropout_key=jax.random.key(3))
  assert not np.allclose(plain[0], dropped[0])
  np.testing.assert_array_equal(dropped[0], again[0])
  for a, b in zip(jax.tree.leaves(plain[1:]), jax.tree.leaves(dropped[1:])):
    np.testing.assert_array_equal(a, b)


def test_beam_search_returns_alignments():
  model, params, source, lengths, _ = _setup(True)

  @jax.jit
  def search(params, source, lengths):
    return decoding.beam_search(functools.partial(model.decode_step, params),
                                model.init_decode_state(params, source, lengths),
                                bos_id=BOS, eos_id=EOS, max_len=7, beam_size=3)

  out = search(params, source, lengths)
  assert out.tokens.shape == (B, 3, 7)
  alignment = np.asarray(out.extras["alignment"])
  assert alignment.shape == (B, 3, 7, S)
  steps = np.arange(7) < np.asarray(out.lengths)[..., None]  # [B, K, T]
  np.testing.assert_allclose(alignment.sum(-1), steps.astype(float), rtol=1e-5, atol=1e-6)
  padding = np.arange(S) >= np.asarray(lengths)[:, None, None, None]
  assert np.all(alignment[np.broadcast_to(padding, alignment.shape)] == 0.0)


def test_errors():
  model, params, source, lengths, target_in = _setup(True)
  apply = functools.partial(model.apply, {"params": params})
  with pytest.raises(ValueError, match=r"source_length must lie in \[1, S\] = \[1, 6\]"):
    apply(source, jnp.array([6, 0, 1]), target_in)
  with pytest.raises(ValueError, match=r"source_length must lie in .*\[7\] at rows \[0\]"):
    apply(source, jnp.array([7, 3, 1]), target_in)
  with pytest.raises(ValueError, match="source_length must have shape"):
    apply(source, lengths[:2], target_in)
  with pytest.raises(ValueError, match="source_length must hold integer"):
    apply(source, lengths.astype(jnp.float32), target_in)
  with pytest.raises(ValueError, match="source must have shape"):
    apply(source[0], lengths, target_in)
  with pytest.raises(ValueError, match="source must hold ids"):
    apply(source.at[0, 0].set(VS), lengths, target_in)
  with pytest.raises(ValueError, match="target_in must hold ids"):
    apply(source, lengths, target_in.at[0, 0].set(VT))
  with pytest.raises(ValueError, match="target_in must have shape"):
    apply(source, lengths, target_in[:2])
  state = _encode(model, params, source, lengths)
  with pytest.raises(ValueError, match="tokens must have shape"):
    model.decode_step(params, target_in[:, 0][:2], state)
  with pytest.raises(ValueError, match="inputs must have shape"):
    model.decode_step_embedded(params, jnp.zeros((B, 5)), state)
  with pytest.raises(ValueError, match="reverse_source must be False"):
    _model(True, reverse_source=True)
  with pytest.raises(ValueError, match="hidden_size must be a positive int"):
    _model(hidden_size=0)
  with pytest.raises(ValueError, match="dropout_rate must be"):
    _model(dropout_rate=1.0)


def test_learns_to_reverse_sequences():
  """The toy reversal task: x_1..x_L (L <= 8, 10 symbols) -> x_L..x_1 <eos>."""
  symbols, max_len, batch = 10, 8, 64
  model = Seq2Seq(source_vocab_size=3 + symbols, target_vocab_size=3 + symbols, embed_dim=16,
                  hidden_size=32, attention_dim=32, maxout_dim=16)

  def sample(key):
    k1, k2 = jax.random.split(key)
    lengths = jax.random.randint(k1, (batch,), 1, max_len + 1)
    words = jax.random.randint(k2, (batch, max_len), 3, 3 + symbols)
    valid = jnp.arange(max_len) < lengths[:, None]
    source = jnp.where(valid, words, 0)
    # target_j = x_{L-1-j} for j < L, then <eos>, then padding
    reverse = jnp.clip(lengths[:, None] - 1 - jnp.arange(max_len), 0, max_len - 1)
    target = jnp.where(valid, jnp.take_along_axis(words, reverse, 1), 0)
    target = jnp.concatenate([target, jnp.zeros((batch, 1), jnp.int32)], 1)
    target = target.at[jnp.arange(batch), lengths].set(EOS)
    target_in = jnp.concatenate([jnp.full((batch, 1), BOS), target[:, :-1]], 1)
    mask = jnp.arange(max_len + 1) <= lengths[:, None]
    return source, lengths, target, target_in, mask

  def loss_fn(params, batch):
    source, lengths, target, target_in, mask = batch
    logits, _ = model.apply({"params": params}, source, lengths, target_in)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    accuracy = (jnp.argmax(logits, -1) == target) & mask
    return jnp.sum(nll * mask) / jnp.sum(mask), jnp.sum(accuracy) / jnp.sum(mask)

  optimizer = optax.adam(1e-2)

  @_jit
  def accuracy_after_training(key):  # one compiled program: init, 100 Adam steps, accuracy
    init_key, train_key, test_key = jax.random.split(key, 3)
    source, lengths, _, target_in, _ = sample(init_key)
    params = model.init(init_key, source, lengths, target_in)["params"]

    def step(carry, key):
      params, opt_state = carry
      grads, _ = jax.grad(loss_fn, has_aux=True)(params, sample(key))
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                  jax.random.split(train_key, 100))
    return loss_fn(params, sample(test_key))[1]

  assert float(accuracy_after_training(jax.random.key(0))) > 0.9
