"""Tests for vislang_jax.models.show_attend_tell against a float64 NumPy decoder and PyTorch.

The NumPy reference re-implements eq. (4)-(7) of Xu et al. (2015) step by step from the Flax
parameters (f_init, attention, gate, LSTM, deep output), so the model's attention weights,
contexts and logits are checked against an independent computation; the VGG backbones are
``models.vgg.VGGFeatures`` (checked against torch in tests/models/test_vgg.py), flattened
row-major into annotations here.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax import decoding
from vislang_jax.models import show_attend_tell as sat
from vislang_jax.models import vgg
from vislang_jax.objectives import show_attend_tell as sat_objectives

B, T, SIZE, V = 3, 5, 12, 9
BOS, EOS = 1, 2

# Everything that runs is jitted with XLA's backend optimisations off: for these tiny models
# compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(*, gating=True, expectation_prob=0.5):
  return sat.ShowAttendTell(
      encoder=sat.Encoder(widths=(4, 8)),  # 12x12 -> 3x3 grid: L = 9, D = 8
      decoder=sat.Decoder(vocab_size=V, embed_dim=8, hidden_size=16, attention_dim=8,
                          gating=gating, expectation_prob=expectation_prob))


def _images(seed=0, batch=B):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(batch, SIZE, SIZE, 1)),
                     jnp.float32)


def _tokens(seed=1, batch=B, steps=T):
  tokens = np.random.default_rng(seed).integers(3, V, size=(batch, steps))
  tokens[:, 0] = BOS
  return jnp.asarray(tokens, jnp.int32)


def _init_params(model, images, tokens):
  return model.init(jax.random.key(0), images, tokens, deterministic=True)["params"]


def _apply_model(model, params, images, tokens, key, *, attention="soft", deterministic=True):
  dropout_key, sample_key = jax.random.split(key)
  return model.apply({"params": params}, images, tokens, deterministic=deterministic,
                     attention=attention, rngs={"dropout": dropout_key, "sample": sample_key})


_init = _jit(_init_params, static_argnums=0)
_apply = _jit(_apply_model, static_argnums=0, static_argnames=("attention", "deterministic"))


@functools.partial(_jit, static_argnums=0)
def _encode(model, params, images):
  return model.apply({"params": params}, images, method=sat.ShowAttendTell.encode)


def _sharpen(params, factor=30.0):
  """Scales ``w`` of eq. (4), so that the attention weights are far from uniform."""
  params = jax.tree.map(lambda x: x, params)
  params["decoder"]["att_score"]["kernel"] = params["decoder"]["att_score"]["kernel"] * factor
  return params


@pytest.fixture(scope="module")
def setup():
  model = _model()
  images, tokens = _images(), _tokens()
  params = _sharpen(_init(model, images, tokens))
  return model, params, images, tokens


# --- The float64 NumPy reference of the decoder. ---

def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
  x = x - x.max(-1, keepdims=True)
  return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def reference_decoder(params, annotations, tokens_in, *, gating=True, locations=None,
                      contexts_from=None, embedded=None):
  """Eq. (4)-(7) in float64; returns (logits [B, T, V], alpha [B, T, L], beta [B, T]).

  ``locations`` [B, T] makes it hard attention (``z_t = beta_t a_{s_t}``). ``contexts_from``
  = (alpha, beta) [B, T, L], [B, T] builds the soft contexts from those weights instead of
  the reference's own. ``embedded`` [B, T, m] replaces ``E y_{t-1}`` (then ``tokens_in`` only
  gives ``T``).
  """
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)

  def dense(layer, x):
    return x @ layer["kernel"] + layer.get("bias", 0.0)

  a = np.asarray(annotations, np.float64)
  batch = a.shape[0]
  mean = a.mean(1)
  h = np.tanh(dense(p["init_h"]["Dense_0"], mean))
  c = np.tanh(dense(p["init_c"]["Dense_0"], mean))
  projected = dense(p["att_annotations"], a)  # W_a a_i, once
  lstm = p["lstm"]
  all_logits, all_alpha, all_beta = [], [], []
  for t in range(tokens_in.shape[1]):
    if embedded is None:
      emb = p["embed"]["embedding"][np.asarray(tokens_in[:, t])]
    else:
      emb = np.asarray(embedded[:, t], np.float64)
    e = (np.tanh(projected + (h @ p["att_hidden"]["kernel"])[:, None]) @
         p["att_score"]["kernel"])[..., 0]
    alpha = _softmax(e)
    beta = _sigmoid(dense(p["gate"], h))[:, 0] if gating else np.ones(batch)
    if locations is not None:
      context = a[np.arange(batch), np.asarray(locations[:, t])]
    elif contexts_from is not None:
      given_alpha, given_beta = (np.asarray(x, np.float64) for x in contexts_from)
      context = np.einsum("bl,bld->bd", given_alpha[:, t], a)
      beta = given_beta[:, t]
    else:
      context = np.einsum("bl,bld->bd", alpha, a)
    z = beta[:, None] * context
    x = np.concatenate([emb, z], -1)
    gate = {g: x @ lstm["i" + g]["kernel"] + dense(lstm["h" + g], h) for g in "ifgo"}
    c = _sigmoid(gate["f"]) * c + _sigmoid(gate["i"]) * np.tanh(gate["g"])
    h = _sigmoid(gate["o"]) * np.tanh(c)
    logits = dense(p["out_logits"], emb + dense(p["out_hidden"], h) +
                   z @ p["out_context"]["kernel"])
    all_logits.append(logits)
    all_alpha.append(alpha)
    all_beta.append(beta)
  return tuple(np.stack(x, 1) for x in (all_logits, all_alpha, all_beta))


# --- Shapes, invariants and the reference. ---

def test_shapes_and_grid_sizes():
  model = _model()
  images, tokens = _images(), _tokens()
  params = jax.eval_shape(functools.partial(_init_params, model), images, tokens)
  for attention in ("soft", "hard"):
    logits, aux = jax.eval_shape(
        functools.partial(_apply_model, model, attention=attention), params, images, tokens,
        jax.random.key(1))
    assert logits.shape == (B, T, V)
    expected = {"alpha": (B, T, 9), "beta": (B, T)}
    if attention == "hard":
      expected.update(locations=(B, T), log_prob_locations=(B, T), entropy=(B, T),
                      sampled=(B,))
    assert {k: v.shape for k, v in aux.items()} == expected
  # The default convnet maps 60x60 captioned digits to a 7x7 grid; VGG 224 -> 14x14x512.
  for encoder, shape, annotations in ((sat.Encoder(), (1, 60, 60, 1), (1, 49, 128)),
                                      (sat.Encoder(backbone="vgg16"), (1, 224, 224, 3),
                                       (1, 196, 512)),
                                      (sat.Encoder(backbone="vgg19"), (1, 224, 224, 3),
                                       (1, 196, 512)),
                                      (sat.Encoder(backbone="vgg16", include_final_pool=True),
                                       (1, 224, 224, 3), (1, 49, 512))):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(encoder.init, jax.random.key(0), x)
    assert jax.eval_shape(encoder.apply, variables, x).shape == annotations


def test_soft_attention_matches_numpy_reference(setup):
  model, params, images, tokens = setup
  logits, aux = _apply(model, params, images, tokens, jax.random.key(2))
  alpha, beta = np.asarray(aux["alpha"]), np.asarray(aux["beta"])
  np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-5)
  assert alpha.max() > 0.5  # sharpened: far from the uniform 1/9
  assert np.all((beta > 0) & (beta < 1))
  annotations = _encode(model, params, images)
  ref_logits, ref_alpha, ref_beta = reference_decoder(params["decoder"], annotations, tokens)
  np.testing.assert_allclose(alpha, ref_alpha, atol=2e-5)
  np.testing.assert_allclose(beta, ref_beta, rtol=1e-5)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  # The contexts z_t = beta_t sum_i alpha_ti a_i built from the model's own aux alpha and
  # beta reproduce its logits: the LSTM and the deep output saw exactly these contexts.
  from_aux, _, _ = reference_decoder(params["decoder"], annotations, tokens,
                                     contexts_from=(alpha, beta))
  np.testing.assert_allclose(logits, from_aux, rtol=1e-4, atol=1e-4)


def test_without_gating_beta_is_one_and_reference_holds():
  model = _model(gating=False)
  images, tokens = _images(), _tokens()
  params = _init(model, images, tokens)
  assert "gate" not in params["decoder"]
  logits, aux = _apply(model, params, images, tokens, jax.random.key(2))
  np.testing.assert_array_equal(aux["beta"], 1.0)
  ref_logits, _, _ = reference_decoder(params["decoder"], _encode(model, params, images),
                                       tokens, gating=False)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_hard_attention_uses_the_sampled_annotation_or_the_expectation(setup):
  model, params, images, tokens = setup
  annotations = _encode(model, params, images)
  always = _model(expectation_prob=0.0)
  logits, aux = _apply(always, params, images, tokens, jax.random.key(3), attention="hard")
  assert bool(np.all(aux["sampled"]))
  locations = np.asarray(aux["locations"])
  ref_logits, ref_alpha, _ = reference_decoder(params["decoder"], annotations, tokens,
                                               locations=locations)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(aux["alpha"], ref_alpha, atol=2e-5)
  np.testing.assert_allclose(
      aux["log_prob_locations"],
      np.log(np.take_along_axis(ref_alpha, locations[..., None], -1)[..., 0]), atol=1e-4)
  np.testing.assert_allclose(aux["entropy"], -(ref_alpha * np.log(ref_alpha)).sum(-1),
                             rtol=1e-4, atol=1e-5)
  # expectation_prob = 1: every example uses sum_i alpha_ti a_i, i.e. soft attention.
  never = _model(expectation_prob=1.0)
  hard_logits, hard_aux = _apply(never, params, images, tokens, jax.random.key(3),
                                 attention="hard")
  soft_logits, _ = _apply(never, params, images, tokens, jax.random.key(3))
  assert not np.any(hard_aux["sampled"])
  np.testing.assert_allclose(hard_logits, soft_logits, rtol=1e-6, atol=1e-6)


def test_hard_locations_follow_alpha_and_expectation_coin_has_its_probability(setup):
  """Over N draws, freq(s_t = i) ~ E[alpha_ti] for every (b, t, i); P(sampled) = 0.5."""
  model, params, images, tokens = setup
  n = 4000
  sample = _jit(jax.vmap(
      lambda key: model.apply({"params": params}, images, tokens, deterministic=True,
                              attention="hard", rngs={"sample": key})[1]))
  aux = sample(jax.random.split(jax.random.key(4), n))
  one_hot = np.asarray(jax.nn.one_hot(aux["locations"], 9))  # [N, B, T, L]
  alpha = np.asarray(aux["alpha"])
  freq, expected = one_hot.mean(0), alpha.mean(0)
  assert expected.max() > 0.5
  # 1{s = i} - alpha_i has mean 0 and variance at most E[alpha_i](1 - E[alpha_i]).
  standard_error = np.sqrt(expected * (1 - expected) / n) + 1e-4
  assert np.all(np.abs(freq - expected) < 5 * standard_error)
  sampled = np.asarray(aux["sampled"], np.float64)
  assert abs(sampled.mean() - 0.5) < 5 * np.sqrt(0.25 / sampled.size)
  # One coin per example and sequence: within a draw, examples differ as independent coins,
  # all B alike with probability 2 * 0.5^B.
  all_alike = np.mean((sampled.min(1) == sampled.max(1)))
  assert abs(all_alike - 2 * 0.5**B) < 5 * np.sqrt(0.25 / n)


# --- Decoding. ---

def test_decode_steps_match_teacher_forcing_and_greedy_matches_argmax(setup):
  model, params, images, tokens = setup
  logits, aux = _apply(model, params, images, tokens, jax.random.key(5))

  @_jit
  def unroll(params, images, tokens):
    state = model.init_decode_state(params, images)
    step_logits, step_alpha = [], []
    for t in range(tokens.shape[1]):
      out, state, extras = model.decode_step(params, tokens[:, t], state)
      step_logits.append(out)
      step_alpha.append(extras["alpha"])
    return jnp.stack(step_logits, 1), jnp.stack(step_alpha, 1)

  step_logits, step_alpha = unroll(params, images, tokens)
  np.testing.assert_allclose(step_logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(step_alpha, aux["alpha"], rtol=1e-5, atol=1e-6)

  # Make EOS likely enough that some captions end before max_len.
  params = jax.tree.map(lambda x: x, params)
  params["decoder"]["out_logits"]["bias"] = params["decoder"]["out_logits"]["bias"].at[EOS].add(
      1.5)

  @_jit
  def greedy(params, images):
    return decoding.greedy(functools.partial(model.decode_step, params),
                           model.init_decode_state(params, images), bos_id=BOS, eos_id=EOS,
                           max_len=T)

  out = greedy(params, images)
  tokens_in = jnp.concatenate([jnp.full((B, 1), BOS), out.tokens[:, :-1]], 1)
  forced, forced_aux = _apply(model, params, images, tokens_in, jax.random.key(5))
  valid = np.arange(T) < np.asarray(out.lengths)[:, None]
  np.testing.assert_array_equal(np.where(valid, np.argmax(forced, -1), 0), out.tokens)
  log_probs = np.asarray(jax.nn.log_softmax(forced))
  chosen = np.take_along_axis(log_probs, np.asarray(out.tokens)[..., None], -1)[..., 0]
  np.testing.assert_allclose(out.scores, np.where(valid, chosen, 0).sum(1), rtol=1e-5)
  np.testing.assert_allclose(out.extras["alpha"],
                             np.where(valid[..., None], forced_aux["alpha"], 0), atol=1e-6)
  assert valid.sum() > 0 and not valid.all()  # some captions ended with EOS

  # Beam search reorders the state rows (annotations included) without complaint.
  beams = _jit(lambda p, x: decoding.beam_search(
      functools.partial(model.decode_step, p), model.init_decode_state(p, x), bos_id=BOS,
      eos_id=EOS, max_len=T, beam_size=2))(params, images)
  assert beams.tokens.shape == (B, 2, T) and beams.extras["alpha"].shape == (B, 2, T, 9)
  beam_valid = np.arange(T) < np.asarray(beams.lengths)[..., None]
  np.testing.assert_allclose(np.asarray(beams.extras["alpha"]).sum(-1), beam_valid, atol=1e-5)


def test_decode_step_embedded_is_decode_step_of_embedded_tokens_and_takes_soft_inputs(setup):
  """The sequence-model contract: ``decode_step == decode_step_embedded(E[tokens])`` exactly,
  both equal teacher forcing, and a soft input (a convex mix of embeddings) enters the LSTM
  and the deep output of eq. (7) as the float64 reference computes with that mix."""
  model, params, images, tokens = setup
  embedding = model.input_embedding(params)
  np.testing.assert_array_equal(embedding, params["decoder"]["embed"]["embedding"])
  assert embedding.shape == (V, 8)
  mix = jax.nn.softmax(3.0 * jax.random.normal(jax.random.key(7), (B, T, V)))
  soft_inputs = jnp.einsum("btv,vm->btm", mix, embedding)

  @_jit
  def unroll(params, images, tokens, soft_inputs):
    embedding = model.input_embedding(params)
    by_token = by_embedding = soft = model.init_decode_state(params, images)
    outputs = []
    for t in range(tokens.shape[1]):
      logits, by_token, extras = model.decode_step(params, tokens[:, t], by_token)
      logits_e, by_embedding, extras_e = model.decode_step_embedded(
          params, embedding[tokens[:, t]], by_embedding)
      logits_s, soft, _ = model.decode_step_embedded(params, soft_inputs[:, t], soft)
      outputs.append((logits, extras, by_token, logits_e, extras_e, by_embedding, logits_s))
    return outputs

  outputs = unroll(params, images, tokens, soft_inputs)
  for logits, extras, state, logits_e, extras_e, state_e, _ in outputs:
    np.testing.assert_array_equal(logits, logits_e)
    jax.tree.map(np.testing.assert_array_equal, (extras, state), (extras_e, state_e))
    assert set(extras) == {"alpha", "beta", "hidden"}
    np.testing.assert_array_equal(extras["hidden"], state.hidden)  # h_t, the new state
  annotations = _encode(model, params, images)
  forced, _ = _apply(model, params, images, tokens, jax.random.key(5))
  ref, _, _ = reference_decoder(params["decoder"], annotations, tokens)
  step_logits = np.stack([o[0] for o in outputs], 1)
  np.testing.assert_allclose(step_logits, forced, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(step_logits, ref, rtol=1e-4, atol=1e-5)
  soft_ref, _, _ = reference_decoder(params["decoder"], annotations, tokens,
                                     embedded=soft_inputs)
  np.testing.assert_allclose(np.stack([o[6] for o in outputs], 1), soft_ref, rtol=1e-4,
                             atol=1e-5)
  with pytest.raises(ValueError, match=r"inputs must have shape \[N, m\] = \[3, 8\]"):
    model.decode_step_embedded(params, soft_inputs[:, 0, :4], model.init_decode_state(
        params, images))


def test_decode_step_embedded_dropout_key_drops_units_of_h_before_the_deep_output(setup):
  """With a key, the logits are eq. (7) with ``h_t`` replaced by ``m * h_t / (1 - p)`` for a
  0/1 mask ``m`` (found by enumerating all 2^n masks in float64); the state is untouched."""
  model, params, images, tokens = setup
  state = model.init_decode_state(params, images)
  inputs = model.input_embedding(params)[tokens[:, 0]]
  step = _jit(model.decode_step_embedded)
  logits, new_state, extras = step(params, inputs, state)
  dropped, dropped_state, dropped_extras = step(params, inputs, state,
                                                dropout_key=jax.random.key(3))
  jax.tree.map(np.testing.assert_array_equal, (new_state, extras),
               (dropped_state, dropped_extras))
  again, _, _ = step(params, inputs, state, dropout_key=jax.random.key(3))
  np.testing.assert_array_equal(dropped, again)
  rate = model.decoder.dropout_rate
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["decoder"])
  through = p["out_hidden"]["kernel"] @ p["out_logits"]["kernel"]  # [n, K]: L_h then L_o
  h = np.asarray(extras["hidden"], np.float64)
  n = h.shape[1]
  masks = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # [2^n, n]
  delta = np.asarray(dropped, np.float64) - np.asarray(logits, np.float64)  # [N, K]
  kept_counts = []
  for row in range(h.shape[0]):
    candidates = ((masks / (1 - rate) - 1) * h[row]) @ through  # [2^n, K]
    errors = np.abs(candidates - delta[row]).max(1)
    best = np.argmin(errors)
    assert errors[best] < 1e-4, errors[best]
    kept_counts.append(masks[best].sum())
  assert 0 < np.sum(kept_counts) < h.size  # some units dropped, some kept


def test_teacher_forced_dropout_drops_units_of_each_h_t_in_the_deep_output_only(setup):
  """Training-mode teacher forcing (the deep output applied after the scan): the attention
  weights and gates are those without dropout (dropout never enters the recurrence), and
  each step's logits are eq. (7) with ``h_t`` replaced by ``m_t * h_t / (1 - p)`` for a 0/1
  mask ``m_t`` (enumerated as above), the masks differing between steps."""
  model, params, images, tokens = setup
  logits, aux = _apply(model, params, images, tokens, jax.random.key(5))
  dropped, dropped_aux = _apply(model, params, images, tokens, jax.random.key(5),
                                deterministic=False)
  jax.tree.map(np.testing.assert_array_equal, aux, dropped_aux)

  @_jit
  def hiddens(params, images, tokens):
    state = model.init_decode_state(params, images)
    out = []
    for t in range(tokens.shape[1]):
      _, state, extras = model.decode_step(params, tokens[:, t], state)
      out.append(extras["hidden"])
    return jnp.stack(out, 1)  # [B, T, n]

  h = np.asarray(hiddens(params, images, tokens), np.float64)
  rate = model.decoder.dropout_rate
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["decoder"])
  through = p["out_hidden"]["kernel"] @ p["out_logits"]["kernel"]  # [n, K]
  n = h.shape[-1]
  masks = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # [2^n, n]
  delta = np.asarray(dropped, np.float64) - np.asarray(logits, np.float64)  # [B, T, K]
  found = np.zeros(h.shape[:2], np.int64)
  for b, t in np.ndindex(*h.shape[:2]):
    errors = np.abs(((masks / (1 - rate) - 1) * h[b, t]) @ through - delta[b, t]).max(1)
    found[b, t] = np.argmin(errors)
    assert errors[found[b, t]] < 1e-4, (b, t, errors[found[b, t]])
  kept = masks[found].sum()
  assert 0 < kept < h.size  # some units dropped, some kept
  assert len(np.unique(found)) > 1  # not one mask for every step and example


# --- Gradients. ---

def test_losses_jit_and_give_finite_gradients_to_every_parameter(setup):
  model, params, images, tokens = setup
  targets = jnp.concatenate([tokens[:, 1:], jnp.full((B, 1), EOS)], 1)
  mask = jnp.arange(T)[None] < jnp.array([[T], [3], [2]])

  def soft(params, key):
    logits, aux = _apply_model(model, params, images, tokens, key, deterministic=False)
    return jnp.mean(sat_objectives.soft_attention_loss(logits, targets, mask, aux["alpha"])[0])

  def hard(params, key):
    logits, aux = _apply_model(model, params, images, tokens, key, attention="hard",
                         deterministic=False)
    loss, _, _ = sat_objectives.hard_attention_loss(
        logits, targets, mask, aux["log_prob_locations"], aux["entropy"], jnp.float32(-10.0),
        entropy_weight=0.01, sampled=aux["sampled"])
    return jnp.mean(loss)

  for loss_fn in (soft, hard):
    value, grads = _jit(jax.value_and_grad(loss_fn))(params, jax.random.key(6))
    assert np.isfinite(value)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
      assert np.all(np.isfinite(grad)), path
      assert np.any(grad != 0), path  # hard: the attention learns through REINFORCE/entropy

  frozen = sat.ShowAttendTell(encoder=model.encoder, decoder=model.decoder,
                              freeze_encoder=True)
  grads = _jit(jax.grad(lambda p: jnp.sum(_apply_model(frozen, p, images, tokens,
                                                 jax.random.key(0))[0])))(params)
  assert all(np.all(g == 0) for g in jax.tree.leaves(grads["encoder"]))
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads["decoder"]))


# --- VGG backbones and f_init. ---

@pytest.mark.parametrize("depth", [16, 19])
def test_vgg_encoder_flattens_vgg_features_row_major(depth):
  backbone = f"vgg{depth}"
  x = jnp.asarray(np.random.default_rng(depth).normal(size=(2, 32, 48, 3)), jnp.float32)
  params = vgg.VGGFeatures(depth).init(jax.random.key(0), x)["params"]
  feature_map = _jit(vgg.VGGFeatures(depth).apply)({"params": params}, x)  # [2, 2, 3, 512]
  annotations = _jit(sat.Encoder(backbone=backbone).apply)({"params": {backbone: params}}, x)
  assert annotations.shape == (2, 6, 512)
  for i in range(6):  # annotation i = y w + x
    np.testing.assert_array_equal(annotations[:, i], feature_map[:, i // 3, i % 3])


def test_lstm_weights_and_cell_are_flax_optimized_lstm_cell():
  """``LSTMWeights`` creates ``nn.OptimizedLSTMCell``'s parameter tree (same names, shapes and
  values at initialisation) and ``lstm_cell`` on ``x W_x + h W_h + b`` is its update."""
  n, d = 5, 7
  rng = np.random.default_rng(0)
  x, h, c = (jnp.asarray(rng.normal(size=(3, k)), jnp.float32) for k in (d, n, n))
  flax_cell = nn.OptimizedLSTMCell(n)
  flax_params = flax_cell.init(jax.random.key(1), (c, h), x)["params"]
  weights = sat.LSTMWeights(n)
  params = weights.init(jax.random.key(1), d)["params"]
  jax.tree.map(np.testing.assert_array_equal, params, flax_params)
  params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  w_x, w_h, b = weights.apply({"params": params}, d)
  assert (w_x.shape, w_h.shape, b.shape) == ((d, 4 * n), (n, 4 * n), (4 * n,))
  (want_c, want_h), _ = flax_cell.apply({"params": params}, (c, h), x)
  got_c, got_h = sat.lstm_cell(x @ w_x + h @ w_h + b, c)
  np.testing.assert_allclose(got_c, want_c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-6)


def test_init_mlp_is_relu_layers_then_tanh():
  """f_init with hidden layers, against NumPy: ReLU hidden layers, a tanh output (capgen.py)."""
  mlp = sat._InitMLP(hidden=(5, 4), features=3)
  x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
  params = mlp.init(jax.random.key(1), x)["params"]
  params = jax.tree.map(lambda v: v + 0.3, params)  # non-zero biases
  relu = functools.partial(np.maximum, 0.0)
  h = np.asarray(x, np.float64)
  for name, act in (("Dense_0", relu), ("Dense_1", relu), ("Dense_2", np.tanh)):
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params[name])
    h = act(h @ p["kernel"] + p["bias"])
  np.testing.assert_allclose(mlp.apply({"params": params}, x), h, rtol=1e-5, atol=1e-6)


# --- Argument errors. ---

def test_bad_arguments_raise_value_errors_naming_them(setup):
  model, params, images, tokens = setup
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="attention must be one of"):
    model.apply({"params": params}, images, tokens, deterministic=True, attention="medium")
  with pytest.raises(ValueError, match=r"tokens_in must have shape \[B, T\]"):
    model.apply({"params": params}, images, tokens[0], deterministic=True)
  with pytest.raises(ValueError, match=r"tokens_in must hold ids in \[0, vocab_size\)"):
    model.apply({"params": params}, images, tokens.at[0, 1].set(V), deterministic=True)
  with pytest.raises(ValueError, match="tokens_in must hold integer"):
    model.apply({"params": params}, images, tokens.astype(jnp.float32), deterministic=True)
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
    model.apply({"params": params}, images[..., 0], tokens, deterministic=True)
  with pytest.raises(ValueError, match="annotations must have shape"):
    model.apply({"params": params}, images[:2], tokens, deterministic=True)
  state = model.init_decode_state(params, images)
  with pytest.raises(ValueError, match=r"tokens must have shape \[N\] with N = 3"):
    model.decode_step(params, tokens[:2, 0], state)
  with pytest.raises(ValueError, match="too small"):
    sat.Encoder(widths=(4, 4, 4, 4, 4)).init(key, images)
  for kwargs, match in (({"vocab_size": 0}, "vocab_size must be a positive int"),
                        ({"vocab_size": V, "expectation_prob": 1.5}, "expectation_prob"),
                        ({"vocab_size": V, "dropout_rate": 1.0}, "dropout_rate"),
                        ({"vocab_size": V, "init_hidden": (0,)}, "init_hidden")):
    with pytest.raises(ValueError, match=match):
      sat.Decoder(**kwargs)
  with pytest.raises(ValueError, match="backbone must be one of"):
    sat.Encoder(backbone="resnet")
  with pytest.raises(ValueError, match="widths"):
    sat.Encoder(widths=())
  with pytest.raises(ValueError, match="decoder must be a Decoder"):
    sat.ShowAttendTell(encoder=sat.Encoder(), decoder=sat.Encoder())


@pytest.mark.parametrize("feature_dim", [0, 5])
def test_image_feature_is_the_mean_or_a_dense_layer_over_the_grid(feature_dim):
  annotations = jax.random.normal(jax.random.key(0), (2, 4, 3))
  module = sat.ImageFeature(feature_dim=feature_dim)
  params = module.init(jax.random.key(1), annotations)
  out = np.asarray(module.apply(params, annotations), np.float64)
  x = np.asarray(annotations, np.float64)
  if feature_dim == 0:
    np.testing.assert_allclose(out, x.mean(1), rtol=1e-6, atol=1e-7)
  else:  # row-major flattening: location l's D features at [l D, (l + 1) D)
    fc = params["params"]["fc"]
    expected = np.maximum(x.reshape(2, 12) @ np.asarray(fc["kernel"], np.float64)
                          + np.asarray(fc["bias"], np.float64), 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="feature_dim"):
    sat.ImageFeature(feature_dim=-1)
