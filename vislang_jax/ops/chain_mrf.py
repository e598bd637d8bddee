"""Chain Markov random field alignment of words to regions (Karpathy & Fei-Fei 2015, Sec. 3.1.4).

Words ``j = 1..N`` of a sentence take latent regions ``a_j`` in ``1..M``; the energy

    E(a) = sum_j psi^U_j(a_j) + sum_{j=1}^{N-1} psi^B_j(a_j, a_{j+1})           (10)
    psi^U_j(a_j = t) = v_t . s_j,     psi^B_j(a_j, a_{j+1}) = beta 1[a_j = a_{j+1}]   (11)

is maximised exactly by dynamic programming (Viterbi): the smoothness weight ``beta`` rewards
contiguous snippets of words aligned to one region (``beta = 0`` aligns every word to its own
best region; a large ``beta`` one region for the sentence). Pure and jittable: ``lax.scan``
over the words, padding words (mask False) neither score nor break a snippet.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float


def align_words(scores: jax.Array, word_mask: jax.Array, *, beta: float
                ) -> tuple[jax.Array, jax.Array]:
  """The maximum-energy alignment ``argmax_a E(a)`` of eq. (10)-(11).

  Args:
    scores: [..., N, M] float, ``psi^U_j(t) = v_t . s_j``: word ``j`` against region ``t``.
    word_mask: [..., N] bool, True at the real words (at least one per sentence; padding
      after them or between them is skipped).
    beta: the smoothness weight, >= 0.

  Returns:
    ``(regions [..., N] int32, energy [...] float32)``: the region of each word (-1 at padding)
    and ``E`` of that alignment.
  """
  beta = check_float("beta", beta, low=0.0)
  if jnp.ndim(scores) < 2 or tuple(np.shape(word_mask)) != tuple(jnp.shape(scores)[:-1]):
    raise ValueError(f"scores must be [..., N, M] and word_mask [..., N], got "
                     f"{jnp.shape(scores)} and {np.shape(word_mask)}.")
  scores = jnp.asarray(scores, jnp.float32)
  mask = jnp.asarray(word_mask, bool)
  lead, (num_words, num_regions) = scores.shape[:-2], scores.shape[-2:]
  flat = scores.reshape((-1, num_words, num_regions))
  flat_mask = mask.reshape((-1, num_words))
  regions, energy = jax.vmap(lambda s, m: _viterbi(s, m, beta))(flat, flat_mask)
  return regions.reshape(lead + (num_words,)), energy.reshape(lead)


def _viterbi(scores: jax.Array, mask: jax.Array, beta: float) -> tuple[jax.Array, jax.Array]:
  """One sentence: scores [N, M], mask [N] -> (regions [N], energy [])."""
  num_regions = scores.shape[1]
  stay = beta * jnp.eye(num_regions)  # psi^B(a_prev, a): beta on the diagonal

  def forward(best, xs):
    score, real = xs
    # best[p]: the highest energy of the words so far ending in region p (None before any).
    candidates = best[:, None] + stay  # [prev, next]
    back = jnp.argmax(candidates, axis=0)
    started = jnp.isfinite(jnp.max(best))
    extended = jnp.where(started, jnp.max(candidates, axis=0), 0.0) + score
    new_best = jnp.where(real, extended, best)
    back = jnp.where(real & started, back, -1)
    return new_best, back

  init = jnp.full((num_regions,), -jnp.inf)
  best, backs = jax.lax.scan(forward, init, (scores, mask))
  last = jnp.argmax(best)

  def backward(region, xs):
    back, real = xs
    chosen = jnp.where(real, region, -1)
    previous = jnp.where(real & (back[region] >= 0), back[region], region)
    return previous, chosen

  _, regions = jax.lax.scan(backward, last, (backs, mask), reverse=True)
  return regions.astype(jnp.int32), jnp.max(best)
