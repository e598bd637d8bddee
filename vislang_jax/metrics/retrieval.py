"""Retrieval metrics: recall at K and median rank (e.g. Mansimov et al. 2016, Sec. 5.3).

Each of ``Q`` queries (a caption) scores ``N`` candidates (images); the query's target is one
candidate. The rank of the target is 1 + the number of OTHER candidates that score at least as
high as it: ties are broken pessimistically, against the target, so a model that gives every
candidate the same score ranks every target last (rank ``N``), never first. A NaN score
counts as ``-inf``. Pure NumPy, host side.

Where a query has several right answers (captioned digits repeat captions: every caption with
the query's exact scene description is right), ``hit_ranks`` ranks its best hit and
``bidirectional_retrieval`` reports both directions (image-to-text, text-to-image) of one
pool: ``i2t_r1`` ... ``t2i_median_rank``.

A model that scores one (query, candidate) pair at a time (e.g. alignDRAW's bound of an image
given a caption) scores ``AllPairs``, a random-access source of every pair that a sharded
evaluation reads like any split; its scores in record order reshape to ``[Q, N]``.
"""

from collections.abc import Mapping, Sequence

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



def hit_ranks(scores: np.ndarray, hits: np.ndarray) -> np.ndarray:
  """The 1-based rank of each query's best-scoring hit, ties pessimistic.

  For queries with several right answers (every caption of a scene, or every caption that
  describes the scene in exactly the query's words): the rank is 1 + the number of non-hit
  candidates that score at least as high as the query's best hit. With one hit per query this
  is ``target_ranks``. A NaN score counts as ``-inf``.

  Args:
    scores: [Q, N] float, higher is better.
    hits: [Q, N] bool, True at each query's right answers (at least one per query).

  Returns:
    [Q] int in ``[1, N]``.

  Raises:
    ValueError: for an empty pool, mismatched shapes or a query without a hit.
  """
  scores = np.asarray(scores, np.float64)
  hits = np.asarray(hits)
  if scores.ndim != 2 or scores.shape[1] < 1:
    raise ValueError(f"scores must be a [Q, N] array with N >= 1 candidates, got shape "
                     f"{scores.shape}.")
  if hits.shape != scores.shape or hits.dtype != bool:
    raise ValueError(f"hits must be a bool array of the scores' shape {scores.shape}, got "
                     f"{hits.dtype} {hits.shape}.")
  missing = np.flatnonzero(~hits.any(axis=1))
  if missing.size:
    raise ValueError(f"hits must mark at least one candidate per query; queries "
                     f"{missing[:10].tolist()} have none.")
  scores = np.where(np.isnan(scores), -np.inf, scores)
  best_hit = np.max(np.where(hits, scores, -np.inf), axis=1, keepdims=True)
  return 1 + np.sum(~hits & (scores >= best_hit), axis=1).astype(np.int64)


def bidirectional_retrieval(scores: np.ndarray, hits: np.ndarray,
                            ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """Image-to-text and text-to-image retrieval over one pool (Kiros et al.; Karpathy et al.).

  Args:
    scores: [I, S] float, ``scores[i, s]``: image ``i`` against sentence ``s``.
    hits: [I, S] bool, True where sentence ``s`` is a right answer for image ``i`` (and so
      image ``i`` for sentence ``s``).
    ks: the K of R@K.

  Returns:
    ``i2t_r<K>`` / ``t2i_r<K>`` (fractions), ``i2t_median_rank``, ``t2i_median_rank``,
    ``i2t_mean_rank`` and ``t2i_mean_rank``.
  """
  for k in ks:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"ks must be positive ints, got {k!r} in {ks!r}.")
  scores, hits = np.asarray(scores), np.asarray(hits)
  out = {}
  for name, s, h in (("i2t", scores, hits), ("t2i", scores.T, hits.T)):
    ranks = hit_ranks(s, h)
    out.update({f"{name}_r{int(k)}": float(np.mean(ranks <= k)) for k in ks})
    out[f"{name}_median_rank"] = float(np.median(ranks))
    out[f"{name}_mean_rank"] = float(np.mean(ranks))
  return out


class AllPairs:
  """Every (query, candidate) pair of two sets of records, query-major, as a source.

  Record ``q * N + n`` holds the fields of query ``q`` and of candidate ``n``, and ``query``
  = q and ``candidate`` = n (int32), so scores of the records in order reshape to ``[Q, N]``.

  Args:
    queries: {field: [Q, ...] array}, e.g. captions' ``tokens`` and ``length``.
    candidates: {field: [N, ...] array}, e.g. ``image``; no field name in both.
  """

  def __init__(self, queries: Mapping[str, np.ndarray], candidates: Mapping[str, np.ndarray]):
    names = [*queries, *candidates]
    clash = sorted({n for n in names if names.count(n) > 1} | ({"query", "candidate"} & {*names}))
    if clash:
      raise ValueError(f"queries and candidates must have distinct field names other than "
                       f"'query' and 'candidate', got {clash}.")
    self.queries = {k: np.asarray(v) for k, v in queries.items()}
    self.candidates = {k: np.asarray(v) for k, v in candidates.items()}
    for name, fields in (("queries", self.queries), ("candidates", self.candidates)):
      if not fields or len({len(v) for v in fields.values()}) != 1:
        raise ValueError(f"{name} must hold fields of one length, got lengths "
                         f"{ {k: len(v) for k, v in fields.items()} }.")
    self.num_queries = len(next(iter(self.queries.values())))
    self.num_candidates = len(next(iter(self.candidates.values())))

  def __len__(self) -> int:
    return self.num_queries * self.num_candidates

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < len(self):
      raise IndexError(f"pair {index} outside the {len(self)} pairs")
    q, n = divmod(index, self.num_candidates)
    return {**{k: v[q] for k, v in self.queries.items()},
            **{k: v[n] for k, v in self.candidates.items()},
            "query": np.int32(q), "candidate": np.int32(n)}

  def __repr__(self) -> str:
    return f"AllPairs({self.num_queries} queries x {self.num_candidates} candidates)"
