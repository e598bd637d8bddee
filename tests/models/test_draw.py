"""Tests for vislang_jax.models.draw: shapes, determinism, generation, gradients, training."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models.draw import DRAW, generate, record_noise
from vislang_jax.objectives import draw as objectives
from vislang_jax.ops.filterbank import AttentionParams

T, BATCH, SIZE, Z = 3, 2, 8, 4


def _model(**overrides):
  fields = dict(height=SIZE, width=SIZE, glimpses=T, read_n=2, write_n=3, z_size=Z,
                enc_size=8, dec_size=8)
  return DRAW(**{**fields, **overrides})


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape) < 0.4, jnp.float32)


# Everything that runs is jitted (eager Flax dispatch compiles every primitive apart), with
# XLA's backend optimisations off: for these tiny models compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _init_params(model, x):
  return model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, x)["params"]


def _apply_model(model, params, x, key):
  return model.apply({"params": params}, x, rngs={"sample": key})


_init = _jit(_init_params, static_argnums=0)
_apply = _jit(_apply_model, static_argnums=0)


def _mean_loss(model, params, x, key):
  logits, aux = _apply_model(model, params, x, key)
  loss, _ = objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])
  return jnp.mean(loss)


_grad = _jit(jax.grad(_mean_loss, argnums=1), static_argnums=0)


@pytest.mark.parametrize("overrides,x_shape", [
    ({}, (BATCH, SIZE, SIZE)),
    ({}, (BATCH, SIZE, SIZE, 1)),
    ({"read_attention": False, "write_attention": False}, (BATCH, SIZE, SIZE)),
    ({"channels": 3}, (BATCH, SIZE, SIZE, 3)),
    ({"channels": 3, "write_attention": False}, (BATCH, SIZE, SIZE, 3)),
    ({"read_attention": False, "height": 6, "width": 10}, (BATCH, 6, 10)),
])
def test_output_shapes(overrides, x_shape):
  model = _model(**overrides)
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  params = jax.eval_shape(functools.partial(_init_params, model), x)
  logits, aux = jax.eval_shape(functools.partial(_apply_model, model), params, x,
                               jax.random.key(2))
  assert logits.shape == x_shape
  assert aux["canvases"].shape == (T,) + x_shape
  for key in ("mu", "logsigma", "z"):
    assert aux[key].shape == (T, BATCH, Z)
  for key, on in (("read", model.read_attention), ("write", model.write_attention)):
    assert (key in aux) == on
    if on:
      assert isinstance(aux[key], AttentionParams)
      assert all(field.shape == (T, BATCH) for field in aux[key])
  samples = jax.eval_shape(functools.partial(generate, model, num_samples=5), params,
                           jax.random.key(3))
  assert samples.shape == (T, 5) + x_shape[1:3] + ((3,) if model.channels == 3 else ())


@pytest.fixture(scope="module")
def attentive():
  """A model with read and write attention, its params and a fixed batch of 8x8 images."""
  model = _model()
  x = _images((BATCH, SIZE, SIZE))
  return model, _init(model, x), x


def test_last_canvas_is_the_logits_and_rngs_determine_the_output(attentive):
  model, params, x = attentive
  logits, aux = _apply(model, params, x, jax.random.key(5))
  np.testing.assert_array_equal(aux["canvases"][-1], logits)
  again, aux_again = _apply(model, params, x, jax.random.key(5))
  chex.assert_trees_all_equal((logits, aux), (again, aux_again))
  other, _ = _apply(model, params, x, jax.random.key(6))
  assert not np.allclose(other, logits)
  # The sample stream is the reparameterisation noise: passing it explicitly reproduces it.
  noise = jax.random.normal(jax.random.key(7), (T, BATCH, Z))
  explicit, aux_explicit = _jit(
      lambda p, x, e: model.apply({"params": p}, x, noise=e))(params, x, noise)
  np.testing.assert_allclose(aux_explicit["z"],
                             aux_explicit["mu"] + jnp.exp(aux_explicit["logsigma"]) * noise,
                             rtol=1e-6)
  assert explicit.shape == logits.shape


def test_record_noise_gives_each_example_its_own_samples(attentive):
  model, params, x = attentive
  keys = jax.random.split(jax.random.key(12), BATCH)
  noise = record_noise(keys, glimpses=T, z_size=Z)
  assert noise.shape == (T, BATCH, Z)
  for b in range(BATCH):  # column b is N(0, I) drawn from keys[b] alone
    np.testing.assert_array_equal(noise[:, b], jax.random.normal(keys[b], (T, Z)))
  # So an example redraws the same canvas alone as in a batch.
  run = _jit(lambda p, x, e: model.apply({"params": p}, x, noise=e)[0])
  np.testing.assert_allclose(run(params, x[1:], record_noise(keys[1:], glimpses=T, z_size=Z)),
                             run(params, x, noise)[1:], rtol=1e-5, atol=1e-5)


def test_initial_glimpses_cover_the_whole_image(attentive):
  model, params, x = attentive
  _, aux = _apply(model, params, x, jax.random.key(5))
  read = jax.tree.map(lambda a: a[0], aux["read"])  # h_dec_0 = 0: exactly the bias
  np.testing.assert_allclose(read.gx, (SIZE + 1) / 2)
  np.testing.assert_allclose(read.gy, (SIZE + 1) / 2)
  np.testing.assert_allclose(read.delta, SIZE - 1)  # 2 filters at pixels 1 and 8
  np.testing.assert_allclose(read.gamma, 1.0)
  np.testing.assert_allclose(read.sigma2, ((SIZE - 1) / 2) ** 2, rtol=1e-5)
  write = aux["write"]  # a function of h_dec_t != 0: near the default, not on it
  np.testing.assert_allclose(write.gx, (SIZE + 1) / 2, atol=0.5)
  np.testing.assert_allclose(write.delta, (SIZE - 1) / 2, rtol=0.2)


def test_generate_draws_from_the_prior(attentive):
  model, params, _ = attentive
  samples = generate(model, params, jax.random.key(8), 5)
  assert samples.shape == (T, 5, SIZE, SIZE)
  assert bool(jnp.all(jnp.isfinite(samples)))
  assert not np.allclose(samples[:, 0], samples[:, 1])  # independent z per sample
  np.testing.assert_array_equal(samples, generate(model, params, jax.random.key(8), 5))
  longer = jax.eval_shape(functools.partial(generate, model, num_samples=5, T=T + 2), params,
                          jax.random.key(8))
  assert longer.shape == (T + 2, 5, SIZE, SIZE)


@_jit
def _log_weight_terms(logits, x, aux):
  """The three [B] terms of log w = log p(x|z) + log p(z) - log q(z|x) for one sample."""
  return (-objectives.bernoulli_nll_nats(logits, x), objectives.standard_normal_log_prob(aux["z"]),
          objectives.diag_gaussian_log_prob(aux["z"], aux["mu"], aux["logsigma"]))


def test_the_model_exposes_the_importance_weight_terms(attentive):
  model, params, x = attentive
  samples = [_apply(model, params, x, key) for key in jax.random.split(jax.random.key(11), 4)]
  terms = [jnp.stack(t) for t in zip(*(_log_weight_terms(l, x, aux) for l, aux in samples))]
  log_w = terms[0] + terms[1] - terms[2]  # [K, B]
  bound = objectives.iwae_bound_nats(*terms)
  assert bound.shape == (BATCH,) and bool(jnp.all(jnp.isfinite(bound)))
  # log-mean-exp lies between the mean and the max of the K log-weights (Jensen).
  assert bool(jnp.all(bound >= log_w.mean(0) - 1e-3)) and bool(jnp.all(bound <= log_w.max(0)))
  np.testing.assert_allclose(objectives.iwae_bound_nats(*(t[:1] for t in terms)), log_w[0],
                             rtol=1e-6)


def _assert_finite_and_nonzero(grads):
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert bool(jnp.all(jnp.isfinite(g))), name
    assert float(jnp.max(jnp.abs(g))) > 0.0, name


def test_every_parameter_gets_a_gradient_without_attention_in_colour():
  model = _model(channels=3, read_attention=False, write_attention=False)
  x = _images((BATCH, SIZE, SIZE, 3))
  _assert_finite_and_nonzero(_grad(model, _init(model, x), x, jax.random.key(9)))


def test_adam_decreases_the_loss_and_the_jitted_loss_traces_once(attentive, check_adam_training):
  """Also checks the attentive model's first gradient: one compilation serves both."""
  model, params, x = attentive
  key = jax.random.key(10)  # fixed noise: a deterministic objective
  check_adam_training(lambda params: _mean_loss(model, params, x, key), params, steps=20)


@pytest.mark.parametrize("overrides,match", [
    ({"read_n": 0},
     r"read_n \(the N of an N x N grid on a 8x8 image\) must be an int in \[1, 8\], got 0"),
    ({"read_n": 9}, r"read_n .*\[1, 8\].*got 9"),
    ({"write_n": 0}, r"write_n .*got 0"),
    ({"write_n": 7, "height": 6}, r"write_n .*\[1, 6\].*got 7"),
    ({"glimpses": 0}, r"glimpses must be a positive int, got 0"),
    ({"z_size": 0}, r"z_size .*got 0"),
])
def test_bad_fields_raise(overrides, match):
  with pytest.raises(ValueError, match=match):
    _model(**overrides)


def test_grid_sizes_are_free_without_attention():
  model = _model(read_n=9, write_n=0, read_attention=False, write_attention=False)
  assert model.read_n == 9


@pytest.mark.parametrize("overrides,x_shape,match", [
    ({}, (BATCH, SIZE), r"x .*\[B, H, W\] or \[B, H, W, C\].*\(8, 8, 1\).*\(2, 8\)"),
    ({}, (BATCH, SIZE, SIZE + 1), r"x .*\(2, 8, 9\)"),
    ({}, (BATCH, SIZE, SIZE, 2), r"x .*\(2, 8, 8, 2\)"),
    ({"channels": 3}, (BATCH, SIZE, SIZE), r"x .*\[B, H, W, C\].*\(8, 8, 3\).*\(2, 8, 8\)"),
])
def test_bad_images_raise(overrides, x_shape, match):
  model = _model(**overrides)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(_init_params, model),
                   jax.ShapeDtypeStruct(x_shape, jnp.float32))


def test_bad_noise_and_sample_count_raise(attentive):
  model, params, x = attentive
  with pytest.raises(ValueError, match=r"noise .*\(3, 2, 4\).*\(2, 2, 4\)"):
    jax.eval_shape(lambda p: model.apply({"params": p}, x, noise=jnp.zeros((2, BATCH, Z))),
                   params)
  with pytest.raises(ValueError, match=r"num_samples must be a positive int, got 0"):
    generate(model, params, jax.random.key(0), 0)
