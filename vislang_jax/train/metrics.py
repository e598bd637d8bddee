"""Metric logging: `metrics.jsonl`, TensorBoard event files, the console."""

import json
import os
from typing import Mapping

import jax
from absl import logging


class MetricWriter:
  """Writes one JSON object per call to `workdir/metrics.jsonl` and TensorBoard.

  Only process 0 writes. A resumed run appends: steps between the last
  checkpoint and a crash appear twice, the later line being the one that led to
  the final state.
  """

  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    self._tb = None
    if self._active:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    if not split.isidentifier():
      raise ValueError(f"split must be a name such as 'train', 'validation' or 'test'; "
                       f"got {split!r}.")
    if not self._active:
      return
    values = {k: float(v) for k, v in metrics.items()}
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **values})
                      + "\n")
    self._jsonl.flush()
    for name, value in values.items():
      self._tb.add_scalar(f"{split}/{name}", value, int(step))
    self._tb.flush()
    logging.info("step %d %s: %s", step, split,
                 ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`, in the order they were written."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
