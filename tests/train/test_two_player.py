"""A task with its own update on the real harness: two players, two optimizers, k steps of one
per step of the other, checked against the same game played in NumPy, and resumed."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vislang_jax.train import evaluate
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.metrics import read_metrics

C = 3.0  # every record's value: the batches do not matter to the reference
K = 2  # "discriminator" steps per "generator" step
LR_D, LR_G, MOMENTUM_G = 0.2, 0.1, 0.5


class Constant:
  def __len__(self):
    return 32

  def __getitem__(self, i):
    return {"x": np.float32(C)}

  def __repr__(self):
    return "Constant()"


def d_loss(a, mu, x):
  """The critic fits the data and the generator's output: mean (a - x)^2 + (a - mu)^2."""
  return jnp.mean((a - x) ** 2) + (a - mu) ** 2


def g_loss(mu, a):
  return 0.5 * (mu - a) ** 2 + 0.1 * mu ** 2


tx_d, tx_g = optax.sgd(LR_D), optax.sgd(LR_G, momentum=MOMENTUM_G)


def update_fn(params, opt_state, extra, batch, key):
  del key
  a, opt_d = params["discriminator"], opt_state["discriminator"]
  for _ in range(K):
    grad = jax.grad(d_loss)(a, params["generator"], batch["x"])
    updates, opt_d = tx_d.update(grad, opt_d, a)
    a = optax.apply_updates(a, updates)
  g_value, grad = jax.value_and_grad(g_loss)(params["generator"], a)
  updates, opt_g = tx_g.update(grad, opt_state["generator"], params["generator"])
  mu = optax.apply_updates(params["generator"], updates)
  return ({"generator": mu, "discriminator": a}, {"generator": opt_g, "discriminator": opt_d},
          extra + 1, {"g_loss": g_value, "d_loss": d_loss(a, mu, batch["x"]),
                      "updates": (extra + 1).astype(jnp.float32)})


def task():
  return Task(init_params=lambda key: {"generator": jnp.float32(-1.0),
                                       "discriminator": jnp.float32(0.5)},
              update_fn=update_fn,
              init_opt_state=lambda p: {"generator": tx_g.init(p["generator"]),
                                        "discriminator": tx_d.init(p["discriminator"])},
              init_extra=lambda: jnp.int32(0))


def reference(num_steps):
  a, mu, velocity = 0.5, -1.0, 0.0
  for _ in range(num_steps):
    for _ in range(K):
      a = a - LR_D * (2 * (a - C) + 2 * (a - mu))
    velocity = ((mu - a) + 0.2 * mu) + MOMENTUM_G * velocity
    mu = mu - LR_G * velocity
  return mu, a


def config(num_steps):
  return ml_collections.ConfigDict({
      "seed": 0, "train": {"num_steps": num_steps, "batch_size": 4, "log_every": 2,
                           "eval_every": 4, "checkpoint_every": 4, "keep_checkpoints": 2}})


def players(params, batch, key):
  shape = batch["x"].shape
  return {"mu": jnp.full(shape, params["generator"]), "a": jnp.full(shape, params["discriminator"])}


def test_two_players_train_like_the_numpy_game_and_resume(tmp_path):
  evaluators = [evaluate.MeanMetrics(metric_fn=players, batch_size=8)]
  datasets = {"train": Constant(), "validation": Constant()}
  straight = fit(config(8), str(tmp_path / "straight"), task(), datasets, evaluators=evaluators)
  mu, a = reference(8)
  assert straight["validation"]["mu"] == pytest.approx(mu, rel=1e-5)
  assert straight["validation"]["a"] == pytest.approx(a, rel=1e-5)
  logs = [r for r in read_metrics(str(tmp_path / "straight")) if r["split"] == "train"]
  assert [r["step"] for r in logs] == [2, 4, 6, 8] and "g_loss" in logs[0]

  # Stop after 4 steps (a checkpoint), then resume to 8: both players' parameters, both
  # optimizer states (the generator's momentum) and the extra counter come back.
  fit(config(4), str(tmp_path / "resumed"), task(), datasets, evaluators=evaluators)
  resumed = fit(config(8), str(tmp_path / "resumed"), task(), datasets, evaluators=evaluators)
  assert resumed["validation"] == pytest.approx(straight["validation"], rel=1e-6)
  last = [r for r in read_metrics(str(tmp_path / "resumed")) if r["split"] == "train"][-1]
  assert last["step"] == 8 and last["updates"] == 7.5  # the mean of the counts 7 and 8


def test_task_needs_a_loss_or_an_update():
  with pytest.raises(ValueError, match="either loss_fn and optimizer, or update_fn and "
                                       "init_opt_state; got loss_fn=None, optimizer=None, "
                                       "update_fn=set, init_opt_state=None"):
    Task(init_params=lambda key: 0.0, update_fn=update_fn)
  with pytest.raises(ValueError, match="either loss_fn"):
    Task(init_params=lambda key: 0.0, loss_fn=lambda *a: a, optimizer=tx_d, update_fn=update_fn,
         init_opt_state=lambda p: ())
