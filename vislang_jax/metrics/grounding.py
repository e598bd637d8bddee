"""Grounding of generated words: the attention mass on the object a word names.

Show, Attend and Tell (Xu et al. 2015, Sec. 5.4) judges its attention by eye, from maps of
the weights under each generated word. Where the objects' boxes are known (captioned digits:
each digit's 28x28 box), the judgement becomes a number: when the captioner emits a word that
names an object of the image, how much of that step's attention lies inside the object's box,
against the box's share of the image (what uniform attention would put there).
``attention_in_box`` scores the naming word alone; ``phrase_attention_in_box`` the whole
phrase that names the object ("the digit three"), whose words a captioner may look for the
object at.

Annotation cell ``(r, c)`` of an ``g x g`` grid (``alpha``'s ``L = g^2`` weights, row-major)
covers the pixels ``[r s_y, (r + 1) s_y) x [c s_x, (c + 1) s_x)`` with ``s_y = H // g`` and
``s_x = W // g``, the encoder's total stride (``cell_edges``); its weight is spread uniformly
over them. Pixels past ``g s_y`` or ``g s_x`` (the border a pooling encoder drops) are covered
by no cell. ``viz.attention`` draws the cells with the same edges.
"""

from collections.abc import Collection, Iterator, Mapping

import numpy as np

from vislang_jax.checks import check_hw, check_positive_int, check_rank


def cell_edges(size: int, grid: int) -> np.ndarray:
  """[grid + 1] pixel edges along an axis of ``size`` pixels: cell ``k`` is ``[e_k, e_{k+1})``.

  ``e_k = k (size // grid)``: the cells of a pooling encoder of stride ``size // grid``, from
  pixel 0; the last ``size - grid (size // grid)`` pixels are in no cell.

  Raises:
    ValueError: for a ``grid`` that is not a positive int or finer than ``size`` pixels.
  """
  check_positive_int("grid", grid)
  if grid > size:
    raise ValueError(f"grid must be at most size = {size} cells, got {grid}.")
  return np.arange(grid + 1) * (size // grid)


def _cover(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """[g] fractions of the cells between `edges` [g + 1] that lie inside [lo, hi)."""
  overlap = np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo)
  return np.clip(overlap, 0, None) / np.diff(edges)


def _named_objects(alpha, tokens, lengths, labels, boxes, digit_of,
                   image_hw) -> Iterator[tuple[int, int, np.ndarray]]:
  """``(n, t, inside [g, g])`` for every scored word: ``inside`` is each cell's share in the box."""
  for name, array, layout in (("alpha", alpha, "[N, T, L]"), ("tokens", tokens, "[N, T]"),
                              ("lengths", lengths, "[N]"), ("labels", labels, "[N, K]"),
                              ("boxes", boxes, "[N, K, 4]")):
    check_rank(name, array, layout)
  if np.shape(tokens) != np.shape(alpha)[:2] or not (
      len(lengths) == len(labels) == len(boxes) == len(alpha)):
    raise ValueError(f"alpha [N, T, L], tokens [N, T], lengths [N], labels [N, K] and boxes "
                     f"[N, K, 4] must agree on N and T, got shapes {np.shape(alpha)}, "
                     f"{np.shape(tokens)}, {np.shape(lengths)}, {np.shape(labels)}, "
                     f"{np.shape(boxes)}.")
  if np.shape(boxes)[1:] != (np.shape(labels)[1], 4):
    raise ValueError(f"boxes must have shape [N, K, 4] with K = {np.shape(labels)[1]} (labels), "
                     f"got {np.shape(boxes)}.")
  height, width = check_hw("image_hw", image_hw)
  n_cells = np.shape(alpha)[-1]
  grid = int(round(np.sqrt(n_cells)))
  if grid * grid != n_cells or grid > min(height, width):
    raise ValueError(f"alpha's last axis must be L = g^2 cells of a g x g grid with g <= "
                     f"min(image_hw) = {min(height, width)}, got L = {n_cells}.")
  rows, cols = cell_edges(height, grid), cell_edges(width, grid)
  for n in range(len(tokens)):
    for t in range(int(lengths[n])):
      label = digit_of.get(int(tokens[n][t]))
      if label is None or label not in labels[n]:
        continue
      y0, x0, y1, x1 = boxes[n][list(labels[n]).index(label)]
      yield n, t, np.outer(_cover(rows, y0, y1), _cover(cols, x0, x1))


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
  alpha = np.asarray(alpha, np.float64)
  mass, share = [], []
  for n, t, inside in _named_objects(alpha, tokens, lengths, labels, boxes, digit_of,
                                     image_hw):
    mass.append(np.sum(alpha[n, t] * inside.ravel()))
    share.append(inside.mean())
  return np.asarray(mass, np.float64), np.asarray(share, np.float64)


def phrase_attention_in_box(alpha: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
                            labels: np.ndarray, boxes: np.ndarray, *,
                            digit_of: Mapping[int, int], phrase_ids: Collection[int],
                            image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Attention over the phrase naming each object ("the digit three") inside its box.

  The phrase of a scored word (one ``attention_in_box`` scores) at step ``t`` is the run of
  steps ``t0..t`` where ``t0 <= t`` is the first step of the longest run of ``phrase_ids``
  words ("the", "digit") right before ``t``. Its mass is the phrase's in-box share of its
  attention, ``(1 / (t - t0 + 1)) sum_{s = t0..t} sum_i alpha_si [cell i in box]`` (each step's
  weights sum to 1), comparable with the same ``share`` as ``attention_in_box``.

  Args:
    alpha, tokens, lengths, labels, boxes, digit_of, image_hw: as ``attention_in_box``.
    phrase_ids: the ids of the words that may precede a naming word in its phrase.

  Returns:
    ``(mass, share)``, [M] float arrays, one entry per scored word, in ``attention_in_box``'s
    order (``share`` is the same).

  Raises:
    ValueError: as ``attention_in_box``.
  """
  alpha = np.asarray(alpha, np.float64)
  phrase_ids = frozenset(int(i) for i in phrase_ids)
  mass, share = [], []
  for n, t, inside in _named_objects(alpha, tokens, lengths, labels, boxes, digit_of,
                                     image_hw):
    start = t
    while start > 0 and int(tokens[n][start - 1]) in phrase_ids:
      start -= 1
    mass.append(np.mean(alpha[n, start:t + 1] @ inside.ravel()))
    share.append(inside.mean())
  return np.asarray(mass, np.float64), np.asarray(share, np.float64)
