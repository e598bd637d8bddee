"""Tests for vislang_jax.models.dcc: DCC's closest-word choice, direct and delta transfer.

Toy vocabulary (V = 6), L = 3 language features, C = 3 concepts:
  0 <pad> (no concept), 1 the (none), 2 dog (concept 0), 3 horse (concept 1),
  4 zebra (concept 2, the novel word), 5 runs (none).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax import decoding
from vislang_jax.models import dcc
from vislang_jax.models.show_attend_tell import Encoder

L, C, V = 3, 3, 6
CONCEPT = np.array([-1, -1, 0, 1, 2, -1])
ZEBRA, HORSE, DOG = 4, 3, 2


def toy_layer(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(V, L + C)), rng.normal(size=V)


def test_closest_seen_words_by_hand():
  # cos(zebra, horse) = 0.8 / (1 * 1) = 0.8; cos(zebra, dog) = 0.6; cos(zebra, the) = 0.
  # cos(dog, horse) = (0.6 * 0.8 + 0.8 * 0.6) / 1 = 0.96 for the second novel word (dog).
  emb = np.array([[0., 0., 1.], [0., 0., 2.], [3., 4., 0.], [0.8, 0.6, 0.],
                  [10., 0., 0.], [0., 0., 1.]])
  got = dcc.closest_seen_words(jnp.asarray(emb), np.array([ZEBRA]), np.array([1, DOG, HORSE]))
  assert got.tolist() == [HORSE]
  got = dcc.closest_seen_words(jnp.asarray(emb), np.array([ZEBRA, DOG]),
                               np.array([1, HORSE]))
  assert got.tolist() == [HORSE, HORSE]
  top = dcc.closest_seen_words(jnp.asarray(emb), np.array([ZEBRA]),
                               np.array([1, DOG, HORSE]), top_k=2)
  assert top.tolist() == [[HORSE, DOG]]


def test_direct_transfer_against_numpy():
  w, b = toy_layer()
  new_w, new_b = dcc.direct_transfer(jnp.asarray(w), jnp.asarray(b), num_language=L,
                                     word_concept=CONCEPT, novel_ids=np.array([ZEBRA]),
                                     source_ids=np.array([HORSE]))
  new_w, new_b = np.asarray(new_w), np.asarray(new_b)
  expected_w = w.copy()
  # zebra's language weights and bias: horse's.
  expected_w[ZEBRA, :L] = w[HORSE, :L]
  # zebra's concept weights: horse's, except zebra reads the zebra classifier (column L + 2)
  # with horse's weight on the horse classifier (column L + 1), and ignores the horse one.
  expected_w[ZEBRA, L + 0] = w[HORSE, L + 0]
  expected_w[ZEBRA, L + 2] = w[HORSE, L + 1]
  expected_w[ZEBRA, L + 1] = 0.0
  # horse stops reading the zebra classifier.
  expected_w[HORSE, L + 2] = 0.0
  expected_b = b.copy()
  expected_b[ZEBRA] = b[HORSE]
  np.testing.assert_allclose(new_w, expected_w, rtol=1e-6)
  np.testing.assert_allclose(new_b, expected_b, rtol=1e-6)
  # The rule in words: zebra's row equals horse's original row, concept columns swapped, the
  # cross term zeroed.
  np.testing.assert_allclose(new_w[ZEBRA, :L], w[HORSE, :L], rtol=1e-6)
  assert new_w[ZEBRA, L + 2] == pytest.approx(w[HORSE, L + 1])


def test_direct_transfer_jits():
  w, b = toy_layer(1)
  fn = jax.jit(lambda w, b, n, s: dcc.direct_transfer(
      w, b, num_language=L, word_concept=jnp.asarray(CONCEPT), novel_ids=n, source_ids=s))
  got_w, got_b = fn(jnp.asarray(w), jnp.asarray(b), jnp.array([ZEBRA]), jnp.array([HORSE]))
  ref_w, ref_b = dcc.direct_transfer(jnp.asarray(w), jnp.asarray(b), num_language=L,
                                     word_concept=CONCEPT, novel_ids=np.array([ZEBRA]),
                                     source_ids=np.array([HORSE]))
  np.testing.assert_allclose(got_w, ref_w)
  np.testing.assert_allclose(got_b, ref_b)


def test_delta_transfer_against_numpy():
  w, b = toy_layer(2)
  rng = np.random.default_rng(3)
  lm_w, lm_b = rng.normal(size=(V, L)), rng.normal(size=V)
  new_w, new_b = dcc.delta_transfer(jnp.asarray(w), jnp.asarray(b), jnp.asarray(lm_w),
                                    jnp.asarray(lm_b), num_language=L, word_concept=CONCEPT,
                                    novel_ids=np.array([ZEBRA]), source_ids=np.array([HORSE]))
  new_w, new_b = np.asarray(new_w), np.asarray(new_b)
  np.testing.assert_allclose(new_w[ZEBRA, :L], w[HORSE, :L] + (lm_w[ZEBRA] - lm_w[HORSE]),
                             rtol=1e-5)
  assert new_b[ZEBRA] == pytest.approx(b[HORSE] + (lm_b[ZEBRA] - lm_b[HORSE]), rel=1e-5)
  # Concept columns as in direct transfer; other rows untouched but horse's zebra column.
  assert new_w[ZEBRA, L + 2] == pytest.approx(w[HORSE, L + 1])
  assert new_w[ZEBRA, L + 1] == 0.0 and new_w[HORSE, L + 2] == 0.0
  assert new_w[ZEBRA, L + 0] == pytest.approx(w[HORSE, L + 0])
  untouched = np.ones((V, L + C), bool)
  untouched[ZEBRA] = False
  untouched[HORSE, L + 2] = False
  np.testing.assert_array_equal(new_w[untouched], w[untouched].astype(np.float32))
  # K = 2 sources: the mean of the two deltas; concept part from the first source (horse).
  new_w2, new_b2 = dcc.delta_transfer(
      jnp.asarray(w), jnp.asarray(b), jnp.asarray(lm_w), jnp.asarray(lm_b), num_language=L,
      word_concept=CONCEPT, novel_ids=np.array([ZEBRA]), source_ids=np.array([[HORSE, DOG]]))
  delta = ((w[HORSE, :L] - lm_w[HORSE]) + (w[DOG, :L] - lm_w[DOG])) / 2
  np.testing.assert_allclose(new_w2[ZEBRA, :L], lm_w[ZEBRA] + delta, rtol=1e-5)
  assert float(new_b2[ZEBRA]) == pytest.approx(
      lm_b[ZEBRA] + ((b[HORSE] - lm_b[HORSE]) + (b[DOG] - lm_b[DOG])) / 2, rel=1e-5)
  assert float(new_w2[ZEBRA, L + 2]) == pytest.approx(w[HORSE, L + 1])


@pytest.mark.parametrize("novel, source, match", [
    ([ZEBRA], [ZEBRA], "source_ids must not contain novel"),
    ([ZEBRA], [6], "source_ids must hold ids in"),
    ([-1], [HORSE], "novel_ids must hold ids in"),
    ([ZEBRA], [1], "source_ids must be words with a concept"),
    ([5], [HORSE], "novel_ids must be words with a concept"),
    ([ZEBRA], [HORSE, DOG], "one row per novel word"),
])
def test_transfer_errors(novel, source, match):
  w, b = toy_layer()
  with pytest.raises(ValueError, match=match):
    dcc.direct_transfer(w, b, num_language=L, word_concept=CONCEPT,
                        novel_ids=np.array(novel), source_ids=np.array(source))


def test_closest_and_layout_errors():
  emb = np.eye(V)
  with pytest.raises(ValueError, match="seen_ids must not contain novel"):
    dcc.closest_seen_words(emb, np.array([ZEBRA]), np.array([HORSE, ZEBRA]))
  with pytest.raises(ValueError, match="seen_ids must hold ids in"):
    dcc.closest_seen_words(emb, np.array([ZEBRA]), np.array([V]))
  with pytest.raises(ValueError, match="top_k"):
    dcc.closest_seen_words(emb, np.array([ZEBRA]), np.array([HORSE]), top_k=2)
  w, b = toy_layer()
  with pytest.raises(ValueError, match="word_concept must hold concept ids"):
    dcc.direct_transfer(w, b, num_language=4, word_concept=CONCEPT,
                        novel_ids=np.array([ZEBRA]), source_ids=np.array([HORSE]))
  with pytest.raises(ValueError, match="lm_weights must have shape"):
    dcc.delta_transfer(w, b, np.zeros((V, L + 1)), np.zeros(V), num_language=L,
                       word_concept=CONCEPT, novel_ids=np.array([ZEBRA]),
                       source_ids=np.array([HORSE]))


def test_lexical_classifier_and_loss_against_numpy():
  rng = np.random.default_rng(4)
  feats = rng.normal(size=(2, 5)).astype(np.float32)
  model = dcc.LexicalClassifier(num_concepts=C)
  params = model.init(jax.random.PRNGKey(0), feats)
  probs, aux = model.apply(params, feats)
  k = np.asarray(params["params"]["logits"]["kernel"], np.float64)
  bias = np.asarray(params["params"]["logits"]["bias"], np.float64)
  z = feats.astype(np.float64) @ k + bias
  np.testing.assert_allclose(probs, 1 / (1 + np.exp(-z)), rtol=1e-5)
  labels = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
  # -[y log s(z) + (1 - y) log(1 - s(z))] summed over concepts.
  s = 1 / (1 + np.exp(-z))
  ref = -(labels * np.log(s) + (1 - labels) * np.log(1 - s)).sum(-1)
  np.testing.assert_allclose(dcc.lexical_loss(aux["logits"], labels), ref, rtol=1e-5)
  with pytest.raises(ValueError, match="labels must have the shape"):
    dcc.lexical_loss(aux["logits"], labels[:, :2])


def test_multimodal_captioner_layer_and_transfer():
  tokens = jnp.array([[1, HORSE, 5], [1, DOG, 0]])
  model = dcc.MultimodalCaptioner(vocab_size=V, num_concepts=C, embed_dim=4, hidden_dim=L)
  probs = jnp.array([[0.2, 0.9, 0.0], [0.7, 0.1, 0.0]])  # no zebra in either image
  params = model.init(jax.random.PRNGKey(1), tokens, probs)
  # Make the layer non-trivial, including horse's weight on the zebra classifier.
  w, b = toy_layer(5)
  params = dcc.with_multimodal_layer(params, jnp.asarray(w, jnp.float32),
                                     jnp.asarray(b, jnp.float32))
  logits, aux = model.apply(params, tokens, probs)
  h = np.asarray(aux["hidden"], np.float64)
  ref = h @ w[:, :L].T + (np.asarray(probs, np.float64) @ w[:, L:].T)[:, None] + b
  np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
  # LM-only: concept columns unused.
  lm_logits, _ = model.apply(params, tokens)
  np.testing.assert_allclose(lm_logits, h @ w[:, :L].T + b, rtol=1e-4, atol=1e-5)
  # After direct transfer, zebra scores an image with zebra probability p (and horse 0) as
  # horse scored the same image with horse probability p: the DCC intent.
  new_w, new_b = dcc.direct_transfer(*dcc.multimodal_layer(params), num_language=L,
                                     word_concept=CONCEPT, novel_ids=np.array([ZEBRA]),
                                     source_ids=np.array([HORSE]))
  moved = dcc.with_multimodal_layer(params, new_w, new_b)
  swapped = probs[:, jnp.array([0, 2, 1])]
  zebra_logits, _ = model.apply(moved, tokens, swapped)
  np.testing.assert_allclose(zebra_logits[..., ZEBRA], logits[..., HORSE], rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match="concept_probs must have shape"):
    model.apply(params, tokens, probs[:, :2])


def test_two_novel_words_in_order_and_delta_jits():
  # zebra then dog, both from horse, one after the other (as the released code's loop):
  # after zebra, horse's zebra column is 0, so dog (copying horse) ignores the zebra
  # classifier; then horse's dog column is zeroed, after zebra already copied it.
  w, b = toy_layer(6)
  new_w, new_b = dcc.direct_transfer(w, b, num_language=L, word_concept=CONCEPT,
                                     novel_ids=np.array([ZEBRA, DOG]),
                                     source_ids=np.array([HORSE, HORSE]))
  new_w = np.asarray(new_w)
  assert new_w[DOG, L + 2] == 0.0 and new_w[DOG, L + 1] == 0.0
  assert new_w[DOG, L + 0] == pytest.approx(w[HORSE, L + 1])
  assert new_w[ZEBRA, L + 0] == pytest.approx(w[HORSE, L + 0])
  assert new_w[HORSE, L + 0] == 0.0 and new_w[HORSE, L + 2] == 0.0
  assert new_w[HORSE, L + 1] == pytest.approx(w[HORSE, L + 1])
  np.testing.assert_allclose(np.asarray(new_b)[[ZEBRA, DOG]], [b[HORSE], b[HORSE]], rtol=1e-6)
  rng = np.random.default_rng(7)
  lm_w, lm_b = rng.normal(size=(V, L)), rng.normal(size=V)
  args = [jnp.asarray(a, jnp.float32) for a in (w, b, lm_w, lm_b)]
  fn = jax.jit(lambda w, b, lw, lb, n, s: dcc.delta_transfer(
      w, b, lw, lb, num_language=L, word_concept=jnp.asarray(CONCEPT), novel_ids=n,
      source_ids=s))
  got = fn(*args, jnp.array([ZEBRA]), jnp.array([[HORSE, DOG]]))
  ref = dcc.delta_transfer(*args, num_language=L, word_concept=CONCEPT,
                           novel_ids=np.array([ZEBRA]), source_ids=np.array([[HORSE, DOG]]))
  np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
  np.testing.assert_allclose(got[1], ref[1], rtol=1e-6)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_captioner(params, tokens, probs):
  """DCC's captioner in NumPy: LSTM (Flax gate layout i, f, g, o) then W [h_t ; f_I] + b."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  x = p["embed"]["embedding"][tokens]  # [B, T, E]
  lstm = p["lstm"]
  gate = lambda g, xt, h: xt @ lstm[f"i{g}"]["kernel"] + h @ lstm[f"h{g}"]["kernel"] + lstm[
      f"h{g}"]["bias"]
  batch, steps = tokens.shape
  c = h = np.zeros((batch, L))
  hidden, logits = [], []
  for t in range(steps):
    i, f = _sigmoid(gate("i", x[:, t], h)), _sigmoid(gate("f", x[:, t], h))
    g, o = np.tanh(gate("g", x[:, t], h)), _sigmoid(gate("o", x[:, t], h))
    c = f * c + i * g
    h = o * np.tanh(c)
    hidden.append(h)
    logits.append(np.concatenate([h, probs], -1) @ p["multimodal"]["kernel"]
                  + p["multimodal"]["bias"])
  return np.stack(logits, 1), np.stack(hidden, 1)


def test_captioner_against_numpy_and_decode_step_matches_teacher_forcing():
  tokens = jnp.array([[1, HORSE, 5, 3, 0], [1, DOG, 0, 2, 4]])
  model = dcc.MultimodalCaptioner(vocab_size=V, num_concepts=C, embed_dim=4, hidden_dim=L)
  probs = jnp.array([[0.2, 0.9, 0.1], [0.7, 0.1, 0.5]])
  params = model.init(jax.random.PRNGKey(2), tokens, probs)
  assert set(params["params"]) == {"embed", "lstm", "multimodal"}
  assert params["params"]["multimodal"]["kernel"].shape == (L + C, V)
  logits, aux = model.apply(params, tokens, probs)
  ref_logits, ref_hidden = numpy_captioner(params, np.asarray(tokens), np.asarray(probs))
  np.testing.assert_allclose(aux["hidden"], ref_hidden, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
  for concept_probs, batch_size, expected in ((probs, None, logits),
                                              (None, 2, model.apply(params, tokens)[0])):
    state = model.init_decode_state(params["params"], concept_probs, batch_size=batch_size)
    assert state.cell.shape == state.hidden.shape == (2, L)
    assert state.concept_probs.shape == (2, C)
    for t in range(tokens.shape[1]):
      step_logits, state, extras = model.decode_step(params["params"], tokens[:, t], state)
      assert extras == {}
      np.testing.assert_allclose(step_logits, expected[:, t], rtol=1e-5, atol=1e-6)


def test_greedy_decoding_under_jit_follows_the_model():
  model = dcc.MultimodalCaptioner(vocab_size=V, num_concepts=C, embed_dim=4, hidden_dim=L)
  probs = jnp.array([[0.2, 0.9, 0.1], [0.7, 0.1, 0.5], [0.0, 0.0, 1.0]])
  params = model.init(jax.random.PRNGKey(0), jnp.ones((3, 2), jnp.int32), probs)["params"]
  # Larger weights: captions that change word, and one that ends early.
  params = jax.tree.map(lambda a: 4 * a, params)
  max_len, bos, eos = 4, 1, 2

  @jax.jit
  def caption(params, probs):
    state = model.init_decode_state(params, probs)
    return decoding.greedy(functools.partial(model.decode_step, params), state, bos_id=bos,
                           eos_id=eos, max_len=max_len)

  out = caption(params, probs)
  assert out.tokens.shape == (3, max_len)
  assert int(out.lengths.min()) < max_len  # one caption ends early (EOS) with these weights
  # Teacher-force each decoded caption: every emitted token (up to EOS) is the argmax there,
  # and the score is the sum of its log-probabilities.
  inputs = jnp.concatenate([jnp.full((3, 1), bos), out.tokens[:, :-1]], axis=1)
  logits, _ = model.apply({"params": params}, inputs, probs)
  log_probs = np.asarray(jax.nn.log_softmax(logits), np.float64)
  for b in range(3):
    n = int(out.lengths[b])
    assert np.asarray(out.tokens[b, :n]).tolist() == np.argmax(log_probs[b, :n], -1).tolist()
    picked = log_probs[b, np.arange(n), np.asarray(out.tokens[b, :n])]
    assert float(out.scores[b]) == pytest.approx(picked.sum(), rel=1e-5)
  # Beam search (it reorders the state rows): each beam's score is its teacher-forced log-prob.
  beams = jax.jit(lambda params, probs: decoding.beam_search(
      functools.partial(model.decode_step, params), model.init_decode_state(params, probs),
      bos_id=bos, eos_id=eos, max_len=max_len, beam_size=2))(params, probs)
  for k in range(2):
    tokens = beams.tokens[:, k]
    inputs = jnp.concatenate([jnp.full((3, 1), bos), tokens[:, :-1]], axis=1)
    log_probs = np.asarray(jax.nn.log_softmax(model.apply({"params": params}, inputs,
                                                          probs)[0]), np.float64)
    for b in range(3):
      n = int(beams.lengths[b, k])
      picked = log_probs[b, np.arange(n), np.asarray(tokens[b, :n])]
      assert float(beams.scores[b, k]) == pytest.approx(picked.sum(), rel=1e-5)


def test_decode_state_errors():
  model = dcc.MultimodalCaptioner(vocab_size=V, num_concepts=C, embed_dim=4, hidden_dim=L)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((2, 2), jnp.int32))["params"]
  with pytest.raises(ValueError, match="batch_size must be given"):
    model.init_decode_state(params, None)
  with pytest.raises(ValueError, match="concept_probs must have shape"):
    model.init_decode_state(params, jnp.zeros((2, C + 1)))
  with pytest.raises(ValueError, match="batch_size must be None or the rows"):
    model.init_decode_state(params, jnp.zeros((2, C)), batch_size=3)
  state = model.init_decode_state(params, None, batch_size=2)
  with pytest.raises(ValueError, match="tokens must have shape"):
    model.decode_step(params, jnp.ones((3,), jnp.int32), state)
  with pytest.raises(ValueError, match="tokens must hold ids"):
    model.decode_step(params, jnp.array([0, V]), state)


def test_image_lexical_classifier_reads_the_mean_annotation():
  model = dcc.ImageLexicalClassifier(encoder=Encoder(widths=(4, 4)),
                                     classifier=dcc.LexicalClassifier(num_concepts=3))
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
  params = model.init(jax.random.key(1), images)["params"]
  probs, aux = model.apply({"params": params}, images)
  annotations = Encoder(widths=(4, 4)).apply({"params": params["encoder"]}, images)
  pooled = np.asarray(annotations, np.float64).mean(1)
  dense = params["classifier"]["logits"]
  logits = pooled @ np.asarray(dense["kernel"], np.float64) + np.asarray(dense["bias"])
  np.testing.assert_allclose(aux["logits"], logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
