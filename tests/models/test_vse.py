"""VSE (Kiros et al. 2014, Sec. 2) and the SC-NLM (Sec. 3) against NumPy float64 references.

The references write the paper's equations out per example with explicit loops (the LSTM's
gates, the log-bilinear context sum, the gate u, the factor product), so they share no code
with the vectorised model.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vislang_jax import decoding
from vislang_jax.models import vse
from vislang_jax.models.show_attend_tell import Encoder

V, K, W = 11, 6, 5
ENCODER = {"widths": (4, 8)}  # 12x12 images -> a 3x3 grid of 8 channels


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _lstm_reference(params, tokens, length):
  """The sentence vector of eq. Sec. 2.2: the LSTM's h after `length` tokens, normalised."""
  p = _f64(params)
  embedding, lstm = p["embed"]["embedding"], p["lstm"]
  size = lstm["hi"]["kernel"].shape[0]
  h, c = np.zeros(size), np.zeros(size)

  def gate(name, x):
    return x @ lstm["i" + name]["kernel"] + h @ lstm["h" + name]["kernel"] + lstm["h" + name]["bias"]

  for t in range(length):
    x = embedding[tokens[t]]
    i, f = _sigmoid(gate("i", x)), _sigmoid(gate("f", x))
    g, o = np.tanh(gate("g", x)), _sigmoid(gate("o", x))
    c = f * c + i * g
    h = o * np.tanh(c)
  if "sentence_projection" in p:
    h = h @ p["sentence_projection"]["kernel"]
  return h / np.linalg.norm(h)


@pytest.fixture(scope="module")
def model_and_params():
  model = vse.VSE(vocab_size=V, embed_dim=K, word_dim=W,
                  encoder=ml_collections.ConfigDict(ENCODER))
  images = jax.random.uniform(jax.random.key(1), (3, 12, 12, 1))
  tokens = jnp.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 10, 2]])
  lengths = jnp.array([3, 2, 5])
  params = model.init(jax.random.key(0), images, tokens, lengths)["params"]
  return model, params, images, tokens, lengths


def test_l2_normalize_unit_vectors_and_zero():
  x = jax.random.normal(jax.random.key(0), (4, 7))
  np.testing.assert_allclose(np.linalg.norm(vse.l2_normalize(x), axis=-1), 1.0, atol=1e-6)
  zero = jnp.zeros((3,))
  assert np.all(vse.l2_normalize(zero) == 0)
  grad = jax.grad(lambda z: jnp.sum(vse.l2_normalize(z)))(zero)
  assert np.all(np.isfinite(grad))


def test_scores_and_k_mismatch():
  x = jax.random.normal(jax.random.key(0), (3, 4))
  v = jax.random.normal(jax.random.key(1), (5, 4))
  np.testing.assert_allclose(vse.scores(x, v), np.asarray(x) @ np.asarray(v).T, rtol=1e-5)
  with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
    vse.scores(x, jnp.zeros((5, 6)))
  with pytest.raises(ValueError, match="image_emb"):
    vse.scores(x[0], v)


@pytest.mark.parametrize("pool", ["flatten", "mean"])
def test_embed_images_against_numpy(pool):
  model = vse.VSE(vocab_size=V, embed_dim=K, word_dim=W, encoder=ENCODER, pool=pool)
  images = jax.random.uniform(jax.random.key(1), (2, 12, 12, 1))
  params = model.init(jax.random.key(0), images, jnp.array([[2], [2]]), jnp.array([1, 1]))["params"]
  grid = np.asarray(Encoder(**ENCODER).apply({"params": params["image_encoder"]}, images),
                    np.float64)  # [B, L, D]
  assert grid.shape == (2, 9, 8)
  pooled = grid.reshape(2, -1) if pool == "flatten" else grid.mean(axis=1)
  p = _f64(params["image_projection"])
  x = pooled @ p["kernel"] + p["bias"]
  expected = x / np.linalg.norm(x, axis=-1, keepdims=True)
  got = model.apply({"params": params}, images, method=model.embed_images)
  np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("hidden_size", [None, 7])
def test_embed_sentences_against_numpy_lstm(hidden_size):
  model = vse.VSE(vocab_size=V, embed_dim=K, word_dim=W, hidden_size=hidden_size,
                  encoder=ENCODER)
  tokens = jnp.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 10, 2]])
  lengths = jnp.array([3, 2, 5])
  params = model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)), tokens, lengths)["params"]
  got = model.apply({"params": params}, tokens, lengths, method=model.embed_sentences)
  assert got.shape == (3, K)
  for b in range(3):
    np.testing.assert_allclose(got[b], _lstm_reference(params, np.asarray(tokens[b]),
                                                       int(lengths[b])), atol=1e-5)


def test_padding_never_reaches_the_sentence_vector_and_eos_is_read(model_and_params):
  model, params, _, tokens, lengths = model_and_params
  embed = jax.jit(functools.partial(model.apply, {"params": params},
                                    method=model.embed_sentences))
  base = embed(tokens, lengths)
  longer = jnp.concatenate([tokens, jnp.zeros((3, 4), jnp.int32)], axis=1)
  noisy = jnp.where(jnp.arange(5) < lengths[:, None], tokens,
                    jax.random.randint(jax.random.key(3), tokens.shape, 0, V))
  np.testing.assert_allclose(embed(longer, lengths), base, atol=1e-6)
  np.testing.assert_allclose(embed(noisy, lengths), base, atol=1e-6)
  alone = embed(tokens[1:2, :2], lengths[1:2])  # the second sentence without padding
  np.testing.assert_allclose(alone[0], base[1], atol=1e-6)
  # <eos> (the last counted token) is read: replacing it changes the vector.
  changed = tokens.at[0, 2].set(3)
  assert np.abs(embed(changed, lengths)[0] - base[0]).max() > 1e-4


def test_call_scores_and_errors(model_and_params):
  model, params, images, tokens, lengths = model_and_params
  s, aux = model.apply({"params": params}, images, tokens, lengths)
  assert s.shape == (3, 3)
  np.testing.assert_allclose(s, aux["images"] @ aux["sentences"].T, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(aux["images"], axis=-1), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="lengths"):
    model.apply({"params": params}, tokens, jnp.array([3, 0, 5]), method=model.embed_sentences)
  with pytest.raises(ValueError, match="lengths"):
    model.apply({"params": params}, tokens, jnp.array([3, 2, 6]), method=model.embed_sentences)
  with pytest.raises(ValueError, match="tokens"):
    model.apply({"params": params}, tokens.at[0, 0].set(V), lengths,
                method=model.embed_sentences)
  with pytest.raises(ValueError, match="pool"):
    vse.VSE(vocab_size=V, pool="max")
  with pytest.raises(ValueError, match="encoder"):
    vse.VSE(vocab_size=V, encoder=(4, 8))
  hash(model)  # the encoder kwargs (a ConfigDict here) are frozen


def test_arithmetic_query():
  keys = jax.random.split(jax.random.key(0), 3)
  image = vse.l2_normalize(jax.random.normal(keys[0], (4, K)))
  minus = vse.l2_normalize(jax.random.normal(keys[1], (4, K)))
  plus = vse.l2_normalize(jax.random.normal(keys[2], (K,)))
  q = np.asarray(image, np.float64) - np.asarray(minus) + np.asarray(plus)
  np.testing.assert_allclose(vse.arithmetic_query(image, minus, plus),
                             q / np.linalg.norm(q, axis=-1, keepdims=True), atol=1e-6)
  assert vse.arithmetic_query(image[0], minus[0], plus).shape == (K,)
  with pytest.raises(ValueError, match="minus"):
    vse.arithmetic_query(image, minus[:, :3], plus)


# ---------------------------------------------------------------------------- SC-NLM

SC = dict(vocab_size=9, word_dim=4, context_size=3, structure_window=2, structure_dim=3,
          hidden=6, factors=5)
CONTENT_DIM = 7


def _scnlm(num_structure):
  """The model and random (all nonzero) parameters."""
  model = vse.SCNLM(num_structure=num_structure, **SC)
  structure = jnp.zeros((2, 3), jnp.int32) if num_structure else None
  params = model.init(jax.random.key(0), jnp.zeros((2, 3), jnp.int32), structure,
                      jnp.zeros((2, CONTENT_DIM)))["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [0.7 * jax.random.normal(k, x.shape)
                                     for k, x in zip(keys, leaves)])
  return model, params


def _scnlm_reference(params, context, structure, content):
  """Sec. 3.2-3.3 per example: r_hat, u, f and the logits, in float64 loops."""
  p = _f64(params)
  folded = p["factor_vocab"].T @ p["factor_words"]  # row w: E(:, w)
  out, signs = [], []
  for b in range(len(context)):
    r_hat = np.zeros(p["factor_words"].shape[1])
    for i, w in enumerate(context[b]):
      if w >= 0:
        r_hat += p["context"][i] @ folded[w]
    pre = np.asarray(content[b], np.float64) @ p["content"]["kernel"] + p["content"]["bias"]
    if structure is not None:
      for j, t in enumerate(structure[b]):
        pre += p["structure_context"][j] @ p["structure_embed"]["embedding"][t]
    u = np.maximum(pre, 0.0)
    f = (p["factor_words"] @ r_hat) * (p["factor_gate"] @ u)
    out.append(p["factor_vocab"].T @ f + p["vocab_bias"])
    signs.extend(np.sign(pre))
  assert min(signs) < 0 < max(signs)  # the max(., 0) of u is active somewhere, not everywhere
  return np.stack(out)


@pytest.mark.parametrize("num_structure", [0, 5])
def test_scnlm_step_against_numpy(num_structure):
  model, params = _scnlm(num_structure)
  context = np.array([[-1, -1, 1], [1, 4, 5], [8, 0, 3]])
  structure = np.array([[0, 1, 2], [3, 4, 4], [2, 2, 0]]) if num_structure else None
  content = np.asarray(jax.random.normal(jax.random.key(2), (3, CONTENT_DIM)))
  got = model.apply({"params": params}, jnp.asarray(context),
                    None if structure is None else jnp.asarray(structure), jnp.asarray(content))
  expected = _scnlm_reference(params, context, structure, content)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _windows(structure, t, k):
  return [structure[:, min(t + j, structure.shape[1] - 1)] for j in range(k + 1)]


def test_sentence_logits_equal_brute_force_windows_and_decode_steps():
  model, params = _scnlm(5)
  tokens_in = jnp.array([[1, 4, 5, 6, 7], [1, 3, 3, 2, 0]])
  structure = jnp.array([[0, 1, 2, 3, 4, 4], [1, 1, 2, 2, 3, 0]])  # S = T + 1 < T + k
  content = jax.random.normal(jax.random.key(2), (2, CONTENT_DIM))
  full = model.apply({"params": params}, tokens_in, structure, content,
                     method=model.sentence_logits)
  assert full.shape == (2, 5, 9)
  n1, k = SC["context_size"], SC["structure_window"]
  step = jax.jit(functools.partial(model.apply, {"params": params}))
  for t in range(5):
    context = jnp.stack([tokens_in[:, t - n1 + 1 + i] if t - n1 + 1 + i >= 0
                         else jnp.full((2,), -1) for i in range(n1)], axis=1)
    window = jnp.stack(_windows(structure, t, k), axis=1)
    np.testing.assert_allclose(full[:, t], step(context, window, content), atol=1e-5)
  state = model.init_decode_state(params, content, structure)
  stepped = []
  for t in range(5):
    logits, state, extras = model.decode_step(params, tokens_in[:, t], state)
    assert extras == {}
    stepped.append(logits)
  np.testing.assert_allclose(jnp.stack(stepped, 1), full, atol=1e-5)


def test_structure_enters_only_through_its_window_and_u():
  model, params = _scnlm(5)
  tokens_in = jnp.array([[1, 4, 5, 6, 7, 8]])
  content = jax.random.normal(jax.random.key(2), (1, CONTENT_DIM))
  structure = jnp.array([[0, 1, 2, 3, 4, 0, 1, 2]])
  logits = jax.jit(functools.partial(model.apply, {"params": params},
                                     method=model.sentence_logits))
  base = logits(tokens_in, structure, content)
  t, k = 2, SC["structure_window"]
  for position in range(8):  # step t reads positions t..t+k only
    moved = logits(tokens_in, structure.at[0, position].set((structure[0, position] + 1) % 5),
                   content)
    changed = np.abs(moved[0, t] - base[0, t]).max() > 1e-5
    assert changed == (t <= position <= t + k), position
  # Without the structure context matrices the structure has no path to the logits.
  silent = dict(params, structure_context=jnp.zeros_like(params["structure_context"]))
  a = model.apply({"params": silent}, tokens_in, structure, content, method=model.sentence_logits)
  b = model.apply({"params": silent}, tokens_in, (structure + 1) % 5, content,
                  method=model.sentence_logits)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_scnlm_decoding_contract_and_greedy():
  model, params = _scnlm(5)
  content = jax.random.normal(jax.random.key(2), (3, CONTENT_DIM))
  structure = jnp.array([[0, 1, 2, 4], [1, 2, 3, 4], [2, 3, 3, 4]])
  state = model.init_decode_state(params, content, structure)
  tokens = jnp.array([1, 5, 7])
  a = model.decode_step(params, tokens, state)
  b = model.decode_step_embedded(params, model.input_embedding(params)[tokens], state)
  np.testing.assert_allclose(a[0], b[0], atol=1e-6)
  np.testing.assert_allclose(a[1].words, b[1].words, atol=1e-6)

  @jax.jit
  def generate(params, content, structure):
    step_fn = functools.partial(model.decode_step, params)
    return decoding.greedy(step_fn, model.init_decode_state(params, content, structure),
                           bos_id=1, eos_id=2, max_len=6)

  out = generate(params, content, structure)
  assert out.tokens.shape == (3, 6) and out.lengths.shape == (3,)
  first = model.apply({"params": params}, jnp.array([[-1, -1, 1]] * 3), structure[:, :3],
                      content)
  np.testing.assert_array_equal(out.tokens[:, 0], jnp.argmax(first, -1))
  beams = decoding.beam_search(functools.partial(model.decode_step, params), state, bos_id=1,
                               eos_id=2, max_len=4, beam_size=2)
  assert beams.tokens.shape == (3, 2, 4)


def test_scnlm_errors():
  model, params = _scnlm(5)
  plain, plain_params = _scnlm(0)
  content = jnp.zeros((2, CONTENT_DIM))
  with pytest.raises(ValueError, match="structure must be None"):
    plain.apply({"params": plain_params}, jnp.ones((2, 4), jnp.int32), jnp.zeros((2, 4), jnp.int32),
                content, method=plain.sentence_logits)
  with pytest.raises(ValueError, match="structure must be"):
    model.init_decode_state(params, content, None)
  with pytest.raises(ValueError, match="structure"):
    model.apply({"params": params}, jnp.ones((2, 3), jnp.int32), jnp.full((2, 3), 5), content)
  with pytest.raises(ValueError, match="context"):
    model.apply({"params": params}, jnp.full((2, 3), -2), jnp.zeros((2, 3), jnp.int32), content)
  with pytest.raises(ValueError, match="content"):
    model.apply({"params": params}, jnp.ones((2, 3), jnp.int32), jnp.zeros((2, 3), jnp.int32),
                jnp.zeros((3, CONTENT_DIM)))
