"""Tests for vislang_jax.objectives.style against float64 NumPy loops over the paper's F^l
([N_l, M_l]) layout, hand-worked values and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vislang_jax.models import vgg
from vislang_jax.objectives import style


def _paper_layout(features):
  """[h, w, N] -> F [N, M]: row i is filter i's map, vectorised over the M = h w positions."""
  h, w, n = features.shape
  return np.asarray(features, np.float64).reshape(h * w, n).T


def _gram_loops(features):
  """G_ij = sum_k F_ik F_jk, one example, by explicit loops."""
  f = _paper_layout(features)
  n, m = f.shape
  g = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      for k in range(m):
        g[i, j] += f[i, k] * f[j, k]
  return g


def _features(seed, shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_gram_matrix_against_loops_and_by_hand():
  x = _features(0, (2, 3, 4, 5))
  got = np.asarray(style.gram_matrix(x))
  assert got.shape == (2, 5, 5)
  for b in range(2):
    np.testing.assert_allclose(got[b], _gram_loops(x[b]), rtol=1e-5, atol=1e-5)
  # Ones on 2 x 2 positions: every inner product is M = 4 (no 1/M or 1/(N M) normalisation).
  np.testing.assert_array_equal(style.gram_matrix(np.ones((1, 2, 2, 3), np.float32)),
                                np.full((1, 3, 3), 4.0))
  # One filter on, one off, at disjoint positions: off-diagonals vanish.
  f = np.zeros((1, 1, 2, 2), np.float32)
  f[0, 0, 0, 0], f[0, 0, 1, 1] = 2.0, 3.0
  np.testing.assert_array_equal(style.gram_matrix(f)[0], [[4.0, 0.0], [0.0, 9.0]])


def test_content_and_style_layer_losses_against_numpy():
  x, p = _features(1, (2, 3, 4, 5)), _features(2, (2, 3, 4, 5))
  a = np.stack([_gram_loops(s) for s in _features(3, (2, 2, 3, 5))])  # style of another size
  content = np.asarray(style.content_loss(x, p))
  layer = np.asarray(style.style_layer_loss(x, a))
  assert content.shape == layer.shape == (2,)
  for b in range(2):
    f, pp = _paper_layout(x[b]), _paper_layout(p[b])
    n, m = f.shape
    np.testing.assert_allclose(content[b], 0.5 * np.sum((f - pp) ** 2), rtol=1e-5)
    expected = np.sum((_gram_loops(x[b]) - a[b]) ** 2) / (4 * n ** 2 * m ** 2)
    np.testing.assert_allclose(layer[b], expected, rtol=1e-5)
  # Hand values: F = 1, P = 0 on [2, 2, 3]: 1/2 * 12; G = 4 everywhere (N = 3, M = 4),
  # A = 0: 9 * 16 / (4 * 9 * 16) = 1/4.
  ones = np.ones((1, 2, 2, 3), np.float32)
  assert style.content_loss(ones, 0 * ones)[0] == 6.0
  assert style.style_layer_loss(ones, np.zeros((1, 3, 3), np.float32))[0] == 0.25
  # One target broadcasts over the batch; a perfect match costs nothing.
  np.testing.assert_allclose(style.content_loss(x, p[:1]),
                             [np.sum((x[b] - p[0]) ** 2) / 2 for b in range(2)], rtol=1e-5)
  np.testing.assert_allclose(style.style_layer_loss(x, style.gram_matrix(x)), [0, 0], atol=1e-9)


def test_style_and_total_loss_weigh_the_layers():
  feats = {"a": _features(4, (2, 4, 4, 3)), "b": _features(5, (2, 2, 2, 6)),
           "c": _features(6, (2, 2, 2, 4))}
  grams = {"a": style.gram_matrix(_features(7, (1, 4, 4, 3))),
           "b": style.gram_matrix(_features(8, (2, 2, 2, 6)))}
  e = {k: np.asarray(style.style_layer_loss(feats[k], grams[k])) for k in grams}
  got = style.style_loss(feats, grams, {"a": 0.25, "b": 2.0})
  np.testing.assert_allclose(got, 0.25 * e["a"] + 2.0 * e["b"], rtol=1e-6)
  target = _features(9, (1, 2, 2, 4))
  loss, parts = style.total_loss(feats, content_target=target, style_grams=grams,
                                 content_layer="c", style_weights={"b": 1.0}, alpha=3.0,
                                 beta=0.5)
  np.testing.assert_allclose(parts["content"], style.content_loss(feats["c"], target))
  np.testing.assert_allclose(parts["style"], e["b"], rtol=1e-6)
  np.testing.assert_allclose(loss, 3.0 * parts["content"] + 0.5 * e["b"], rtol=1e-6)
  assert dict(style.PAPER_STYLE_WEIGHTS) == {f"conv{i}_1": 0.2 for i in range(1, 6)}
  assert style.PAPER_CONTENT_LAYER == "conv4_2"


def _tiny_features(images, *, layers):
  """A parameter-free stand-in for a network: two 'layers' of different sizes."""
  pooled = images.reshape(images.shape[0], images.shape[1] // 2, 2, images.shape[2] // 2, 2,
                          images.shape[3]).mean(axis=(2, 4))
  outputs = {"low": jnp.tanh(images), "high": jnp.concatenate([pooled, pooled ** 2], -1)}
  return {name: outputs[name] for name in layers}


def test_style_loss_gradient_by_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(10)
    content, art, x = (rng.normal(size=(1, 4, 4, 2)) for _ in range(3))
    objective = style.StyleObjective.from_images(
        _tiny_features, content_images=content, style_images=art, content_layer="high",
        style_weights={"low": 0.5, "high": 0.5}, alpha=1.0, beta=10.0)
    assert objective.layers == ("high", "low")

    def loss(image):
      return objective(image)[0].sum()

    check_grads(jax.jit(loss), (x,), order=1, modes=("rev",))


def test_objective_on_a_random_vgg_and_its_errors():
  model = vgg.VGGFeatures(16, pooling="avg")
  x = jnp.asarray(_features(11, (1, 32, 32, 3)))
  params = model.init(jax.random.key(0), x)
  features_fn = functools.partial(model.apply, params)
  objective = style.StyleObjective.from_images(
      features_fn, content_images=x, style_images=jnp.asarray(_features(12, (1, 32, 32, 3))))
  assert objective.layers == ("conv4_2", "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
  # The content image itself: no content loss, some style loss.
  loss, parts = objective(x)
  assert parts["content"][0] == 0 and parts["style"][0] > 0
  np.testing.assert_allclose(loss, 1e3 * parts["style"], rtol=1e-6)
  with pytest.raises(ValueError, match=r"content_target \(conv4_2 of the content image\) must "
                                       r"match .* the two images must have one size, got "
                                       r"\(1, 4, 4, 512\) and \(1, 2, 2, 512\)"):
    objective(jnp.zeros((1, 16, 16, 3)))
  with pytest.raises(ValueError, match=r"layers must be a non-empty sequence of names from"):
    style.StyleObjective.from_images(features_fn, content_images=x, style_images=x,
                                     content_layer="conv5_4")
  feats = {"conv1_1": jnp.zeros((1, 4, 4, 3))}
  grams = {"conv1_1": jnp.zeros((1, 3, 3))}
  with pytest.raises(ValueError, match=r"weights names layers \['conv2_1'\] that features "
                                       r"lacks; features holds \['conv1_1'\]"):
    style.style_loss(feats, grams, weights={"conv1_1": 1.0, "conv2_1": 1.0})
  with pytest.raises(ValueError, match=r"weights names layers \['conv2_1'\] that target_grams"):
    style.style_loss({**feats, "conv2_1": feats["conv1_1"]}, grams,
                     weights={"conv1_1": 1.0, "conv2_1": 1.0})
  with pytest.raises(ValueError, match=r"weights\['conv1_1'\] must be a finite float >= 0.0"):
    style.style_loss(feats, grams, weights={"conv1_1": -1.0})
  with pytest.raises(ValueError, match=r"weights must name at least one layer"):
    style.style_loss(feats, grams, weights={})
  with pytest.raises(ValueError, match=r"target_gram must have shape \[B or 1, N, N\] = "
                                       r"\[1 or 1, 3, 3\], got \(1, 4, 4\)"):
    style.style_layer_loss(feats["conv1_1"], jnp.zeros((1, 4, 4)))
  with pytest.raises(ValueError, match=r"target must have shape \[B or 1, h, w, N\] = "
                                       r"\[1 or 2, 4, 4, 3\], got \(3, 4, 4, 3\)"):
    style.content_loss(jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 4, 4, 3)))
  with pytest.raises(ValueError, match=r"content_layer must be a layer of features "
                                       r"\['conv1_1'\], got 'conv4_2'"):
    style.total_loss(feats, content_target=feats["conv1_1"], style_grams=grams)
  with pytest.raises(ValueError, match=r"beta must be a finite float >= 0.0, got -1"):
    style.total_loss(feats, content_target=feats["conv1_1"], style_grams=grams,
                     content_layer="conv1_1", style_weights={"conv1_1": 1.0}, beta=-1)
