"""Tests for vislang_jax.models.align_draw: masking, alignment, conditioning, generation."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.models.align_draw import AlignDRAW, CaptionEncoder, generate
from vislang_jax.objectives import align_draw as objectives
from vislang_jax.ops.filterbank import AttentionParams

CAPTIONS = ["the digit one is at the top left of the image",
            "the digit three is on the left",
            "the digit seven"]
VOCABULARY = Vocabulary.build(CAPTIONS)
T, SIZE, Z, TY, LANG = 3, 8, 4, 14, 5
BATCH = len(CAPTIONS)
REPEATS = 16  # images drawn per caption in the generation tests


def _model(**overrides):
  fields = dict(height=SIZE, width=SIZE, vocab_size=len(VOCABULARY), glimpses=T, read_n=2,
                write_n=3, z_size=Z, enc_size=8, gen_size=8, lang_size=LANG, embed_size=6,
                align_size=7)
  return AlignDRAW(**{**fields, **overrides})


def _captions(captions=CAPTIONS, max_len=TY):
  tokens, lengths = VOCABULARY.encode(captions, max_len=max_len)
  return jnp.asarray(tokens), jnp.asarray(lengths)


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape) < 0.4, jnp.float32)


# Everything that runs is jitted (eager Flax dispatch compiles every primitive apart), with
# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _init_params(model, x, tokens, lengths):
  rngs = {"params": jax.random.key(0), "sample": jax.random.key(1)}
  return model.init(rngs, x, tokens, lengths)["params"]


def _apply_model(model, params, x, tokens, lengths, key):
  return model.apply({"params": params}, x, tokens, lengths, rngs={"sample": key})


_init = _jit(_init_params, static_argnums=0)
_apply = _jit(_apply_model, static_argnums=0)


def _mean_loss(model, params, x, tokens, lengths, key):
  logits, aux = _apply_model(model, params, x, tokens, lengths, key)
  loss, _ = objectives.align_draw_loss(logits, x, aux["q_mu"], aux["q_logsigma"], aux["p_mu"],
                                       aux["p_logsigma"], output=model.output,
                                       x_logsigma=aux.get("x_logsigma"))
  return jnp.mean(loss)


@pytest.fixture(scope="module")
def aligned():
  """alignDRAW in colour with the Gaussian output option, its params, a batch of 8x8 RGB
  images and their captions, each padded differently. (The released COCO code scores colour
  pixels in [0, 1] with binary cross-entropy; the Gaussian is this library's option.)"""
  model = _model(channels=3, output="gaussian")
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
  tokens, lengths = _captions()
  assert len(set(lengths.tolist())) == BATCH and int(lengths.max()) < TY  # padding everywhere
  return model, _init(model, x, tokens, lengths), x, tokens, lengths


@pytest.mark.parametrize("overrides,x_shape", [
    ({}, (BATCH, SIZE, SIZE)),
    ({"variant": "noalign"}, (BATCH, SIZE, SIZE, 1)),
    ({"variant": "unconditional"}, (BATCH, SIZE, SIZE)),
    ({"channels": 3, "output": "gaussian"}, (BATCH, SIZE, SIZE, 3)),
    ({"height": 6, "width": 10, "read_n": 3, "write_n": 6}, (BATCH, 6, 10)),
])
def test_output_shapes(overrides, x_shape):
  model = _model(**overrides)
  tokens, lengths = _captions()
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  params = jax.eval_shape(functools.partial(_init_params, model), x, tokens, lengths)
  logits, aux = jax.eval_shape(functools.partial(_apply_model, model), params, x, tokens,
                               lengths, jax.random.key(2))
  assert logits.shape == x_shape
  conditional = model.variant != "unconditional"
  expected = {"canvases", "q_mu", "q_logsigma", "p_mu", "p_logsigma", "z", "read", "write"}
  expected |= {"alignment", "context"} if conditional else set()
  expected |= {"x_logsigma"} if model.output == "gaussian" else set()
  assert set(aux) == expected
  assert aux["canvases"].shape == (T,) + x_shape
  for key in ("q_mu", "q_logsigma", "p_mu", "p_logsigma", "z"):
    assert aux[key].shape == (T, BATCH, Z)
  for key in ("read", "write"):
    assert isinstance(aux[key], AttentionParams)
    assert all(field.shape == (T, BATCH) for field in aux[key])
  if conditional:
    assert aux["alignment"].shape == (T, BATCH, TY)
    assert aux["context"].shape == (T, BATCH, 2 * LANG)
  if model.output == "gaussian":
    assert aux["x_logsigma"].shape == (3,)
  canvases, gen_aux = jax.eval_shape(functools.partial(generate, model, T=T + 1), params,
                                     jax.random.key(3), tokens, lengths)
  assert canvases.shape == (T + 1, BATCH) + x_shape[1:3] + x_shape[3:] * (model.channels > 1)
  assert ("alignment" in gen_aux) == conditional


def test_alignment_is_a_distribution_over_the_words_and_ignores_padding(aligned):
  model, params, x, tokens, lengths = aligned
  key = jax.random.key(4)
  logits, aux = _apply(model, params, x, tokens, lengths, key)
  alpha = np.asarray(aux["alignment"])  # [T, B, Ty]
  is_word = np.arange(TY) < np.asarray(lengths)[:, None]  # [B, Ty]
  np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-6)
  assert np.all(alpha[:, ~is_word] == 0.0)  # exactly zero, not merely small
  assert np.all(alpha[:, is_word] > 0.0)
  np.testing.assert_array_equal(aux["canvases"][-1], logits)
  # Other ids on the padding (even <unk> or <eos>) change nothing at all.
  rng = np.random.default_rng(5)
  noisy = np.where(is_word, tokens, rng.integers(0, len(VOCABULARY), size=tokens.shape))
  assert not np.array_equal(noisy, tokens)
  chex.assert_trees_all_equal((logits, aux),
                              _apply(model, params, x, jnp.asarray(noisy), lengths, key))
  # ... whereas a word that is read does change the output.
  other = np.asarray(tokens).copy()
  other[0, 0] = (other[0, 0] + 1) % len(VOCABULARY)
  changed, _ = _apply(model, params, x, jnp.asarray(other), lengths, key)
  assert not np.allclose(changed[0], logits[0])


def test_both_language_lstms_read_each_caption_within_its_length():
  encoder = CaptionEncoder(vocab_size=len(VOCABULARY), embed_size=6, lang_size=LANG)
  tokens, lengths = _captions()
  params = _jit(encoder.init)(jax.random.key(6), tokens, lengths)["params"]
  h0 = jnp.linspace(-0.5, 0.5, LANG)  # a learned initial state (zero at initialisation)
  params = {**params, "h0": h0}
  encode = _jit(encoder.apply)
  h_lang = np.asarray(encode({"params": params}, tokens, lengths))  # [B, Ty, 2L]
  assert h_lang.shape == (BATCH, TY, 2 * LANG)
  for b, length in enumerate(lengths.tolist()):
    # The same caption alone, without any padding.
    alone = encode({"params": params}, tokens[b:b + 1, :length], lengths[b:b + 1])
    np.testing.assert_allclose(h_lang[b, :length], alone[0], atol=1e-6)
    np.testing.assert_array_equal(h_lang[b, length:], 0.0)
  # Independently of nn.RNN: the forward state at the first word, and the backward state at
  # the last word, are one LSTM step from (zero cell, h0) on that word's embedding.
  embedding = params["embed"]["embedding"]
  cell = nn.OptimizedLSTMCell(LANG)
  start = (jnp.zeros((BATCH, LANG)), jnp.broadcast_to(h0, (BATCH, LANG)))
  last_words = tokens[jnp.arange(BATCH), lengths - 1]
  _, first_forward = cell.apply({"params": params["forward"]}, start, embedding[tokens[:, 0]])
  _, last_backward = cell.apply({"params": params["backward"]}, start, embedding[last_words])
  np.testing.assert_allclose(h_lang[:, 0, :LANG], first_forward, atol=1e-6)
  np.testing.assert_allclose(h_lang[np.arange(BATCH), lengths - 1, LANG:], last_backward,
                             atol=1e-6)
  # Reading the padding as if it were words (every length = Ty) gives another backward pass.
  full = np.asarray(encode({"params": params}, tokens, jnp.full_like(lengths, TY)))
  assert not np.allclose(full[0, 0, LANG:], h_lang[0, 0, LANG:], atol=1e-4)


@pytest.mark.parametrize("variant", ["align", "noalign"])
def test_context_is_the_alignment_weighted_sum_and_noalign_takes_the_mean(variant, aligned):
  if variant == "align":
    model, params, x, tokens, lengths = aligned
  else:
    model = _model(variant="noalign")
    _, _, _, tokens, lengths = aligned
    x = _images((BATCH, SIZE, SIZE))
    params = _init(model, x, tokens, lengths)
  _, aux = _apply(model, params, x, tokens, lengths, jax.random.key(7))
  encoder = CaptionEncoder(model.vocab_size, model.embed_size, model.lang_size)
  h_lang = np.asarray(_jit(encoder.apply)({"params": params["caption_encoder"]}, tokens,
                                          lengths), np.float64)
  context, alpha = np.asarray(aux["context"]), np.asarray(aux["alignment"])
  np.testing.assert_allclose(context, np.einsum("tbj,bjd->tbd", alpha, h_lang), atol=1e-6)
  if variant == "noalign":
    n = np.asarray(lengths)
    means = np.stack([h_lang[b, :n[b]].mean(0) for b in range(BATCH)])
    np.testing.assert_allclose(context, np.broadcast_to(means, context.shape), atol=1e-6)


def test_the_caption_conditions_the_prior_from_the_second_step(aligned):
  model, params, x, tokens, lengths = aligned
  # Non-zero prior biases and initial state: P(Z_1) must still be N(0, I) exactly.
  params = {**params, "prior_mu": {**params["prior_mu"], "bias": jnp.full((Z,), 0.7)},
            "prior_logsigma": {**params["prior_logsigma"], "bias": jnp.full((Z,), -0.4)},
            "h0_gen": jnp.full_like(params["h0_gen"], 0.3)}
  key = jax.random.key(8)
  _, aux = _apply(model, params, x, tokens, lengths, key)
  other_tokens, other_lengths = _captions(CAPTIONS[::-1])
  _, other = _apply(model, params, x, other_tokens, other_lengths, key)
  for a in (aux, other):  # P(Z_1) = N(0, I), whatever the caption (the released code's)
    np.testing.assert_array_equal(a["p_mu"][0], 0.0)
    np.testing.assert_array_equal(a["p_logsigma"][0], 0.0)
  for b in (0, 2):  # the middle caption is the same in both batches
    for t in range(1, T):
      assert not np.allclose(aux["p_mu"][t, b], other["p_mu"][t, b], atol=1e-6), (t, b)
  np.testing.assert_allclose(aux["p_mu"][:, 1], other["p_mu"][:, 1], atol=1e-6)


def test_the_unconditional_variant_ignores_the_caption_and_reparameterises_the_noise():
  model = _model(variant="unconditional")
  x = _images((BATCH, SIZE, SIZE), seed=1)
  tokens, lengths = _captions()
  params = _init(model, x, tokens, lengths)
  assert "caption_encoder" not in params
  apply = _jit(lambda p, tokens, lengths, eps: model.apply({"params": p}, x, tokens, lengths,
                                                           noise=eps))
  eps = jax.random.normal(jax.random.key(9), (T, BATCH, Z))
  logits, aux = apply(params, tokens, lengths, eps)
  other_tokens, other_lengths = _captions(CAPTIONS[::-1])
  chex.assert_trees_all_equal((logits, aux), apply(params, other_tokens, other_lengths, eps))
  # The explicit noise is the eps of z_t = mu_t + sigma_t eps_t, with Q's parameters.
  np.testing.assert_allclose(aux["z"], aux["q_mu"] + jnp.exp(aux["q_logsigma"]) * eps,
                             rtol=1e-6)
  # Ignored, but still ids of the model's vocabulary (checked before anything runs).
  with pytest.raises(ValueError, match=r"tokens must hold ids in \[0, vocab_size\)"):
    model.apply({"params": params}, x, tokens.at[0, 0].set(len(VOCABULARY)), lengths, noise=eps)


def test_generation_draws_from_the_learned_prior(aligned):
  model, params, _, tokens, lengths = aligned
  many_tokens, many_lengths = jnp.repeat(tokens, REPEATS, 0), jnp.repeat(lengths, REPEATS, 0)
  key = jax.random.key(10)
  canvases, aux = generate(model, params, key, many_tokens, many_lengths)
  assert canvases.shape == (T, BATCH * REPEATS, SIZE, SIZE, 3)
  assert bool(jnp.all(jnp.isfinite(canvases)))
  chex.assert_trees_all_equal((canvases, aux),
                              generate(model, params, key, many_tokens, many_lengths))
  other, _ = generate(model, params, jax.random.key(11), many_tokens, many_lengths)
  assert not np.allclose(other, canvases)
  assert not np.allclose(canvases[:, 0], canvases[:, 1])  # one caption, independent z
  alpha = np.asarray(aux["alignment"])
  is_word = np.arange(TY) < np.asarray(many_lengths)[:, None]
  np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-6)
  assert np.all(alpha[:, ~is_word] == 0.0)
  # z_t ~ N(p_mu_t, p_sigma_t): the standardised samples are standard normal (4 SE bounds).
  eps = np.asarray((aux["z"] - aux["p_mu"]) * jnp.exp(-aux["p_logsigma"])).ravel()
  assert abs(eps.mean()) < 4 / np.sqrt(eps.size), eps.mean()
  assert abs(eps.std() - 1.0) < 4 / np.sqrt(2 * eps.size), eps.std()


def test_generation_with_explicit_noise_draws_each_row_from_its_own_noise(aligned):
  model, params, _, tokens, lengths = aligned
  eps = jax.random.normal(jax.random.key(12), (T, BATCH, Z))
  draw = _jit(lambda params, tokens, lengths, eps: model.apply(
      {"params": params}, tokens, lengths, noise=eps, method=AlignDRAW.generate))
  canvases, aux = draw(params, tokens, lengths, eps)  # no "sample" stream needed
  np.testing.assert_allclose(aux["z"], aux["p_mu"] + jnp.exp(aux["p_logsigma"]) * eps,
                             rtol=1e-6)
  # Row b depends on its caption and eps[:, b] only: the last two rows alone, reordered,
  # give the same images (what a per-record evaluation key relies on).
  rows = jnp.array([2, 1])
  alone, _ = draw(params, tokens[rows], lengths[rows], eps[:, rows])
  np.testing.assert_allclose(alone, canvases[:, rows], atol=1e-5)
  with pytest.raises(ValueError, match=r"noise must have shape \[T, B, Z\] = \(3, 3, 4\), got "
                                       r"\(3, 2, 4\)"):
    model.apply({"params": params}, tokens, lengths, noise=eps[:, :2],
                method=AlignDRAW.generate)


def test_adam_decreases_the_loss_and_the_jitted_loss_traces_once(aligned, check_adam_training):
  """Also checks that every parameter (x_logsigma included) gets a finite, nonzero gradient."""
  model, params, x, tokens, lengths = aligned
  key = jax.random.key(14)  # fixed noise: a deterministic objective
  check_adam_training(lambda params: _mean_loss(model, params, x, tokens, lengths, key), params,
                      steps=15)


@pytest.mark.parametrize("overrides,match", [
    ({"variant": "attend"}, r"variant must be one of \('align', 'noalign', 'unconditional'\), "
                            r"got 'attend'"),
    ({"output": "poisson"}, r"output must be one of .*got 'poisson'"),
    ({"read_n": 9}, r"read_n .*\[1, 8\], got 9"),
    ({"write_n": 7, "height": 6}, r"write_n .*\[1, 6\], got 7"),
    ({"glimpses": 0}, r"glimpses must be a positive int, got 0"),
    ({"vocab_size": 0}, r"vocab_size must be a positive int, got 0"),
    ({"lang_size": True}, r"lang_size must be a positive int, got True"),
])
def test_bad_fields_raise(overrides, match):
  with pytest.raises(ValueError, match=match):
    _model(**overrides)


def test_bad_inputs_raise(aligned):
  model, params, x, tokens, lengths = aligned
  key = jax.random.key(16)
  apply = functools.partial(model.apply, {"params": params}, rngs={"sample": key})
  cases = [
      ((x, tokens[0], lengths), r"tokens must have shape \[B, Ty\], got \(14,\)"),
      ((x, tokens[None], lengths), r"tokens .*\(1, 3, 14\)"),
      ((x, tokens.astype(jnp.float32), lengths), r"tokens must hold integer ids, got dtype "
                                                  r"float32"),
      ((x, tokens, lengths.astype(jnp.float32)), r"lengths must be an integer array .*float32"),
      ((x, tokens[:2], lengths[:2]), r"tokens must have B = 3 rows .*\(2, 14\)"),
      ((x, tokens, lengths[:2]), r"lengths must be an integer array \[B\] = \(3,\) .*\(2,\)"),
      ((x, tokens, lengths.at[1].set(0)), r"lengths must lie in \[1, Ty\] = \[1, 14\] .*got "
                                          r"values in \[0, 12\]"),
      ((x, tokens, lengths.at[1].set(TY + 1)), r"lengths must lie in .*, 15\]"),
      ((x, tokens.at[0, 0].set(len(VOCABULARY)), lengths),
       rf"tokens must hold ids in \[0, vocab_size\) = \[0, {len(VOCABULARY)}\)"),
      ((x[..., 0], tokens, lengths), r"x must have shape \[B, H, W, C\] .*\(8, 8, 3\).*\(3, 8, 8\)"),
  ]
  for args, match in cases:  # eager: concrete lengths and ids are range-checked
    with pytest.raises(ValueError, match=match):
      apply(*args)
  with pytest.raises(ValueError, match=r"noise must have shape \[T, B, Z\] = \(3, 3, 4\), got "
                                       r"\(2, 3, 4\)"):
    apply(x, tokens, lengths, noise=jnp.zeros((2, BATCH, Z)))
  with pytest.raises(ValueError, match=r"lengths must lie in"):
    generate(model, params, key, tokens, lengths.at[0].set(0))
  with pytest.raises(ValueError, match=r"glimpses must be a positive int, got 0"):
    generate(model, params, key, tokens, lengths, T=0)
