"""Dense captions over their images, and region retrieval by a phrase (Johnson et al. 2016,
Fig. 4 and Fig. 6).

Boxes are ``(x0, y0, x1, y1)`` pixels with exclusive ends (`ops.boxes`); a box is drawn as the
outline of the pixels it covers, its phrase written at its top-left corner in the box's colour.
"""

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.patches import Rectangle

from vislang_jax.viz import figure
from vislang_jax.viz.retrieval import HIT_COLOUR, MISS_COLOUR

# Distinct colours for the boxes of one image, in rank order (tab10 without grey).
BOX_COLOURS = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
               (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.74, 0.74, 0.13),
               (0.09, 0.75, 0.81))
TRUTH_COLOUR = (1.0, 1.0, 1.0)


def _check_boxes(name: str, boxes: np.ndarray, count: int | None = None) -> np.ndarray:
  boxes = np.asarray(boxes, np.float64)
  if boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4 or (count is not None and len(boxes) != count):
    want = f"[{count}, 4]" if count is not None else "[P, 4]"
    raise ValueError(f"{name} must have shape {want}, got {boxes.shape}.")
  return boxes


def _draw_box(ax, box: np.ndarray, colour, *, label: str | None = None, width: float = 1.5,
              dashed: bool = False) -> None:
  x0, y0, x1, y1 = box
  # Pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates.
  ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                         linewidth=width, linestyle="--" if dashed else "-"))
  if label:
    ax.text(x0 - 0.5, y0 - 0.5, label, fontsize=6, color="white", va="bottom", clip_on=True,
            bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.5, "alpha": 0.85})


def save_dense_caption_figure(path: str, images: np.ndarray, boxes: Sequence[np.ndarray],
                              phrases: Sequence[Sequence[str]], *,
                              scores: Sequence[np.ndarray] | None = None,
                              truth_boxes: Sequence[np.ndarray] | None = None,
                              columns: int = 3) -> None:
  """Each image with its predicted boxes and phrases; below it, the phrases as a legend.

  Args:
    path: the PNG to write (its folder is created).
    images: [N, H, W, C] float in [0, 1], C = 1 or 3.
    boxes: N arrays [P_n, 4] of predicted ``(x0, y0, x1, y1)``, best first (drawn in
      `BOX_COLOURS` order; P_n may be 0).
    phrases: N sequences of P_n phrases.
    scores: optional N arrays [P_n] of confidences, written after each phrase.
    truth_boxes: optional N arrays [G_n, 4] of ground-truth boxes, drawn dashed in white.
    columns: images per row.
  """
  images = figure.check_images("images", images, "[N, H, W, C]")
  count = len(images)
  for name, value in (("boxes", boxes), ("phrases", phrases), ("scores", scores),
                      ("truth_boxes", truth_boxes)):
    if value is not None and len(value) != count:
      raise ValueError(f"{name} must hold one entry per image ({count}), got {len(value)}.")
  rows = -(-count // columns)
  cols = min(columns, count)
  fig, axes = figure.subplots(rows, cols, figsize=(2.6 * cols, 3.2 * rows))
  for n in range(rows * cols):
    ax = axes[n // cols, n % cols]
    if n >= count:
      ax.axis("off")
      continue
    figure.show_image(ax, images[n])
    predicted = _check_boxes(f"boxes[{n}]", boxes[n])
    if len(phrases[n]) != len(predicted):
      raise ValueError(f"phrases[{n}] must hold one phrase per box ({len(predicted)}), got "
                       f"{len(phrases[n])}.")
    if truth_boxes is not None:
      for box in _check_boxes(f"truth_boxes[{n}]", truth_boxes[n]):
        _draw_box(ax, box, TRUTH_COLOUR, width=1.0, dashed=True)
    legend = []
    for p, box in enumerate(predicted):
      colour = BOX_COLOURS[p % len(BOX_COLOURS)]
      _draw_box(ax, box, colour, label=str(p + 1))
      score = "" if scores is None else f" ({float(np.asarray(scores[n])[p]):.2f})"
      legend.append(f"{p + 1}. {phrases[n][p]}{score}")
    ax.set_xlabel("\n".join(textwrap.shorten(line, 40) for line in legend), fontsize=6,
                  loc="left")
  figure.save(fig, path)


def save_region_retrieval_figure(path: str, queries: Sequence[str], images: np.ndarray,
                                 boxes: np.ndarray, scores: np.ndarray, hits: np.ndarray
                                 ) -> None:
  """Region retrieval by phrase: a row per query, its text then its top-k (image, box) pairs.

  Args:
    path: the PNG to write.
    queries: Q phrases.
    images: [Q, k, H, W, C] in [0, 1]: the image of each retrieved region, best first.
    boxes: [Q, k, 4] the retrieved boxes ``(x0, y0, x1, y1)``.
    scores: [Q, k] their scores (e.g. the phrase's log-likelihood given the region).
    hits: [Q, k] bool, True where the region is a right answer (framed green, else red).
  """
  images = figure.check_images("images", images, "[Q, k, H, W, C]")
  shape = images.shape[:2]
  if len(queries) != shape[0]:
    raise ValueError(f"images must have Q = len(queries) = {len(queries)} rows, got {shape}.")
  boxes, scores, hits = np.asarray(boxes), np.asarray(scores), np.asarray(hits)
  if boxes.shape != shape + (4,) or scores.shape != shape or hits.shape != shape:
    raise ValueError(f"boxes, scores and hits must have shapes {shape + (4,)}, {shape}, {shape} "
                     f"(images' [Q, k]), got {boxes.shape}, {scores.shape}, {hits.shape}.")
  rows, k = shape
  fig, axes = figure.subplots(rows, 1 + k, figsize=(1.4 * k + 2.0, 1.5 * rows))
  for q, text in enumerate(queries):
    axes[q, 0].axis("off")
    axes[q, 0].text(0.0, 0.5, textwrap.fill(text, 18), fontsize=7, va="center",
                    transform=axes[q, 0].transAxes)
    for j in range(k):
      ax = axes[q, 1 + j]
      colour = HIT_COLOUR if hits[q, j] else MISS_COLOUR
      figure.show_image(ax, images[q, j], frame=colour)
      _draw_box(ax, boxes[q, j], colour)
      ax.set_title(f"{j + 1}: {float(scores[q, j]):.1f}", fontsize=6)
  figure.save(fig, path)
