"""The pure train step, the two-player update and the sharding checks, in-process."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vislang_jax.train import sharding
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import gradient_update, make_train_step


def quadratic_loss(params, batch, key, extra):
  loss = jnp.sum((params["w"] - batch["x"]) ** 2) * batch["scale"]
  return loss, {"u": jax.random.uniform(key)}, extra


def make_state(optimizer, extra=None):
  params = {"w": jnp.ones(3)}
  return TrainState.create(params=params, opt_state=optimizer.init(params),
                           rng=jax.random.PRNGKey(7), extra=extra)


def sgd_step(loss_fn, optimizer):
  return jax.jit(make_train_step(gradient_update(loss_fn, optimizer)))


def test_step_matches_sgd_by_hand_and_uses_fold_in_keys():
  step = sgd_step(quadratic_loss, optax.sgd(0.1))
  state = make_state(optax.sgd(0.1))
  batch = {"x": jnp.arange(3.0), "scale": jnp.float32(1.0)}
  new, metrics = step(state, batch)
  # d/dw sum (w - x)^2 = 2 (w - x)
  np.testing.assert_allclose(new.params["w"], 1.0 - 0.1 * 2 * (1.0 - np.arange(3)),
                             rtol=1e-6)
  assert int(new.step) == 1 and int(new.bad_step) == -1
  expected_u = jax.random.uniform(jax.random.fold_in(state.rng, 0))
  np.testing.assert_allclose(metrics["u"], expected_u)
  _, metrics2 = step(new, batch)
  assert metrics2["u"] != metrics["u"]


def test_non_finite_loss_leaves_state_and_records_first_bad_step():
  step = sgd_step(quadratic_loss, optax.adam(0.1))
  state = make_state(optax.adam(0.1))
  good = {"x": jnp.arange(3.0), "scale": jnp.float32(1.0)}
  bad = {"x": jnp.arange(3.0), "scale": jnp.float32(jnp.nan)}
  state, _ = step(state, good)
  before = state
  state, metrics = step(state, bad)
  assert not np.isfinite(metrics["loss"])
  np.testing.assert_array_equal(state.params["w"], before.params["w"])
  for a, b in zip(jax.tree.leaves(state.opt_state),
                  jax.tree.leaves(before.opt_state)):
    np.testing.assert_array_equal(a, b)
  assert int(state.bad_step) == 2
  state, _ = step(state, good)
  state, _ = step(state, bad)
  assert int(state.bad_step) == 2 and int(state.step) == 4


def test_batch_size_errors_name_the_field():
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match="eval.batch_size must be a positive"):
    sharding.per_process_batch_size(0, mesh, name="eval.batch_size")
  assert sharding.per_process_batch_size(8, mesh) == 8 // jax.process_count()


def test_extra_state_follows_the_loss_without_gradients_and_survives_bad_steps():
  def loss_with_baseline(params, batch, key, baseline):
    loss, _, _ = quadratic_loss(params, batch, key, None)
    return loss, {}, 0.9 * baseline + 0.1 * jax.lax.stop_gradient(loss)

  step = sgd_step(loss_with_baseline, optax.sgd(0.1))
  state = make_state(optax.sgd(0.1), extra=jnp.float32(0.0))
  good = {"x": jnp.arange(3.0), "scale": jnp.float32(1.0)}
  w, expected = np.ones(3), 0.0
  for _ in range(3):
    state, metrics = step(state, good)
    expected = 0.9 * expected + 0.1 * np.sum((w - np.arange(3)) ** 2)
    w = w - 0.1 * 2 * (w - np.arange(3))
    np.testing.assert_allclose(state.extra, expected, rtol=1e-5)
  np.testing.assert_allclose(state.params["w"], w, rtol=1e-5)
  before = state.extra
  state, _ = step(state, {"x": jnp.arange(3.0), "scale": jnp.float32(jnp.nan)})
  np.testing.assert_array_equal(state.extra, before)
