"""The VQA models (naive CNN+LSTM, stacked attention, memory network) against NumPy float64
references of their papers' equations, written per example with explicit loops over words,
layers and hops, so they share no code with the vectorised models.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vislang_jax.models import vqa

V, NUM_ANSWERS, B = 9, 4, 3
ENCODER = {"widths": (4, 8)}  # 12x12 images -> a 3x3 grid (L = 9) of D = 8 channels
L, D = 9, 8
QUESTION = np.array([[3, 4, 5, 2, 0, 0], [6, 2, 0, 0, 0, 0], [7, 8, 3, 4, 6, 2]], np.int32)
LENGTH = np.array([4, 2, 6], np.int32)  # tokens up to and including <eos> (id 2)
MASK = np.ones((B, L), bool)
MASK[0, [0, 4, 8]] = False
MASK[2, 1:] = False  # a single real region

SMALL = {
    "naive": dict(embed_dim=5, hidden_size=6, lstm_layers=2, mlp_sizes=(7,), dropout_rate=0.3),
    "san": dict(embed_dim=5, hidden_size=6, attention_dim=4, num_layers=2, dropout_rate=0.3),
    "memnet": dict(embed_dim=6, hops=3),
    "memnet_layerwise": dict(embed_dim=6, hops=3, tying="layerwise"),
}


def _model(name, **overrides):
  kwargs = {**SMALL[name], **overrides}
  cls = vqa.MODELS[name.split("_")[0]]
  return cls(num_answers=NUM_ANSWERS, vocab_size=V, encoder=ENCODER, **kwargs)


def _images(seed=1):
  return jax.random.uniform(jax.random.key(seed), (B, 12, 12, 1))


def _features(seed=2):
  return jax.random.normal(jax.random.key(seed), (B, L, D))


@functools.lru_cache(maxsize=None)
def _jitted(model, method="__call__"):
  """``model.apply`` jitted once per model and method (eager scans are slow on CPU)."""
  # XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
  return jax.jit(functools.partial(model.apply, method=method), static_argnames="deterministic",
                 compiler_options={"xla_backend_optimization_level": 0})


def _shapes(model):
  return jax.eval_shape(model.init, jax.random.key(0), _images(), QUESTION, LENGTH)["params"]


@functools.lru_cache(maxsize=None)
def _init(model, seed=0):
  """Parameters of ``model``'s shapes drawn from N(0, 0.3^2) by NumPy: the references hold
  for any values, and tracing (instead of running) ``init`` keeps the test fast."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype),
                      _shapes(model))


def _apply(model, params, *args, **kwargs):
  return _jitted(model)({"params": params}, *args, **kwargs)


def _from_features(model, params, features, question=QUESTION, length=LENGTH, **kwargs):
  return _jitted(model, "from_features")({"params": params}, features, question, length,
                                          **kwargs)


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softmax_masked(scores, mask):
  out = np.zeros_like(scores)
  e = np.exp(scores[mask] - scores[mask].max())
  out[mask] = e / e.sum()
  return out


def _lstm_states(cell, inputs):
  """Flax's OptimizedLSTMCell gates, one step at a time: the (c, h) sequence [T, H]."""
  size = cell["hi"]["kernel"].shape[0]
  h, c = np.zeros(size), np.zeros(size)
  cells, hiddens = [], []
  for x in inputs:
    def gate(name, x=x, h=h):
      return x @ cell["i" + name]["kernel"] + h @ cell["h" + name]["kernel"] + cell["h" + name]["bias"]
    i, f = _sigmoid(gate("i")), _sigmoid(gate("f"))
    g, o = np.tanh(gate("g")), _sigmoid(gate("o"))
    c = f * c + i * g
    h = o * np.tanh(c)
    cells.append(c)
    hiddens.append(h)
  return np.array(cells), np.array(hiddens)


# ----------------------------------------------------------------------------- references


def _san_reference(params, features, question, length, mask):
  """Yang et al. eq. (15)-(19) per example: (logits [A], attention [K, L])."""
  p = _f64(params)
  num_layers = sum(1 for name in p if name.startswith("att_image_"))
  v_image = np.tanh(features @ p["image_projection"]["kernel"] + p["image_projection"]["bias"])
  words = p["embed"]["embedding"][question[:length]]
  _, hidden = _lstm_states(p["question_lstm"]["layer_0"]["cell"], words)
  u = hidden[-1]  # v_Q = u^0
  weights = []
  for k in range(num_layers):
    h_a = np.tanh(v_image @ p[f"att_image_{k}"]["kernel"]
                  + (u @ p[f"att_query_{k}"]["kernel"] + p[f"att_query_{k}"]["bias"]))  # (15)
    prob = _softmax_masked(h_a @ p[f"att_score_{k}"]["kernel"][:, 0], mask)  # (16)
    u = (prob[:, None] * v_image).sum(0) + u  # (17)-(18)
    weights.append(prob)
  logits = u @ p["answer"]["kernel"] + p["answer"]["bias"]  # (19)
  return logits, np.array(weights)


def _position_reference(num_words, dim):
  """l_kj = (1 - j/J) - (k/d)(1 - 2j/J), j = 1..J, k = 1..d: [J, d]."""
  out = np.zeros((num_words, dim))
  for j in range(1, num_words + 1):
    for k in range(1, dim + 1):
      out[j - 1, k - 1] = (1 - j / num_words) - (k / dim) * (1 - 2 * j / num_words)
  return out


def _memnet_reference(params, features, question, length, mask, *, hops, tying,
                      question_encoding="position", location_encoding=True, linear_start=False):
  """Sukhbaatar et al. eq. (1)-(3), Sec. 2.2 and 4.1 per example: (logits, attention [K, L])."""
  p = _f64(params)
  dim = p["question_embed"]["embedding"].shape[1]
  num_words = length - 1
  embedded = p["question_embed"]["embedding"][question[:num_words]]
  weights = (_position_reference(num_words, dim) if question_encoding == "position"
             else np.ones((num_words, dim)))
  u = (weights * embedded).sum(0)  # u^1

  def memory(j):  # E_j v_i + T_j(i)
    m = features @ p[f"memory_embed_{j}"]["kernel"]
    if location_encoding:
      m = m + p[f"location_embed_{j}"]["embedding"]
    return m

  attended = []
  for k in range(1, hops + 1):
    a, c = (k - 1, k) if tying == "adjacent" else (0, 1)  # A^k = C^{k-1} = E_{k-1}
    scores = memory(a) @ u
    prob = np.where(mask, scores, 0.0) if linear_start else _softmax_masked(scores, mask)  # (1)
    o = (prob[:, None] * memory(c)).sum(0)  # (2)
    u = (u if tying == "adjacent" else u @ p["hop_map"]["kernel"]) + o
    attended.append(prob)
  return u @ p["answer"]["kernel"], np.array(attended)  # (3): W u^{K+1}


def _naive_reference(params, features, question, length, *, fusion, pool="flatten"):
  """Antol et al.'s deeper LSTM Q + norm I per example (tanh MLP, no dropout)."""
  p = _f64(params)
  pooled = features.reshape(-1) if pool == "flatten" else features.mean(0)
  pooled = pooled / np.linalg.norm(pooled)
  image = np.tanh(pooled @ p["image_projection"]["kernel"] + p["image_projection"]["bias"])
  inputs = p["embed"]["embedding"][question[:length]]
  states = []
  for layer in range(len(p["question_lstm"])):
    cells, hidden = _lstm_states(p["question_lstm"][f"layer_{layer}"]["cell"], inputs)
    states += [cells[-1], hidden[-1]]
    inputs = hidden
  q = np.tanh(np.concatenate(states) @ p["question_projection"]["kernel"]
              + p["question_projection"]["bias"])
  x = image * q if fusion == "product" else np.concatenate([image, q])
  n = 0
  while f"mlp_{n}" in p:
    x = np.tanh(x @ p[f"mlp_{n}"]["kernel"] + p[f"mlp_{n}"]["bias"])
    n += 1
  return x @ p["answer"]["kernel"] + p["answer"]["bias"]


# ----------------------------------------------------------------------------- tests


def test_san_matches_equations():
  num_layers = 2
  model = _model("san", num_layers=num_layers)
  params = _init(model)
  features = _features()
  logits, aux = _from_features(model, params, features, region_mask=MASK)
  assert aux["attention"].shape == (B, num_layers, L)
  for b in range(B):
    ref_logits, ref_att = _san_reference(params, np.asarray(features[b], np.float64),
                                         QUESTION[b], LENGTH[b], MASK[b])
    np.testing.assert_allclose(aux["attention"][b], ref_att, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits[b], ref_logits, rtol=1e-4, atol=1e-5)


def test_grid_coordinates_row_major_in_minus_one_one():
  np.testing.assert_allclose(vqa.grid_coordinates(9), [[r, c] for r in (-1, 0, 1)
                                                       for c in (-1, 0, 1)])
  np.testing.assert_array_equal(vqa.grid_coordinates(1), [[0.0, 0.0]])
  with pytest.raises(ValueError, match=r"square grid of L = g\^2 regions, got L = 6"):
    vqa.grid_coordinates(6)


def test_san_region_coordinates_are_appended_to_every_region():
  """With coordinates, SAN is the plain SAN on features with (row, column) appended."""
  tagged = _model("san", region_coordinates=True)
  params = _init(tagged)
  features = _features()
  rows, cols = np.divmod(np.arange(L), 3)
  coordinates = np.stack([rows - 1.0, cols - 1.0], -1)  # a 3x3 grid in [-1, 1]
  appended = jnp.concatenate([features, jnp.broadcast_to(coordinates, (B, L, 2))], -1)
  want = _from_features(_model("san"), params, appended, region_mask=MASK)
  got = _from_features(tagged, params, features, region_mask=MASK)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  np.testing.assert_allclose(got[1]["attention"], want[1]["attention"], rtol=1e-6)
  assert params["image_projection"]["kernel"].shape == (D + 2, SMALL["san"]["hidden_size"])


@pytest.mark.parametrize("tying,question_encoding,location_encoding,linear_start", [
    ("adjacent", "position", True, False),
    ("layerwise", "position", True, False),
    ("adjacent", "bow", False, True),
])
def test_memnet_matches_equations(tying, question_encoding, location_encoding, linear_start):
  hops = 3
  model = _model("memnet", hops=hops, tying=tying, question_encoding=question_encoding,
                 location_encoding=location_encoding, linear_start=linear_start)
  params = _init(model)
  features = _features()
  logits, aux = _from_features(model, params, features, region_mask=MASK)
  assert aux["attention"].shape == (B, hops, L)
  for b in range(B):
    ref_logits, ref_att = _memnet_reference(
        params, np.asarray(features[b], np.float64), QUESTION[b], LENGTH[b], MASK[b], hops=hops,
        tying=tying, question_encoding=question_encoding, location_encoding=location_encoding,
        linear_start=linear_start)
    np.testing.assert_allclose(aux["attention"][b], ref_att, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits[b], ref_logits, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("hops", [1, 4])
def test_memnet_tying_parameter_tree(hops):
  d = SMALL["memnet"]["embed_dim"]
  adjacent, layerwise = (_shapes(_model("memnet", hops=hops, tying=tying))
                         for tying in ("adjacent", "layerwise"))
  # Adjacent: K + 1 maps E_0..E_K shared between neighbouring hops (A^{k+1} = C^k), no H.
  assert sorted(k for k in adjacent if k.startswith("memory_embed_")) == sorted(
      f"memory_embed_{j}" for j in range(hops + 1))
  assert sorted(k for k in adjacent if k.startswith("location_embed_")) == sorted(
      f"location_embed_{j}" for j in range(hops + 1))
  assert "hop_map" not in adjacent
  # Layer-wise: one A and one C for every hop, and H.
  assert sorted(k for k in layerwise if k.startswith(("memory_embed_", "location_embed_"))) == [
      "location_embed_0", "location_embed_1", "memory_embed_0", "memory_embed_1"]
  assert layerwise["hop_map"]["kernel"].shape == (d, d)

  def count(params):
    return sum(int(np.prod(x.shape)) for k, v in params.items() if k != "image_encoder"
               for x in jax.tree.leaves(v))
  shared = V * d + d * NUM_ANSWERS  # B, W
  assert count(adjacent) == shared + (hops + 1) * (D * d + L * d)
  assert count(layerwise) == shared + 2 * (D * d + L * d) + d * d


def test_memnet_location_embedding_reaches_output():
  model = _model("memnet")
  params = _init(model)
  features = _features()
  logits, _ = _from_features(model, params, features)
  for j in range(SMALL["memnet"]["hops"] + 1):
    table = params[f"location_embed_{j}"]["embedding"]
    moved = {**params, f"location_embed_{j}": {
        "embedding": table + jax.random.normal(jax.random.key(j), table.shape)}}
    assert not np.allclose(_from_features(model, moved, features)[0], logits), j
  without = _init(_model("memnet", location_encoding=False))
  assert not any(k.startswith("location_embed") for k in without)


def test_position_encoding_formula():
  weights = np.asarray(vqa.position_encoding(jnp.array([3, 1, 5, 0]), 6, 4))
  assert weights.shape == (4, 6, 4)
  for row, words in enumerate([3, 1, 5, 0]):
    np.testing.assert_allclose(weights[row, :words], _position_reference(words, 4), rtol=1e-6,
                               atol=1e-7)
    assert np.all(weights[row, words:] == 0)


@pytest.mark.parametrize("name", ["san", "memnet", "memnet_layerwise"])
def test_attention_masks_regions(name):
  model = _model(name)
  params = _init(model)
  features = _features()
  logits, aux = _from_features(model, params, features, region_mask=MASK)
  att = np.asarray(aux["attention"])
  np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
  assert np.all(np.where(MASK[:, None, :], 0.0, att) == 0.0)
  np.testing.assert_array_equal(att[2, :, 0], 1.0)
  # The masked regions' features never reach the output.
  noise = 1e3 * jax.random.normal(jax.random.key(7), features.shape)
  changed = jnp.where(MASK[..., None], features, noise)
  logits2, aux2 = _from_features(model, params, changed, region_mask=MASK)
  np.testing.assert_allclose(logits2, logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(aux2["attention"], att, rtol=1e-6, atol=1e-7)
  # Without a mask every region is attended to.
  _, aux3 = _from_features(model, params, features)
  assert np.all(np.asarray(aux3["attention"]) > 0)


@pytest.mark.parametrize("name,key,count", [("san", "num_layers", 1), ("san", "num_layers", 3),
                                            ("memnet", "hops", 1), ("memnet", "hops", 2)])
def test_aux_counts_layers(name, key, count):
  model = _model(name, **{key: count})
  _, aux = jax.eval_shape(model.apply, {"params": _shapes(model)}, _images(), QUESTION, LENGTH)
  assert aux["attention"].shape == (B, count, L)


@pytest.mark.parametrize("fusion,pool", [("product", "flatten"), ("concat", "mean")])
def test_naive_fusion_matches_reference(fusion, pool):
  model = _model("naive", fusion=fusion, pool=pool)
  params = _init(model)
  hidden = SMALL["naive"]["hidden_size"]
  assert params["mlp_0"]["kernel"].shape == ((hidden if fusion == "product" else 2 * hidden), 7)
  assert params["image_projection"]["kernel"].shape == ((L * D if pool == "flatten" else D),
                                                        hidden)
  # The question vector: [c, h] of both LSTM layers.
  assert params["question_lstm"]["layer_1"]["cell"]["ii"]["kernel"].shape == (hidden, hidden)
  assert params["question_projection"]["kernel"].shape == (4 * hidden, hidden)
  features = _features()
  logits, aux = _from_features(model, params, features)
  assert aux == {}
  for b in range(B):
    ref = _naive_reference(params, np.asarray(features[b], np.float64), QUESTION[b], LENGTH[b],
                           fusion=fusion, pool=pool)
    np.testing.assert_allclose(logits[b], ref, rtol=1e-4, atol=1e-5)
  # No MLP hidden layer: the answer layer reads z directly.
  flat = _shapes(_model("naive", fusion="concat", mlp_sizes=()))
  assert flat["answer"]["kernel"].shape == (2 * hidden, NUM_ANSWERS)


@pytest.mark.parametrize("name", ["naive", "san", "memnet", "memnet_layerwise"])
def test_question_padding_does_not_change_output(name):
  model = _model(name)
  params = _init(model)
  features = _features()
  kwargs = {} if name == "naive" else {"region_mask": MASK}
  logits, aux = _from_features(model, params, features, **kwargs)
  padded = np.concatenate([QUESTION, np.zeros((B, 3), np.int32)], axis=1)
  logits2, aux2 = _from_features(model, params, features, padded, **kwargs)
  np.testing.assert_allclose(logits2, logits, rtol=1e-6, atol=1e-6)
  # Whatever lies past a row's length (here: random words) never reaches its output.
  rng = np.random.default_rng(0)
  garbage = np.where(np.arange(padded.shape[1]) < LENGTH[:, None], padded,
                     rng.integers(1, V, padded.shape)).astype(np.int32)
  logits3, aux3 = _from_features(model, params, features, garbage, **kwargs)
  np.testing.assert_allclose(logits3, logits, rtol=1e-6, atol=1e-6)
  for other in (aux2, aux3):
    for k in aux:
      np.testing.assert_allclose(other[k], aux[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["naive", "san", "memnet", "memnet_layerwise"])
def test_trains_jits_and_dropout(name, check_adam_training):
  """Every parameter gets a gradient and Adam fits four answers; dropout draws from its rng.

  SAN trains through the images (the encoder's parameters included); the others from the
  encoder's grid, which keeps the test's compilations small.
  """
  model = _model(name)
  params = _init(model)
  images, features = _images(), _features()
  answers = jnp.array([1, 3, 0])
  if name != "san":
    params = {k: v for k, v in params.items() if k != "image_encoder"}

  def loss_fn(params):
    if name == "san":
      logits, _ = model.apply({"params": params}, images, QUESTION, LENGTH)
    else:
      logits, _ = model.apply({"params": params}, features, QUESTION, LENGTH,
                              method="from_features")
    return optax.softmax_cross_entropy_with_integer_labels(logits, answers).mean()

  chex.clear_trace_counter()  # loss_fn of the other parametrisations
  check_adam_training(loss_fn, params, steps=8)

  def run(key):
    return _from_features(model, params, features, deterministic=False,
                          rngs={"dropout": key})[0]

  noisy, noisy2 = run(jax.random.key(0)), run(jax.random.key(1))
  assert np.all(np.isfinite(noisy))
  if name.startswith("memnet"):  # no dropout in the paper's model
    np.testing.assert_allclose(noisy, _from_features(model, params, features)[0], rtol=1e-6)
  else:
    assert not np.allclose(noisy, noisy2)


def test_config_dict_encoder_and_models_registry():
  assert set(vqa.MODELS) == {"naive", "san", "memnet"}
  model = vqa.StackedAttention(num_answers=NUM_ANSWERS, vocab_size=V,
                               encoder=ml_collections.ConfigDict(ENCODER), hidden_size=6,
                               embed_dim=5, attention_dim=4)
  hash(model)
  logits, _ = jax.eval_shape(model.init_with_output, jax.random.key(0), _images(), QUESTION,
                             LENGTH)[0]
  assert logits.shape == (B, NUM_ANSWERS)


@pytest.mark.parametrize("cls,kwargs,match", [
    (vqa.NaiveVQA, {"fusion": "sum"}, "fusion must be one of"),
    (vqa.NaiveVQA, {"pool": "max"}, "pool must be one of"),
    (vqa.NaiveVQA, {"mlp_sizes": (0,)}, "mlp_sizes entries"),
    (vqa.StackedAttention, {"num_layers": 0}, "num_layers must be a positive int, got 0"),
    (vqa.StackedAttention, {"dropout_rate": 1.0}, "dropout_rate"),
    (vqa.MemoryNetwork, {"hops": 0}, "hops must be a positive int, got 0"),
    (vqa.MemoryNetwork, {"tying": "none"}, "tying must be one of"),
    (vqa.MemoryNetwork, {"question_encoding": "lstm"}, "question_encoding must be one of"),
])
def test_bad_options(cls, kwargs, match):
  with pytest.raises(ValueError, match=match):
    cls(num_answers=NUM_ANSWERS, vocab_size=V, **kwargs)


@pytest.mark.parametrize("name", ["naive", "san", "memnet"])
def test_bad_inputs(name):
  model = _model(name)
  params = {"params": _init(model)}
  images = _images()
  with pytest.raises(ValueError, match=r"question must have shape \[B, T\]"):
    model.apply(params, images, QUESTION[0], LENGTH)
  with pytest.raises(ValueError, match="question must hold integer ids"):
    model.apply(params, images, QUESTION.astype(np.float32), LENGTH)
  with pytest.raises(ValueError, match=r"question must hold ids in \[0, vocab_size\)"):
    model.apply(params, images, QUESTION + V, LENGTH)
  with pytest.raises(ValueError, match=r"length must be \[B\] = \(3,\).*\(4,\)"):
    model.apply(params, images, QUESTION, np.array([2, 2, 2, 2], np.int32))
  with pytest.raises(ValueError, match=r"length must be .* in \[0, 6\]"):
    model.apply(params, images, QUESTION, np.array([0, 2, 6], np.int32))
  with pytest.raises(ValueError, match=r"length must be .* in \[2, 7\]"):
    model.apply(params, images, QUESTION, np.array([7, 2, 6], np.int32))
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\], got \(3, 12, 12\)"):
    model.apply(params, images[..., 0], QUESTION, LENGTH)
  with pytest.raises(ValueError, match=r"images must have shape .* B = question.shape\[0\] = 3"):
    model.apply(params, images[:2], QUESTION, LENGTH)
  if name != "naive":
    with pytest.raises(ValueError, match=r"region_mask must be bool \[B, L\] = \(3, 9\)"):
      model.apply(params, images, QUESTION, LENGTH, region_mask=MASK[:, :4])
    with pytest.raises(ValueError, match="region_mask must be bool"):
      model.apply(params, images, QUESTION, LENGTH, region_mask=MASK.astype(np.int32))
    with pytest.raises(ValueError, match="at least one real position"):
      model.apply(params, images, QUESTION, LENGTH, region_mask=np.zeros((B, L), bool))
