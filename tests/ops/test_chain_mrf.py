"""ops/chain_mrf.py against exhaustive search over every alignment."""

import itertools

import jax
import numpy as np
import pytest

from vislang_jax.ops.chain_mrf import align_words


def _exhaustive(scores, mask, beta):
  real = [j for j in range(len(mask)) if mask[j]]
  best, best_a = -np.inf, None
  for a in itertools.product(range(scores.shape[1]), repeat=len(real)):
    energy = sum(scores[j, t] for j, t in zip(real, a))
    energy += beta * sum(a[i] == a[i + 1] for i in range(len(a) - 1))
    if energy > best:
      best, best_a = energy, a
  regions = np.full(len(mask), -1)
  regions[real] = best_a
  return regions, best


@pytest.mark.parametrize("beta", [0.0, 0.7, 5.0])
def test_matches_exhaustive_search(beta):
  rng = np.random.default_rng(int(beta * 10))
  scores = rng.normal(size=(4, 5, 3)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]], bool)
  regions, energy = jax.jit(align_words, static_argnames="beta")(scores, mask, beta=beta)
  for b in range(4):
    want_regions, want_energy = _exhaustive(scores[b].astype(np.float64), mask[b], beta)
    assert float(energy[b]) == pytest.approx(want_energy, abs=1e-5)
    np.testing.assert_array_equal(regions[b], want_regions)


def test_beta_zero_is_the_per_word_argmax_and_a_large_beta_one_region():
  rng = np.random.default_rng(1)
  scores = rng.normal(size=(6, 4)).astype(np.float32)
  mask = np.ones(6, bool)
  regions, _ = align_words(scores, mask, beta=0.0)
  np.testing.assert_array_equal(regions, np.argmax(scores, axis=1))
  regions, _ = align_words(scores, mask, beta=100.0)
  assert len(set(np.asarray(regions).tolist())) == 1


def test_named_errors():
  with pytest.raises(ValueError, match="word_mask"):
    align_words(np.zeros((5, 3)), np.ones(4, bool), beta=1.0)
  with pytest.raises(ValueError, match="beta"):
    align_words(np.zeros((5, 3)), np.ones(5, bool), beta=-1.0)
