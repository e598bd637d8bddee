"""Retrieval metrics: recall at K and median rank (e.g. Mansimov et al. 2016, Sec. 5.3).

Each of ``Q`` queries (a caption) scores ``N`` candidates (images); the query's target is one
candidate. The rank of the target is 1 + the number of OTHER candidates that score at least as
high as it: ties are broken pessimistically, against the target, so a model that gives every
candidate the same score ranks every target last (rank ``N``), never first. A NaN score
counts as ``-inf``. Pure NumPy, host side.

Where a query has several right answers (captioned digits repeat captions: every caption with
the query's exact scene description is right), ``hit_ranks`` ranks its best hit and
``bidirectional_retrieval`` reports both directions (image-to-text, text-to-image) of one
pool: ``i2t_r1`` ... ``t2i_median_rank``. ``fold_retrieval`` is the papers' 1k-image test
protocol: the pool split into folds of 1,000 images, each with its own captions, and the
metrics averaged over folds.

A model that scores one (query, candidate) pair at a time (e.g. alignDRAW's bound of an image
given a caption) scores ``AllPairs``, a random-access source of every pair that a sharded
evaluation reads like any split; its scores in record order reshape to ``[Q, N]``.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from vislang_jax.checks import check_positive_int


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


def fold_retrieval(scores: np.ndarray, hits: np.ndarray, owner: np.ndarray, *,
                   fold_size: int = 1000, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """The 1k-image test protocol: ``bidirectional_retrieval`` per fold, averaged over folds.

  Karpathy & Fei-Fei (2015, Table 1) report retrieval on pools of 1,000 test images (Flickr30K's
  whole test split, and COCO); Kiros et al. (2014) on Flickr's 1,000-image test splits. For
  COCO's 5,000 test images the common protocol (e.g. Vendrov et al. 2016, Faghri et al. 2018)
  splits them into 5 folds of 1,000 consecutive images, each
  scored against only the sentences of its own images, and averages every metric (R@K, median
  and mean rank) over the folds.

  Folds: images ``[f * fold_size, (f + 1) * fold_size)`` for ``f < I // fold_size``; a pool of
  at most ``fold_size`` images is one fold. A trailing partial fold (the last
  ``I % fold_size`` images when ``I > fold_size``) is dropped with its sentences: a smaller
  pool makes R@K easier, so averaging it in would not be the protocol's number. Sentences need
  not be sorted by owner; fold ``f`` holds every sentence whose owner lies in it.

  Args:
    scores: [I, S] float, ``scores[i, s]``: image ``i`` against sentence ``s``.
    hits: [I, S] bool, True where sentence ``s`` is a right answer for image ``i`` (at least at
      its owner; a sentence of another image with the same scene may be one too).
    owner: [S] int in ``[0, I)``, the image each sentence was written for.
    fold_size: images per fold (1,000 in the papers).
    ks: the K of R@K.

  Returns:
    The mean over folds of each ``bidirectional_retrieval`` value, plus ``num_folds`` and
    ``num_images`` (the images scored: ``num_folds * fold_size``, or ``I`` for one fold).

  Raises:
    ValueError: for an empty pool, ``hits`` not a bool [I, S], ``owner`` not an int [S] in
      ``[0, I)``, a sentence whose owner is not a hit, an evaluated image that owns no
      sentence, or a ``fold_size`` that is not a positive int.
  """
  check_positive_int("fold_size", fold_size)
  scores, hits, owner = np.asarray(scores), np.asarray(hits), np.asarray(owner)
  if scores.ndim != 2 or 0 in scores.shape:
    raise ValueError(f"scores must be an [I, S] array over a non-empty pool (I, S >= 1), got "
                     f"shape {scores.shape}.")
  num_images, num_sentences = scores.shape
  if hits.shape != scores.shape or hits.dtype != bool:
    raise ValueError(f"hits must be a bool array of the scores' shape {scores.shape}, got "
                     f"{hits.dtype} {hits.shape}.")
  if owner.shape != (num_sentences,) or not np.issubdtype(owner.dtype, np.integer):
    raise ValueError(f"owner must be an int array [S] = ({num_sentences},), got "
                     f"{owner.dtype} {owner.shape}.")
  if owner.min() < 0 or owner.max() >= num_images:
    raise ValueError(f"owner must hold image ids in [0, I) = [0, {num_images}), got values in "
                     f"[{owner.min()}, {owner.max()}].")
  not_hit = np.flatnonzero(~hits[owner, np.arange(num_sentences)])
  if not_hit.size:
    raise ValueError(f"hits must be True at each sentence's owner image, got False for "
                     f"sentences {not_hit[:10].tolist()}.")
  num_folds = max(1, num_images // fold_size)
  evaluated = min(num_images, num_folds * fold_size)
  orphans = np.setdiff1d(np.arange(evaluated), owner)
  if orphans.size:
    raise ValueError(f"owner must give every evaluated image at least one sentence, got none "
                     f"for images {orphans[:10].tolist()}.")
  fold_of_sentence = owner // fold_size
  folds = []
  for f in range(num_folds):
    images = slice(f * fold_size, min((f + 1) * fold_size, num_images))
    sentences = fold_of_sentence == f
    folds.append(bidirectional_retrieval(scores[images][:, sentences],
                                         hits[images][:, sentences], ks))
  out = {name: float(np.mean([fold[name] for fold in folds])) for name in folds[0]}
  return {**out, "num_folds": num_folds, "num_images": evaluated}


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
