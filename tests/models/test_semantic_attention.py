"""Tests for vislang_jax.models.semantic_attention (You et al., CVPR 2016).

Invariants of the attention weights, the regulariser against a float64 NumPy loop over the
formula of Sec. 3.4, teacher forcing against the step function that ``decoding`` uses, and
the image feature entering at ``t = -1`` only.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax import decoding
from vislang_jax.models import semantic_attention as sa
from vislang_jax.models.show_attend_tell import Encoder

B, T, K, V, D = 2, 4, 3, 11, 5
BOS, EOS = 1, 2

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model():
  return sa.SemanticAttentionDecoder(vocab_size=V, embed_dim=6, input_dim=5, hidden_size=7)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  image = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
  ids = jnp.asarray([[3, 5, 0], [7, 4, 9]], jnp.int32)  # row 0: last slot is padding
  scores = jnp.asarray(rng.uniform(size=(B, K)), jnp.float32)
  tokens = jnp.asarray(rng.integers(3, V, size=(B, T)), jnp.int32).at[:, 0].set(BOS)
  return image, ids, scores, tokens


@functools.lru_cache(maxsize=None)
def _params():
  return _model().init(jax.random.PRNGKey(0), *_inputs())["params"]


@_jit
def _forward(params, image, ids, scores, tokens):
  return _model().apply({"params": params}, image, ids, scores, tokens)


def test_attention_rows_sum_to_one_and_padding_is_masked():
  _, aux = _forward(_params(), *_inputs())
  for name in ("alpha", "beta"):
    weights = np.asarray(aux[name])
    assert weights.shape == (B, T, K)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[0, :, 2] == 0.0), name  # padded attribute
    assert np.all(weights[0, :, :2] > 0.0) and np.all(weights[1] > 0.0), name


def _g_reference(a, p, q):
  a = np.asarray(a, np.float64)
  steps, attrs = a.shape
  first = sum(sum(a[t, i] for t in range(steps)) ** p for i in range(attrs)) ** (1.0 / p)
  second = sum(sum(a[t, i] ** q for i in range(attrs)) ** (1.0 / q) for t in range(steps))
  return first + second


@pytest.mark.parametrize("p,q", [(2.0, 0.5), (1.5, 0.3), (1.0, 1.0)])
def test_regularizer_matches_numpy_reference(p, q):
  rng = np.random.default_rng(1)
  alpha = rng.dirichlet(np.ones(K), size=(B, T))
  beta = rng.dirichlet(np.ones(K), size=(B, T))
  got = sa.attention_regularizer(jnp.asarray(alpha, jnp.float32), jnp.asarray(beta, jnp.float32),
                                 p=p, q=q)
  want = [_g_reference(alpha[b], p, q) + _g_reference(beta[b], p, q) for b in range(B)]
  assert got.shape == (B,)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_regularizer_hand_value_and_mask():
  # one-hot on attribute 0 for two steps (p = 2, q = 0.5): first term sqrt(2^2) = 2, second
  # (1^0.5 + 0^0.5)^2 per step = 1 + 1 = 2.
  alpha = jnp.asarray([[[1.0, 0.0], [1.0, 0.0]]])
  np.testing.assert_allclose(sa.attention_regularizer(alpha, alpha), [8.0], rtol=1e-6)
  mask = jnp.asarray([[True, False]])
  np.testing.assert_allclose(sa.attention_regularizer(alpha, alpha, mask=mask), [4.0],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="alpha and beta"):
    sa.attention_regularizer(alpha, alpha[:, :1])
  with pytest.raises(ValueError, match="p must be"):
    sa.attention_regularizer(alpha, alpha, p=0.5)
  for q in (0.0, 1.5):
    with pytest.raises(ValueError, match=r"q must be a finite float in \(0, 1\]"):
      sa.attention_regularizer(alpha, alpha, q=q)


def test_regularizer_second_term_prefers_one_hot_rows_when_q_below_one():
  # T = K steps: one-hot rows cycling over the attributes and uniform rows have the same
  # column sums (1 each), so the first terms agree and the difference is the second term:
  # T for one-hot rows, T K^(1/q - 1) for uniform ones.
  one_hot = jnp.eye(K)[None]
  uniform = jnp.full((1, K, K), 1.0 / K)
  for q, ratio in ((0.5, K), (1.0, 1.0)):
    a = sa.attention_regularizer(one_hot, one_hot, q=q)
    b = sa.attention_regularizer(uniform, uniform, q=q)
    first = 2 * np.sqrt(K)  # alpha and beta: sqrt(K * 1^2) each
    np.testing.assert_allclose(np.asarray(a), [first + 2 * K], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b), [first + 2 * K * ratio], rtol=1e-6)
  assert float(sa.attention_regularizer(one_hot, one_hot)[0]) < float(
      sa.attention_regularizer(uniform, uniform)[0])


def test_regularizer_gradient_is_finite_at_padded_attributes():
  # Attention with an exactly-zero padded attribute and a masked step: x^q with q < 1 has an
  # infinite slope at 0; the where-guards give 0 there and the usual slope elsewhere.
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, K)), jnp.float32)
  real = jnp.asarray([True, True, False])
  mask = jnp.asarray([[True] * T, [True] * (T - 1) + [False]])

  def loss(logits):
    a = jax.nn.softmax(jnp.where(real, logits, -jnp.inf), axis=-1)
    return jnp.sum(sa.attention_regularizer(a, a, q=0.5, mask=mask))

  grad = np.asarray(jax.grad(loss)(logits))
  assert np.all(np.isfinite(grad))
  assert np.all(grad[..., 2] == 0.0) and np.all(grad[1, -1] == 0.0)
  assert np.any(grad[..., :2] != 0.0)


def test_teacher_forcing_equals_step_by_step_decoding():
  params = _params()
  image, ids, scores, tokens = _inputs()
  logits, aux = _forward(params, image, ids, scores, tokens)
  model = _model()

  @_jit
  def unroll(params, image, ids, scores, tokens):
    state = model.init_decode_state(params, image, ids, scores)
    out = []
    for t in range(T):
      step_logits, state, extras = model.decode_step(params, tokens[:, t], state)
      out.append((step_logits, extras["alpha"], extras["beta"]))
    return [jnp.stack(x, 1) for x in zip(*out)]

  step_logits, alpha, beta = unroll(params, image, ids, scores, tokens)
  np.testing.assert_allclose(np.asarray(step_logits), np.asarray(logits), atol=1e-5)
  np.testing.assert_allclose(np.asarray(alpha), np.asarray(aux["alpha"]), atol=1e-6)
  np.testing.assert_allclose(np.asarray(beta), np.asarray(aux["beta"]), atol=1e-6)

  # And through decoding.greedy: its logits-based scores match the teacher-forced rerun.
  @_jit
  def run_greedy(params, image, ids, scores):
    state = model.init_decode_state(params, image, ids, scores)
    return decoding.greedy(functools.partial(model.decode_step, params), state, bos_id=BOS,
                           eos_id=EOS, max_len=T)

  out = run_greedy(params, image, ids, scores)
  assert out.tokens.shape == (B, T) and out.extras["alpha"].shape == (B, T, K)
  fed = jnp.concatenate([jnp.full((B, 1), BOS, jnp.int32), out.tokens[:, :-1]], 1)
  fed = jnp.where(fed == 0, EOS, fed)  # greedy feeds EOS after EOS; pad_id = 0 here
  re_logits, _ = _forward(params, image, ids, scores, fed)
  logp = jax.nn.log_softmax(re_logits, -1)
  picked = jnp.take_along_axis(logp, out.tokens[..., None], -1)[..., 0]
  live = jnp.arange(T)[None] < out.lengths[:, None]
  np.testing.assert_allclose(np.asarray(jnp.sum(jnp.where(live, picked, 0.0), 1)),
                             np.asarray(out.scores), atol=1e-4)


def test_image_feature_enters_only_at_first_step():
  params = _params()
  image, ids, scores, tokens = _inputs()
  logits, _ = _forward(params, image, ids, scores, tokens)
  other, _ = _forward(params, image + 1.0, ids, scores, tokens)
  assert not np.allclose(np.asarray(logits), np.asarray(other), atol=1e-4)
  zeroed = jax.tree_util.tree_map(jnp.zeros_like, params["image_proj"])
  params0 = dict(params, image_proj=zeroed)
  a, _ = _forward(params0, image, ids, scores, tokens)
  b, _ = _forward(params0, 3.0 * image - 2.0, ids, scores, tokens)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The state after the first step is the only place v goes: it is not in the per-step state.
  model = _model()
  state = model.init_decode_state(params, image, ids, scores)
  state2 = model.init_decode_state(params, image + 1.0, ids, scores)
  np.testing.assert_array_equal(np.asarray(state.attributes), np.asarray(state2.attributes))
  assert not np.allclose(np.asarray(state.hidden), np.asarray(state2.hidden))


def test_errors():
  model = _model()
  params = _params()
  image, ids, scores, tokens = _inputs()
  with pytest.raises(ValueError, match="attribute_ids must hold ids"):
    model.apply({"params": params}, image, ids.at[0, 0].set(V), scores, tokens)
  with pytest.raises(ValueError, match="attribute_ids must hold ids"):
    model.apply({"params": params}, image, ids.at[1, 1].set(-1), scores, tokens)
  with pytest.raises(ValueError, match="attribute_ids and attribute_scores"):
    model.apply({"params": params}, image, ids, scores[:, :2], tokens)
  with pytest.raises(ValueError, match="image_features"):
    model.apply({"params": params}, image[:1], ids, scores, tokens)
  with pytest.raises(ValueError, match="image_features must have shape"):
    model.apply({"params": params}, image[..., None], ids, scores, tokens)
  with pytest.raises(ValueError, match="attribute_ids must have shape"):
    model.apply({"params": params}, image, ids[:1], scores[:1], tokens)
  with pytest.raises(ValueError, match="tokens_in"):
    model.apply({"params": params}, image, ids, scores, tokens.at[0, 1].set(V))
  with pytest.raises(ValueError, match="pad_id"):
    sa.SemanticAttentionDecoder(vocab_size=V, pad_id=V)
  with pytest.raises(ValueError, match="at least one real attribute"):
    model.apply({"params": params}, image, ids.at[0].set(0), scores, tokens)


def test_every_parameter_gets_a_finite_nonzero_gradient():
  image, ids, scores, tokens = _inputs()

  @_jit
  def grads(params):
    def loss(params):
      logits, aux = _model().apply({"params": params}, image, ids, scores, tokens)
      nll = -jnp.mean(jax.nn.log_softmax(logits)[..., 3])
      return nll + jnp.mean(sa.attention_regularizer(aux["alpha"], aux["beta"]))
    return jax.grad(loss)(params)

  flat = jax.tree_util.tree_flatten_with_path(grads(_params()))[0]
  for path, g in flat:
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0.0), path


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _lstm_reference(p, cell, hidden, x):
  """flax's OptimizedLSTMCell: input kernels ``i*`` (no bias), hidden ``h*`` with bias."""
  gate = {k: x @ p["i" + k]["kernel"] + hidden @ p["h" + k]["kernel"] + p["h" + k]["bias"]
          for k in "ifgo"}
  cell = _sigmoid(gate["f"]) * cell + _sigmoid(gate["i"]) * np.tanh(gate["g"])
  return cell, _sigmoid(gate["o"]) * np.tanh(cell)


def _masked_softmax(scores, mask):
  scores = np.where(mask, scores, -np.inf)
  e = np.exp(scores - scores.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _first_step_reference(params, image, ids, scores, token, score_weighting):
  """Float64 NumPy of the module docstring's equations: x_{-1} = W^{x,v} v, then step 0."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  emb = p["embed"]["embedding"]
  attrs = emb[np.asarray(ids)]  # [B, K, d]
  if score_weighting:
    attrs = attrs * np.asarray(scores, np.float64)[..., None]
  mask = np.asarray(ids) != 0
  zeros = np.zeros((image.shape[0], p["output_attr_weight"].shape[0]))
  x_image = np.asarray(image, np.float64) @ p["image_proj"]["kernel"] + p["image_proj"]["bias"]
  cell, hidden = _lstm_reference(p["lstm"], zeros, zeros, x_image)
  prev = emb[np.asarray(token)]  # [B, d]
  alpha = _masked_softmax(np.einsum("bd,de,bke->bk", prev, p["input_bilinear"], attrs), mask)
  x = (prev + p["input_attr_weight"] * np.einsum("bk,bkd->bd", alpha, attrs)
       ) @ p["input_proj"]["kernel"] + p["input_proj"]["bias"]
  cell, hidden = _lstm_reference(p["lstm"], cell, hidden, x)
  squashed = np.tanh(attrs)
  beta = _masked_softmax(np.einsum("bh,hd,bkd->bk", hidden, p["output_bilinear"], squashed),
                         mask)
  attended = np.einsum("bk,bkh->bh", beta, squashed @ p["output_attr"]["kernel"])
  out = np.tanh(hidden + p["output_attr_weight"] * attended) @ p["output_proj"]["kernel"] + (
      p["output_proj"]["bias"])
  return out @ emb.T + p["logit_bias"], alpha, beta


@pytest.mark.parametrize("score_weighting", [False, True])
def test_first_step_matches_numpy_reference(score_weighting):
  image, ids, scores, tokens = _inputs()
  model = sa.SemanticAttentionDecoder(vocab_size=V, embed_dim=6, input_dim=5, hidden_size=7,
                                      score_weighting=score_weighting)
  logits, aux = model.apply({"params": _params()}, image, ids, scores, tokens)
  want_logits, want_alpha, want_beta = _first_step_reference(
      _params(), image, ids, scores, tokens[:, 0], score_weighting)
  np.testing.assert_allclose(np.asarray(logits[:, 0]), want_logits, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(aux["alpha"][:, 0]), want_alpha, atol=1e-6)
  np.testing.assert_allclose(np.asarray(aux["beta"][:, 0]), want_beta, atol=1e-6)


def test_score_weighting_limits():
  image, ids, scores, tokens = _inputs()
  params = _params()
  weighted = sa.SemanticAttentionDecoder(vocab_size=V, embed_dim=6, input_dim=5, hidden_size=7,
                                         score_weighting=True)
  # Scores of 1 are the unweighted model.
  ones = jnp.ones_like(scores)
  a, _ = weighted.apply({"params": params}, image, ids, ones, tokens)
  b, _ = _forward(params, image, ids, scores, tokens)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  c, _ = weighted.apply({"params": params}, image, ids, scores, tokens)
  assert not np.allclose(np.asarray(c), np.asarray(b), atol=1e-4)
  # Scores of 0 remove the attributes from both inputs: the unweighted model with
  # w^{x,A} = w^{Y,A} = 0 (previous word alone into the LSTM, h_t alone into the output),
  # and alpha, beta uniform over the real attributes.
  zero, aux = weighted.apply({"params": params}, image, ids, jnp.zeros_like(scores), tokens)
  cut = dict(params, input_attr_weight=jnp.zeros_like(params["input_attr_weight"]),
             output_attr_weight=jnp.zeros_like(params["output_attr_weight"]))
  d, _ = _forward(cut, image, ids, scores, tokens)
  np.testing.assert_allclose(np.asarray(zero), np.asarray(d), atol=1e-6)
  np.testing.assert_allclose(np.asarray(aux["alpha"][0]), np.tile([0.5, 0.5, 0.0], (T, 1)),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(aux["beta"][1]), np.full((T, K), 1.0 / K), atol=1e-6)


ATTRIBUTES = (4, 6, 7, 9, 10)  # A = 5 word ids of the detector
TOP_K = 3


def _captioner(score_weighting=False, detector_hidden=0, top_k=TOP_K, attribute_ids=ATTRIBUTES):
  return sa.SemanticAttentionCaptioner(
      encoder=Encoder(widths=(4,)),
      decoder=sa.SemanticAttentionDecoder(vocab_size=V, embed_dim=6, input_dim=5, hidden_size=7,
                                          score_weighting=score_weighting),
      attribute_ids=attribute_ids, top_k=top_k, detector_hidden=detector_hidden)


def _images(seed=3):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(B, 8, 8, 1)), jnp.float32)


@functools.lru_cache(maxsize=None)
def _captioner_params(detector_hidden=0):
  _, _, _, tokens = _inputs()
  return _captioner(detector_hidden=detector_hidden).init(
      jax.random.PRNGKey(1), _images(), tokens)["params"]


@pytest.mark.parametrize("detector_hidden", [0, 8])
def test_captioner_shapes_and_top_k_selection(detector_hidden):
  _, _, _, tokens = _inputs()
  params = _captioner_params(detector_hidden)
  assert ("detector_hidden_layer" in params) == bool(detector_hidden)
  logits, aux = _captioner(detector_hidden=detector_hidden).apply(
      {"params": params}, _images(), tokens, deterministic=False)
  assert logits.shape == (B, T, V)
  assert {k: v.shape for k, v in aux.items()} == {
      "alpha": (B, T, TOP_K), "beta": (B, T, TOP_K), "attribute_logits": (B, len(ATTRIBUTES)),
      "attribute_ids": (B, TOP_K), "attribute_scores": (B, TOP_K)}
  detector = np.asarray(aux["attribute_logits"], np.float64)
  order = np.argsort(-detector, axis=-1, kind="stable")[:, :TOP_K]
  np.testing.assert_array_equal(np.asarray(aux["attribute_ids"]), np.asarray(ATTRIBUTES)[order])
  np.testing.assert_allclose(np.asarray(aux["attribute_scores"]),
                             _sigmoid(np.take_along_axis(detector, order, -1)), rtol=1e-5)
  # The detector reads the mean of the encoder's annotations: v = mean_L encoder(images).
  annotations = Encoder(widths=(4,)).apply({"params": params["encoder"]}, _images())
  v = np.asarray(annotations, np.float64).mean(1)
  if not detector_hidden:
    want = v @ np.asarray(params["detector"]["kernel"]) + np.asarray(params["detector"]["bias"])
    np.testing.assert_allclose(detector, want, rtol=1e-4, atol=1e-5)


def test_captioner_teacher_forcing_equals_decode_step_and_jit():
  _, _, _, tokens = _inputs()
  params, images, model = _captioner_params(), _images(), _captioner()
  logits, aux = model.apply({"params": params}, images, tokens)
  jit_logits, jit_aux = _jit(lambda p, x, t: model.apply({"params": p}, x, t))(
      params, images, tokens)
  np.testing.assert_allclose(np.asarray(jit_logits), np.asarray(logits), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(jit_aux["attribute_ids"]),
                                np.asarray(aux["attribute_ids"]))

  @_jit
  def unroll(params, images, tokens):
    state = model.init_decode_state(params, images)
    out = []
    for t in range(T):
      step_logits, state, extras = model.decode_step(params, tokens[:, t], state)
      out.append((step_logits, extras["alpha"], extras["beta"]))
    beams = decoding.beam_search(functools.partial(model.decode_step, params),
                                 model.init_decode_state(params, images), bos_id=BOS,
                                 eos_id=EOS, max_len=T, beam_size=2)
    return [jnp.stack(x, 1) for x in zip(*out)], beams

  (step_logits, alpha, beta), beams = unroll(params, images, tokens)
  np.testing.assert_allclose(np.asarray(step_logits), np.asarray(logits), atol=1e-5)
  np.testing.assert_allclose(np.asarray(alpha), np.asarray(aux["alpha"]), atol=1e-6)
  np.testing.assert_allclose(np.asarray(beta), np.asarray(aux["beta"]), atol=1e-6)
  assert beams.extras["alpha"].shape == (B, 2, T, TOP_K)


def _grad_norms(model, params, losses):
  """The summed |gradient| of each loss in ``losses`` per top-level submodule."""
  _, _, _, tokens = _inputs()

  def loss(params):
    logits, aux = model.apply({"params": params}, _images(), tokens)
    return jnp.stack([loss_of(logits, aux) for loss_of in losses])

  grads = _jit(jax.jacrev(loss))(params)  # leaves [len(losses), ...]
  return [{name: float(sum(np.abs(np.asarray(g[n])).sum() for g in jax.tree_util.tree_leaves(sub)))
           for name, sub in grads.items()} for n in range(len(losses))]


def test_captioner_gradients_reach_encoder_through_image_and_detector():
  params = _captioner_params()
  targets = jnp.asarray([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1]], jnp.float32)

  def nll(logits, aux):
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 5])

  def detector_loss(logits, aux):
    x = aux["attribute_logits"]
    return jnp.mean(jnp.maximum(x, 0) - x * targets + jnp.log1p(jnp.exp(-jnp.abs(x))))

  caption, detection = _grad_norms(_captioner(), params, (nll, detector_loss))
  # Caption loss: to the encoder through v; not to the detector (selection is discrete).
  assert caption["encoder"] > 0 and caption["decoder"] > 0 and caption["detector"] == 0
  # Detector loss: to the detector and the encoder, not to the decoder.
  assert detection["encoder"] > 0 and detection["detector"] > 0 and detection["decoder"] == 0
  # With score_weighting the caption loss reaches the detector through the scores.
  (caption,) = _grad_norms(_captioner(score_weighting=True), params, (nll,))
  assert caption["encoder"] > 0 and caption["detector"] > 0


def test_captioner_errors():
  with pytest.raises(ValueError, match="must not hold the decoder's pad_id = 0"):
    _captioner(attribute_ids=(4, 0, 6))
  with pytest.raises(ValueError, match=r"in \[0, vocab_size\) = \[0, 11\), got \[11\]"):
    _captioner(attribute_ids=(4, 11, 6))
  with pytest.raises(ValueError, match="vocab_size"):
    _captioner(attribute_ids=(4, -1, 6))
  with pytest.raises(ValueError, match="distinct"):
    _captioner(attribute_ids=(4, 6, 4))
  with pytest.raises(ValueError, match="non-empty tuple"):
    _captioner(attribute_ids=())
  with pytest.raises(ValueError, match=r"top_k must be an int in \[1, 5\]"):
    _captioner(top_k=6)
  with pytest.raises(ValueError, match="top_k"):
    _captioner(top_k=0)
  with pytest.raises(ValueError, match="detector_hidden"):
    _captioner(detector_hidden=-1)
