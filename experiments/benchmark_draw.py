r"""Benchmark: examples/second of the full jitted DRAW train step on `jax.devices()[0]`.

The step is the one `experiments/draw.py` trains with: dynamic binarization, the DRAW
forward pass, the loss of eq. (12), its gradient and the Adam update, jitted once with the
train state donated, as `vislang_jax.train.loop` runs it. Batches are random grey images
(the cost does not depend on the pixels). Compilation and --warmup calls are excluded;
the time is the median of --repeats calls, each synchronised with `block_until_ready`.

  python -m experiments.benchmark_draw --repeats=10 --cases=paper,paper_no_attention,quickstart

Prints a markdown table: device | config | batch | ms/step | examples/s.
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np

from experiments import draw as experiment
from experiments.configs import draw as configs
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import gradient_update, make_train_step, mean_loss

# name: (preset, attention); the model sizes and batch are the preset's.
CASES = {
    "paper": ("paper", True),
    "paper_no_attention": ("paper", False),
    "quickstart": ("quickstart", True),
}

_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed steps per case (median).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_CASES = flags.DEFINE_list("cases", list(CASES), f"Cases to run, from {list(CASES)}.")


def time_train_step(case: str, *, repeats: int, warmup: int) -> tuple[int, float]:
  """Returns (batch size, median ms per step) of `case`'s train step."""
  preset, attention = CASES[case]
  config = configs.get_config(preset)
  config.attention = attention
  shape = experiment.image_shape(config)
  model = experiment.make_model(config, shape)
  optimizer = make_optimizer(config.train)
  batch_size = config.train.batch_size
  params_key, sample_key, rng = jax.random.split(jax.random.PRNGKey(0), 3)
  params = model.init({"params": params_key, "sample": sample_key},
                      np.zeros((1,) + shape, np.float32))["params"]
  state = TrainState.create(params=params, opt_state=optimizer.init(params), rng=rng)
  loss_fn = mean_loss(experiment.make_per_example(model))
  step = jax.jit(make_train_step(gradient_update(loss_fn, optimizer)), donate_argnums=0)
  batch = {"image": jax.device_put(np.random.default_rng(0).uniform(
      size=(batch_size,) + shape).astype(np.float32))}
  for _ in range(1 + warmup):  # the first call compiles
    state, _ = jax.block_until_ready(step(state, batch))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, _ = jax.block_until_ready(step(state, batch))
    times.append(time.perf_counter() - start)
  return batch_size, 1e3 * float(np.median(times))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = sorted(set(_CASES.value) - set(CASES))
  if unknown:
    raise app.UsageError(f"--cases must be among {list(CASES)}; got {unknown}.")
  device = jax.devices()[0]
  device_name = f"{device.platform}: {device.device_kind} (x{len(jax.devices())})"
  print("| device | config | batch | ms/step | examples/s |")
  print("|---|---|---|---|---|")
  for case in _CASES.value:
    batch_size, ms = time_train_step(case, repeats=_REPEATS.value, warmup=_WARMUP.value)
    print(f"| {device_name} | {case} | {batch_size} | {ms:.1f} | "
          f"{batch_size / ms * 1e3:.0f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
