"""The one training loop every experiment runs: shard, step, log, checkpoint, eval.

`train_and_evaluate` owns the parts that must be the same everywhere: the mesh,
the jitted donated step, resumption from the newest checkpoint (params,
optimizer state, step, RNG and the grain iterator position), `metrics.jsonl`
and TensorBoard logging, periodic evaluation, the non-finite-loss stop and the
final test evaluation. An experiment supplies the model-specific functions.
"""

import dataclasses
import math
import os
import sys
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from vislang_jax.data.pipeline import make_loader
from vislang_jax.train import sharding
from vislang_jax.train.checkpoint import Checkpointer
from vislang_jax.train.metrics import MetricWriter
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import LossFn, MetricFn, make_eval_step, make_train_step


class NonFiniteLossError(FloatingPointError):
  """Training produced a non-finite loss; the newest checkpoint predates it."""


@dataclasses.dataclass(frozen=True)
class Task:
  """What an experiment plugs into the loop.

  Attributes:
    init_params: key -> params.
    loss_fn: (params, batch, key) -> (scalar loss, {name: scalar}); with
      `init_extra`, (params, batch, key, extra) -> (loss, ({name: scalar},
      new extra)).
    metric_fn: (params, batch) -> {name: [b] per-example values}; evaluation
      reports their means over the whole split.
    optimizer: the optax transformation.
    on_eval: optional (state, split) -> None or {name: value}, called on
      process 0 after each evaluation, e.g. to write sample images or to
      compute corpus-level metrics (BLEU) that are logged with the split's.
    init_extra: optional () -> the initial `TrainState.extra`, state the loss
      updates without gradients (checkpointed with the rest).
  """
  init_params: Callable[[jax.Array], Any]
  loss_fn: LossFn
  metric_fn: MetricFn
  optimizer: optax.GradientTransformation
  on_eval: Callable[[TrainState, str], Mapping[str, float] | None] | None = None
  init_extra: Callable[[], Any] | None = None


class Evaluator:
  """Exact means of `metric_fn` over a whole split, padding the last batch."""

  def __init__(self, metric_fn: MetricFn, mesh: jax.sharding.Mesh,
               batch_size: int):
    self._mesh = mesh
    self._local_batch = sharding.per_process_batch_size(
        batch_size, mesh, name="eval.batch_size")
    self._batch_sharding = sharding.batch_sharding(mesh)
    self._step = jax.jit(
        make_eval_step(metric_fn),
        in_shardings=(sharding.replicated(mesh), self._batch_sharding,
                      self._batch_sharding),
        out_shardings=sharding.replicated(mesh))

  def __call__(self, params: Any, data_source: Any) -> dict[str, float]:
    loader = make_loader(data_source, batch_size=self._local_batch, seed=0,
                         shuffle=False, num_epochs=1, drop_remainder=False)
    # Every process runs the same number of steps (collectives must match),
    # so a process whose shard ran out feeds all-padding batches.
    per_process = math.ceil(len(data_source) / jax.process_count())
    num_batches = math.ceil(per_process / self._local_batch)
    batches = iter(loader)
    template, totals = None, None
    for _ in range(num_batches):
      batch = next(batches, None)
      if batch is None:
        batch = jax.tree.map(lambda x: np.zeros_like(x[:0]), template)
      template = batch
      size = len(jax.tree.leaves(batch)[0])
      pad = self._local_batch - size
      batch = jax.tree.map(
          lambda x: np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]),
          batch)
      mask = np.concatenate([np.ones(size, np.float32), np.zeros(pad, np.float32)])
      sums = self._step(params, sharding.shard_batch(batch, self._batch_sharding),
                        sharding.shard_batch(mask, self._batch_sharding))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()}


def _check_finite(state: TrainState, checkpointer: Checkpointer) -> None:
  bad = int(state.bad_step)
  if bad >= 0:
    checkpointer.wait()
    raise NonFiniteLossError(
        f"Non-finite loss or update at step {bad}; training stopped. The newest "
        f"checkpoint ({checkpointer.latest_step()}) was written before it.")


def _mean_metrics(history: list[Mapping[str, jax.Array]]) -> dict[str, float]:
  stacked = jax.device_get(history)
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task: Task, datasets: Mapping[str, Any], *,
                       on_step: Callable[[int], None] | None = None
                       ) -> dict[str, float]:
  """Trains `task` on `datasets["train"]`, evaluates, and returns test metrics.

  Args:
    config: uses `seed` and `train.{num_steps, batch_size, log_every,
      eval_every, checkpoint_every, keep_checkpoints}` and `eval.batch_size`.
    workdir: checkpoints, `metrics.jsonl` and TensorBoard files go here; a
      workdir with checkpoints is resumed from the newest one.
    task: the experiment's model functions.
    datasets: random-access sources for "train", "validation" (logged as
      split `eval`) and "test"; any other source (e.g. "novel") is evaluated
      after "test" and logged under its own name.
    on_step: optional host callback after each step (tests use it).

  Returns:
    The test split's metrics, also logged with `split: test`.
  """
  train_cfg = config.train
  for name in ("num_steps", "log_every", "eval_every"):
    if train_cfg[name] < 1:
      raise ValueError(f"train.{name} must be >= 1; got {train_cfg[name]}.")
  missing = {"train", "validation", "test"} - set(datasets)
  if missing:
    raise ValueError(f"datasets must hold train, validation and test; "
                     f"missing {sorted(missing)}.")
  mesh = sharding.make_mesh()
  local_batch = sharding.per_process_batch_size(train_cfg.batch_size, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  state_sharding = sharding.replicated(mesh)

  key = jax.random.PRNGKey(config.seed)
  init_key, train_key = jax.random.split(key)
  state = jax.jit(
      lambda k: TrainState.create(
          params=task.init_params(k), optimizer=task.optimizer, rng=train_key,
          extra=None if task.init_extra is None else task.init_extra()),
      out_shardings=state_sharding)(init_key)
  train_step = jax.jit(make_train_step(task.loss_fn, task.optimizer,
                                       with_extra=task.init_extra is not None),
                       in_shardings=(state_sharding, batch_sharding),
                       out_shardings=(state_sharding, state_sharding),
                       donate_argnums=0)
  evaluator = Evaluator(task.metric_fn, mesh, config.eval.batch_size)

  train_iter = iter(make_loader(
      datasets["train"], batch_size=local_batch, seed=config.seed, shuffle=True,
      num_epochs=None, drop_remainder=True))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              save_every=train_cfg.checkpoint_every,
                              keep=train_cfg.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, train_iter)
  writer = MetricWriter(workdir)
  is_main = jax.process_index() == 0

  def evaluate(split: str, source: Any) -> dict[str, float]:
    metrics = evaluator(state.params, source)
    if is_main and task.on_eval is not None:
      metrics.update(task.on_eval(state, split) or {})
    writer.write(int(state.step), split, metrics)
    return metrics

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
      if step % train_cfg.log_every == 0 or step == train_cfg.num_steps:
        _check_finite(state, checkpointer)
        writer.write(step, "train", _mean_metrics(history))
        history = []
      if step % train_cfg.checkpoint_every == 0 or step == train_cfg.num_steps:
        _check_finite(state, checkpointer)
        checkpointer.save(step, state, train_iter, force=True)
      if step % train_cfg.eval_every == 0 or step == train_cfg.num_steps:
        evaluate("eval", datasets["validation"])
    test_metrics = evaluate("test", datasets["test"])
    for split in sorted(set(datasets) - {"train", "validation", "test"}):
      evaluate(split, datasets[split])
  finally:
    bar.close()
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return test_metrics
