"""Tests for vislang_jax.models.lapgan: shapes, the coarse-to-fine sampler against
ops.pyramid's reconstruction, per-level independence, conditioning, noise, sharpening."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models import lapgan
from vislang_jax.ops import pyramid

# One small non-square two-channel configuration for every test, so that the jitted
# functions below compile once per model and are reused.
BATCH, HEIGHT, WIDTH, CHANNELS, LEVELS = 2, 8, 16, 2, 2
SHAPE = (BATCH, HEIGHT, WIDTH, CHANNELS)
SMALL = dict(height=HEIGHT, width=WIDTH, channels=CHANNELS, levels=LEVELS, features=4,
             coarse_features=8)


def _generator(**overrides):
  return lapgan.LAPGANGenerator(**{**SMALL, "z_size": 3, **overrides})


def _discriminator(**overrides):
  return lapgan.LAPGANDiscriminator(**{**SMALL, **overrides})


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


# Everything that runs is jitted (eager Flax dispatch compiles every primitive apart), with
# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.partial(_jit, static_argnums=0)
def _init_g(model, lows, labels):
  return model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, lows, labels,
                    train=False)


@functools.partial(_jit, static_argnums=0)
def _init_d(model, bands, lows, labels):
  return model.init({"params": jax.random.key(2)}, bands, lows, labels, train=False)


@functools.partial(_jit, static_argnums=0)
def _generate(model, variables, lows, labels, key):
  return model.apply(variables, lows, labels, train=False, rngs={"noise": key})


@functools.partial(_jit, static_argnums=(0, 2))
def _sample(model, variables, num_or_labels, key):
  return model.apply(variables, num_or_labels, method=model.sample, rngs={"noise": key})


@functools.partial(_jit, static_argnums=0)
def _sample_labels(model, variables, labels, key):
  return model.apply(variables, labels, method=model.sample, rngs={"noise": key})


@functools.partial(_jit, static_argnums=(0, 5))
def _score(model, variables, bands, lows, labels, train=False, key=None):
  rngs = {"dropout": key} if train else {}
  return model.apply(variables, bands, lows, labels, train=train, rngs=rngs)


_sharpen = _jit(lapgan.sharpen, static_argnums=0)
_training_targets = _jit(lapgan.training_targets, static_argnames="levels")
_gaussian = _jit(pyramid.gaussian_pyramid, static_argnames="levels")
_laplacian = _jit(pyramid.laplacian_pyramid, static_argnames="levels")
_upsample = _jit(pyramid.upsample)
_reconstruct = _jit(pyramid.reconstruct)


def _targets(seed=0):
  return _training_targets(_images(SHAPE, seed), levels=LEVELS)


def test_shapes_at_every_level():
  height, width, channels, levels = HEIGHT, WIDTH, CHANNELS, LEVELS
  g, d = _generator(), _discriminator()
  bands, lows = _targets()
  g_vars, d_vars = _init_g(g, lows, None), _init_d(d, bands, lows, None)
  assert sorted(g_vars["params"]) == sorted(
      [f"band_generators_{k}" for k in range(levels)] + ["coarse_generator"])
  assert sorted(d_vars["params"]) == sorted(
      [f"band_discriminators_{k}" for k in range(levels)] + ["coarse_discriminator"])
  fake = _generate(g, g_vars, lows, None, jax.random.key(3))
  logits = _score(d, d_vars, fake, lows, None)
  images, aux = _sample(g, g_vars, BATCH, jax.random.key(4))
  assert len(fake) == len(logits) == levels + 1 == len(aux["levels"])
  for k in range(levels + 1):
    shape = (BATCH, height // 2**k, width // 2**k, channels)
    assert fake[k].shape == bands[k].shape == shape
    assert aux["levels"][levels - k].shape == aux["bands"][k].shape == shape
    assert logits[k].shape == (BATCH,)
  assert images.shape == (BATCH, height, width, channels)
  # Ranges: G_K in [0, 1], bands in [-1, 1], the clipped sample in [0, 1].
  assert 0.0 <= float(fake[-1].min()) and float(fake[-1].max()) <= 1.0
  assert all(float(jnp.abs(band).max()) <= 1.0 for band in fake[:-1])
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_training_targets_are_the_laplacian_pyramid():
  x = _images(SHAPE, seed=5)
  bands, lows = _training_targets(x, levels=LEVELS)
  gaussian = _gaussian(x, levels=LEVELS)
  assert lows[-1] is None and len(bands) == len(lows) == LEVELS + 1
  for k, (band, expected) in enumerate(zip(bands, _laplacian(x, levels=LEVELS))):
    np.testing.assert_allclose(band, expected, atol=1e-6)
    if k < LEVELS:
      np.testing.assert_allclose(lows[k], _upsample(gaussian[k + 1]), atol=1e-6)
      np.testing.assert_allclose(band + lows[k], gaussian[k], atol=1e-6)


def test_sample_is_the_reconstruction_of_the_generated_bands():
  """Coarse to fine, I_k = u(I_{k+1}) + G_k(z_k, u(I_{k+1})): recomputed level by level with
  ops.pyramid and the generator's own training-time call on the same noise."""
  g = _generator()
  _, lows = _targets()
  variables = _init_g(g, lows, None)
  key = jax.random.key(6)
  images, aux = _sample(g, variables, BATCH, key)
  levels = aux["levels"]  # [I_K, ..., I_0]
  fine_to_coarse = levels[::-1]
  np.testing.assert_allclose(_reconstruct(aux["bands"]), levels[-1], atol=1e-5)
  np.testing.assert_allclose(images, np.clip(levels[-1], 0.0, 1.0))
  sample_lows = [_upsample(fine_to_coarse[k + 1]) for k in range(LEVELS)] + [None]
  generated = _generate(g, variables, sample_lows, None, key)
  np.testing.assert_allclose(generated[-1], levels[0], atol=1e-6)  # I_K = G_K(z_K)
  for k in range(LEVELS):
    np.testing.assert_allclose(generated[k], aux["bands"][k], atol=1e-6)
    np.testing.assert_allclose(fine_to_coarse[k], sample_lows[k] + generated[k], atol=1e-5)
    assert float(jnp.abs(generated[k]).max()) > 1e-3  # the bands are not trivially zero


def test_noise_comes_from_the_noise_rng():
  g = _generator()
  _, lows = _targets()
  variables = _init_g(g, lows, None)
  a, _ = _sample(g, variables, BATCH, jax.random.key(7))
  b, _ = _sample(g, variables, BATCH, jax.random.key(7))
  c, _ = _sample(g, variables, BATCH, jax.random.key(8))
  np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(a - c).max()) > 1e-4
  fake_a = _generate(g, variables, lows, None, jax.random.key(7))
  fake_c = _generate(g, variables, lows, None, jax.random.key(8))
  for k in range(LEVELS + 1):  # every level draws noise
    assert float(jnp.abs(fake_a[k] - fake_c[k]).max()) > 1e-5
  with pytest.raises(Exception, match="noise"):
    g.apply(variables, lows, train=False)


def test_each_level_depends_only_on_its_own_inputs():
  """d logit_k / d (bands_j, lows_j) = 0 for j != k (and nonzero for j = k); likewise the
  generator's level k output depends on lows[k] alone: the levels train independently."""
  g, d = _generator(), _discriminator()
  bands, lows = _targets()
  d_vars = _init_d(d, bands, lows, None)
  g_vars = _init_g(g, lows, None)

  def level_sums(bands, lows):
    return jnp.stack([l.sum() for l in d.apply(d_vars, bands, lows, train=False)])

  def generated_sums(lows):
    out = g.apply(g_vars, lows, train=False, rngs={"noise": jax.random.key(9)})
    return jnp.stack([o.sum() for o in out])

  d_jac = _jit(jax.jacrev(level_sums, argnums=(0, 1)))(bands, lows)
  g_jac = _jit(jax.jacrev(generated_sums))(lows)
  for k in range(LEVELS + 1):
    for j in range(LEVELS + 1):
      grads = [d_jac[0][j][k]] + ([d_jac[1][j][k]] if j < LEVELS else [])
      if j < LEVELS:
        grads.append(g_jac[j][k])
      for grad in grads:
        norm = float(jnp.abs(grad).max())
        assert (norm > 0.0) if j == k else (norm == 0.0), (k, j, norm)


def test_class_conditioning():
  g, d = _generator(num_classes=3), _discriminator(num_classes=3)
  bands, lows = _targets()
  labels, other = jnp.array([0, 2]), jnp.array([1, 0])
  g_vars, d_vars = _init_g(g, lows, labels), _init_d(d, bands, lows, labels)
  key = jax.random.key(10)
  for k in range(LEVELS):
    assert "class_plane" in g_vars["params"][f"band_generators_{k}"]
    assert "class_plane" in d_vars["params"][f"band_discriminators_{k}"]
  fake, fake_other = (_generate(g, g_vars, lows, y, key) for y in (labels, other))
  logits, logits_other = (_score(d, d_vars, bands, lows, y) for y in (labels, other))
  for k in range(LEVELS + 1):  # the labels matter at every level, for both players
    assert float(jnp.abs(fake[k] - fake_other[k]).max()) > 1e-6, k
    assert float(jnp.abs(logits[k] - logits_other[k]).max()) > 1e-6, k
  # Same labels, same output; each example's output depends on its own label only.
  again = _generate(g, g_vars, lows, jnp.array([0, 0]), key)
  np.testing.assert_allclose(again[0][0], fake[0][0], atol=1e-6)
  images, _ = _sample_labels(g, g_vars, labels, key)
  images_other, _ = _sample_labels(g, g_vars, other, key)
  assert images.shape == SHAPE
  assert float(jnp.abs(images - images_other).max()) > 1e-6
  # The unconditional players have no class inputs at all.
  plain_g, plain_d = _init_g(_generator(), lows, None), _init_d(_discriminator(), bands, lows,
                                                                 None)
  assert all("class_plane" not in plain_g["params"][f"band_generators_{k}"] and
             "class_plane" not in plain_d["params"][f"band_discriminators_{k}"]
             for k in range(LEVELS))


def test_sharpen():
  g = _generator()
  _, lows = _targets()
  variables = _init_g(g, lows, None)
  blurry = _images(SHAPE, seed=11)
  key = jax.random.key(12)
  sharp, aux = _sharpen(g, variables, blurry, key)
  assert sharp.shape == aux["band"].shape == blurry.shape
  np.testing.assert_allclose(sharp, np.clip(blurry + aux["band"], 0.0, 1.0), atol=1e-6)
  assert float(jnp.abs(sharp - blurry).max()) > 1e-3
  # The band is G_0(z_0, l_0) with l_0 = the image: the generator's finest level.
  band = _generate(g, variables, [blurry] + lows[1:], None, key)[0]
  np.testing.assert_allclose(aux["band"], band, atol=1e-6)
  # A zeroed generator adds nothing.
  zeroed = jax.tree_util.tree_map(jnp.zeros_like, variables)
  unchanged, aux = _sharpen(g, zeroed, blurry, key)
  np.testing.assert_array_equal(aux["band"], 0.0)
  np.testing.assert_allclose(unchanged, blurry, atol=1e-7)


def test_batch_norm_state_and_dropout():
  g = _generator(batch_norm=True)
  bands, lows = _targets()
  variables = _init_g(g, lows, None)
  stats = variables["batch_stats"]  # after each hidden ReLU of every level
  assert sorted(stats) == ["band_generators_0", "band_generators_1", "coarse_generator"]
  assert all(sorted(level) == ["BatchNorm_0", "BatchNorm_1"] for level in stats.values())
  train = _jit(lambda v, key: g.apply(v, lows, train=True, rngs={"noise": key},
                                      mutable=["batch_stats"]))
  fake_train, updates = train(variables, jax.random.key(13))
  fake_eval = _generate(g, variables, lows, None, jax.random.key(13))
  assert float(jnp.abs(fake_train[0] - fake_eval[0]).max()) > 1e-6
  changed = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                   updates["batch_stats"], variables["batch_stats"])
  assert max(jax.tree_util.tree_leaves(changed)) > 0.0
  # Dropout in D: only with train=True, from the "dropout" stream.
  d = _discriminator()
  d_vars = _init_d(d, bands, lows, None)
  evals = _score(d, d_vars, bands, lows, None)
  drop_a = _score(d, d_vars, bands, lows, None, True, jax.random.key(14))
  drop_b = _score(d, d_vars, bands, lows, None, True, jax.random.key(15))
  assert float(jnp.abs(drop_a[0] - drop_b[0]).max()) > 1e-7
  np.testing.assert_array_equal(evals[0], _score(d, d_vars, bands, lows, None)[0])


def test_errors():
  with pytest.raises(ValueError, match=r"levels must be an int K >= 1 with 2\*\*K dividing "
                     r"the image height 12 and width 16 \(here K <= 2\), got 3"):
    _generator(height=12, levels=3)
  with pytest.raises(ValueError, match=r"levels must be .* height 8 and width 6 .*got 2"):
    _discriminator(width=6)
  with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
    _generator(num_classes=0)
  with pytest.raises(ValueError, match=r"dropout_rate must be a finite float in \[0.0, 1.0\)"):
    _discriminator(dropout_rate=1.0)
  g, d = _generator(), _discriminator()
  cc = _generator(num_classes=3)
  bands, lows = _targets()
  g_vars = _init_g(g, lows, None)
  cc_vars = _init_g(cc, lows, jnp.array([0, 1]))
  rngs = {"noise": jax.random.key(0)}
  with pytest.raises(ValueError, match=r"labels must be None for a model built without "
                     r"num_classes, got ndarray of shape \(2,\)"):
    g.apply(g_vars, lows, np.array([0, 1]), train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"labels must be \[B\] = \(2,\) ints in \[0, "
                     r"num_classes\) = \[0, 3\), got int64 \(2,\) in \[0, 3\]"):
    cc.apply(cc_vars, lows, np.array([0, 3]), train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"labels must be .* built with num_classes=3, got None"):
    cc.apply(cc_vars, lows, train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"labels must be \[B\] = \(2,\).*got float32 \(2,\)"):
    cc.apply(cc_vars, lows, np.array([0.0, 1.0], np.float32), train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"num_or_labels must be \[B\] int labels .*got the int 2"):
    cc.apply(cc_vars, 2, method=cc.sample, rngs=rngs)
  with pytest.raises(ValueError, match=r"num_or_labels must be a positive int, got 0"):
    g.apply(g_vars, 0, method=g.sample, rngs=rngs)
  with pytest.raises(ValueError, match=r"lows\[1\] must have shape \[B, H_k, W_k, C\] = "
                     r"\(2, 4, 8, 2\), got \(2, 8, 16, 2\)"):
    g.apply(g_vars, [lows[0], lows[0], None], train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"lows must be a list of K \+ 1 = 3 entries "
                     r"\[u\(I_1\), ..., u\(I_K\), None\], got list of length 2"):
    g.apply(g_vars, lows[:2], train=False, rngs=rngs)
  with pytest.raises(ValueError, match=r"lows\[2\] must be None"):
    g.apply(g_vars, lows[:2] + [bands[2]], train=False, rngs=rngs)
  d_vars = _init_d(d, bands, lows, None)
  with pytest.raises(ValueError, match=r"bands\[2\] must have shape .* = \(2, 2, 4, 2\), got "
                     r"\(2, 4, 8, 2\)"):
    d.apply(d_vars, bands[:2] + [bands[1]], lows, train=False)
  with pytest.raises(ValueError, match=r"lows\[0\] must have shape .* = \(2, 8, 16, 2\), got "
                     r"\(3, 8, 16, 2\)"):
    d.apply(d_vars, bands, [np.zeros((3, 8, 16, 2))] + lows[1:], train=False)
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\] with \(H, W, "
                     r"C\) = \(8, 16, 2\), got \(2, 8, 16\)"):
    lapgan.sharpen(g, g_vars, np.zeros((2, 8, 16)), jax.random.key(0))
