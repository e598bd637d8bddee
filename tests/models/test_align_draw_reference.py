"""alignDRAW step by step against a float64 NumPy reference of its recurrences.

The reference is written from Mansimov et al. 2016, section 3 (the bidirectional language
LSTM, the alignment, the inference and generative LSTMs, DRAW's read and write of Gregor et
al. 2015, eq. 19-29) and, where the paper is silent, the authors' released Theano code
(emansim/text2image ``alignDraw.py``, ``build_lang_encoder_and_attention_vae_decoder``):
the prior ``mu_{t+1} = tanh(W_mu h^gen_t + b_mu)``, ``log sigma_{t+1} = tanh(W_sigma h^gen_t
+ b_sigma)`` after step ``t``, ``P(Z_1) = N(0, I)``, the learned ``c_0`` and initial hidden
states with zero cells. Every parameter of the model, biases and initial states included, is
replaced by random non-zero values, so a dropped ``tanh``, bias or initial state shows.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models.align_draw import CANVAS_INIT, AlignDRAW
from vislang_jax.objectives.align_draw import align_draw_loss

HEIGHT, WIDTH = 9, 11  # not square: a swapped axis shows
T, Z, READ_N, WRITE_N = 4, 3, 2, 3
ENC, GEN, LANG, EMBED, ALIGN, VOCAB = 5, 6, 4, 5, 7, 10
TOKENS = np.array([[4, 7, 2, 9, 0, 0], [5, 5, 3, 0, 0, 0], [1, 8, 6, 2, 4, 3]], np.int32)
LENGTHS = np.array([4, 3, 6], np.int32)  # the rest of each row is padding
BATCH, TY = TOKENS.shape

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(variant):
  return AlignDRAW(height=HEIGHT, width=WIDTH, vocab_size=VOCAB, glimpses=T, read_n=READ_N,
                   write_n=WRITE_N, z_size=Z, enc_size=ENC, gen_size=GEN, lang_size=LANG,
                   embed_size=EMBED, align_size=ALIGN, variant=variant)


def _random_params(model, seed):
  """The model's params with every leaf replaced by random non-zero values (float32)."""
  shapes = jax.eval_shape(functools.partial(model.init, {"params": jax.random.key(0),
                                                          "sample": jax.random.key(1)}),
                          jnp.zeros((1, HEIGHT, WIDTH)), jnp.asarray(TOKENS[:1]),
                          jnp.asarray(LENGTHS[:1]))["params"]
  rng = np.random.default_rng(seed)

  def draw(leaf):
    values = rng.normal(scale=0.6, size=leaf.shape)
    return jnp.asarray(np.where(np.abs(values) < 0.05, 0.3, values), jnp.float32)

  return jax.tree.map(draw, shapes)


# -- the reference, float64 -----------------------------------------------------------------

def _sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def _dense(p, x):
  return x @ p["kernel"] + (p["bias"] if "bias" in p else 0.0)


def _lstm(p, cell, hidden, inputs):
  """A standard LSTM step without peepholes (gates i, f, g, o), as the released code's."""
  gate = lambda k: inputs @ p["i" + k]["kernel"] + hidden @ p["h" + k]["kernel"] + p["h" + k][
      "bias"]
  i, f, g, o = _sigmoid(gate("i")), _sigmoid(gate("f")), np.tanh(gate("g")), _sigmoid(gate("o"))
  cell = f * cell + i * g
  return cell, o * np.tanh(cell)


def _filters(p, h, n):
  """DRAW eq. 21-22 and 19-20, 25-26: the five parameters and F_Y [B,N,H], F_X [B,N,W]."""
  gx_t, gy_t, log_s2, log_d, log_g = _dense(p, h).T
  gx, gy = (WIDTH + 1) / 2 * (gx_t + 1), (HEIGHT + 1) / 2 * (gy_t + 1)
  s2, gamma = np.exp(log_s2), np.exp(log_g)
  delta = (max(HEIGHT, WIDTH) - 1) / (n - 1) * np.exp(log_d)

  def bank(g, size):
    mu = g[:, None] + (np.arange(1, n + 1) - n / 2 - 0.5) * delta[:, None]  # [B, N]
    logits = -(np.arange(1, size + 1) - mu[..., None]) ** 2 / (2 * s2[:, None, None])
    f = np.exp(logits - logits.max(-1, keepdims=True))
    return f / f.sum(-1, keepdims=True)

  att = {"gx": gx, "gy": gy, "sigma2": s2, "delta": delta, "gamma": gamma}
  return att, bank(gy, HEIGHT), bank(gx, WIDTH)


def _read(p, x, x_hat, h):
  att, fy, fx = _filters(p["attention"]["Dense_0"], h, READ_N)
  glimpse = lambda img: att["gamma"][:, None, None] * np.einsum("bih,bhw,bjw->bij", fy, img, fx)
  return np.stack([glimpse(x), glimpse(x_hat)], -1).reshape(len(h), -1), att


def _write(p, h):
  att, fy, fx = _filters(p["attention"]["Dense_0"], h, WRITE_N)
  patch = _dense(p["patch"], h).reshape(len(h), WRITE_N, WRITE_N)
  return np.einsum("bih,bij,bjw->bhw", fy, patch, fx) / att["gamma"][:, None, None], att


def _language(p):
  """h^lang [B, Ty, 2L]: forward and backward LSTMs over each caption's own words, both from
  (zero cell, h0), zero on padding."""
  h_lang = np.zeros((BATCH, TY, 2 * LANG))
  embedded = p["embed"]["embedding"][TOKENS]
  for b, length in enumerate(LENGTHS):
    for direction, order, half in (("forward", range(length), slice(0, LANG)),
                                   ("backward", reversed(range(length)), slice(LANG, None))):
      cell, hidden = np.zeros(LANG), p["h0"]
      for j in order:
        cell, hidden = _lstm(p[direction], cell, hidden, embedded[b, j])
        h_lang[b, j, half] = hidden
  return h_lang


def _attend(p, variant, h_lang, h_gen):
  """(s_t [B, 2L], alpha_t [B, Ty]) from h^gen_{t-1}; (None, None) without a caption."""
  words = np.arange(TY) < LENGTHS[:, None]
  if variant == "unconditional":
    return None, None
  if variant == "align":
    scores = np.tanh(h_lang @ p["align_u"]["kernel"] + _dense(p["align_w"], h_gen)[:, None])
    scores = (scores @ p["align_v"]["kernel"])[..., 0]
    alpha = np.where(words, np.exp(scores - scores.max(-1, keepdims=True)), 0.0)
  else:
    alpha = words.astype(float)
  alpha = alpha / alpha.sum(-1, keepdims=True)
  return np.einsum("bj,bjd->bd", alpha, h_lang), alpha


def reference(params, variant, eps, x=None):
  """Step outputs, stacked [T, ...], of the posterior pass over ``x`` (or, when ``x`` is
  None, of the generative pass z_t = mu_t + sigma_t eps_t)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  h_lang = None if variant == "unconditional" else _language(p["caption_encoder"])
  canvas = np.broadcast_to(p["c0"][..., 0], (BATCH, HEIGHT, WIDTH))
  gen = (np.zeros((BATCH, GEN)), np.broadcast_to(p["h0_gen"], (BATCH, GEN)))
  enc = (np.zeros((BATCH, ENC)), np.broadcast_to(p["h0_infer"], (BATCH, ENC)))
  steps = []
  for t in range(T):
    h_prev = gen[1]
    out = {}
    if t == 0:  # P(Z_1) = N(0, I)
      out["p_mu"], out["p_logsigma"] = np.zeros((BATCH, Z)), np.zeros((BATCH, Z))
    else:
      out["p_mu"] = np.tanh(_dense(p["prior_mu"], h_prev))
      out["p_logsigma"] = np.tanh(_dense(p["prior_logsigma"], h_prev))
    out["context"], out["alignment"] = _attend(p, variant, h_lang, h_prev)
    if x is None:
      z = out["p_mu"] + np.exp(out["p_logsigma"]) * eps[t]
    else:
      r, out["read"] = _read(p["reader"], x, x - _sigmoid(canvas), h_prev)
      enc = _lstm(p["infer_lstm"], *enc, np.concatenate([r, h_prev], -1))
      out["q_mu"], out["q_logsigma"] = _dense(p["q_mu"], enc[1]), _dense(p["q_logsigma"], enc[1])
      z = out["q_mu"] + np.exp(out["q_logsigma"]) * eps[t]
    inputs = z if out["context"] is None else np.concatenate([z, out["context"]], -1)
    gen = _lstm(p["gen_lstm"], *gen, inputs)
    update, out["write"] = _write(p["writer"], gen[1])
    canvas = canvas + update
    out.update(z=z, canvases=canvas)
    steps.append({k: v for k, v in out.items() if v is not None})
  return {k: (np.stack([s[k] for s in steps]) if not isinstance(steps[0][k], dict) else
              {f: np.stack([s[k][f] for s in steps]) for f in steps[0][k]}) for k in steps[0]}


# -- the comparisons -------------------------------------------------------------------------

def _compare(got, want, *, what):
  assert set(got) == set(want), (what, sorted(got), sorted(want))
  for key, expected in want.items():
    if isinstance(expected, dict):  # attention parameters, field by field
      for field, values in expected.items():
        np.testing.assert_allclose(getattr(got[key], field), values, rtol=2e-4, atol=2e-5,
                                   err_msg=f"{what}: {key}.{field}")
    else:
      for t in range(T):  # step by step, so a failure names the first wrong step
        np.testing.assert_allclose(got[key][t], expected[t], rtol=2e-4, atol=2e-5,
                                   err_msg=f"{what}: {key} at step t = {t + 1}")


@pytest.mark.parametrize("variant", ["align", "noalign", "unconditional"])
def test_inference_and_generation_match_the_reference_step_by_step(variant):
  model = _model(variant)
  params = _random_params(model, seed={"align": 0, "noalign": 1, "unconditional": 2}[variant])
  rng = np.random.default_rng(3)
  x = (rng.uniform(size=(BATCH, HEIGHT, WIDTH)) < 0.4).astype(np.float32)
  eps = rng.standard_normal((T, BATCH, Z)).astype(np.float32)
  tokens, lengths = jnp.asarray(TOKENS), jnp.asarray(LENGTHS)

  @_jit
  def run(params, x, eps):
    logits, aux = model.apply({"params": params}, x, tokens, lengths, noise=eps)
    loss, _ = align_draw_loss(logits, x, aux["q_mu"], aux["q_logsigma"], aux["p_mu"],
                              aux["p_logsigma"])
    canvases, gen_aux = model.apply({"params": params}, tokens, lengths, noise=eps,
                                    method=AlignDRAW.generate)
    return logits, aux, loss, {"canvases": canvases, **gen_aux}

  logits, aux, loss, generated = run(params, jnp.asarray(x), jnp.asarray(eps))
  want = reference(params, variant, eps.astype(np.float64), x.astype(np.float64))
  _compare(aux, want, what="posterior pass")
  np.testing.assert_array_equal(logits, aux["canvases"][-1])
  _compare(generated, reference(params, variant, eps.astype(np.float64)),
           what="generative pass")
  # The negative bound of section 3.3 on these steps: Bernoulli NLL of sigmoid(c_T) plus the
  # closed-form KL(Q(Z_t) || P(Z_t)) summed over steps and units.
  c_t = want["canvases"][-1]
  recon = np.sum(np.logaddexp(0.0, c_t) - x * c_t, axis=(1, 2))
  q_var, p_var = np.exp(2 * want["q_logsigma"]), np.exp(2 * want["p_logsigma"])
  kl = 0.5 * (np.log(p_var / q_var) + (q_var + (want["q_mu"] - want["p_mu"]) ** 2) / p_var - 1)
  np.testing.assert_allclose(loss, recon + kl.sum(axis=(0, 2)), rtol=1e-4)


def test_initial_states_are_learned_and_start_from_a_black_canvas():
  model = _model("align")
  params = _jit(model.init)({"params": jax.random.key(0), "sample": jax.random.key(1)},
                            jnp.zeros((BATCH, HEIGHT, WIDTH)), jnp.asarray(TOKENS),
                            jnp.asarray(LENGTHS))["params"]
  np.testing.assert_array_equal(params["c0"], np.full((HEIGHT, WIDTH, 1), CANVAS_INIT))
  assert _sigmoid(CANVAS_INIT) < 1e-4  # black
  for name in ("h0_gen", "h0_infer"):
    np.testing.assert_array_equal(params[name], 0.0)
  np.testing.assert_array_equal(params["caption_encoder"]["h0"], 0.0)
