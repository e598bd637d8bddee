"""An experiment's train step exactly as it trains, without training: for benchmarks and tests.

Every experiment builds its data, model, `Task` and evaluators in `train_and_evaluate(config,
workdir)` and hands them to `train.loop.fit`. `capture(experiment, config, workdir)` runs
that wiring up to the first `fit` call and stops there, returning what `fit` was given; from it
`train_step` builds the jitted, donated step `fit` would run (the same `compute_dtype`
policy) and `first_batch` a batch of the training data. Experiments that train in stages
(`experiments.dcc`: classifier, language model, captioner) give their first stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import types
from typing import Any, Callable
from unittest import mock

import jax
import ml_collections
import numpy as np

from vislang_jax.data.pipeline import make_loader
from vislang_jax.train import loop, precision
from vislang_jax.train.loop import Task
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import make_train_step


@dataclasses.dataclass(frozen=True)
class Captured:
  """The arguments of an experiment's first `fit` call."""

  config: ml_collections.ConfigDict
  task: Task
  datasets: dict[str, Any]


class _Stop(Exception):

  def __init__(self, captured: Captured):
    super().__init__("fit reached")
    self.captured = captured


def capture(experiment: types.ModuleType, config: ml_collections.ConfigDict,
            workdir: str) -> Captured:
  """Runs `experiment.train_and_evaluate(config, workdir)` up to its first `fit`."""
  # `fit` as the experiment and the shared wiring it calls (experiments.classification) name it.
  callers = [module for name, module in list(sys.modules.items())
             if name.split(".")[0] == "experiments" and getattr(module, "fit", None) is loop.fit]

  def stop(config, workdir, task, datasets, **unused):
    del workdir, unused
    raise _Stop(Captured(config, task, dict(datasets)))

  with contextlib.ExitStack() as patches:
    for module in callers:
      patches.enter_context(mock.patch.object(module, "fit", stop))
    try:
      experiment.train_and_evaluate(config, workdir)
    except _Stop as reached:
      return reached.captured
  raise ValueError(f"experiment {experiment.__name__} returned without calling "
                   "vislang_jax.train.loop.fit.")


def first_batch(captured: Captured, batch_size: int | None = None) -> dict[str, np.ndarray]:
  """The first training batch `fit` reads (the config's seed and, by default, batch size)."""
  batch_size = batch_size or captured.config.train.batch_size
  loader = make_loader(captured.datasets["train"], batch_size=batch_size,
                       seed=captured.config.seed, shuffle=True, num_epochs=None,
                       drop_remainder=True)
  return next(iter(loader))


def initial_state(captured: Captured) -> TrainState:
  """The train state `fit` starts from (the config's seed)."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(captured.config.seed))
  return jax.jit(captured.task.initial_state)(init_key, train_key)


def train_step(captured: Captured, compute_dtype: str | None = None, *, donate: bool = True
               ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """The jitted train step of `fit` (state donated), in `compute_dtype` (default: config's)."""
  name = compute_dtype or captured.config.train.get("compute_dtype", "float32")
  update = precision.with_compute_dtype(captured.task.update(), name)
  return jax.jit(make_train_step(update), donate_argnums=0 if donate else ())
