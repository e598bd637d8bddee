"""Tests for vislang_jax.decoding against NumPy enumeration and reference decoders.

The "language model" is a fixed random table ``logits[example, y_{t-2}, y_{t-1}, t, y_t]``
(``y_{-2} = y_{-1} = BOS``): a second-order model whose decoder state carries the token
before the input and a step counter, so the state differs between the beams of one example
and a beam search that does not reorder it by parent beam scores the wrong sequences. Every
sequence's probability is computed exactly in float64, and every decoder has an independent
NumPy counterpart.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vislang_jax import decoding

BOS, EOS, PAD = 0, 1, 0


def make_tables(seed, *, batch, vocab, max_len):
  """[B, V, V, T, V] float32 logits, one random table per example."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(batch, vocab, vocab, max_len, vocab)).astype(np.float32)


def table_step(table):
  """The toy step: logits = table[example, previous, token, t]; records its input token."""
  vocab = table.shape[-1]

  def step_fn(tokens, state):
    logits = table[state["example"], state["previous"], tokens, state["t"]]
    extras = {"token": tokens, "one_hot": jax.nn.one_hot(tokens, vocab)}
    return logits, {"example": state["example"], "previous": tokens, "t": state["t"] + 1}, extras

  return step_fn


def init_state(batch):
  return {"example": jnp.arange(batch, dtype=jnp.int32),
          "previous": jnp.full(batch, BOS, jnp.int32), "t": jnp.zeros(batch, jnp.int32)}


# --- Independent float64 references over token tuples. ---

def log_softmax64(table):
  x = np.asarray(table, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def penalty(length, alpha):
  return ((5 + length) / 6) ** alpha


def next_logprobs(logp, prefix):
  """[V] float64 log P(y_t | prefix) under one example's [V, V, T, V] log-prob table."""
  context = (BOS, BOS) + tuple(prefix)
  return logp[context[-2], context[-1], len(prefix)]


def sequence_logprob(logp, seq):
  """log P(seq) under one example's [V, V, T, V] log-prob table."""
  return sum(next_logprobs(logp, seq[:t])[y] for t, y in enumerate(seq))


def all_hypotheses(logp, max_len):
  """Every complete sequence: ends at its first EOS, or has max_len tokens without EOS."""
  vocab = logp.shape[-1]
  out = []
  for length in range(1, max_len + 1):
    for seq in itertools.product(range(vocab), repeat=length):
      if EOS not in seq[:-1] and (seq[-1] == EOS or length == max_len):
        out.append(seq)
  return [(seq, sequence_logprob(logp, seq)) for seq in out]


def exhaustive_top_k(logp, max_len, k, alpha):
  return sorted(all_hypotheses(logp, max_len),
                key=lambda h: -h[1] / penalty(len(h[0]), alpha))[:k]


def reference_beam_search(logp, max_len, k, alpha):
  """Textbook beam search over tuples, all max_len steps (no early stop).

  K live beams; each step's candidates that end (EOS, or max_len tokens) join a separate pool
  of the K best finished hypotheses by score / penalty (stable sort: older ones first among
  equals), and the K most probable others stay live.
  """
  vocab = logp.shape[-1]
  live, finished = [((), 0.0)], []
  for t in range(max_len):
    candidates = [(seq + (v,), score + next_logprobs(logp, seq)[v])
                  for seq, score in live for v in range(vocab)]
    ends = [c[0][-1] == EOS or t == max_len - 1 for c in candidates]
    finished = sorted(finished + [c for c, e in zip(candidates, ends) if e],
                      key=lambda h: -h[1] / penalty(len(h[0]), alpha))[:k]
    live = sorted([c for c, e in zip(candidates, ends) if not e], key=lambda h: -h[1])[:k]
  return finished


def reference_greedy(logp, max_len):
  seq = ()
  for _ in range(max_len):
    seq += (int(np.argmax(next_logprobs(logp, seq))),)
    if seq[-1] == EOS:
      break
  return seq


def hypotheses_without_pruning(vocab, max_len):
  """The number of live hypotheses after max_len - 1 steps: no pruning for K >= this."""
  return (vocab - 1) ** (max_len - 1)


def assert_sequence(decoded_tokens, length, expected_seq, max_len):
  assert int(length) == len(expected_seq)
  np.testing.assert_array_equal(
      decoded_tokens, list(expected_seq) + [PAD] * (max_len - len(expected_seq)))


def assert_extras_are_history(extras, seq, max_len):
  """The recorded input tokens are (BOS, y1, ..., y_{L-1}), then zeros."""
  inputs = [BOS] + list(seq[:-1])
  pad = [0] * (max_len - len(seq))
  np.testing.assert_array_equal(extras["token"], inputs + pad)
  eye = np.eye(extras["one_hot"].shape[-1])
  np.testing.assert_array_equal(extras["one_hot"], np.concatenate([eye[inputs], 0 * eye[pad]]))


def assert_beams(out, b, expected, max_len, alpha, *, atol=1e-5):
  """Example b's beams are the (sequence, float64 log-prob) pairs of expected, in order."""
  for j, (seq, score) in enumerate(expected):
    assert_sequence(out.tokens[b, j], out.lengths[b, j], seq, max_len)
    np.testing.assert_allclose(out.scores[b, j], score, rtol=0, atol=atol)
    np.testing.assert_allclose(out.normalized_scores[b, j], score / penalty(len(seq), alpha),
                               rtol=0, atol=atol)
    assert_extras_are_history(jax.tree.map(lambda x, j=j: x[b, j], out.extras), seq, max_len)


def on_host(fn):
  """Runs a jitted decoder and copies its output to NumPy (cheap indexing in the checks)."""
  return lambda *args: jax.device_get(fn(*args))


@functools.lru_cache(maxsize=None)
def jitted_beam_search(max_len, beam_size, alpha):
  return on_host(jax.jit(lambda table: decoding.beam_search(
      table_step(table), init_state(table.shape[0]), bos_id=BOS, eos_id=EOS, max_len=max_len,
      beam_size=beam_size, length_penalty=alpha, pad_id=PAD)))


@functools.lru_cache(maxsize=None)
def jitted_greedy(max_len):
  return on_host(jax.jit(lambda table: decoding.greedy(
      table_step(table), init_state(table.shape[0]), bos_id=BOS, eos_id=EOS, max_len=max_len,
      pad_id=PAD)))


# --- Beam search. ---

@pytest.mark.parametrize("vocab,max_len,alpha", [(4, 3, 0.0), (5, 3, 0.7), (4, 4, 0.0),
                                                 (4, 4, 1.5)])
def test_beam_search_without_pruning_returns_exhaustive_top_k(vocab, max_len, alpha):
  k = hypotheses_without_pruning(vocab, max_len)
  tables = make_tables(vocab * 10 + max_len, batch=3, vocab=vocab, max_len=max_len)
  out = jitted_beam_search(max_len, k, alpha)(tables)
  lengths_seen = set()
  for b in range(3):
    expected = exhaustive_top_k(log_softmax64(tables[b]), max_len, k, alpha)
    assert_beams(out, b, expected, max_len, alpha)
    lengths_seen |= {len(seq) for seq, _ in expected}
  assert len(lengths_seen) > 1  # finished and full-length hypotheses both compete


@pytest.mark.parametrize("beam_size,alpha", [(1, 0.0), (2, 0.0), (3, 0.0), (3, 1.0)])
def test_pruned_beam_search_matches_textbook_reference(beam_size, alpha):
  vocab, max_len, batch = 5, 4, 8
  tables = make_tables(100 + beam_size, batch=batch, vocab=vocab, max_len=max_len)
  out = jitted_beam_search(max_len, beam_size, alpha)(tables)
  for b in range(batch):
    logp = log_softmax64(tables[b])
    expected = reference_beam_search(logp, max_len, beam_size, alpha)
    assert len({seq for seq, _ in expected}) == beam_size
    assert_beams(out, b, expected, max_len, alpha)
    assert np.all(np.diff(out.normalized_scores[b]) <= 0)
    # Exhaustive search bounds every beam: the j-th beam is at most the j-th best hypothesis.
    best = exhaustive_top_k(logp, max_len, beam_size, alpha)
    assert np.all(out.normalized_scores[b] <= np.array(
        [s / penalty(len(seq), alpha) for seq, s in best]) + 1e-5)
  if beam_size == 1:  # greedy's hypothesis is among K = 1's candidates
    greedy = jitted_greedy(max_len)(tables)
    assert np.all(out.scores[:, 0] >= greedy.scores - 1e-5)


def test_finished_hypothesis_is_not_evicted_by_live_beams():
  # The found case: [EOS] (p = 0.1) finishes at step 0; at step 1 the live beams a-c, a-a, a-b
  # (p = 0.16, 0.15, 0.14) all outrank it, so a search whose finished and live hypotheses
  # share the K slots evicted it and returned [a, c, EOS] (p = 0.09) first, although every
  # continuation ends below 0.1. The separate pool keeps [EOS], the exhaustive best.
  vocab, max_len, k, a, b, c = 5, 3, 3, 2, 3, 4
  probs = np.full((vocab, vocab, max_len, vocab), 1 / vocab)  # [y_{t-2}, y_{t-1}, t, y_t]

  def set_probs(prev2, prev, t, **p):
    row = np.full(vocab, 1e-9)
    for token, value in p.items():
      row[{"eos": EOS, "a": a, "b": b, "c": c}[token]] = value
    probs[prev2, prev, t] = row

  set_probs(BOS, BOS, 0, eos=0.1, a=0.5, b=0.4)
  set_probs(BOS, a, 1, eos=0.1, a=0.3, b=0.28, c=0.32)
  set_probs(BOS, b, 1, eos=0.1, a=0.3, b=0.3, c=0.3)
  set_probs(a, c, 2, eos=0.5625, a=0.15, b=0.15, c=0.1375)
  table = np.log(probs)[None].astype(np.float32)
  out = jitted_beam_search(max_len, k, 0.0)(table)
  logp = log_softmax64(table[0])
  expected = reference_beam_search(logp, max_len, k, 0.0)
  assert [seq for seq, _ in expected] == [(EOS,), (a, c, EOS), (a, EOS)]
  assert exhaustive_top_k(logp, max_len, 2, 0.0)[0][0] == (EOS,)
  np.testing.assert_allclose([s for _, s in expected], np.log([0.1, 0.09, 0.05]), atol=1e-6)
  assert_beams(out, 0, expected, max_len, 0.0)
  np.testing.assert_allclose(out.scores[0, :2], [-2.303, -2.408], atol=1e-3)


@pytest.mark.parametrize("alpha,steps", [(0.0, 2), (1.0, 3)])
def test_beam_search_stops_when_no_live_beam_can_beat_the_pool(alpha, steps):
  # EOS has probability ~0.995 at every step, the two other tokens ~0.0025 (log ~ -6). With
  # K = 2 the pool holds [EOS] and [x, EOS] (log p ~ -6.0) after step 1, when the best live
  # beam has log p ~ -12: with alpha = 0 no continuation can beat -6.0, the search stops after
  # 2 steps; with alpha = 1 its bound -12 / lp(10) = -4.8 still beats -6.0 / lp(2) = -5.1,
  # and after step 2 the bound -18 / lp(10) = -7.2 does not: 3 steps. Either way the result
  # is that of the textbook search over all 10 steps.
  vocab, max_len, k = 3, 10, 2
  table = np.zeros((1, vocab, vocab, max_len, vocab), np.float32)
  table[..., EOS] = 6.0
  calls = []

  def counted_step(tokens, state):
    jax.debug.callback(lambda: calls.append(1))
    return table_step(jnp.asarray(table))(tokens, state)

  out = jax.device_get(jax.jit(lambda: decoding.beam_search(
      counted_step, init_state(1), bos_id=BOS, eos_id=EOS, max_len=max_len, beam_size=k,
      length_penalty=alpha, pad_id=PAD))())
  jax.effects_barrier()
  assert len(calls) == steps
  assert_beams(out, 0, reference_beam_search(log_softmax64(table[0]), max_len, k, alpha),
               max_len, alpha)


def test_beams_beyond_the_number_of_hypotheses_are_empty():
  vocab, max_len, k = 3, 1, 5
  tables = make_tables(7, batch=2, vocab=vocab, max_len=max_len)
  out = jitted_beam_search(max_len, k, 0.0)(tables)
  for b in range(2):
    logp = log_softmax64(tables[b])[BOS, BOS, 0]
    np.testing.assert_array_equal(out.tokens[b, :vocab, 0], np.argsort(-logp))
    np.testing.assert_allclose(out.scores[b, :vocab], np.sort(logp)[::-1], atol=1e-6)
  assert np.all(np.isneginf(out.scores[:, vocab:]))
  np.testing.assert_array_equal(out.lengths[:, vocab:], 0)
  np.testing.assert_array_equal(out.tokens[:, vocab:], PAD)
  np.testing.assert_array_equal(out.extras["one_hot"][:, vocab:], 0)


# --- Greedy. ---

def test_greedy_is_the_argmax_chain():
  vocab, max_len, batch = 5, 4, 6
  tables = make_tables(3, batch=batch, vocab=vocab, max_len=max_len)
  out = jitted_greedy(max_len)(tables)
  for b in range(batch):
    logp = log_softmax64(tables[b])
    seq = reference_greedy(logp, max_len)
    assert_sequence(out.tokens[b], out.lengths[b], seq, max_len)
    np.testing.assert_allclose(out.scores[b], sequence_logprob(logp, seq), atol=1e-5)
    assert_extras_are_history(jax.tree.map(lambda x, b=b: x[b], out.extras), seq, max_len)
  np.testing.assert_array_equal(out.normalized_scores, out.scores)


# --- Sampling. ---

@functools.lru_cache(maxsize=None)
def jitted_samples(max_len, temperature, n_keys):
  """Draws n_keys samples per example (vmap over keys) from tables [B, V, T, V]."""
  def draw(key, table):
    return decoding.sample(key, table_step(table), init_state(table.shape[0]), bos_id=BOS,
                           eos_id=EOS, max_len=max_len, temperature=temperature, pad_id=PAD)
  return on_host(jax.jit(lambda key, table: jax.vmap(draw, in_axes=(0, None))(
      jax.random.split(key, n_keys), table)))


def test_sample_with_vanishing_temperature_is_greedy():
  vocab, max_len = 5, 4
  tables = make_tables(11, batch=4, vocab=vocab, max_len=max_len)
  samples = jitted_samples(max_len, 1e-6, 8)(jax.random.key(0), tables)
  chex.assert_trees_all_close(samples, jax.tree.map(lambda x: jnp.stack([x] * 8),
                                                     jitted_greedy(max_len)(tables)), atol=1e-5)


def test_sample_is_a_function_of_the_key():
  tables = make_tables(12, batch=2, vocab=5, max_len=4)
  draw = jitted_samples(4, 1.0, 16)
  first, again = draw(jax.random.key(1), tables), draw(jax.random.key(1), tables)
  chex.assert_trees_all_equal(first, again)
  assert not np.array_equal(first.tokens, draw(jax.random.key(2), tables).tokens)


def test_sample_frequencies_follow_the_tempered_model():
  vocab, max_len, temperature, n = 4, 2, 0.7, 4000
  tables = make_tables(13, batch=2, vocab=vocab, max_len=max_len)
  samples = jitted_samples(max_len, temperature, n)(jax.random.key(3), tables)
  for b in range(2):
    tempered = log_softmax64(tables[b] / temperature)
    hypotheses = all_hypotheses(tempered, max_len)
    expected = np.exp([score for _, score in hypotheses])
    np.testing.assert_allclose(expected.sum(), 1.0)
    drawn = [tuple(np.asarray(samples.tokens[i, b, :int(samples.lengths[i, b])]))
             for i in range(n)]
    counts = np.array([drawn.count(seq) for seq, _ in hypotheses])
    assert counts.sum() == n  # every draw is a well-formed hypothesis
    # Pearson's chi-square over all complete sequences, and over the first token alone.
    chi2 = np.sum((counts - n * expected) ** 2 / (n * expected))
    assert chi2 < stats.chi2.ppf(0.999, len(hypotheses) - 1)
    first = np.bincount([seq[0] for seq in drawn], minlength=vocab)
    p_first = np.exp(tempered[BOS, BOS, 0])
    assert np.sum((first - n * p_first) ** 2 / (n * p_first)) < stats.chi2.ppf(0.999, vocab - 1)
    # Scores are the untempered model's log-probabilities of the drawn sequences.
    logp = log_softmax64(tables[b])
    np.testing.assert_allclose(samples.scores[:50, b],
                               [sequence_logprob(logp, seq) for seq in drawn[:50]], atol=1e-5)


# --- Compilation and argument checks. ---

def test_repeated_jitted_calls_trace_once():
  vocab, max_len = 5, 4

  @jax.jit
  @chex.assert_max_traces(n=1)
  def decode(key, table):
    step_fn, state = table_step(table), init_state(table.shape[0])
    return (decoding.greedy(step_fn, state, bos_id=BOS, eos_id=EOS, max_len=max_len),
            decoding.sample(key, step_fn, state, bos_id=BOS, eos_id=EOS, max_len=max_len),
            decoding.beam_search(step_fn, state, bos_id=BOS, eos_id=EOS, max_len=max_len,
                                 beam_size=3, length_penalty=0.6))

  for seed in range(3):
    greedy, sampled, beams = decode(jax.random.key(seed),
                                    make_tables(seed, batch=3, vocab=vocab, max_len=max_len))
    chex.assert_shape([greedy.tokens, sampled.tokens], (3, max_len))
    chex.assert_shape(beams.tokens, (3, 3, max_len))
    chex.assert_shape(beams.extras["one_hot"], (3, 3, max_len, vocab))


def _bad_state_step(tokens, state):
  return jnp.zeros((tokens.shape[0], 4)), {"t": state["t"].astype(jnp.float32)}, ()


@pytest.mark.parametrize("call,argument", [
    (lambda d, s, st: d.greedy(s, st, bos_id=BOS, eos_id=EOS, max_len=0), "max_len"),
    (lambda d, s, st: d.greedy(s, st, bos_id=4, eos_id=EOS, max_len=2), "bos_id"),
    (lambda d, s, st: d.greedy(s, st, bos_id=BOS, eos_id=-1, max_len=2), "eos_id"),
    (lambda d, s, st: d.beam_search(s, st, bos_id=BOS, eos_id=EOS, max_len=2, beam_size=0),
     "beam_size"),
    (lambda d, s, st: d.beam_search(s, st, bos_id=BOS, eos_id=EOS, max_len=2, beam_size=2,
                                    length_penalty=-0.5), "length_penalty"),
    (lambda d, s, st: d.sample(jax.random.key(0), s, st, bos_id=BOS, eos_id=EOS, max_len=2,
                               temperature=0.0), "temperature"),
    (lambda d, s, st: d.sample(jax.random.key(0), s, st, bos_id=BOS, eos_id=EOS, max_len=2,
                               temperature=float("nan")), "temperature"),
    (lambda d, s, st: d.greedy(s, {"example": jnp.arange(2), "t": jnp.zeros(3, jnp.int32)},
                               bos_id=BOS, eos_id=EOS, max_len=2), "init_state"),
    (lambda d, s, st: d.greedy(_bad_state_step, {"t": jnp.zeros(2, jnp.int32)}, bos_id=BOS,
                               eos_id=EOS, max_len=2), "step_fn"),
])
def test_bad_arguments_raise_value_errors_naming_them(call, argument):
  step_fn = table_step(jnp.asarray(make_tables(0, batch=2, vocab=4, max_len=2)))
  with pytest.raises(ValueError, match=argument):
    call(decoding, step_fn, init_state(2))
