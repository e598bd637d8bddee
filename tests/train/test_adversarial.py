"""`train.adversarial`: alternating players against a hand-played NumPy game, each player's
update touching only its own parameters, batch statistics carried and checkpointed, exact
resume of a two-player run with batch norm on the real harness."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vislang_jax.train import evaluate
from vislang_jax.train.adversarial import Player, alternating_update, apply_player
from vislang_jax.train.loop import Task, fit

LR_D, LR_G = 0.1, 0.05


def d_loss(variables, batch, key):
  """The critic `a` fits each chunk's data and the generator's `mu`; it counts its updates."""
  del key
  a, mu = variables["d"]["params"]["a"], variables["g"]["params"]["mu"]
  loss = jnp.mean((a - batch["x"]) ** 2) + (a - mu) ** 2
  seen = {**variables, "d": {**variables["d"],
                             "batch_stats": {"count": variables["d"]["batch_stats"]["count"] + 1,
                                             "last": jnp.mean(batch["x"])}}}
  return loss, {"gap": a - mu}, seen


def g_loss(variables, batch, key):
  del batch, key
  a, mu = variables["d"]["params"]["a"], variables["g"]["params"]["mu"]
  return 0.5 * (mu - a) ** 2 + 0.1 * mu ** 2, {}, variables


def initial():
  return {"d": {"params": {"a": jnp.float32(0.5)},
                "batch_stats": {"count": jnp.int32(0), "last": jnp.float32(0.0)}},
          "g": {"params": {"mu": jnp.float32(-1.0)}}}


def test_players_alternate_like_the_numpy_game():
  update, init_opt = alternating_update([
      Player(name="d", loss_fn=d_loss, optimizer=optax.sgd(LR_D), steps=2),
      Player(name="g", loss_fn=g_loss, optimizer=optax.sgd(LR_G))])
  variables = initial()
  opt_state = init_opt(variables)
  x = np.array([1.0, 3.0, 5.0, 7.0], np.float32)  # chunks [1, 3] and [5, 7]
  step = jax.jit(update)
  a, mu = 0.5, -1.0
  for _ in range(3):
    variables, opt_state, _, metrics = step(variables, opt_state, None, {"x": x}, jnp.zeros(2, jnp.uint32))
    for chunk in (x[:2], x[2:]):
      a = a - LR_D * (2 * (a - chunk.mean()) + 2 * (a - mu))
    mu = mu - LR_G * ((mu - a) + 0.2 * mu)
  np.testing.assert_allclose(variables["d"]["params"]["a"], a, rtol=1e-5)
  np.testing.assert_allclose(variables["g"]["params"]["mu"], mu, rtol=1e-5)
  # the statistics the loss returned are kept: two discriminator updates per step, the last on [5, 7]
  assert int(variables["d"]["batch_stats"]["count"]) == 6
  assert float(variables["d"]["batch_stats"]["last"]) == 6.0
  assert set(metrics) == {"d/gap", "d/loss", "d/grad_norm", "g/loss", "g/grad_norm"}


def test_each_update_moves_only_its_own_player():
  """Both losses read both players; the discriminator's update must leave the generator's
  parameters as they were and the other way round (a bug that differentiated the whole tree
  would move both)."""
  update_d, init_d = alternating_update([Player(name="d", loss_fn=d_loss,
                                                optimizer=optax.sgd(LR_D))])
  update_g, init_g = alternating_update([Player(name="g", loss_fn=g_loss,
                                                optimizer=optax.sgd(LR_G))])
  batch, key = {"x": np.ones(2, np.float32)}, jnp.zeros(2, jnp.uint32)
  after_d, *_ = update_d(initial(), init_d(initial()), None, batch, key)
  after_g, *_ = update_g(initial(), init_g(initial()), None, batch, key)
  assert float(after_d["g"]["params"]["mu"]) == -1.0 and float(after_d["d"]["params"]["a"]) != 0.5
  assert float(after_g["d"]["params"]["a"]) == 0.5 and float(after_g["g"]["params"]["mu"]) != -1.0


def test_bad_players_and_batches():
  player = Player(name="d", loss_fn=d_loss, optimizer=optax.sgd(LR_D), steps=3)
  with pytest.raises(ValueError, match="distinct names"):
    alternating_update([player, player])
  with pytest.raises(ValueError, match="steps"):
    Player(name="d", loss_fn=d_loss, optimizer=optax.sgd(LR_D), steps=0)
  update, init_opt = alternating_update([player])
  with pytest.raises(ValueError, match=r"batch \(4 records\) must split into 3 equal chunks"):
    update(initial(), init_opt(initial()), None, {"x": np.ones(4, np.float32)},
           jnp.zeros(2, jnp.uint32))


class Net(nn.Module):
  """Dense -> batch norm -> Dense: a player with batch statistics."""

  @nn.compact
  def __call__(self, x, *, train):
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(4)(x))
    return nn.Dense(1)(nn.relu(h))[:, 0]


class Data:
  def __len__(self):
    return 32

  def __getitem__(self, i):
    return {"x": np.array([np.sin(i), np.cos(3 * i)], np.float32)}


def gan_task():
  net = Net()

  def d_loss_fn(variables, batch, key):
    fake, g_vars = apply_player(net, variables["g"], jax.random.normal(key, batch["x"].shape),
                                train=True)
    fake_in = jnp.stack([fake, fake], axis=-1)
    real_logits, d_vars = apply_player(net, variables["d"], batch["x"], train=True)
    fake_logits, d_vars = apply_player(net, d_vars, jax.lax.stop_gradient(fake_in), train=True)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
                    + optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits)))
    return loss, {}, {**variables, "d": d_vars, "g": g_vars}

  def g_loss_fn(variables, batch, key):
    fake, g_vars = apply_player(net, variables["g"], jax.random.normal(key, batch["x"].shape),
                                train=True)
    logits, _ = apply_player(net, variables["d"], jnp.stack([fake, fake], -1), train=False)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.ones_like(logits))), {}, {
        **variables, "g": g_vars}

  def init(key):
    kd, kg = jax.random.split(key)
    return {"d": net.init(kd, jnp.zeros((1, 2)), train=False),
            "g": net.init(kg, jnp.zeros((1, 2)), train=False)}

  update, init_opt = alternating_update([
      Player(name="d", loss_fn=d_loss_fn, optimizer=optax.adam(1e-2), steps=2),
      Player(name="g", loss_fn=g_loss_fn, optimizer=optax.adam(1e-2))])
  return Task(init_params=init, update_fn=update, init_opt_state=init_opt)


def statistics(variables, batch, key):
  """Every leaf of both players (batch statistics included), as per-record metrics."""
  del key
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  return {jax.tree_util.keystr(p): jnp.full(batch["x"].shape[:1], jnp.sum(v))
          for p, v in leaves}


def config(num_steps):
  return ml_collections.ConfigDict({
      "seed": 0, "train": {"num_steps": num_steps, "batch_size": 4, "log_every": 2,
                           "eval_every": 100, "checkpoint_every": 3, "keep_checkpoints": 2}})


def test_two_player_run_with_batch_norm_resumes_exactly(tmp_path):
  datasets = {"train": Data(), "validation": Data()}
  evaluators = [evaluate.MeanMetrics(metric_fn=statistics, batch_size=8)]
  straight = fit(config(6), str(tmp_path / "straight"), gan_task(), datasets,
                 evaluators=evaluators)["validation"]
  fit(config(3), str(tmp_path / "resumed"), gan_task(), datasets, evaluators=evaluators)
  resumed = fit(config(6), str(tmp_path / "resumed"), gan_task(), datasets,
                evaluators=evaluators)["validation"]
  stats = [k for k in straight if "batch_stats" in k]
  assert len(stats) == 4 and len(straight) == 4 + 2 * 6  # mean, var of both; 3 layers' params x2
  init = statistics(gan_task().init_params(jax.random.PRNGKey(0)), {"x": np.zeros((1, 2))}, None)
  assert all(straight[k] != pytest.approx(float(init[k][0])) for k in stats)  # they moved
  assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)
