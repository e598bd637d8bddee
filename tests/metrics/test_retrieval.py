"""`vislang_jax.metrics.retrieval` against a brute-force loop over candidates."""

import numpy as np
import pytest

from vislang_jax.metrics import retrieval


def brute_force_ranks(scores, targets):
  """Sorts each row (stable, ties of the target placed after it) and finds the target."""
  ranks = []
  for row, target in zip(scores, targets):
    # Candidates ordered by score, descending; among equal scores the target goes last.
    order = sorted(range(len(row)), key=lambda n: (-row[n], n == target))
    ranks.append(order.index(target) + 1)
  return np.array(ranks)


@pytest.mark.parametrize("levels", [None, 3])  # continuous scores, or only 3 values (ties)
def test_ranks_recall_and_median_match_brute_force(levels):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(37, 23))
  if levels:
    scores = rng.integers(0, levels, size=scores.shape).astype(float)
  targets = rng.integers(0, 23, size=37)
  ranks = brute_force_ranks(scores, targets)
  np.testing.assert_array_equal(retrieval.target_ranks(scores, targets), ranks)
  recalls = retrieval.recall_at_k(scores, targets, ks=(1, 5, 10, 50))
  for k in (1, 5, 10, 50):
    assert recalls[f"r_at_{k}"] == pytest.approx(np.mean([r <= k for r in ranks]))
  assert recalls["r_at_50"] == 1.0
  assert retrieval.median_rank(scores, targets) == pytest.approx(np.median(ranks))


def test_perfect_ranking_and_constant_scores():
  scores = -np.abs(np.arange(6)[:, None] - np.arange(6)[None, :]).astype(float)
  targets = np.arange(6)
  assert retrieval.recall_at_k(scores, targets, ks=(1,)) == {"r_at_1": 1.0}
  assert retrieval.median_rank(scores, targets) == 1.0
  # All tied: pessimistic ties rank every target last.
  flat = np.zeros((4, 9))
  assert retrieval.median_rank(flat, np.arange(4)) == 9.0
  assert retrieval.recall_at_k(flat, np.arange(4), ks=(8, 9)) == {"r_at_8": 0.0, "r_at_9": 1.0}


def test_nan_scores_count_as_worst():
  scores = np.array([[np.nan, 1.0, 2.0], [0.0, np.nan, -1.0]])
  np.testing.assert_array_equal(retrieval.target_ranks(scores, np.array([0, 2])), [3, 2])


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="scores must be"):
    retrieval.target_ranks(np.zeros(3), np.zeros(3, int))
  with pytest.raises(ValueError, match="targets must be an int array"):
    retrieval.target_ranks(np.zeros((2, 3)), np.zeros(3, int))
  with pytest.raises(ValueError, match=r"targets must lie in \[0, N\)"):
    retrieval.target_ranks(np.zeros((2, 3)), np.array([0, 3]))
  with pytest.raises(ValueError, match="ks must be positive ints"):
    retrieval.recall_at_k(np.zeros((2, 3)), np.array([0, 1]), ks=(0,))


def _brute_hit_rank(row, hit_row):
  """Walk the candidates from best to worst, non-hits first among ties; stop at a hit."""
  order = sorted(range(len(row)), key=lambda n: (-row[n], bool(hit_row[n])))
  return next(position + 1 for position, n in enumerate(order) if hit_row[n])


@pytest.mark.parametrize("levels", [3, 1000])
def test_hit_ranks_and_both_directions_match_brute_force(levels):
  rng = np.random.default_rng(levels)
  scores = rng.integers(0, levels, size=(9, 12)).astype(float)  # few levels: many ties
  scene_of_image = rng.integers(0, 4, size=9)
  scene_of_sentence = np.concatenate([np.arange(4), rng.integers(0, 4, size=8)])
  hits = scene_of_image[:, None] == scene_of_sentence[None, :]
  out = retrieval.bidirectional_retrieval(scores, hits, ks=(1, 5))
  for name, s, h in (("i2t", scores, hits), ("t2i", scores.T, hits.T)):
    want = np.array([_brute_hit_rank(s[q], h[q]) for q in range(len(s))])
    np.testing.assert_array_equal(retrieval.hit_ranks(s, h), want)
    assert out[f"{name}_r1"] == pytest.approx(np.mean(want <= 1))
    assert out[f"{name}_r5"] == pytest.approx(np.mean(want <= 5))
    assert out[f"{name}_median_rank"] == pytest.approx(np.median(want))
    assert out[f"{name}_mean_rank"] == pytest.approx(np.mean(want))
  # One hit per query: the single-target ranks.
  targets = rng.integers(0, 12, size=9)
  np.testing.assert_array_equal(retrieval.hit_ranks(scores, np.eye(12, dtype=bool)[targets]),
                                retrieval.target_ranks(scores, targets))


def test_hit_ranks_named_errors():
  with pytest.raises(ValueError, match="N >= 1 candidates"):
    retrieval.hit_ranks(np.zeros((3, 0)), np.zeros((3, 0), bool))
  with pytest.raises(ValueError, match="hits must be a bool array"):
    retrieval.hit_ranks(np.zeros((2, 3)), np.ones((2, 2), bool))
  with pytest.raises(ValueError, match=r"queries \[1\] have none"):
    retrieval.hit_ranks(np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]], bool))


def _brute_fold_retrieval(scores, hits, owner, fold_size, ks):
  """Loops over folds, images and sentences: each fold's pool rebuilt element by element."""
  num_images = scores.shape[0]
  num_folds = max(1, num_images // fold_size)
  per_fold = []
  for f in range(num_folds):
    images = [i for i in range(num_images) if i // fold_size == f]
    sentences = [s for s in range(len(owner)) if owner[s] in images]
    metrics = {}
    for name, queries, candidates, score, hit in (
        ("i2t", images, sentences, lambda q, c: scores[q, c], lambda q, c: hits[q, c]),
        ("t2i", sentences, images, lambda q, c: scores[c, q], lambda q, c: hits[c, q])):
      ranks = np.array([_brute_hit_rank([score(q, c) for c in candidates],
                                        [hit(q, c) for c in candidates]) for q in queries])
      metrics.update({f"{name}_r{k}": np.mean(ranks <= k) for k in ks})
      metrics[f"{name}_median_rank"] = np.median(ranks)
      metrics[f"{name}_mean_rank"] = np.mean(ranks)
    per_fold.append(metrics)
  return {name: np.mean([m[name] for m in per_fold]) for name in per_fold[0]}, num_folds


@pytest.mark.parametrize("num_images,fold_size,want_folds,want_images", [
    (12, 4, 3, 12),   # 3 whole folds
    (14, 4, 3, 12),   # a trailing partial fold of 2 images is dropped
    (5, 8, 1, 5),     # a pool smaller than a fold is one fold
])
def test_fold_retrieval_matches_brute_force(num_images, fold_size, want_folds, want_images):
  rng = np.random.default_rng(num_images)
  # 2-3 sentences per image, shuffled so owners are not sorted; same-scene sentences are hits.
  owner = rng.permutation(np.concatenate([np.arange(num_images),
                                          rng.integers(0, num_images, size=num_images + 3)]))
  scene = rng.integers(0, 3, size=num_images)
  hits = scene[:, None] == scene[owner][None, :]
  scores = rng.integers(0, 4, size=hits.shape).astype(float)  # ties
  out = retrieval.fold_retrieval(scores, hits, owner, fold_size=fold_size, ks=(1, 5))
  want, num_folds = _brute_fold_retrieval(scores, hits, owner, fold_size, (1, 5))
  assert (out.pop("num_folds"), out.pop("num_images")) == (want_folds, want_images)
  assert num_folds == want_folds and out.keys() == want.keys()
  for name in want:
    assert out[name] == pytest.approx(want[name]), name


def test_fold_retrieval_is_the_pool_metric_for_one_fold():
  rng = np.random.default_rng(3)
  owner = np.repeat(np.arange(6), 2)
  scores, hits = rng.normal(size=(6, 12)), owner[None, :] == np.arange(6)[:, None]
  out = retrieval.fold_retrieval(scores, hits, owner, fold_size=6)
  assert out == {**retrieval.bidirectional_retrieval(scores, hits), "num_folds": 1,
                 "num_images": 6}


def test_fold_retrieval_named_errors():
  owner = np.array([0, 1, 1])
  scores, hits = np.zeros((2, 3)), np.array([[1, 0, 0], [0, 1, 1]], bool)
  with pytest.raises(ValueError, match=r"scores must be an \[I, S\] array over a non-empty"):
    retrieval.fold_retrieval(np.zeros((0, 3)), np.zeros((0, 3), bool), owner)
  with pytest.raises(ValueError, match="hits must be a bool array"):
    retrieval.fold_retrieval(scores, hits.astype(int), owner)
  with pytest.raises(ValueError, match=r"owner must be an int array \[S\] = \(3,\)"):
    retrieval.fold_retrieval(scores, hits, owner[:2])
  with pytest.raises(ValueError, match=r"owner must hold image ids in \[0, I\) = \[0, 2\)"):
    retrieval.fold_retrieval(scores, hits, np.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"hits must be True at each sentence's owner.*\[0\]"):
    retrieval.fold_retrieval(scores, hits, np.array([1, 1, 1]))
  with pytest.raises(ValueError, match=r"every evaluated image.*images \[1\]"):
    retrieval.fold_retrieval(scores, np.ones((2, 3), bool), np.array([0, 0, 0]))
  with pytest.raises(ValueError, match="fold_size must be a positive int, got 0"):
    retrieval.fold_retrieval(scores, hits, owner, fold_size=0)
