"""Retrieval results in both directions (Kiros et al. 2014, Fig. 3; Karpathy & Fei-Fei 2015).

Text-to-image: a row per caption query, the caption then its top-k images, each framed in
``HIT_COLOUR`` when it is a right answer and ``MISS_COLOUR`` when not. Image-to-text: a row per
query image, the image then its top-k captions, each marked and coloured the same way.
"""

import textwrap
from collections.abc import Sequence

import numpy as np

from vislang_jax.viz import figure

HIT_COLOUR = (0.0, 0.6, 0.0)
MISS_COLOUR = (0.85, 0.0, 0.0)
HIT_MARK, MISS_MARK = "\u2713", "\u2717"  # check and cross marks


def hit_colours(hits: np.ndarray) -> np.ndarray:
  """[Q, k] bool -> [Q, k, 3] RGB: ``HIT_COLOUR`` at the hits, ``MISS_COLOUR`` elsewhere."""
  hits = np.asarray(hits)
  return np.where(hits[..., None], np.array(HIT_COLOUR), np.array(MISS_COLOUR))


def _check_hits(hits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  hits = np.asarray(hits)
  if hits.shape != shape or hits.dtype != bool:
    raise ValueError(f"hits must be a bool array [Q, k] = {shape}, got {hits.dtype} "
                     f"{hits.shape}.")
  return hits


def save_retrieval_figure(path: str, queries: Sequence[str], images: np.ndarray,
                          hits: np.ndarray) -> None:
  """Text-to-image retrieval: a row per caption, its wrapped text then its top-k images.

  Args:
    path: the PNG to write (its folder is created).
    queries: Q caption strings.
    images: [Q, k, H, W, C] float in [0, 1], C = 1 (grey) or 3: each query's top-k retrieved
      images, best first.
    hits: [Q, k] bool, True where the retrieved image is a right answer (framed in
      ``HIT_COLOUR``; misses in ``MISS_COLOUR``).
  """
  images = figure.check_images("images", images, "[Q, k, H, W, C]")
  if len(images) != len(queries) or images.shape[1] < 1:
    raise ValueError(f"images must have shape [Q, k, H, W, C] with Q = len(queries) = "
                     f"{len(queries)} and k >= 1, got {images.shape}.")
  colours = hit_colours(_check_hits(hits, images.shape[:2]))
  rows, k = images.shape[:2]
  fig, axes = figure.subplots(rows, 1 + k, figsize=(1.2 * k + 2.2, 1.3 * rows))
  for q, text in enumerate(queries):
    axes[q, 0].axis("off")
    axes[q, 0].text(0.0, 0.5, textwrap.fill(text, 24), fontsize=7, va="center",
                    transform=axes[q, 0].transAxes)
    for j in range(k):
      figure.show_image(axes[q, 1 + j], images[q, j], frame=tuple(colours[q, j]))
      axes[q, 1 + j].set_title(f"{j + 1}", fontsize=7)
  figure.save(fig, path)


def save_image_to_text_figure(path: str, images: np.ndarray,
                              captions: Sequence[Sequence[str]], hits: np.ndarray) -> None:
  """Image-to-text retrieval: a row per query image, the image then its top-k captions.

  Each caption is numbered by rank and marked ``HIT_MARK`` in ``HIT_COLOUR`` when it is a
  right answer, ``MISS_MARK`` in ``MISS_COLOUR`` when not.

  Args:
    path: the PNG to write (its folder is created).
    images: [Q, H, W, C] float in [0, 1], C = 1 (grey) or 3: the query images.
    captions: Q lists of k caption strings, each query's top-k retrieved captions, best first.
    hits: [Q, k] bool, True where the retrieved caption is a right answer.
  """
  images = figure.check_images("images", images, "[Q, H, W, C]")
  k = len(captions[0]) if len(captions) else 0
  if len(captions) != len(images) or k < 1 or any(len(c) != k for c in captions):
    raise ValueError(f"captions must be Q = {len(images)} lists of k >= 1 captions each, got "
                     f"lengths {[len(c) for c in captions]}.")
  hits = _check_hits(hits, (len(images), k))
  colours = hit_colours(hits)
  fig, axes = figure.subplots(len(images), 2, figsize=(6.0, max(1.3, 0.3 * k) * len(images)))
  for q, image in enumerate(images):
    figure.show_image(axes[q, 0], image)
    ax = axes[q, 1]
    ax.axis("off")
    for j, caption in enumerate(captions[q]):
      mark = HIT_MARK if hits[q, j] else MISS_MARK
      ax.text(0.0, 1.0 - (j + 0.5) / k, f"{j + 1}. {mark} {textwrap.shorten(caption, 60)}",
              color=tuple(colours[q, j]), fontsize=7, va="center", transform=ax.transAxes)
  figure.save(fig, path)
