"""Show-Attend-Tell's beam search against its own teacher-forced forward pass.

A small captioner with random parameters, scaled so that the LSTM state (hence each beam's
history) strongly changes the next word's distribution, decodes with
``decoding.beam_search`` over ``ShowAttendTell.decode_step``. Each returned caption is then
scored by the model's teacher-forced unroll (``ShowAttendTell.__call__``, which never sees
the decoder state that beam search carries and reorders): its score must be the sum of
``log_softmax`` at each of its tokens, ``<eos>`` included, and its recorded attention the
teacher-forced one. The returned beams must also be those of a textbook beam search (K live
beams, a separate pool of the K best finished ones) run in float64 on teacher-forced
log-probabilities of every prefix.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax import decoding
from vislang_jax.models import show_attend_tell as sat

B, K, T, SIZE, V = 3, 3, 6, 12, 9
BOS, EOS, PAD = 1, 2, 0

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

MODEL = sat.ShowAttendTell(
    encoder=sat.Encoder(widths=(4, 8)),  # 12x12 -> 3x3 grid: L = 9
    decoder=sat.Decoder(vocab_size=V, embed_dim=8, hidden_size=16, attention_dim=8))


@pytest.fixture(scope="module")
def setup():
  images = jnp.asarray(np.random.default_rng(0).normal(scale=3.0, size=(B, SIZE, SIZE, 1)),
                       jnp.float32)
  tokens = jnp.full((B, T), BOS, jnp.int32)
  params = _jit(lambda x, y: MODEL.init(jax.random.key(0), x, y, deterministic=True))(
      images, tokens)["params"]
  decoder = dict(params["decoder"])
  # History matters: larger word embeddings, recurrence and read-outs of h_t and z_t, sharp
  # attention, and <eos> made rarer, so that captions of several lengths compete.
  for name, factor in (("embed", 4.0), ("lstm", 2.0), ("out_hidden", 4.0),
                       ("out_context", 4.0), ("att_score", 30.0)):
    decoder[name] = jax.tree.map(lambda x, f=factor: f * x, decoder[name])
  decoder["out_logits"] = dict(decoder["out_logits"],
                               bias=decoder["out_logits"]["bias"].at[EOS].add(-3.0))
  return dict(params, decoder=decoder), images


@functools.partial(_jit, static_argnames="length_penalty")
def _beam_search(params, images, *, length_penalty):
  return decoding.beam_search(
      functools.partial(MODEL.decode_step, params), MODEL.init_decode_state(params, images),
      bos_id=BOS, eos_id=EOS, max_len=T, beam_size=K, length_penalty=length_penalty,
      pad_id=PAD)


@_jit
def _teacher_forced(params, images, tokens_in):
  """log_softmax of the teacher-forced logits [N, T, V] and the attention [N, T, L]."""
  logits, aux = MODEL.apply({"params": params}, images, tokens_in, deterministic=True)
  return jax.nn.log_softmax(logits), aux["alpha"]


def _inputs(captions):
  """Captions [N, T] -> decoder inputs [N, T]: <bos>, then the caption shifted right."""
  captions = np.asarray(captions)
  return np.concatenate([np.full((len(captions), 1), BOS), captions[:, :-1]], 1).astype(np.int32)


def _reference_beam_search(params, images, alpha):
  """Textbook beam search in float64 on teacher-forced next-word log-probabilities.

  K live beams per example; each step's candidates that end (``<eos>``, or T tokens) join a
  pool of the K best finished ones by ``score / ((5 + length) / 6) ** alpha`` (older first
  among equals), the K most probable others stay live. Returns [(tokens, score)] * K per
  example, best first.
  """
  def rank(h):
    return -h[1] / ((5 + len(h[0])) / 6) ** alpha

  live, finished = [[((), 0.0)] for _ in range(B)], [[] for _ in range(B)]
  for t in range(T):
    rows = [(b, seq, score) for b in range(B) for seq, score in live[b]]
    captions = np.full((B * K, T), PAD, np.int32)  # fixed shape: one compilation
    owners = np.zeros(B * K, np.int32)
    for row, (b, seq, _) in enumerate(rows):
      captions[row, :t] = seq
      owners[row] = b
    log_probs, _ = _teacher_forced(params, images[owners], _inputs(captions))
    next_log_probs = np.asarray(log_probs, np.float64)[:, t]  # log p(y_t | a, y_<t)
    for b in range(B):
      candidates = [(seq + (v,), score + next_log_probs[row, v])
                    for row, (owner, seq, score) in enumerate(rows) if owner == b
                    for v in range(V)]
      ends = [c[0][-1] == EOS or t == T - 1 for c in candidates]
      finished[b] = sorted(finished[b] + [c for c, e in zip(candidates, ends) if e],
                           key=rank)[:K]
      live[b] = sorted([c for c, e in zip(candidates, ends) if not e],
                       key=lambda h: -h[1])[:K]
  return finished


@pytest.mark.parametrize("length_penalty", [0.0, 1.5])
def test_beam_scores_are_teacher_forced_log_probabilities(setup, length_penalty):
  params, images = setup
  out = jax.tree.map(np.asarray, _beam_search(params, images, length_penalty=length_penalty))
  assert out.tokens.shape == (B, K, T) and out.extras["alpha"].shape == (B, K, T, 9)
  lengths = out.lengths
  assert np.all(np.isfinite(out.scores)) and np.all(lengths >= 1)
  valid = np.arange(T) < lengths[..., None]  # [B, K, T]
  # A caption ends at its first <eos>, or has T tokens; pad after it.
  ends_with_eos = np.take_along_axis(out.tokens, lengths[..., None] - 1, -1)[..., 0] == EOS
  assert np.all(ends_with_eos | (lengths == T))
  assert not np.any((out.tokens == EOS) & valid & (np.arange(T) < lengths[..., None] - 1))
  np.testing.assert_array_equal(np.where(valid, out.tokens, PAD), out.tokens)
  assert len(set(lengths.ravel())) >= 2  # captions of several lengths compete

  # Each beam's score is the teacher-forced log-probability of its caption, <eos> included.
  captions = out.tokens.reshape(B * K, T)
  log_probs, alpha = _teacher_forced(params, jnp.repeat(images, K, 0), _inputs(captions))
  picked = np.take_along_axis(np.asarray(log_probs, np.float64), captions[..., None], -1)[..., 0]
  forced = np.where(valid, picked.reshape(B, K, T), 0.0).sum(-1)
  np.testing.assert_allclose(out.scores, forced, rtol=1e-5, atol=1e-5)
  # ... its attention maps are the teacher-forced ones (its own history), zeros after it.
  np.testing.assert_allclose(out.extras["alpha"],
                             np.where(valid[..., None], alpha.reshape(B, K, T, -1), 0.0),
                             atol=1e-5)
  # Ranked by normalised score, best first.
  penalty = ((5.0 + lengths) / 6.0) ** length_penalty
  np.testing.assert_allclose(out.normalized_scores, forced / penalty, rtol=1e-5, atol=1e-5)
  assert np.all(np.diff(out.normalized_scores, axis=1) <= 0)

  # The beams are the textbook search's (same tokens, same order, same scores).
  reference = _reference_beam_search(params, images, length_penalty)
  for b in range(B):
    assert [tuple(out.tokens[b, k, :lengths[b, k]]) for k in range(K)] == [
        seq for seq, _ in reference[b]]
    np.testing.assert_allclose(out.scores[b], [s for _, s in reference[b]], rtol=1e-5,
                               atol=1e-5)


def test_the_next_word_depends_on_the_history(setup):
  """The fixture has power: the decoder state, not only the previous word, sets the next one.

  After ``[a, 5]`` for every first word ``a`` (same image, same input word 5 at step 3),
  the teacher-forced distributions of the third word differ by far more than the tolerances
  above: they differ only through the LSTM state, so a search that scores a beam with
  another beam's state (no reorder by parent beam) gets other scores.
  """
  params, images = setup
  captions = np.full((V, T), PAD, np.int32)
  captions[:, 0], captions[:, 1] = np.arange(V), 5
  log_probs, _ = _teacher_forced(params, jnp.repeat(images[:1], V, 0), _inputs(captions))
  third = np.asarray(log_probs)[:, 2]  # [V first words, V third words]
  assert np.abs(third - third[:1]).max() > 1.0
