"""DRAW step by step against a float64 NumPy reference of its recurrence.

The reference is written from Gregor et al. 2015: one glimpse is eq. (3)-(8),

    x^_t = x - sigmoid(c_{t-1}),  r_t = read(x, x^_t, h^dec_{t-1}),
    h^enc_t = LSTM^enc(h^enc_{t-1}, [r_t, h^dec_{t-1}]),  z_t = mu_t + sigma_t eps_t,
    h^dec_t = LSTM^dec(h^dec_{t-1}, z_t),  c_t = c_{t-1} + write(h^dec_t),

with ``c_0``, ``h_0`` and the cells zero; ``read`` and ``write`` either see the whole image
(section 3.1) or go through the Gaussian filterbank of eq. (19)-(29), written out here in
NumPy as well. Every parameter of the model, biases included, is replaced by random non-zero
values, and the reference runs on those values and the same ``eps``; the model's canvases,
``mu``, ``logsigma``, ``z`` and attention parameters must match at every step. So a dropped
error image (``x^ = x``), a read from ``h^dec_t`` instead of ``h^dec_{t-1}``, a swapped axis
or a missing intensity shows.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models.draw import DRAW

HEIGHT, WIDTH = 7, 9  # not square: a swapped axis shows
T, BATCH, Z, ENC, DEC, READ_N, WRITE_N = 4, 3, 3, 5, 6, 2, 3

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(**overrides):
  fields = dict(height=HEIGHT, width=WIDTH, glimpses=T, read_n=READ_N, write_n=WRITE_N,
                z_size=Z, enc_size=ENC, dec_size=DEC)
  return DRAW(**{**fields, **overrides})


def _random_params(model, x, seed):
  """The model's params with every leaf, biases included, random and away from zero."""
  shapes = jax.eval_shape(
      functools.partial(model.init, {"params": jax.random.key(0), "sample": jax.random.key(1)}),
      x)["params"]
  rng = np.random.default_rng(seed)

  def draw(leaf):
    values = rng.normal(scale=0.5, size=leaf.shape)
    return jnp.asarray(np.where(np.abs(values) < 0.05, 0.25, values), jnp.float32)

  return jax.tree.map(draw, shapes)


# -- the reference, float64 -----------------------------------------------------------------

def _sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def _dense(p, x):
  return x @ p["kernel"] + p["bias"]


def _lstm(p, state, inputs):
  """A standard LSTM step without peepholes: gates i, f, o sigmoid, candidate g tanh."""
  cell, hidden = state

  def gate(k):
    return inputs @ p["i" + k]["kernel"] + hidden @ p["h" + k]["kernel"] + p["h" + k]["bias"]

  i, f, g, o = _sigmoid(gate("i")), _sigmoid(gate("f")), np.tanh(gate("g")), _sigmoid(gate("o"))
  cell = f * cell + i * g
  return cell, o * np.tanh(cell)


def _attention(p, h, n):
  """Eq. (21)-(22), then (19)-(20) and (25)-(26): parameters and F_Y [B,N,H], F_X [B,N,W]."""
  gx_tilde, gy_tilde, log_sigma2, log_delta_tilde, log_gamma = _dense(p, h).T
  params = {
      "gx": (WIDTH + 1) / 2 * (gx_tilde + 1),
      "gy": (HEIGHT + 1) / 2 * (gy_tilde + 1),
      "sigma2": np.exp(log_sigma2),
      "delta": (max(HEIGHT, WIDTH) - 1) / (n - 1) * np.exp(log_delta_tilde),
      "gamma": np.exp(log_gamma),
  }

  def bank(g, size):
    i = np.arange(1, n + 1)
    mu = g[:, None] + (i - n / 2 - 0.5) * params["delta"][:, None]  # [B, N]
    a = np.arange(1, size + 1)
    f = np.exp(-(a - mu[..., None]) ** 2 / (2 * params["sigma2"][:, None, None]))
    return f / f.sum(-1, keepdims=True)  # Z_X, Z_Y: each filter sums to one

  return params, bank(params["gy"], HEIGHT), bank(params["gx"], WIDTH)


def _read(p, images, h):
  """Eq. (27) on each channel of ``images`` [B, H, W, K]: gamma F_Y x F_X^T -> [B, N, N, K]."""
  att, fy, fx = _attention(p, h, READ_N)
  glimpse = np.stack([fy @ images[..., k] @ fx.transpose(0, 2, 1)
                      for k in range(images.shape[-1])], -1)
  return att["gamma"][:, None, None, None] * glimpse, att


def _write(p, h, channels):
  """Eq. (28)-(29): w = W(h) [B, N, N, C]; (1 / gamma) F_Y^T w F_X on each channel."""
  w = _dense(p["patch"], h).reshape(len(h), WRITE_N, WRITE_N, channels)
  att, fy, fx = _attention(p["attention"]["Dense_0"], h, WRITE_N)
  image = np.stack([fy.transpose(0, 2, 1) @ w[..., k] @ fx for k in range(channels)], -1)
  return image / att["gamma"][:, None, None, None], att


def _reference(params, x, eps, *, channels, attention):
  """Eq. (3)-(8) for T = len(eps) glimpses of ``x`` [B, H, W, C]; per-step outputs stacked."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  batch = len(x)
  canvas = np.zeros_like(x)
  enc = (np.zeros((batch, ENC)), np.zeros((batch, ENC)))
  dec = (np.zeros((batch, DEC)), np.zeros((batch, DEC)))
  steps = []
  for eps_t in eps:
    h_dec_prev = dec[1]
    x_hat = x - _sigmoid(canvas)  # (3)
    both = np.concatenate([x, x_hat], -1)  # [B, H, W, 2C]: x's channels, then x^'s
    if attention:  # (4)
      glimpse, read_att = _read(p["reader"]["attention"]["Dense_0"], both, h_dec_prev)
      r = glimpse.reshape(batch, -1)
    else:
      r, read_att = both.reshape(batch, -1), None
    enc = _lstm(p["encoder"], enc, np.concatenate([r, h_dec_prev], -1))  # (5)
    mu, logsigma = _dense(p["q_mu"], enc[1]), _dense(p["q_logsigma"], enc[1])
    z = mu + np.exp(logsigma) * eps_t  # (6)
    dec = _lstm(p["decoder"], dec, z)  # (7)
    if attention:
      update, write_att = _write(p["writer"], dec[1], channels)
    else:
      update, write_att = _dense(p["write_canvas"], dec[1]).reshape(x.shape), None
    canvas = canvas + update  # (8)
    steps.append(dict(canvas=canvas, mu=mu, logsigma=logsigma, z=z, read=read_att,
                      write=write_att))
  return steps


# -- the comparison ---------------------------------------------------------------------------

@pytest.mark.parametrize("channels,attention", [(1, True), (2, True), (1, False)])
def test_every_glimpse_matches_the_float64_reference(channels, attention):
  model = _model(channels=channels, read_attention=attention, write_attention=attention)
  rng = np.random.default_rng(channels + 10 * attention)
  x = rng.uniform(size=(BATCH, HEIGHT, WIDTH, channels))  # grey levels in [0, 1]
  eps = rng.normal(size=(T, BATCH, Z))
  params = _random_params(model, jnp.zeros((1, HEIGHT, WIDTH, channels)), seed=channels)
  logits, aux = _jit(lambda p, x, e: model.apply({"params": p}, x, noise=e))(
      params, jnp.asarray(x, jnp.float32), jnp.asarray(eps, jnp.float32))
  steps = _reference(params, x, eps, channels=channels, attention=attention)

  check = functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-4)
  for t, ref in enumerate(steps):
    check(aux["canvases"][t], ref["canvas"], err_msg=f"c_{t + 1}")
    for name in ("mu", "logsigma", "z"):
      check(aux[name][t], ref[name], err_msg=f"{name}_{t + 1}")
    for key in ("read", "write"):
      assert (key in aux) == attention
      if attention:
        for field, value in ref[key].items():
          check(getattr(aux[key], field)[t], value, err_msg=f"{key} {field} at t = {t + 1}")
  check(logits, steps[-1]["canvas"], err_msg="logits = c_T")
  # The fixture is not degenerate: the canvas moves a lot, and so does the attention.
  assert np.abs(steps[-1]["canvas"]).max() > 0.3
  if attention:
    gx = np.stack([s["read"]["gx"] for s in steps])
    assert np.ptp(gx, axis=0).min() > 0.1, gx
