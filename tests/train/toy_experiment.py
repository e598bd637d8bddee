"""A tiny experiment on the real harness, run as a subprocess by test_loop.py.

Usage: python toy_experiment.py WORKDIR [--kill_at STEP] [--nan_at STEP]
       [--devices N] [--batch_size B]
Prints the test metrics as one JSON line on stdout.
"""

import argparse
import json
import os
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
parser.add_argument("--kill_at", type=int, default=0)
parser.add_argument("--nan_at", type=int, default=-1)
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--batch_size", type=int, default=16)
parser.add_argument("--num_steps", type=int, default=24)
args = parser.parse_args()
os.environ["XLA_FLAGS"] = (  # after the flags the test's environment holds (tests/conftest.py)
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.devices}")

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax.train import evaluate
from vislang_jax.train.loop import Task, fit


class ArraySource:
  """Random-access source of {"image": uint8 [8,8,1], "label": int} records."""

  def __init__(self, n: int, seed: int):
    rng = np.random.default_rng(seed)
    self.labels = rng.integers(0, 4, n)
    # Class k: a bright 4x4 quadrant k plus noise; learnable by a linear model.
    images = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    for i, k in enumerate(self.labels):
      r, c = divmod(int(k), 2)
      images[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 150
    self.images = images
    self._repr = f"ArraySource(n={n}, seed={seed})"

  def __repr__(self):
    # grain validates a restored iterator against repr(source).
    return self._repr

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": int(self.labels[i])}


class MLP(nn.Module):

  @nn.compact
  def __call__(self, x, *, train_noise_key=None):
    x = x.reshape(x.shape[0], -1)
    h = nn.relu(nn.Dense(16)(x))
    if train_noise_key is not None:  # exercises the per-step key
      h = h + 0.01 * jax.random.normal(train_noise_key, h.shape)
    return nn.Dense(4)(h)


model = MLP()


def loss_fn(params, batch, key, extra):
  logits = model.apply({"params": params}, batch["image"], train_noise_key=key)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]).mean()
  return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}, extra


def metric_fn(params, batch, key):
  del key  # deterministic
  logits = model.apply({"params": params}, batch["image"])
  return {
      "loss": optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["label"]),
      "error_rate": (jnp.argmax(logits, -1) != batch["label"]).astype(jnp.float32),
  }


config = ml_collections.ConfigDict({
    "seed": 3,
    "train": {"num_steps": args.num_steps, "batch_size": args.batch_size,
              "log_every": 4, "eval_every": 8, "checkpoint_every": 5,
              "keep_checkpoints": 2, "learning_rate": 0.05},
    "eval": {"batch_size": 24},
})
# --nan_at S: the learning rate turns NaN for the update counted S (0-based),
# i.e. the step that would complete step S + 1.
learning_rate = lambda count: jnp.where(
    (args.nan_at >= 0) & (count >= args.nan_at), jnp.nan,
    config.train.learning_rate)
task = Task(init_params=lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)))["params"],
            loss_fn=loss_fn, optimizer=optax.adam(learning_rate))
datasets = {"train": ArraySource(200, 0), "validation": ArraySource(50, 1),
            "test": ArraySource(61, 2)}


def on_step(step):
  if step == args.kill_at:
    os.kill(os.getpid(), signal.SIGKILL)


evaluators = [evaluate.MeanMetrics(metric_fn=metric_fn, batch_size=24)]
print(json.dumps(fit(config, args.workdir, task, datasets, evaluators=evaluators,
                     on_step=on_step)["test"]))
sys.stdout.flush()
