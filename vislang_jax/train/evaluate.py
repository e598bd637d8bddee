"""Evaluators and figures: named, keyed, each on its own cadence, run on every process.

As big_vision's evaluators: an experiment lists what to measure, each measurement has a name,
a cadence and the splits it covers, and the harness calls it with the parameters; here it
also gets a key and the split's records. Cadence: `every` N steps on the `validation` split
while training (None: `config.train.eval_every`; 0: never while training), and once at the
end on each of its splits. Expensive measurements (beam-search BLEU, retrieval, consistency)
set `every=0`.

Every evaluator runs on every process: it calls jitted code on parameters sharded over a
mesh that spans all processes, which each process must join, and each process reads only its
own rows of every batch (`split_batches`). Metrics come back as Python floats, the same on
every process; the harness writes them from process 0. Figures are separate: their arrays
are computed on every process and gathered (`Figure.arrays_fn`), and only process 0 writes
the file (`Figure.write_fn`).

Keys: a run with seed `s` gives the evaluator or figure `name` the key `named_key(s, name)`
at every evaluation, so evaluations at different steps, of resumed runs, on one host or many,
draw the same randomness. Per-record randomness (a fixed binarization, one posterior sample)
comes from `record_keys(key, batch["index"])`: each batch carries its records' positions in
the split, so results do not depend on the batch size, order or number of processes.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_int
from vislang_jax.data.pipeline import ImageToFloat, stack_records
from vislang_jax.metrics.retrieval import AllPairs, median_rank, recall_at_k
from vislang_jax.train import sharding

# metric_fn(params, batch, key) -> {name: [b] per-example values}
MetricFn = Callable[[Any, dict, jax.Array], dict]
# predict_fn(params, batch, key) -> {name: [b, ...]}
PredictFn = Callable[[Any, dict, jax.Array], dict]
# score_fn(predictions {name: [n, ...] np.ndarray in record order}, source) -> {name: float}
ScoreFn = Callable[[dict, Any], Mapping[str, float]]

_EVALUATION_STREAM = 0x6576616C  # "eval": keeps evaluation keys apart from init and training


def named_key(seed: int, name: str) -> jax.Array:
  """The key of evaluator (or figure) `name` in a run with `seed`; the same at every step."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), _EVALUATION_STREAM)
  return jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


def record_keys(key: jax.Array, index: jax.Array) -> jax.Array:
  """One key per record, `fold_in(key, index)`: [B] int record positions -> [B, 2] keys."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


class Head:
  """The first `count` records of a random-access source (all of them if it is shorter)."""

  def __init__(self, source: Any, count: int):
    self.source = source
    self.count = min(check_int("count", count, low=1), len(source))

  def __len__(self) -> int:
    return self.count

  def __getitem__(self, index: int) -> Any:
    if not 0 <= index < self.count:
      raise IndexError(f"index {index} outside the first {self.count} records")
    return self.source[index]

  def __repr__(self) -> str:
    return f"Head({self.source!r}, count={self.count})"


def split_batches(source: Any, *, batch_size: int, mesh: jax.sharding.Mesh
                  ) -> Iterator[dict[str, jax.Array]]:
  """A whole split in global batches of `batch_size`, in record order, the last one padded.

  Each process reads only the records of its own rows (`sharding.process_rows`), so a
  record is read once however many processes there are, and every process yields the same
  number of batches (the collectives of the jitted evaluation match).

  Yields:
    Global arrays sharded on the batch axis: every numeric field of the records (images
    as float32 in [0, 1], see `data.pipeline.ImageToFloat`), `index` [batch_size] int32
    (the record's position in the split; 0 on padding) and `mask` [batch_size] float32
    (1 on records, 0 on padding).
  """
  sharding.per_process_batch_size(batch_size, mesh, name="eval.batch_size")
  size = len(source)
  if size < 1:
    raise ValueError(f"an evaluation split must hold records, got an empty source {source!r}.")
  batch_sharding = sharding.batch_sharding(mesh)
  rows = sharding.process_rows(batch_size, batch_sharding)[jax.process_index()]
  to_arrays = ImageToFloat()
  padding = {k: np.zeros_like(v) for k, v in to_arrays.map(source[0]).items()}
  if "mask" in padding:
    raise ValueError(f"records of an evaluation split must not have a 'mask' field (the "
                     f"evaluator's padding mask), got one in {source!r}: rename it.")
  for start in range(0, size, batch_size):
    records = []
    for row in rows:
      position = start + int(row)
      real = position < size
      record = to_arrays.map(source[position]) if real else dict(padding)
      record["index"] = np.int32(position if real else 0)
      record["mask"] = np.float32(real)
      records.append(record)
    local = {k: np.stack([r[k] for r in records]) for k in records[0]}
    yield sharding.shard_batch(local, batch_sharding)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scheduled:
  """When an evaluator or figure runs.

  Attributes:
    name: names its key (`named_key`) and, for figures, its files.
    every: run on `validation` every `every` steps while training; None takes
      `config.train.eval_every`, 0 runs only at the end.
    splits: the splits it runs on at the end of training; None: every evaluation split.
  """

  name: str
  every: int | None = None
  splits: tuple[str, ...] | None = None

  def __post_init__(self):
    if not self.name.isidentifier():
      raise ValueError(f"name must be an identifier, got {self.name!r}.")
    if self.every is not None:
      check_int(f"{self.name}: every", self.every, low=0)

  def due(self, step: int, *, final: bool, eval_every: int) -> bool:
    """Whether it runs after `step`: at the end, or on its periodic schedule."""
    every = eval_every if self.every is None else self.every
    return final or (every > 0 and step % every == 0)

  def covers(self, split: str, *, final: bool) -> bool:
    """Whether it runs on `split`: only `validation` while training."""
    if not final and split != "validation":
      return False
    return self.splits is None or split in self.splits


@dataclasses.dataclass(frozen=True, kw_only=True)
class Evaluator(Scheduled):
  """A measurement of a split: `evaluator(params, source, key, mesh) -> {name: float}`."""

  def __call__(self, params: Any, source: Any, key: jax.Array,
               mesh: jax.sharding.Mesh) -> dict[str, float]:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanMetrics(Evaluator):
  """Exact means over a split of per-example metrics (padding never enters a mean).

  Attributes:
    metric_fn: (params, batch, key) -> {name: [b] per-example values}; jitted here.
    batch_size: the global evaluation batch.
  """

  metric_fn: MetricFn
  batch_size: int
  name: str = "metrics"

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "_sums", jax.jit(self._masked_sums))

  def _masked_sums(self, params, batch, key):
    per_example = self.metric_fn(params, batch, key)
    real = batch["mask"] > 0
    # where, not a product: a padding example's metric may be NaN (e.g. 0 / 0).
    sums = {k: jnp.sum(jnp.where(real, v, 0.0)) for k, v in per_example.items()}
    sums["count"] = jnp.sum(batch["mask"])
    return sums

  def __call__(self, params, source, key, mesh):
    totals = None
    for batch in split_batches(source, batch_size=self.batch_size, mesh=mesh):
      sums = self._sums(params, batch, key)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = sharding.gather(totals)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()}


def predict(predict_fn: Callable[[Any, dict, jax.Array], dict], params: Any, source: Any,
            key: jax.Array, *, batch_size: int, mesh: jax.sharding.Mesh
            ) -> dict[str, np.ndarray]:
  """`predict_fn` over a whole split, gathered on every process in record order.

  Args:
    predict_fn: a jitted (params, batch, key) -> {name: [b, ...]}.
    params, source, key: as an evaluator gets them.
    batch_size, mesh: the global batch and the mesh it is sharded over.

  Returns:
    {name: [len(source), ...] np.ndarray}, padding dropped.
  """
  parts = []
  for batch in split_batches(source, batch_size=batch_size, mesh=mesh):
    out = predict_fn(params, batch, key)
    parts.append(sharding.gather({"out": out, "index": batch["index"], "mask": batch["mask"]}))
  real = np.concatenate([p["mask"] for p in parts]) > 0
  order = np.argsort(np.concatenate([p["index"] for p in parts])[real], kind="stable")
  return {k: np.concatenate([p["out"][k] for p in parts])[real][order]
          for k in parts[0]["out"]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CorpusMetrics(Evaluator):
  """Metrics of a whole split's predictions, scored on the host (BLEU, ranks, consistency).

  Attributes:
    predict_fn: (params, batch, key) -> {name: [b, ...]}, e.g. beam-search captions; jitted
      here, run sharded over the mesh, gathered on every process.
    score_fn: (predictions, source) -> {metric: float}; `predictions` hold the arrays of
      the first `count` records in record order. It runs on every process (on the same
      arrays: the same result), so it must not write files.
    batch_size: the global evaluation batch.
    count: score the first `count` records only; None: the whole split.
  """

  predict_fn: PredictFn
  score_fn: ScoreFn
  batch_size: int
  count: int | None = None

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "_predict", jax.jit(self.predict_fn))

  def __call__(self, params, source, key, mesh):
    if self.count is not None:
      source = Head(source, self.count)
    predictions = predict(self._predict, params, source, key, batch_size=self.batch_size,
                          mesh=mesh)
    return {k: float(v) for k, v in self.score_fn(predictions, source).items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairRetrieval(Evaluator):
  """Retrieval among a split's first `pool` records by a score of every (query, candidate) pair.

  Record q's `query_fields` meet record n's `candidate_fields` for every q and n
  (`metrics.retrieval.AllPairs`, with `query` = q and `candidate` = n in each batch); the
  pairs are scored by `score_fn(params, batch, key) -> [b]` (higher: better), sharded over
  the mesh. Record q's own candidate is query q's target. Reports `r_at_<k>` for each of `ks`
  and `median_rank` (ties ranked pessimistically).

  Attributes:
    score_fn: the pair score; jitted here.
    query_fields, candidate_fields: the record fields of a query (e.g. a caption's `tokens`,
      `length`) and of a candidate (e.g. its `image`).
    pool: records ranked; the split's first `pool`.
    batch_size: pairs per global batch.
    ks: the cut-offs of recall at K.
  """

  score_fn: Callable[[Any, dict, jax.Array], jax.Array]
  query_fields: tuple[str, ...]
  candidate_fields: tuple[str, ...]
  pool: int
  batch_size: int
  ks: tuple[int, ...] = (1, 5, 10)
  name: str = "retrieval"

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "_scores", jax.jit(
        lambda params, batch, key: {"score": self.score_fn(params, batch, key)}))

  def __call__(self, params, source, key, mesh):
    records = stack_records(source, self.query_fields + self.candidate_fields, count=self.pool)
    pairs = AllPairs({k: records[k] for k in self.query_fields},
                     {k: records[k] for k in self.candidate_fields})
    scores = predict(self._scores, params, pairs, key, batch_size=self.batch_size,
                     mesh=mesh)["score"].reshape(pairs.num_queries, pairs.num_candidates)
    targets = np.arange(pairs.num_queries)
    return {**recall_at_k(scores, targets, ks=self.ks), "median_rank": median_rank(scores, targets)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Figure(Scheduled):
  """A picture of the model on a split.

  Attributes:
    arrays_fn: (params, source, key) -> a pytree of arrays; runs on every process (it may
      call jitted code on the sharded parameters, and `predict`), the harness gathers it.
    write_fn: (arrays as NumPy, directory, split, step) -> None; process 0 only, writes the
      file(s) under `directory` (`workdir/samples`).
  """

  arrays_fn: Callable[[Any, Any, jax.Array], Any]
  write_fn: Callable[[Any, str, str, int], None]


def check_schedule(items: Any, splits: Any) -> None:
  """Names unique and identifiers; every split an item names is one of `splits`."""
  names = [item.name for item in items]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"evaluator and figure names must be unique, got {repeated} more than once.")
  for item in items:
    missing = sorted(set(item.splits or ()) - set(splits))
    if missing:
      raise ValueError(f"{item.name}: splits {missing} are not among the evaluation splits "
                       f"{sorted(splits)}.")

