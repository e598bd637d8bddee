"""Retrieval metrics: recall at K and median rank (e.g. Mansimov et al. 2016, Sec. 5.3).

Each of ``Q`` queries (a caption) scores ``N`` candidates (images); the query's target is one
candidate. The rank of the target is 1 + the number of OTHER candidates that score at least as
high as it: ties are broken pessimistically, against the target, so a model that gives every
candidate the same score ranks every target last (rank ``N``), never first. A NaN score
counts as ``-inf``. Pure NumPy, host side.
"""

from collections.abc import Sequence

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """The 1-based rank of each query's target among the candidates, ties pessimistic.

  Args:
    scores: [Q, N] float, higher is better (e.g. the variational bound ``-L``).
    targets: [Q] int, the target candidate of each query, in ``[0, N)``.

  Returns:
    [Q] int in ``[1, N]``.

  Raises:
    ValueError: for a ``scores`` that is not [Q, N] with N >= 1, ``targets`` that is not [Q]
      or holds ids outside ``[0, N)``.
  """
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets)
  if scores.ndim != 2 or scores.shape[1] < 1:
    raise ValueError(f"scores must be a [Q, N] array with N >= 1, got shape {scores.shape}.")
  num_queries, num_candidates = scores.shape
  if targets.shape != (num_queries,) or not np.issubdtype(targets.dtype, np.integer):
    raise ValueError(f"targets must be an int array [Q] = ({num_queries},), got "
                     f"{targets.dtype} {targets.shape}.")
  if num_queries and (targets.min() < 0 or targets.max() >= num_candidates):
    raise ValueError(f"targets must lie in [0, N) = [0, {num_candidates}), got values in "
                     f"[{targets.min()}, {targets.max()}].")
  scores = np.where(np.isnan(scores), -np.inf, scores)
  target_scores = scores[np.arange(num_queries), targets][:, None]
  # The target itself is counted by >=, so this is 1 + the others at least as good.
  return np.sum(scores >= target_scores, axis=1).astype(np.int64)


def recall_at_k(scores: np.ndarray, targets: np.ndarray,
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """The fraction of queries whose target ranks in the top K, for each K.

  Args:
    scores: [Q, N] float, higher is better.
    targets: [Q] int, each query's target candidate.
    ks: positive ints; K >= N gives 1.

  Returns:
    ``{"r_at_<K>": fraction in [0, 1]}`` for each K.

  Raises:
    ValueError: as ``target_ranks``, or for a K that is not a positive int.
  """
  for k in ks:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"ks must be positive ints, got {k!r} in {ks!r}.")
  ranks = target_ranks(scores, targets)
  return {f"r_at_{int(k)}": float(np.mean(ranks <= k)) for k in ks}


def median_rank(scores: np.ndarray, targets: np.ndarray) -> float:
  """The median over queries of the target's rank (1 is best; ties pessimistic).

  Args:
    scores: [Q, N] float, higher is better.
    targets: [Q] int, each query's target candidate.

  Returns:
    The median rank, a float in [1, N] (the mean of the two middle ranks for even Q).
  """
  return float(np.median(target_ranks(scores, targets)))
