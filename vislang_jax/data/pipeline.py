"""Grain input pipelines: shuffled, per-process sharded, batched, checkpointable.

The loader's iterator has `get_state()` / `set_state()` and goes into an orbax checkpoint
as `ocp.args.Composite(data=grain.python.PyGrainCheckpointSave(iterator))` (restore with
`PyGrainCheckpointRestore`), so a resumed run sees exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

from typing import Any

import grain.python as pygrain
import numpy as np


class ImageToFloat(pygrain.MapTransform):
  """Makes a record batchable: a uint8 `image` [H, W, C] -> float32 in [0, 1].

  Float images are kept as they are; every other numeric field passes through (Python
  ints become int32), and text or nested fields are dropped, so that digit records
  (`image`, `label`) and caption records (`image`, `tokens`, `length`, `boxes`, ...) all
  come out as dicts of arrays with a batch axis once batched.
  """

  def map(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in record.items():
      if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out[key] = np.int32(value)
        continue
      array = np.asarray(value)
      if array.dtype.kind not in "biuf":
        continue
      if key == "image" and array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
      out[key] = array
    return out


def make_loader(
    data_source: pygrain.RandomAccessDataSource,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    drop_remainder: bool,
    shard_by_process: bool = True,
    worker_count: int = 0,
) -> pygrain.DataLoader:
  """A grain DataLoader of `{"image": float32 [b, H, W, C] in [0, 1], "label": int32 [b]}`.

  Args:
    data_source: random-access records `{"image": uint8 [H, W, C], "label": int}`, e.g.
      one split of `builders.build_digits_dataset`.
    batch_size: examples per batch on THIS process (the global batch is
      `batch_size * jax.process_count()`).
    seed: seed of the shuffle; the same seed gives the same order.
    shuffle: reshuffle the records every epoch.
    num_epochs: passes over the data; None repeats forever.
    drop_remainder: drop the last incomplete batch, and the records that would make
      process shards unequal. (Either way grain 0.2.18 gives every process
      `len(data_source) // process_count` records per epoch, so up to
      `process_count - 1` records are skipped when the count does not divide.)
    shard_by_process: give each JAX process a disjoint shard (`ShardByJaxProcess`);
      False reads every record on every process.
    worker_count: grain worker processes; 0 reads in this process.

  Returns:
    The DataLoader; `iter(loader)` gives a checkpointable iterator.

  Raises:
    ValueError: for a non-positive batch_size or num_epochs, or a negative worker_count.
  """
  if batch_size < 1:
    raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size!r}.")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"make_loader: num_epochs must be >= 1 or None (forever), got {num_epochs!r}.")
  if worker_count < 0:
    raise ValueError(f"make_loader: worker_count must be >= 0, got {worker_count!r}.")
  shard_options = (
      pygrain.ShardByJaxProcess(drop_remainder=drop_remainder)
      if shard_by_process
      else pygrain.NoSharding()
  )
  sampler = pygrain.IndexSampler(
      num_records=len(data_source),
      shard_options=shard_options,
      shuffle=shuffle,
      num_epochs=num_epochs,
      seed=seed,
  )
  return pygrain.DataLoader(
      data_source=data_source,
      sampler=sampler,
      operations=[
          ImageToFloat(),
          pygrain.Batch(batch_size=batch_size, drop_remainder=drop_remainder),
      ],
      worker_count=worker_count,
      shard_options=shard_options,
  )


def stack_records(
    data_source: Any, keys: tuple[str, ...], *, count: int | None = None
) -> dict[str, np.ndarray]:
  """The first `count` records (all when None) of a random-access source, as arrays.

  Reads each record once: `{key: np.stack of record[key]}` with a leading record axis, for
  evaluations that work on a whole (small) split at a time.
  """
  n = len(data_source) if count is None else min(count, len(data_source))
  records = [data_source[i] for i in range(n)]
  return {key: np.stack([record[key] for record in records]) for key in keys}
