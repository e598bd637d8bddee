"""Tests for vislang_jax.models.draw_classifier: shapes, glimpses, causality, gradients, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models.draw_classifier import RecurrentAttentionClassifier
from vislang_jax.ops.filterbank import AttentionParams

T, BATCH, HEIGHT, WIDTH, N, HIDDEN = 3, 2, 9, 11, 4, 8

# Everything that runs is jitted with XLA's backend optimisations off: for these tiny models
# compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(**overrides):
  fields = dict(num_classes=5, glimpses=T, read_n=N, hidden_size=HIDDEN)
  return RecurrentAttentionClassifier(**{**fields, **overrides})


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


@functools.partial(_jit, static_argnums=0)
def _init(model, x):
  return model.init(jax.random.key(0), x)


@functools.partial(_jit, static_argnums=0)
def _apply(model, variables, x):
  return model.apply(variables, x)


def _numpy_read(image, gx, gy, sigma2, delta, gamma, n):
  """Float64 eq. (19)-(20), (25)-(27) for one [H, W, C] image: gamma F_Y x F_X^T."""
  centres = np.arange(1, n + 1) - n / 2 - 0.5

  def filters(g, size):
    mu = g + centres * delta  # [N]
    f = np.exp(-(np.arange(1, size + 1)[None, :] - mu[:, None]) ** 2 / (2 * sigma2))
    return f / f.sum(axis=1, keepdims=True)

  fy, fx = filters(gy, image.shape[0]), filters(gx, image.shape[1])
  return gamma * np.einsum("ih,hwc,jw->ijc", fy, image.astype(np.float64), fx)


@pytest.mark.parametrize("overrides,x_shape,glimpse_shape", [
    ({}, (BATCH, HEIGHT, WIDTH), (N, N)),
    ({}, (BATCH, HEIGHT, WIDTH, 1), (N, N, 1)),
    ({"glimpse_features": 6, "read_n": 1}, (BATCH, HEIGHT, WIDTH, 3), (1, 1, 3)),
])
def test_output_shapes(overrides, x_shape, glimpse_shape):
  model = _model(**overrides)
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, jax.random.key(0)), x)
  logits, aux = jax.eval_shape(model.apply, variables, x)
  assert logits.shape == (BATCH, 5)
  assert isinstance(aux["read"], AttentionParams)
  assert all(field.shape == (T, BATCH) for field in aux["read"])
  assert aux["glimpses"].shape == (T, BATCH) + glimpse_shape
  assert ("glimpse_net" in variables["params"]["core"]) == bool(model.glimpse_features)


@pytest.fixture(scope="module")
def colour():
  """A model on 2-channel images with a glimpse network, its variables, a batch, outputs.

  The attention kernel is scaled up 30 times from its small initialisation, so that the
  later glimpses move well away from the default one (gx by ~3 pixels, gamma to ~1.3).
  """
  model = _model(glimpse_features=6)
  x = _images((BATCH, HEIGHT, WIDTH, 2))
  variables = _init(model, x)
  kernel = variables["params"]["core"]["attention"]["Dense_0"]["kernel"]
  variables["params"]["core"]["attention"]["Dense_0"]["kernel"] = 30.0 * kernel
  return model, variables, x, _apply(model, variables, x)


def test_glimpses_are_filterbank_reads_with_the_reported_parameters(colour):
  _, _, x, (_, aux) = colour
  read = jax.tree.map(np.asarray, aux["read"])
  for t in range(T):
    for b in range(BATCH):
      expected = _numpy_read(np.asarray(x[b]), *(float(f[t, b]) for f in read), N)
      np.testing.assert_allclose(aux["glimpses"][t, b], expected, rtol=2e-5, atol=1e-6)


def test_first_glimpse_is_the_bias_default_and_later_ones_follow_the_image(colour):
  _, _, _, (_, aux) = colour
  first = jax.tree.map(lambda a: np.asarray(a[0]), aux["read"])  # h_0 = 0: the bias alone
  np.testing.assert_allclose(first.gx, (WIDTH + 1) / 2)
  np.testing.assert_allclose(first.gy, (HEIGHT + 1) / 2)
  np.testing.assert_allclose(first.delta, (WIDTH - 1) / (N - 1), rtol=1e-6)  # spans the width
  np.testing.assert_allclose(first.gamma, 1.0)
  # h_1 depends on the image, so the second glimpse differs between the two examples.
  assert abs(float(aux["read"].gx[1, 0] - aux["read"].gx[1, 1])) > 0.1


def test_steps_are_causal_a_shorter_unroll_is_a_prefix(colour):
  """The scan shares parameters over steps, so a 1- or 2-glimpse model can reuse them."""
  model, variables, x, (_, aux) = colour
  for steps in (1, 2):
    _, short = _apply(model.clone(glimpses=steps), variables, x)
    np.testing.assert_allclose(short["glimpses"], aux["glimpses"][:steps], rtol=1e-5, atol=1e-7)
    for got, want in zip(short["read"], aux["read"]):
      np.testing.assert_allclose(got, want[:steps], rtol=1e-5)


def test_logits_come_from_the_last_hidden_state_only(colour):
  """Logits change with the image, and one step more changes them too (h_T, not h_1)."""
  model, variables, x, (logits, _) = colour
  assert logits.shape == (BATCH, 5) and bool(jnp.all(jnp.isfinite(logits)))
  assert not np.allclose(logits[0], logits[1])
  longer, _ = _apply(model.clone(glimpses=T + 1), variables, x)
  assert not np.allclose(longer, logits)


def test_jitted_gradients_are_finite_and_reach_the_attention_layer(colour):
  model, variables, x, _ = colour
  labels = jnp.array([1, 3])

  @_jit
  def grad(variables):
    def loss(variables):
      logits, _ = model.apply(variables, x)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    return jax.grad(loss)(variables)

  grads = grad(variables)["params"]
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert bool(jnp.all(jnp.isfinite(g))), name
    assert float(jnp.max(jnp.abs(g))) > 0.0, name
  attention = grads["core"]["attention"]["Dense_0"]
  # All five raw parameters (g~x, g~y, log sigma^2, log delta~, log gamma) are learned.
  assert bool(jnp.all(jnp.abs(attention["bias"]) > 0)), attention["bias"]
  assert bool(jnp.all(jnp.abs(attention["kernel"]).sum(0) > 0)), attention["kernel"]


@pytest.mark.parametrize("overrides,match", [
    ({"glimpses": 0}, r"glimpses must be a positive int, got 0"),
    ({"read_n": 0}, r"read_n must be a positive int, got 0"),
    ({"hidden_size": 2.5}, r"hidden_size must be a positive int, got 2.5"),
    ({"num_classes": True}, r"num_classes must be a positive int, got True"),
    ({"glimpse_features": -1},
     r"glimpse_features \(0: no glimpse network\) must be an int >= 0, got -1"),
])
def test_bad_fields_raise(overrides, match):
  with pytest.raises(ValueError, match=match):
    _model(**overrides)


@pytest.mark.parametrize("read_n,x_shape,match", [
    (N, (BATCH, HEIGHT), r"images must have shape \[B, H, W\] or \[B, H, W, C\], got \(2, 9\)"),
    (N, (BATCH, HEIGHT, WIDTH, 1, 1), r"images must have shape .*got \(2, 9, 11, 1, 1\)"),
    (HEIGHT + 1, (BATCH, HEIGHT, WIDTH),
     r"read_n \(at most min\(H, W\) for images of shape \(2, 9, 11\)\) must be an int in "
     r"\[1, 9\], got 10"),
])
def test_bad_images_raise(read_n, x_shape, match):
  model = _model(read_n=read_n)
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros(x_shape))
