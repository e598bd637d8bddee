"""Grounding of generated words: the attention mass on the object a word names.

Show, Attend and Tell (Xu et al. 2015, Sec. 5.4) judges its attention by eye, from maps of
the weights under each generated word. Where the objects' boxes are known (captioned digits:
each digit's 28x28 box), the judgement becomes a number: when the captioner emits a word that
names an object of the image, how much of that step's attention lies inside the object's box,
against the box's share of the image (what uniform attention would put there).

Annotation cell ``(r, c)`` of an ``g x g`` grid (``alpha``'s ``L = g^2`` weights, row-major)
covers the pixels ``[r s_y, (r + 1) s_y) x [c s_x, (c + 1) s_x)`` with ``s_y = H // g`` and
``s_x = W // g``, the encoder's total stride; its weight is spread uniformly over them. Pixels
past ``g s_y`` or ``g s_x`` (the border a pooling encoder drops) are covered by no cell.
"""

from collections.abc import Mapping

import numpy as np

from vislang_jax.checks import check_hw, check_rank


def _cover(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """[g] fractions of the cells between `edges` [g + 1] that lie inside [lo, hi)."""
  overlap = np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo)
  return np.clip(overlap, 0, None) / np.diff(edges)


def attention_in_box(alpha: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
                     labels: np.ndarray, boxes: np.ndarray, *, digit_of: Mapping[int, int],
                     image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Attention mass inside the named object's box, for every generated word that names one.

  Args:
    alpha: [N, T, L] attention weights of the step that emitted each token, ``L = g^2``.
    tokens: [N, T] int generated ids; ``lengths``: [N] ids up to and including ``<eos>``
      (the later steps are not scored).
    labels: [N, K] int, the objects of each image (e.g. digits; -1 pads).
    boxes: [N, K, 4] the objects' boxes ``(y0, x0, y1, x1)`` in pixels, ``y1, x1`` exclusive.
    digit_of: {token id: label} of the words that name an object, e.g. the id of "seven" ->
      7 (the experiment builds it from its vocabulary).
    image_hw: (H, W), the images' size.

  Returns:
    ``(mass, share)``, [M] float arrays, one entry per generated word (in image, then step
    order) whose label is among its image's ``labels``: the attention mass inside that
    object's (first) box, and the box's share of the covered image.

  Raises:
    ValueError: naming the argument, for arrays of the wrong rank or inconsistent sizes, an
      ``L`` that is not a square, or a grid finer than the image.
  """
  for name, array, layout in (("alpha", alpha, "[N, T, L]"), ("tokens", tokens, "[N, T]"),
                              ("lengths", lengths, "[N]"), ("labels", labels, "[N, K]"),
                              ("boxes", boxes, "[N, K, 4]")):
    check_rank(name, array, layout)
  alpha, tokens, labels, boxes = map(np.asarray, (alpha, tokens, labels, boxes))
  if tokens.shape != alpha.shape[:2] or not (
      len(lengths) == len(labels) == len(boxes) == len(alpha)):
    raise ValueError(f"alpha [N, T, L], tokens [N, T], lengths [N], labels [N, K] and boxes "
                     f"[N, K, 4] must agree on N and T, got shapes {alpha.shape}, "
                     f"{tokens.shape}, {np.shape(lengths)}, {labels.shape}, {boxes.shape}.")
  if boxes.shape[1:] != (labels.shape[1], 4):
    raise ValueError(f"boxes must have shape [N, K, 4] with K = {labels.shape[1]} (labels), "
                     f"got {boxes.shape}.")
  height, width = check_hw("image_hw", image_hw)
  n_cells = alpha.shape[-1]
  grid = int(round(np.sqrt(n_cells)))
  if grid * grid != n_cells or grid > min(height, width):
    raise ValueError(f"alpha's last axis must be L = g^2 cells of a g x g grid with g <= "
                     f"min(image_hw) = {min(height, width)}, got L = {n_cells}.")
  rows = np.arange(grid + 1) * (height // grid)
  cols = np.arange(grid + 1) * (width // grid)
  mass, share = [], []
  for n in range(len(tokens)):
    for t in range(int(lengths[n])):
      label = digit_of.get(int(tokens[n, t]))
      if label is None or label not in labels[n]:
        continue
      y0, x0, y1, x1 = boxes[n, list(labels[n]).index(label)]
      inside = np.outer(_cover(rows, y0, y1), _cover(cols, x0, x1))
      mass.append(np.sum(alpha[n, t].reshape(grid, grid) * inside))
      share.append(inside.sum() / n_cells)
  return np.asarray(mass, np.float64), np.asarray(share, np.float64)
