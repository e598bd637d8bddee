"""Tests for vislang_jax.models.dvsa against float64 NumPy references of Karpathy & Fei-Fei's
equations: the region embedding (1) on sliced crops, the bidirectional RNN (2)-(6) sentence by
sentence, the scores (8) and the structured objective (9) by brute force over every pair, and
the multimodal RNN (13)-(15) step by step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from vislang_jax import decoding
from vislang_jax.models import dvsa
from vislang_jax.models.show_attend_tell import Encoder
from vislang_jax.objectives.ranking import ranking_loss
from vislang_jax.ops.chain_mrf import align_words
from vislang_jax.ops.sequence import shift_right

V = 9
ENCODER = FrozenDict(widths=(3,))  # 6x6 crop -> 3x3x3 grid, 27 features

# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _dvsa():
  return dvsa.DVSA(vocab_size=V, embed_dim=5, word_dim=4, hidden_size=6, crop_size=(6, 6),
                   encoder=ENCODER)


def _inputs(seed=0, batch=3, steps=6):
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=(batch, 12, 12, 1)).astype(np.float32)
  # Integer 6x6 boxes at random places: their crops at crop_size (6, 6) are slices.
  corners = rng.integers(0, 7, size=(batch, 2, 2))
  boxes = np.concatenate([corners, corners + 6], axis=-1).astype(np.float32)
  box_mask = np.array([[True, True], [True, False], [False, True]])[:batch]
  tokens = rng.integers(3, V, size=(batch, steps)).astype(np.int32)
  lengths = np.array([steps, 3, 1])[:batch].astype(np.int32)
  return images, boxes, box_mask, tokens, lengths


@functools.partial(_jit, static_argnums=(0, 1))
def _init(model, seed, *inputs):
  return model.init(jax.random.key(seed), *inputs)


def _params(model, inputs, seed=0, recurrent_scale=3.0):
  """Initial parameters with the recurrent kernels scaled up, so the neighbours matter."""
  params = _init(model, seed, *inputs)["params"]
  return {name: ({"kernel": value["kernel"] * recurrent_scale, "bias": value["bias"] + 0.1}
                 if name in ("forward", "backward") else value)
          for name, value in params.items()}


@_jit
def _apply(params, images, boxes, box_mask, tokens, lengths):
  return _dvsa().apply({"params": params}, images, boxes, box_mask, tokens, lengths)


@_jit
def _words(params, tokens, lengths):
  return _dvsa().apply({"params": params}, tokens, lengths, method=dvsa.DVSA.embed_words)


def _f64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _relu(x):
  return np.maximum(x, 0.0)


def _numpy_brnn(params, words):
  """Eq. (2)-(6) over one sentence's word ids [N] in float64 -> s [N, h]."""
  p = _f64(params)
  dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]
  e = _relu(dense("word_in", p["word_embed"]["embedding"][words]))  # (2)-(3)
  forward, backward = np.zeros_like(e), np.zeros_like(e)
  h = np.zeros(e.shape[1])
  for t in range(len(words)):  # (4), h^f_0 = 0
    h = forward[t] = _relu(e[t] + dense("forward", h))
  h = np.zeros(e.shape[1])
  for t in reversed(range(len(words))):  # (5), h^b_{N+1} = 0
    h = backward[t] = _relu(e[t] + dense("backward", h))
  return _relu(dense("word_out", forward + backward))  # (6)


def test_embed_words_is_the_brnn_of_eq_2_to_6():
  inputs = _inputs()
  params = _params(_dvsa(), inputs)
  tokens, lengths = inputs[3], inputs[4]
  words, mask = _words(params, tokens, lengths)
  np.testing.assert_array_equal(mask, np.arange(6) < lengths[:, None])
  for b, n in enumerate(lengths):
    expected = _numpy_brnn(params, tokens[b, :n])
    assert np.abs(expected).max() > 0.1  # not a dead ReLU network
    np.testing.assert_allclose(words[b, :n], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(words[b, n:], 0.0)


def test_embed_words_ignores_padding_content_and_length():
  """The backward pass starts at each sentence's last word, not at the padded end."""
  inputs = _inputs()
  params = _params(_dvsa(), inputs)
  tokens, lengths = inputs[3], inputs[4]
  words, _ = _words(params, tokens, lengths)
  rng = np.random.default_rng(5)
  longer = rng.integers(0, V, size=(3, 10)).astype(np.int32)  # other padding, 4 more steps
  longer[:, :6] = np.where(np.arange(6) < lengths[:, None], tokens, longer[:, :6])
  other, other_mask = _words(params, longer, lengths)
  assert other.shape == (3, 10, 5)
  np.testing.assert_array_equal(other_mask[:, 6:], False)
  np.testing.assert_allclose(other[:, :6], words, rtol=1e-5, atol=1e-6)


def test_embed_regions_is_eq_1_on_the_whole_image_and_the_sliced_boxes():
  model = _dvsa()
  inputs = _inputs()
  images, boxes, box_mask = inputs[:3]
  params = _params(model, inputs)
  regions, region_mask = jax.jit(functools.partial(
      model.apply, method=dvsa.DVSA.embed_regions))({"params": params}, images, boxes, box_mask)
  assert regions.shape == (3, 3, 5)
  np.testing.assert_array_equal(region_mask, np.concatenate([np.ones((3, 1), bool), box_mask],
                                                            axis=1))
  # Region 0: the 12x12 image at 6x6 is its 2x2 means; then the integer boxes' slices.
  crops = [images.reshape(3, 6, 2, 6, 2, 1).mean(axis=(2, 4))]
  crops += [np.stack([images[b, int(y0):int(y1), int(x0):int(x1)]
                      for b, (x0, y0, x1, y1) in enumerate(boxes[:, r])]) for r in range(2)]
  for r, crop in enumerate(crops):
    cnn = np.asarray(Encoder(**ENCODER).apply({"params": params["encoder"]}, crop), np.float64)
    expected = cnn.reshape(3, -1) @ _f64(params["region"]["kernel"]) + _f64(
        params["region"]["bias"])  # v = W_m CNN(I_b) + b_m
    real = region_mask[:, r]
    np.testing.assert_allclose(regions[real, r], expected[real], rtol=1e-4, atol=1e-5)


def test_embed_regions_rejects_boxes_outside_the_image_by_value():
  model = _dvsa()
  inputs = _inputs()
  params = _params(model, inputs)
  images, boxes, box_mask = inputs[:3]
  outside = boxes.copy()
  outside[1, 0] = [7, 2, 13, 8]
  embed = functools.partial(model.apply, {"params": params}, method=dvsa.DVSA.embed_regions)
  with pytest.raises(ValueError, match=(r"boxes must lie inside the 12x12 \(HxW\) image .*"
                                        r"\[7.0, 2.0, 13.0, 8.0\] at index \(1, 0\)")):
    embed(images, outside, box_mask)
  outside[1, 0], outside[1, 1] = boxes[1, 0], [-1, -1, -1, -1]  # masked out: not checked
  embed(images, outside, box_mask)
  with pytest.raises(ValueError, match=r"box_mask must have shape \[B, R\] = \(3, 2\)"):
    embed(images, boxes, box_mask[:, :1])


def test_scores_and_structured_objective_are_eq_8_and_9_by_brute_force():
  inputs = _inputs(seed=1)
  params = _params(_dvsa(), inputs)
  scores, aux = _apply(params, *inputs)
  regions, words = _f64(aux["regions"]), _f64(aux["words"])
  batch = len(scores)
  brute = np.zeros((batch, batch))
  for k in range(batch):  # S_kl = sum_{t in g_l} max_{i in g_k} v_i . s_t
    for l in range(batch):
      for t in np.flatnonzero(aux["word_mask"][l]):
        brute[k, l] += max(regions[k, i] @ words[l, t]
                           for i in np.flatnonzero(aux["region_mask"][k]))
  np.testing.assert_allclose(scores, brute, rtol=1e-5, atol=1e-6)
  for margin in (1.0, 0.0):  # 0: some hinges inactive
    loss = np.zeros(batch)
    for k in range(batch):
      for l in range(batch):
        if l != k:
          loss[k] += (max(0.0, brute[k, l] - brute[k, k] + margin)
                      + max(0.0, brute[l, k] - brute[k, k] + margin))
    np.testing.assert_allclose(ranking_loss(scores, margin=margin), loss, rtol=1e-5, atol=1e-6)


def test_word_region_scores_feed_the_mrf_and_skip_masked_regions():
  rng = np.random.default_rng(2)
  regions = rng.normal(size=(2, 4, 5)).astype(np.float32)
  words = rng.normal(size=(2, 3, 5)).astype(np.float32)
  region_mask = np.array([[True, True, False, True], [True, False, False, False]])
  scores = dvsa.word_region_scores(regions, words, region_mask=region_mask)
  expected = np.einsum("brd,btd->btr", regions.astype(np.float64), words)
  np.testing.assert_allclose(scores, np.where(region_mask[:, None], expected, -np.inf),
                             rtol=1e-6)
  np.testing.assert_allclose(dvsa.word_region_scores(regions[0], words[0]), expected[0],
                             rtol=1e-6)
  aligned, _ = align_words(scores, np.ones((2, 3), bool), beta=0.0)
  np.testing.assert_array_equal(aligned, np.argmax(np.where(region_mask[:, None], expected,
                                                            -np.inf), axis=-1))
  for beta in (0.5, 100.0):  # -inf unaries stay out of the Viterbi with smoothness too
    aligned, energy = align_words(scores, np.ones((2, 3), bool), beta=beta)
    assert np.isfinite(energy).all() and region_mask[np.arange(2)[:, None], aligned].all()
  assert (aligned == aligned[:, :1]).all()  # a large beta: one region per sentence


def test_dvsa_trains_every_parameter(check_adam_training):
  inputs = _inputs(seed=3)
  params = _params(_dvsa(), inputs, recurrent_scale=1.0)

  def loss_fn(params):
    scores, _ = _dvsa().apply({"params": params}, *inputs)
    return jnp.mean(ranking_loss(scores, margin=1.0))

  check_adam_training(loss_fn, params, steps=15)


def test_dvsa_checks_its_configuration_and_word_lengths():
  model = dvsa.DVSA(vocab_size=V, encoder={"widths": (3,)})  # a dict becomes a FrozenDict
  assert hash(model) == hash(dvsa.DVSA(vocab_size=V, encoder=FrozenDict(widths=(3,))))
  with pytest.raises(ValueError, match="encoder must be a mapping"):
    dvsa.DVSA(vocab_size=V, encoder=(3,))
  with pytest.raises(ValueError, match="crop_size must be a pair"):
    dvsa.DVSA(vocab_size=V, crop_size=(0, 4))
  inputs = _inputs()
  params = _params(_dvsa(), inputs)
  for lengths in (np.array([6, 0, 1]), np.array([7, 1, 1]), np.array([6, 1])):
    with pytest.raises(ValueError, match=r"lengths must be \[B\] = \(3,\) ints in \[1, T\]"):
      _dvsa().apply({"params": params}, inputs[3], lengths, method=dvsa.DVSA.embed_words)


BOS, EOS = 1, 2


def _mrnn(dropout_rate=0.0):
  return dvsa.MultimodalRNN(vocab_size=V, word_dim=4, hidden_size=6, encoder=ENCODER,
                            dropout_rate=dropout_rate)


def _mrnn_inputs(seed=0, batch=3, steps=5):
  rng = np.random.default_rng(seed)
  crops = rng.uniform(size=(batch, 6, 6, 1)).astype(np.float32)
  tokens = rng.integers(3, V, size=(batch, steps)).astype(np.int32)
  tokens[:, 0] = BOS
  return crops, tokens


def _mrnn_params(seed=0, recurrent_scale=2.0):
  """Initial parameters with ``W_hh`` scaled up (the past matters) and ``W_hi`` too (so does
  the image), biases nonzero."""
  params = _init(_mrnn(), seed, *_mrnn_inputs())["params"]
  params = dict(params, image={"kernel": params["image"]["kernel"] * 3.0},
                recurrent={"kernel": params["recurrent"]["kernel"] * recurrent_scale,
                           "bias": params["recurrent"]["bias"] + 0.1})
  return params


@_jit
def _mrnn_apply(params, images, tokens_in):
  return _mrnn().apply({"params": params}, images, tokens_in)


def _numpy_mrnn(params, images, tokens_in):
  """Eq. (13)-(15) in float64, one step at a time: logits [B, T, V]."""
  p = _f64(params)
  cnn = np.asarray(Encoder(**ENCODER).apply({"params": params["encoder"]}, images), np.float64)
  image_bias = cnn.reshape(len(images), -1) @ p["image"]["kernel"]  # b_v, (13)
  h = np.zeros_like(image_bias)
  logits = []
  for t in range(tokens_in.shape[1]):
    x = p["embed"]["embedding"][tokens_in[:, t]]
    h = _relu(x @ p["input"]["kernel"] + h @ p["recurrent"]["kernel"]
              + p["recurrent"]["bias"] + (image_bias if t == 0 else 0.0))  # (14)
    logits.append(h @ p["out"]["kernel"] + p["out"]["bias"])  # (15)
  return np.stack(logits, 1)


def test_multimodal_rnn_is_eq_13_to_15_with_the_image_at_the_first_step_only():
  params = _mrnn_params()
  images, tokens_in = _mrnn_inputs()
  logits, aux = _mrnn_apply(params, images, tokens_in)
  assert logits.shape == (3, 5, V) and aux["hidden"].shape == (3, 5, 6)
  expected = _numpy_mrnn(params, images, tokens_in)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  # The image matters: another image changes the first step and, through h, the later ones.
  other, _ = _mrnn_apply(params, images[::-1], tokens_in)
  assert np.abs(np.asarray(other) - logits)[:, -1].max() > 1e-3


def test_multimodal_rnn_decode_steps_equal_teacher_forcing():
  model = _mrnn()
  params = _mrnn_params()
  images, tokens_in = _mrnn_inputs()
  logits, aux = _mrnn_apply(params, images, tokens_in)
  embedding = model.input_embedding(params)
  state = model.init_decode_state(params, images)
  step = _jit(functools.partial(model.decode_step, params))
  step_embedded = _jit(functools.partial(model.decode_step_embedded, params))
  for t in range(tokens_in.shape[1]):
    by_vector, _, _ = step_embedded(embedding[tokens_in[:, t]], state)
    step_logits, state, extras = step(tokens_in[:, t], state)
    np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_vector, step_logits, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(extras["hidden"], aux["hidden"][:, t], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"tokens must have shape \[N\] with N = 3"):
    model.decode_step(params, tokens_in[:2, 0], state)
  with pytest.raises(ValueError, match=r"inputs must have shape \[N, m\] = \(3, 4\)"):
    model.decode_step_embedded(params, embedding[tokens_in[:, 0], :3], state)


def test_multimodal_rnn_greedy_and_beam_decode_under_jit_and_rescore():
  model = _mrnn()
  params = _mrnn_params()
  images, _ = _mrnn_inputs()

  @_jit
  def caption(params, images):
    state = model.init_decode_state(params, images)
    step_fn = functools.partial(model.decode_step, params)
    options = dict(bos_id=BOS, eos_id=EOS, max_len=6)
    return (decoding.greedy(step_fn, state, **options),
            decoding.beam_search(step_fn, state, beam_size=3, **options))

  greedy, beams = caption(params, images)
  assert greedy.tokens.shape == (3, 6) and beams.tokens.shape == (3, 3, 6)
  # Teacher-forcing the greedy captions reproduces every choice and the score.
  logits, _ = _mrnn_apply(params, images, shift_right(greedy.tokens, bos_id=BOS))
  log_probs = np.asarray(jax.nn.log_softmax(logits), np.float64)
  real = np.arange(6) < np.asarray(greedy.lengths)[:, None]
  np.testing.assert_array_equal(np.where(real, np.argmax(log_probs, -1), 0), greedy.tokens)
  picked = np.take_along_axis(log_probs, np.asarray(greedy.tokens)[..., None], -1)[..., 0]
  np.testing.assert_allclose(greedy.scores, np.where(real, picked, 0).sum(-1), rtol=1e-5)
  # The best beam scores at least as well as greedy.
  assert (np.asarray(beams.scores[:, 0]) >= np.asarray(greedy.scores) - 1e-5).all()


def test_multimodal_rnn_dropout_and_training(check_adam_training):
  model = _mrnn(dropout_rate=0.5)
  params = _mrnn_params(recurrent_scale=1.0)
  images, tokens = _mrnn_inputs(seed=4, steps=6)
  tokens[:, -1] = EOS
  train, _ = model.apply({"params": params}, images, tokens, deterministic=False,
                         rngs={"dropout": jax.random.key(1)})
  test, _ = model.apply({"params": params}, images, tokens)
  assert np.abs(np.asarray(train) - test).max() > 1e-3
  state = model.init_decode_state(params, images)
  inputs = model.input_embedding(params)[tokens[:, 0]]
  dropped, _, _ = model.decode_step_embedded(params, inputs, state,
                                             dropout_key=jax.random.key(2))
  np.testing.assert_allclose(model.decode_step_embedded(params, inputs, state)[0],
                             test[:, 0], rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(dropped) - test[:, 0]).max() > 1e-3

  def loss_fn(params):
    logits, _ = _mrnn().apply({"params": params}, images, shift_right(tokens, bos_id=BOS))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, tokens))

  check_adam_training(loss_fn, params, steps=15)
