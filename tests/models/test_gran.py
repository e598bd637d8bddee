"""Tests for vislang_jax.models.gran (GRAN's recurrent generator, Im et al. 2016).

The recurrence is checked step by step against its parts applied on their own (eq. 3-6), the
canvas against the cumulative sum of the writes, and the noise modes, weight sharing and
per-step batch statistics against invariants.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models import dcgan, gran

B, Z, F, H, W, C = 3, 4, 2, 12, 10, 1


def _model(steps=3, **kwargs):
  return gran.GRAN(H, W, C, steps=steps, z_size=Z, features=F, num_upsamples=2, **kwargs)


@functools.lru_cache(maxsize=None)
def _jitted(model, mutable=False):
  return jax.jit(functools.partial(model.apply, mutable=mutable), static_argnames="train")


@functools.lru_cache(maxsize=None)
def _variables(model, seed=0):
  """Variables of ``model``'s shapes drawn by NumPy so that activations stay O(1): kernels
  N(0, 1 / fan_in), batch-norm scales 1 + N(0, 0.1^2), offsets, biases and running means
  N(0, 0.1^2), running variances in [0.5, 1.5]. Tracing ``init`` instead of running it keeps
  the test fast."""
  z = jax.ShapeDtypeStruct(model.noise_shape(B), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), z)
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      value = rng.uniform(0.5, 1.5, s.shape)
    elif "'kernel'" in name:
      value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(s.shape[:-1])), s.shape)
    else:
      value = (1.0 if "'scale'" in name else 0.0) + rng.normal(0.0, 0.1, s.shape)
    return jnp.asarray(value, s.dtype)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _noise(model, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=model.noise_shape(B)), jnp.float32)


def _logit(p):
  p = np.float64(p)
  return np.log(p) - np.log1p(-p)


def _sub(variables, name, t):
  """The variables of sub-module ``name`` at step ``t`` (shared params, step ``t``'s stats)."""
  return {"params": variables["params"]["step"][name],
          "batch_stats": jax.tree.map(lambda a: a[t], variables["batch_stats"]["step"][name])}


@pytest.mark.parametrize("noise, read", [("same", "write"), ("fresh", "write"),
                                         ("same", "canvas")])
def test_recurrence_step_by_step(noise, read):
  """Each write is f([h_z, h_c]) of its own step's inputs (eq. 3-5), h_{c,1} = 0 and later
  h_{c,t} = g(dC_{t-1}) (or g(sigmoid(C_{t-1}))); the canvas is the running sum of the writes
  (eq. 6) and the image its last sigmoid."""
  model = _model(noise=noise, read=read)
  variables, z = _variables(model), _noise(model, 1)
  images, aux = _jitted(model)(variables, z, train=False)
  canvases, writes = aux["canvases"], aux["writes"]
  assert images.shape == (B, H, W, C) and canvases.shape == writes.shape == (3, B, H, W, C)
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  np.testing.assert_array_equal(images, canvases[-1])
  np.testing.assert_allclose(_logit(canvases), np.cumsum(np.float64(writes), axis=0),
                             rtol=1e-4, atol=1e-4)
  reader = gran.Reader(Z, F, 2)
  projection = gran.NoiseProjection(Z)
  writer = dcgan.UpsamplingDecoder(H, W, C, F, 2)
  for t in range(3):
    z_t = z if noise == "same" else z[t]
    h_z = _jitted(projection)(_sub(variables, "noise_projection", t), z_t, train=False)
    if t == 0:
      h_c = jnp.zeros((B, Z))
    else:
      seen = writes[t - 1] if read == "write" else canvases[t - 1]
      h_c = _jitted(reader)(_sub(variables, "reader", t), seen, train=False)
    expected = _jitted(writer)(_sub(variables, "writer", t), jnp.concatenate([h_z, h_c], -1),
                               train=False)
    np.testing.assert_allclose(writes[t], expected, rtol=1e-4, atol=1e-5)
  # Eq. (4) in NumPy: h_z = tanh(BN(W z)) at evaluation, with step 0's statistics.
  sub = jax.tree.map(lambda a: np.asarray(a, np.float64), _sub(variables, "noise_projection", 0))
  pre = np.float64(z if noise == "same" else z[0]) @ sub["params"]["dense"]["kernel"]
  bn, stats = sub["params"]["bn"], sub["batch_stats"]["bn"]
  h_z = np.tanh((pre - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"])
  np.testing.assert_allclose(
      _jitted(projection)(_sub(variables, "noise_projection", 0),
                       z if noise == "same" else z[0], train=False), h_z, rtol=1e-5, atol=1e-6)


def test_one_step_is_a_dcgan_decoder_of_z():
  """T = 1: image = sigmoid(f([tanh(BN(W z)), 0])); g is never used."""
  model = _model(steps=1)
  variables, z = _variables(model), _noise(model, 2)
  images, aux = _jitted(model)(variables, z, train=False)
  assert aux["canvases"].shape == (1, B, H, W, C)
  h_z = _jitted(gran.NoiseProjection(Z))(_sub(variables, "noise_projection", 0), z, train=False)
  a = _jitted(dcgan.UpsamplingDecoder(H, W, C, F, 2))(
      _sub(variables, "writer", 0), jnp.concatenate([h_z, jnp.zeros((B, Z))], -1), train=False)
  np.testing.assert_allclose(images, 1 / (1 + np.exp(-np.float64(a))), rtol=1e-5, atol=1e-6)
  params = jax.tree.map(lambda v: v, variables["params"])
  params["step"]["reader"] = jax.tree.map(jnp.zeros_like, params["step"]["reader"])
  blind, _ = _jitted(model)({**variables, "params": params}, z, train=False)
  np.testing.assert_array_equal(blind, images)


def test_weights_shared_across_steps_and_gradients_reach_the_reader():
  shapes = [jax.tree.map(jnp.shape, _variables(_model(steps=t))) for t in (1, 4)]
  assert shapes[0]["params"] == shapes[1]["params"]  # one f, one g, one projection
  stats = [jax.tree.leaves(s["batch_stats"], is_leaf=lambda x: isinstance(x, tuple))
           for s in shapes]
  for one, four in zip(*stats):
    assert one[0] == 1 and four[0] == 4 and one[1:] == four[1:]  # statistics per step
  model = _model()
  variables, z = _variables(model), _noise(model, 3)
  train = _jitted(model, mutable=("batch_stats",))  # training mode: batch statistics
  grads = jax.grad(lambda p: (train({**variables, "params": p}, z, train=True)[0][0] ** 2
                              ).sum())(variables["params"])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)


def test_same_noise_equals_fresh_noise_repeated():
  same, fresh = _model(noise="same"), _model(noise="fresh")
  variables, z = _variables(same), _noise(same, 4)
  expected, _ = _jitted(same)(variables, z, train=False)
  repeated, _ = _jitted(fresh)(variables, jnp.broadcast_to(z, (3, B, Z)), train=False)
  np.testing.assert_allclose(repeated, expected, atol=1e-6)
  varied, _ = _jitted(fresh)(variables, jnp.stack([z, -z, 2 * z]), train=False)
  assert float(jnp.abs(varied - expected).max()) > 1e-3


def test_noise_errors():
  same, fresh = _model(noise="same"), _model(noise="fresh")
  with pytest.raises(ValueError, match=r"z must have shape \[B, Z\] with Z = z_size = 4 for "
                                       r"noise='same', got \(3, 3, 4\)"):
    same.init(jax.random.key(0), jnp.zeros((3, B, Z)), train=False)
  with pytest.raises(ValueError, match=r"z must have shape \[B, Z\] .* got \(3, 5\)"):
    same.init(jax.random.key(0), jnp.zeros((B, Z + 1)), train=False)
  with pytest.raises(ValueError, match=r"z must have shape \[T, B, Z\] with Z = z_size = 4 and "
                                       r"T = steps = 3 for noise='fresh', got \(3, 4\)"):
    fresh.init(jax.random.key(0), jnp.zeros((B, Z)), train=False)
  with pytest.raises(ValueError, match=r"z must have shape \[T, B, Z\] .* got \(2, 3, 4\)"):
    fresh.init(jax.random.key(0), jnp.zeros((2, B, Z)), train=False)
  with pytest.raises(ValueError, match=r"z must have shape .* got \(\)"):
    same.init(jax.random.key(0), jnp.zeros(()), train=False)
  with pytest.raises(ValueError, match=r"noise must be one of \('same', 'fresh'\), got 'new'"):
    _model(noise="new")
  with pytest.raises(ValueError, match=r"read must be one of \('write', 'canvas'\)"):
    _model(read="image")
  with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
    _model(steps=0)


@pytest.mark.parametrize("noise", ["same", "fresh"])
def test_batch_norm_statistics_per_step(noise):
  """Training moves each step's running averages by its own batch (``0.9 old + 0.1 batch``):
  with the same noise the projection's statistics agree across steps, with fresh noise they
  differ. Evaluation is deterministic and per example."""
  model = _model(noise=noise)
  variables, z = _variables(model), _noise(model, 5)
  _, updates = _jitted(model, mutable=("batch_stats",))(variables, z, train=True)
  kernel = np.float64(variables["params"]["step"]["noise_projection"]["dense"]["kernel"])
  old = variables["batch_stats"]["step"]["noise_projection"]["bn"]
  new = updates["batch_stats"]["step"]["noise_projection"]["bn"]
  for t in range(3):
    pre = np.float64(z if noise == "same" else z[t]) @ kernel
    np.testing.assert_allclose(new["mean"][t], 0.9 * np.float64(old["mean"][t])
                               + 0.1 * pre.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["var"][t], 0.9 * np.float64(old["var"][t])
                               + 0.1 * pre.var(0), rtol=1e-4, atol=1e-6)
  batch_mean = (np.float64(new["mean"]) - 0.9 * np.float64(old["mean"])) / 0.1
  assert np.allclose(batch_mean[1], batch_mean[0], atol=1e-5) == (noise == "same")
  writer_old = variables["batch_stats"]["step"]["writer"]["project_bn"]["mean"]
  writer_new = updates["batch_stats"]["step"]["writer"]["project_bn"]["mean"]
  assert not np.allclose(writer_new, writer_old)
  apply = _jitted(model)
  first, _ = apply(variables, z, train=False)
  np.testing.assert_array_equal(first, apply(variables, z, train=False)[0])
  axis = 0 if noise == "same" else 1
  one_by_one = jax.vmap(lambda zi: apply(variables, jnp.expand_dims(zi, axis), train=False)[0][0],
                        in_axes=axis)(z)
  np.testing.assert_allclose(one_by_one, first, atol=1e-6)
