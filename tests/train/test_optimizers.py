"""The optimizer factory against updates written out by hand, and its named errors."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import common
from vislang_jax.train.optimizers import make_optimizer, make_schedule


def train_config(**fields):
  config = common.train_config()
  config.update(fields)
  return config


def run(optimizer, grads, params):
  """Applies the updates of successive `grads` [S, P] to `params` [P]; returns every params."""
  state = optimizer.init(params)
  history = []
  for g in grads:
    updates, state = optimizer.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, updates)
    history.append(np.asarray(params))
  return np.stack(history)


GRADS = np.array([[3.0, -4.0], [1.0, 2.0], [-2.0, 0.5]], np.float32)
W0 = jnp.array([1.0, -1.0], jnp.float32)


def test_sgd_with_momentum_clipping_and_l2_by_hand():
  config = train_config(optimizer="sgd", learning_rate=0.1, momentum=0.5, grad_clip_norm=2.0,
                        weight_decay=0.01)
  got = run(make_optimizer(config), GRADS, W0)
  w, velocity = np.asarray(W0, np.float64), np.zeros(2)
  for g in GRADS:
    g = g * min(1.0, 2.0 / np.linalg.norm(g))  # clip the global norm to 2
    g = g + 0.01 * w  # L2 weight decay, after clipping
    velocity = g + 0.5 * velocity  # optax.trace: heavy-ball momentum
    w = w - 0.1 * velocity
  np.testing.assert_allclose(got[-1], w, rtol=1e-5)


@pytest.mark.parametrize("b1", [0.9, 0.5])  # the default, DCGAN's
def test_adam_matches_the_paper_update(b1):
  config = train_config(optimizer="adam", learning_rate=0.05, b1=b1)
  got = run(make_optimizer(config), GRADS, W0)
  w, m, v = np.asarray(W0, np.float64), np.zeros(2), np.zeros(2)
  b2, eps = 0.999, 1e-8
  for t, g in enumerate(GRADS, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w - 0.05 * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
  np.testing.assert_allclose(got[-1], w, rtol=1e-5)


def test_adamw_decays_decoupled_from_the_gradient():
  config = train_config(optimizer="adamw", learning_rate=0.05, weight_decay=0.1)
  got = run(make_optimizer(config), GRADS, W0)
  adam = run(make_optimizer(train_config(optimizer="adam", learning_rate=0.05)), GRADS[:1], W0)
  # One step: Adam's update plus lr * wd * w0, which does not go through Adam's moments.
  np.testing.assert_allclose(got[0], adam[0] - 0.05 * 0.1 * np.asarray(W0), rtol=1e-5)


def test_rmsprop_by_hand():
  config = train_config(optimizer="rmsprop", learning_rate=0.01, rmsprop_decay=0.9, momentum=0.0)
  got = run(make_optimizer(config), GRADS, W0)
  w, nu = np.asarray(W0, np.float64), np.zeros(2)
  for g in GRADS:
    nu = 0.9 * nu + 0.1 * g * g
    w = w - 0.01 * g / (np.sqrt(nu) + 1e-8)
  np.testing.assert_allclose(got[-1], w, rtol=1e-4)


def test_step_schedule_decays_at_fractions_of_training():
  # The STN paper: /10 after 1/3 and 2/3 of 150k iterations.
  config = train_config(num_steps=150_000, learning_rate=0.01, schedule="step",
                        decay_at=(1 / 3, 2 / 3), decay_factor=0.1)
  schedule = make_schedule(config)
  for step, rate in [(0, 0.01), (49_999, 0.01), (50_000, 0.001), (99_999, 0.001),
                     (100_000, 0.0001), (149_999, 0.0001)]:
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step


def test_cosine_with_warmup():
  config = train_config(num_steps=110, learning_rate=1.0, schedule="cosine", warmup_steps=10)
  schedule = make_schedule(config)
  assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(0.5)
  for step in (10, 35, 60, 85, 110):
    expected = 0.5 * (1 + np.cos(np.pi * (step - 10) / 100))
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-6), step


def test_constant_rate_is_a_float():
  assert make_schedule(train_config(learning_rate=0.3)) == 0.3


@pytest.mark.parametrize("fields,match", [
    ({"optimizer": "lbfgs"}, "train.optimizer must be one of"),
    ({"schedule": "linear"}, "train.schedule must be one of"),
    ({"grad_clip_norm": -1.0}, "train.grad_clip_norm must be a finite float >= 0.0, got -1.0"),
    ({"learning_rate": float("nan")}, "train.learning_rate must be a finite float"),
    ({"momentum": 1.0}, "train.momentum must be a finite float in \\[0.0, 1.0\\)"),
    ({"schedule": "step", "decay_at": (1.5,)}, "train.decay_at"),
    ({"warmup_steps": 2000}, "train.warmup_steps must be an int in \\[0, 1000\\], got 2000"),
])
def test_bad_fields_are_named(fields, match):
  with pytest.raises(ValueError, match=match):
    make_optimizer(train_config(**fields))
