"""Figures of the GAN experiment: caption interpolations and style transfer (Reed et al. 2016,
Fig. 5, 6, 8), LAPGAN's coarse-to-fine levels (Denton et al. 2015, Fig. 3) and a recurrent
generator's canvas over time (GRAN, Im et al. 2016; DRAW alike).

Images are float in [0, 1] with C = 1 (grey) or 3 (RGB) last; each cell is drawn with
``figure.show_image`` (values outside [0, 1] clipped), so a cell's pixels are the input's.
"""

import os
import textwrap
from collections.abc import Sequence

import numpy as np

from vislang_jax.viz import figure
from vislang_jax.viz.glimpses import enlarge
from vislang_jax.viz.grid import save_gif

CELL = 1.0           # inches per image cell
CAPTION_WIDTH = 22   # characters per line of a caption beside or above a cell


def _check_cells(name: str, images: np.ndarray, layout: str) -> np.ndarray:
  """`figure.check_images`, and no empty axis (a figure needs at least one cell)."""
  images = figure.check_images(name, images, layout)
  if 0 in images.shape:
    raise ValueError(f"{name} must have shape {layout} with no empty axis, got {images.shape}.")
  return images


def _check_texts(name: str, texts: Sequence[str], count: int, what: str) -> None:
  """A ValueError unless `texts` is a sequence (not one str) of `count` strings."""
  if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
    raise ValueError(f"{name} must be a sequence of strings, got {texts!r}.")
  if len(texts) != count:
    raise ValueError(f"{name} must hold one caption per {what} ({count}), got {len(texts)}.")


def save_interpolation_rows(path: str, left_captions: Sequence[str],
                            right_captions: Sequence[str], images: np.ndarray) -> None:
  """GAN-INT's interpolations between two captions (Reed et al. 2016, Fig. 5 and 8).

  Row r holds the generator's images for the text embeddings ``beta phi(t_left) +
  (1 - beta) phi(t_right)`` over S steps of beta from 1 to 0 with one noise ``z``:
  left caption r is written at the row's left end, right caption r at its right end.

  Args:
    path: the PNG to write (its folder is created).
    left_captions, right_captions: R strings each.
    images: [R, S, H, W, C] float in [0, 1], S >= 2 (the two ends and the steps between).

  Raises:
    ValueError: naming `images` (rank, channels, S < 2) or a caption list of the wrong length.
  """
  images = _check_cells("images", images, "[R, S, H, W, C]")
  rows, steps = images.shape[:2]
  if steps < 2:
    raise ValueError(f"images must have S >= 2 interpolation steps (its two ends), "
                     f"got shape {images.shape}.")
  _check_texts("left_captions", left_captions, rows, "row of images")
  _check_texts("right_captions", right_captions, rows, "row of images")
  fig, axes = figure.subplots(rows, steps, figsize=(CELL * steps + 3.4, CELL * rows + 0.2))
  for r in range(rows):
    for s in range(steps):
      figure.show_image(axes[r, s], images[r, s])
    axes[r, 0].text(-0.1, 0.5, textwrap.fill(left_captions[r], CAPTION_WIDTH), fontsize=7,
                    ha="right", va="center", transform=axes[r, 0].transAxes)
    axes[r, -1].text(1.1, 0.5, textwrap.fill(right_captions[r], CAPTION_WIDTH), fontsize=7,
                     ha="left", va="center", transform=axes[r, -1].transAxes)
  figure.save(fig, path)


def save_style_transfer(path: str, queries: np.ndarray, captions: Sequence[str],
                        images: np.ndarray) -> None:
  """Style transfer with the style encoder (Reed et al. 2016, Sec. 4.4, Fig. 6).

  Column 0 shows each real query image (titled "query"); column 1 + s, titled with caption s
  (wrapped), shows in row r the generator's ``G(S(query_r), phi(caption_s))``: query r's
  style (pose, background) with caption s's content.

  Args:
    path: the PNG to write (its folder is created).
    queries: [R, H, W, C] float in [0, 1].
    captions: S strings.
    images: [R, S, H, W, C] float in [0, 1], same H, W, C as `queries`.

  Raises:
    ValueError: naming the argument whose rank, length or shape does not match.
  """
  queries = _check_cells("queries", queries, "[R, H, W, C]")
  images = _check_cells("images", images, "[R, S, H, W, C]")
  rows, steps = images.shape[:2]
  if (queries.shape[0],) + queries.shape[1:] != (rows,) + images.shape[2:]:
    raise ValueError(f"queries must have shape [R, H, W, C] = {(rows,) + images.shape[2:]} "
                     f"to match images {images.shape}, got {queries.shape}.")
  _check_texts("captions", captions, steps, "column of images")
  fig, axes = figure.subplots(rows, 1 + steps,
                              figsize=(1.4 * (1 + steps), CELL * rows + 0.6))
  axes[0, 0].set_title("query", fontsize=7)
  for s, text in enumerate(captions):
    axes[0, 1 + s].set_title(textwrap.fill(text, CAPTION_WIDTH - 4), fontsize=7)
  for r in range(rows):
    figure.show_image(axes[r, 0], queries[r])
    for s in range(steps):
      figure.show_image(axes[r, 1 + s], images[r, s])
  figure.save(fig, path)


def save_pyramid_levels(path: str, levels: Sequence[np.ndarray]) -> None:
  """LAPGAN's coarse-to-fine sampling chain (Denton et al. 2015, Fig. 3).

  One row per sample, one column per level, each level enlarged to the finest (last) level's
  size by nearest neighbour (``glimpses.enlarge``), so a coarse pixel is a constant block of
  ``H / H_k`` by ``W / W_k`` pixels; column k is titled with level k's size, "H_kxW_k".
  Band-pass images ``h_k`` are signed: pass ``h_k + 0.5`` to see them.

  Args:
    path: the PNG to write (its folder is created).
    levels: K >= 1 arrays, coarse to fine, level k [N, H_k, W_k, C] float in [0, 1], with one
      N and one C, and H_k, W_k dividing the last level's H, W.

  Raises:
    ValueError: naming `levels` (empty) or `levels[k]` (rank, N, C, or a size that does not
      divide the finest one).
  """
  if isinstance(levels, np.ndarray):
    raise ValueError(f"levels must be a sequence of [N, H_k, W_k, C] arrays, one per level, "
                     f"got one array of shape {levels.shape}.")
  if len(levels) == 0:
    raise ValueError("levels must hold at least one [N, H_k, W_k, C] array, got none.")
  levels = [_check_cells(f"levels[{k}]", level, "[N, H_k, W_k, C]")
            for k, level in enumerate(levels)]
  count, height, width, channels = levels[-1].shape
  for k, level in enumerate(levels):
    n, h, w, c = level.shape
    if (n, c) != (count, channels):
      raise ValueError(f"levels[{k}] must have N = {count} samples and C = {channels} "
                       f"channels as the finest level, got shape {level.shape}.")
    if height % h or width % w:
      raise ValueError(f"levels[{k}]'s size must divide the finest level's {height}x{width}, "
                       f"got {h}x{w}.")
  fig, axes = figure.subplots(count, len(levels),
                              figsize=(CELL * len(levels) + 0.2, CELL * count + 0.4))
  for k, level in enumerate(levels):
    axes[0, k].set_title(f"{level.shape[1]}x{level.shape[2]}", fontsize=7)
    big = enlarge(level, height, width)
    for n in range(count):
      figure.show_image(axes[n, k], big[n])
  figure.save(fig, path)


def save_canvas_sequence(path: str, canvases: np.ndarray, *, gif: bool = True) -> None:
  """A recurrent generator's canvas over time (GRAN, Im et al. 2016, Fig. 5; DRAW's alike).

  One row per sample, one column per step, titled "t = 1" ... "t = T".

  Args:
    path: the PNG to write (its folder is created).
    canvases: [T, N, H, W, C] float in [0, 1]: the image the model would output after each
      step (GRAN's ``sigmoid(C_t)``).
    gif: also write the canvases as an animation (``grid.save_gif``, the N samples side by
      side, one frame per step) at `path` with its extension replaced by ".gif".

  Raises:
    ValueError: naming `canvases` (rank, channels or an empty axis).
  """
  canvases = _check_cells("canvases", canvases, "[T, N, H, W, C]")
  steps, count = canvases.shape[:2]
  fig, axes = figure.subplots(count, steps, figsize=(CELL * steps + 0.2, CELL * count + 0.4))
  for t in range(steps):
    axes[0, t].set_title(f"t = {t + 1}", fontsize=7)
    for n in range(count):
      figure.show_image(axes[n, t], canvases[t, n])
  figure.save(fig, path)
  if gif:
    save_gif(os.path.splitext(path)[0] + ".gif", canvases[:, None])
