"""Grain input pipelines: shuffled, cut into global batches read by their processes, checkpointable.

The loader's iterator has `get_state()` / `set_state()` and goes into an orbax checkpoint
as `ocp.args.Composite(data=grain.python.PyGrainCheckpointSave(iterator))` (restore with
`PyGrainCheckpointRestore`), so a resumed run sees exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

import sys
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


class GlobalBatchSampler:
  """One process's share of a record stream cut into global batches.

  The stream is every record, in an order reshuffled each epoch with `seed` (or in order),
  for `num_epochs` epochs (None: forever); it is cut into global batches of `batch_size`, and
  this sampler yields, batch after batch, only the records of the rows `rows` of each. The
  processes of a multi-host run, each reading its own rows, read disjoint records and
  together build exactly the global batches one process would read alone.

  Args:
    num_records: records in the data source.
    batch_size: the global batch.
    rows: [rows per process] int, this process's rows of every global batch, ascending.
    seed, shuffle, num_epochs: the stream (as `grain.python.IndexSampler`).
    drop_remainder: end with the last full global batch; else a last partial one follows.
  """

  def __init__(self, num_records: int, *, batch_size: int, rows: np.ndarray, seed: int,
               shuffle: bool, num_epochs: int | None, drop_remainder: bool):
    self._stream = pygrain.IndexSampler(num_records=num_records, shuffle=shuffle,
                                        num_epochs=num_epochs, seed=seed)
    self._batch_size = batch_size
    self._rows = np.asarray(rows, np.int64)
    if num_epochs is None:
      self._length = sys.maxsize
    else:
      full, remainder = divmod(num_epochs * num_records, batch_size)
      last = 0 if drop_remainder else int(np.sum(self._rows < remainder))
      self._length = full * len(self._rows) + last

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> pygrain.RecordMetadata:
    if not 0 <= index < self._length:
      raise IndexError(f"index {index} outside [0, {self._length})")
    batch, row = divmod(index, len(self._rows))
    position = batch * self._batch_size + int(self._rows[row])
    return pygrain.RecordMetadata(index=index, record_key=self._stream[position].record_key)

  def __repr__(self) -> str:
    # grain checks a restored iterator against the sampler's repr.
    return (f"GlobalBatchSampler({self._stream!r}, batch_size={self._batch_size}, "
            f"rows={self._rows.tolist()}, length={self._length})")


def make_loader(
    data_source: pygrain.RandomAccessDataSource,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    drop_remainder: bool,
    process_rows: np.ndarray | None = None,
    process_index: int = 0,
    worker_count: int = 0,
) -> pygrain.DataLoader:
  """A grain DataLoader of this process's part of each global batch.

  Records `{"image": uint8 [H, W, C], "label": int, ...}` come out as batches
  `{"image": float32 [b, H, W, C] in [0, 1], "label": int32 [b], ...}` (`ImageToFloat`).

  Args:
    data_source: random-access records, e.g. one split of `builders.build_digits_dataset`.
    batch_size: the GLOBAL batch, all processes together.
    seed: seed of the shuffle; the same seed gives the same order.
    shuffle: reshuffle the records every epoch.
    num_epochs: passes over the data; None repeats forever.
    drop_remainder: drop the last incomplete global batch.
    process_rows: [process_count, rows per process], the rows of a global batch each process
      reads (`train.sharding.process_rows`); None: one process reads them all.
    process_index: this process's row of `process_rows`.
    worker_count: grain worker processes; 0 reads in this process.

  Returns:
    The DataLoader; `iter(loader)` gives a checkpointable iterator whose batches have
    `len(process_rows[process_index])` records (fewer in a last partial batch).

  Raises:
    ValueError: for a non-positive batch_size or num_epochs, a negative worker_count, or
      process rows that do not split the batch.
  """
  if batch_size < 1:
    raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size!r}.")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"make_loader: num_epochs must be >= 1 or None (forever), got {num_epochs!r}.")
  if worker_count < 0:
    raise ValueError(f"make_loader: worker_count must be >= 0, got {worker_count!r}.")
  if process_rows is None:
    process_rows = np.arange(batch_size)[None]
  process_rows = np.asarray(process_rows)
  if process_rows.ndim != 2 or sorted(process_rows.ravel().tolist()) != list(range(batch_size)):
    raise ValueError(f"make_loader: process_rows must split the rows 0..{batch_size - 1} of a "
                     f"global batch among processes, got {process_rows.tolist()}.")
  rows = process_rows[process_index]
  sampler = GlobalBatchSampler(len(data_source), batch_size=batch_size, rows=rows, seed=seed,
                               shuffle=shuffle, num_epochs=num_epochs,
                               drop_remainder=drop_remainder)
  return pygrain.DataLoader(
      data_source=data_source,
      sampler=sampler,
      operations=[ImageToFloat(), pygrain.Batch(batch_size=len(rows), drop_remainder=False)],
      worker_count=worker_count,
      shard_options=pygrain.NoSharding(),
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
