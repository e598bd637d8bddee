"""objectives/ranking.py against NumPy loops over the papers' sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.objectives.ranking import ranking_loss, region_word_scores


def _loop_loss(scores, margin, same, hardest):
  """Kiros et al. Sec. 2.3 term by term, skipping every j that describes k's scene."""
  batch = scores.shape[0]
  out = np.zeros(batch)
  for k in range(batch):
    to_text = [max(0.0, margin - scores[k, k] + scores[k, j]) for j in range(batch)
               if j != k and not same[k, j]]
    to_image = [max(0.0, margin - scores[k, k] + scores[j, k]) for j in range(batch)
                if j != k and not same[j, k]]
    reduce = (lambda terms: max(terms, default=0.0)) if hardest else sum
    out[k] = reduce(to_text) + reduce(to_image)
  return out


def _scenes(seed, batch=7):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, batch)).astype(np.float32) * 0.5
  scene = rng.integers(0, 4, size=batch)  # repeated captions: the same scene in several pairs
  return scores, scene[:, None] == scene[None, :]


@pytest.mark.parametrize("hardest", [False, True])
def test_matches_the_loop_with_duplicates_masked(hardest):
  scores, same = _scenes(0)
  got = ranking_loss(scores, margin=0.2, same=same, hardest=hardest)
  np.testing.assert_allclose(got, _loop_loss(scores.astype(np.float64), 0.2, same, hardest),
                             rtol=1e-5, atol=1e-6)


def test_without_same_only_the_diagonal_is_positive():
  scores, _ = _scenes(1)
  no_dupes = np.eye(len(scores), dtype=bool)
  np.testing.assert_allclose(ranking_loss(scores, margin=1.0),
                             _loop_loss(scores.astype(np.float64), 1.0, no_dupes, False),
                             rtol=1e-5)


def test_a_duplicate_gets_no_gradient_and_the_loss_is_zero_when_separated():
  scores, same = _scenes(2)
  grad = jax.grad(lambda s: jnp.sum(ranking_loss(s, margin=0.2, same=same)))(scores)
  off_diagonal_same = same & ~np.eye(len(scores), dtype=bool)
  assert np.all(np.asarray(grad)[off_diagonal_same] == 0.0)
  separated = np.where(same, 1.0, -1.0).astype(np.float32)
  np.testing.assert_array_equal(ranking_loss(separated, margin=0.2, same=same), 0.0)


def test_region_word_scores_match_the_double_loop():
  rng = np.random.default_rng(3)
  regions = rng.normal(size=(3, 4, 5))
  words = rng.normal(size=(3, 6, 5))
  region_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
  word_mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]], bool)
  want = np.zeros((3, 3))
  for k in range(3):
    for l in range(3):
      want[k, l] = sum(max(regions[k, i] @ words[l, t] for i in range(4) if region_mask[k, i])
                       for t in range(6) if word_mask[l, t])
  got = region_word_scores(regions.astype(np.float32), region_mask, words.astype(np.float32),
                           word_mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_named_errors():
  with pytest.raises(ValueError, match="square"):
    ranking_loss(np.zeros((2, 3)), margin=0.2)
  with pytest.raises(ValueError, match="same must have shape"):
    ranking_loss(np.zeros((3, 3)), margin=0.2, same=np.eye(2, dtype=bool))
  with pytest.raises(ValueError, match="must share D"):
    region_word_scores(np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.zeros((2, 5, 6)),
                       np.ones((2, 5), bool))
