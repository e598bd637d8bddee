"""Bidirectional ranking objectives of joint image-text embeddings (VSE and DVSA).

Kiros, Salakhutdinov, Zemel, "Unifying visual-semantic embeddings with multimodal neural
language models", 2014, Sec. 2.3: with image ``x_k`` and sentence ``v_k`` of pair ``k`` and
the score ``s(x, v) = x . v`` of unit vectors,

    C = sum_k [ sum_j max(0, alpha - s(x_k, v_k) + s(x_k, v_j))        (image -> sentences)
              + sum_j max(0, alpha - s(v_k, x_k) + s(v_k, x_j)) ]      (sentence -> images)

over the contrastive ``j`` of the batch. Faghri, Fleet, Kiros, Fidler, "VSE++: Improving
visual-semantic embeddings with hard negatives", BMVC 2018, eq. (5): only the hardest
contrastive item of each sum (``hardest=True``).

Karpathy & Fei-Fei, "Deep visual-semantic alignments for generating image descriptions", CVPR
2015, eq. (8)-(9): the image-sentence score of regions ``v_i`` and words ``s_t``,
``S_kl = sum_{t in g_l} max_{i in g_k} v_i . s_t`` (``region_word_scores``), and the same
bidirectional hinge with margin 1 over ``S`` (``ranking_loss(S, margin=1)``; eq. (9) also sums
the ``l = k`` terms, constants ``2 * margin`` that carry no gradient and are left out here).

Duplicates: on captioned digits several pairs of a batch can describe the same scene with the
same words; such a pair is not a negative. ``same [B, B]`` (True where items ``k`` and ``j``
describe the same scene, the diagonal included) removes those terms. Rows index images,
columns sentences: ``scores[k, j] = s(x_k, v_j)``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float


def ranking_loss(scores: jax.Array, *, margin: float, same: jax.Array | None = None,
                 hardest: bool = False) -> jax.Array:
  """The bidirectional hinge of Kiros et al. Sec. 2.3 (module docstring), per pair.

  Args:
    scores: [B, B] float, ``scores[k, j] = s(x_k, v_j)``; the diagonal holds the true pairs.
    margin: ``alpha`` >= 0 (DVSA: 1).
    same: [B, B] bool, True where image ``k`` and sentence ``j`` describe the same scene (the
      diagonal is always treated as True); None: only the diagonal.
    hardest: keep only each sum's largest term (VSE++), else sum over every negative.

  Returns:
    [B] float32: pair ``k``'s image-to-sentence plus sentence-to-image terms.

  Raises:
    ValueError: for a non-square ``scores``, a ``same`` of another shape, or a bad margin.
  """
  margin = check_float("margin", margin, low=0.0)
  if jnp.ndim(scores) != 2 or scores.shape[0] != scores.shape[1]:
    raise ValueError(f"scores must be a square [B, B] matrix of image-sentence scores, got "
                     f"{jnp.shape(scores)}.")
  batch = scores.shape[0]
  positive = jnp.eye(batch, dtype=bool)
  if same is not None:
    if tuple(np.shape(same)) != (batch, batch):
      raise ValueError(f"same must have shape [B, B] = {(batch, batch)}, got "
                       f"{np.shape(same)}.")
    positive = positive | jnp.asarray(same, bool)
  scores = jnp.asarray(scores, jnp.float32)
  true = jnp.diagonal(scores)
  # [k, j]: image k against sentence j; sentence k against image j (the transpose).
  image_to_text = jnp.where(positive, 0.0, jax.nn.relu(margin - true[:, None] + scores))
  text_to_image = jnp.where(positive.T, 0.0, jax.nn.relu(margin - true[:, None] + scores.T))
  if hardest:
    return jnp.max(image_to_text, axis=1) + jnp.max(text_to_image, axis=1)
  return jnp.sum(image_to_text, axis=1) + jnp.sum(text_to_image, axis=1)


def region_word_scores(regions: jax.Array, region_mask: jax.Array, words: jax.Array,
                       word_mask: jax.Array) -> jax.Array:
  """DVSA's image-sentence scores ``S_kl = sum_t max_i v_i . s_t`` (Karpathy eq. 8).

  Args:
    regions: [B, R, D] float, the region vectors ``v_i`` of each image ``k``.
    region_mask: [B, R] bool, True at each image's real regions (at least one).
    words: [B, T, D] float, the word vectors ``s_t`` of each sentence ``l``.
    word_mask: [B, T] bool, True at each sentence's real words.

  Returns:
    [B, B] float32, ``S[k, l]``: image ``k`` against sentence ``l``.
  """
  if (jnp.ndim(regions) != 3 or jnp.ndim(words) != 3 or regions.shape[-1] != words.shape[-1]):
    raise ValueError(f"regions [B, R, D] and words [B, T, D] must share D, got "
                     f"{jnp.shape(regions)} and {jnp.shape(words)}.")
  if (tuple(np.shape(region_mask)) != tuple(regions.shape[:2])
      or tuple(np.shape(word_mask)) != tuple(words.shape[:2])):
    raise ValueError(f"region_mask must have shape {tuple(regions.shape[:2])} and word_mask "
                     f"{tuple(words.shape[:2])}, got {np.shape(region_mask)} and "
                     f"{np.shape(word_mask)}.")
  dots = jnp.einsum("krd,ltd->klrt", regions, words)  # [B_img, B_sent, R, T]
  dots = jnp.where(jnp.asarray(region_mask, bool)[:, None, :, None], dots, -jnp.inf)
  best = jnp.max(dots, axis=2)  # [B_img, B_sent, T]: each word's best region
  return jnp.sum(jnp.where(jnp.asarray(word_mask, bool)[None], best, 0.0), axis=-1)
