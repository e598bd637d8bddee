"""The one training loop every experiment runs: `fit(config, workdir, task, datasets, ...)`.

`fit` owns what must be the same everywhere: the mesh, the jitted donated step, resumption
from the newest checkpoint (params, optimizer state, step, RNG, extra state and the grain
iterator position), `metrics.jsonl` and TensorBoard logging, the non-finite stop, and the
evaluators and figures on their cadences (`train.evaluate`). An experiment supplies a
`Task` (the model's loss, or its own update) and its evaluators and figures.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from vislang_jax.checks import check_int
from vislang_jax.data.pipeline import make_loader
from vislang_jax.train import evaluate, precision, sharding
from vislang_jax.train.checkpoint import Checkpointer
from vislang_jax.train.metrics import MetricWriter
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import LossFn, UpdateFn, gradient_update, make_train_step


class NonFiniteLossError(FloatingPointError):
  """Training produced a non-finite loss; the newest checkpoint predates it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
  """What an experiment trains: parameters and either a loss or its own update.

  Attributes:
    init_params: key -> params (the model's `params` collection).
    loss_fn: (params, batch, key, extra) -> (scalar loss, {name: scalar}, new extra),
      minimised with `optimizer` (`step.gradient_update`).
    optimizer: the optax transformation of `loss_fn`'s gradients.
    update_fn: instead of `loss_fn` and `optimizer`, the task's own update
      (params, opt_state, extra, batch, key) -> (params, opt_state, extra, {name: scalar}),
      e.g. two players with two optimizers; the harness keeps donation, sharding, resume,
      the non-finite stop and logging.
    init_opt_state: params -> opt_state, with `update_fn`.
    init_extra: optional () -> the initial `TrainState.extra`, state the step updates
      without gradients (checkpointed with the rest); None otherwise.
  """

  init_params: Callable[[jax.Array], Any]
  loss_fn: LossFn | None = None
  optimizer: optax.GradientTransformation | None = None
  update_fn: UpdateFn | None = None
  init_opt_state: Callable[[Any], Any] | None = None
  init_extra: Callable[[], Any] | None = None

  def __post_init__(self):
    by_loss = self.loss_fn is not None or self.optimizer is not None
    by_update = self.update_fn is not None or self.init_opt_state is not None
    if by_loss == by_update or (by_loss and (self.loss_fn is None or self.optimizer is None)) or (
        by_update and (self.update_fn is None or self.init_opt_state is None)):
      raise ValueError("Task needs either loss_fn and optimizer, or update_fn and "
                       "init_opt_state; got "
                       + ", ".join(f"{name}={'set' if getattr(self, name) else None}" for name in
                                   ("loss_fn", "optimizer", "update_fn", "init_opt_state"))
                       + ".")

  def initial_state(self, init_key: jax.Array, train_key: jax.Array) -> TrainState:
    params = self.init_params(init_key)
    opt_state = (self.optimizer.init(params) if self.init_opt_state is None
                 else self.init_opt_state(params))
    return TrainState.create(params=params, opt_state=opt_state, rng=train_key,
                             extra=None if self.init_extra is None else self.init_extra())

  def update(self) -> UpdateFn:
    if self.update_fn is not None:
      return self.update_fn
    return gradient_update(self.loss_fn, self.optimizer)


def check_workdir(workdir: str) -> str:
  """`workdir` as an absolute path; a ValueError if it exists and is not a directory."""
  if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
    raise ValueError(f"workdir must be a directory path, got {workdir!r}.")
  path = os.path.abspath(os.fspath(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"workdir must be a directory (new or a run to resume), got {path!r}, "
                     "an existing file.")
  return path


def _check_finite(state: TrainState, checkpointer: Checkpointer) -> None:
  bad = int(state.bad_step)
  if bad >= 0:
    checkpointer.wait()
    raise NonFiniteLossError(
        f"Non-finite loss or update at step {bad}; training stopped. The newest "
        f"checkpoint ({checkpointer.latest_step()}) was written before it.")


def _mean_metrics(history: list[Mapping[str, jax.Array]]) -> dict[str, float]:
  stacked = sharding.gather(history)
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def fit(config: ml_collections.ConfigDict, workdir: str, task: Task,
        datasets: Mapping[str, Any], *, evaluators: Sequence[evaluate.Evaluator] = (),
        figures: Sequence[evaluate.Figure] = (),
        on_step: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
  """Trains `task` on `datasets["train"]`, evaluating on its cadences; returns final metrics.

  Args:
    config: uses `seed` and `train.{num_steps, batch_size, log_every, eval_every,
      checkpoint_every, keep_checkpoints, compute_dtype}` (`compute_dtype`, default float32:
      the dtype of the step's matmuls and convolutions, `train.precision`; evaluation runs
      in float32).
    workdir: checkpoints, `metrics.jsonl`, TensorBoard files and `samples/` go here; a
      workdir with checkpoints is resumed from the newest one.
    task: the experiment's parameters and update.
    datasets: random-access sources: "train", and the evaluation splits ("validation",
      "test", "novel", ...), each logged under its own name.
    evaluators: measurements (`evaluate.MeanMetrics`, `evaluate.CorpusMetrics`, ...); one
      record per (step, split) holds what every evaluator due measured.
    figures: pictures written under `workdir/samples` on their cadences.
    on_step: optional host callback after each step (tests use it).

  Returns:
    `{split: metrics}` of the final evaluation of every split.
  """
  train_cfg = config.train
  for name in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    check_int(f"train.{name}", train_cfg[name], low=1)
  update = precision.with_compute_dtype(task.update(), train_cfg.get("compute_dtype", "float32"))
  workdir = check_workdir(workdir)
  if "train" not in datasets:
    raise ValueError(f"datasets must hold a 'train' split, got {sorted(datasets)}.")
  splits = [s for s in datasets if s != "train"]
  evaluate.check_schedule([*evaluators, *figures], splits)
  # validation first (it is the one evaluated while training), then the rest as given.
  splits.sort(key=lambda s: s != "validation")
  mesh = sharding.make_mesh()
  sharding.per_process_batch_size(train_cfg.batch_size, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  state_sharding = sharding.replicated(mesh)

  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = jax.jit(task.initial_state, out_shardings=state_sharding)(init_key, train_key)
  train_step = jax.jit(make_train_step(update),
                       in_shardings=(state_sharding, batch_sharding),
                       out_shardings=(state_sharding, state_sharding),
                       donate_argnums=0)

  train_iter = iter(make_loader(
      datasets["train"], batch_size=train_cfg.batch_size, seed=config.seed, shuffle=True,
      num_epochs=None, drop_remainder=True,
      process_rows=sharding.process_rows(train_cfg.batch_size, batch_sharding),
      process_index=jax.process_index()))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              save_every=train_cfg.checkpoint_every,
                              keep=train_cfg.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, train_iter)
  writer = MetricWriter(workdir)
  is_main = jax.process_index() == 0
  keys = {item.name: evaluate.named_key(config.seed, item.name)
          for item in [*evaluators, *figures]}
  samples_dir = os.path.join(workdir, "samples")

  def run_evaluations(step: int, *, final: bool) -> dict[str, dict[str, float]]:
    results = {}
    for split in splits:
      due = lambda item: (item.due(step, final=final, eval_every=train_cfg.eval_every)
                          and item.covers(split, final=final))
      metrics = {}
      for evaluator in filter(due, evaluators):
        measured = evaluator(state.params, datasets[split], keys[evaluator.name], mesh)
        clash = sorted(set(measured) & set(metrics))
        if clash:
          raise ValueError(f"evaluator {evaluator.name!r} reports metrics {clash} that another "
                           f"evaluator of split {split!r} reported already.")
        metrics.update(measured)
      if metrics:
        writer.write(step, split, metrics)
        results[split] = metrics
      for figure in filter(due, figures):
        arrays = sharding.gather(figure.arrays_fn(state.params, datasets[split],
                                                  keys[figure.name]))
        if is_main:
          figure.write_fn(arrays, samples_dir, split, step)
          logging.info("figure %s of split %s at step %d written to %s", figure.name, split,
                       step, samples_dir)
    return results

  start = int(state.step)
  history = []
  bar = tqdm.tqdm(total=train_cfg.num_steps, initial=start, desc="train",
                  disable=not (is_main and sys.stderr.isatty()))
  try:
    for step in range(start + 1, train_cfg.num_steps + 1):
      batch = sharding.shard_batch(next(train_iter), batch_sharding)
      state, metrics = train_step(state, batch)
      history.append(metrics)
      bar.update()
      if on_step is not None:
        on_step(step)
      last = step == train_cfg.num_steps
      if step % train_cfg.log_every == 0 or last:
        _check_finite(state, checkpointer)
        writer.write(step, "train", _mean_metrics(history))
        history = []
      if step % train_cfg.checkpoint_every == 0 or last:
        _check_finite(state, checkpointer)
        checkpointer.save(step, state, train_iter, force=True)
      if not last:
        run_evaluations(step, final=False)
    return run_evaluations(int(state.step), final=True)
  finally:
    bar.close()
    checkpointer.wait()
    checkpointer.close()
    writer.close()
