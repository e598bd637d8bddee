"""Wall-clock timing shared by the benchmarks: the median of repeated calls after warm-up."""

import time
from typing import Callable

import numpy as np


def median_ms(fn: Callable[[], object], sync: Callable[[object], object], *, repeats: int,
              warmup: int = 0) -> float:
  """The median milliseconds of ``repeats`` calls of ``fn``, each followed by ``sync``.

  ``fn`` is called ``1 + warmup`` times first, untimed: the first call compiles (JAX) or
  starts the allocator and thread pool (torch). ``sync`` waits for the result
  (``jax.block_until_ready``, ``torch.cuda.synchronize``...).
  """
  for _ in range(1 + warmup):
    sync(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))
