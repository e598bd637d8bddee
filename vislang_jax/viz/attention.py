"""Attention overlays: where a captioner looked as it emitted each word (Xu et al. 2015, Fig. 2)."""

import matplotlib.pyplot as plt
import numpy as np

from vislang_jax.metrics.grounding import cell_edges
from vislang_jax.viz import figure


def attention_heatmap(alpha: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
  """[..., L] attention weights -> [..., H, W]: each pixel the weight of the cell covering it.

  Cells are those ``metrics.grounding`` scores (``cell_edges``: an ``g x g`` grid, ``L = g^2``
  row-major, of stride ``H // g`` by ``W // g`` from pixel 0); the pixels no cell covers (the
  border a pooling encoder drops) are NaN.
  """
  alpha = np.asarray(alpha)
  grid = int(round(np.sqrt(alpha.shape[-1])))
  if grid * grid != alpha.shape[-1]:
    raise ValueError(f"alpha's last axis must be L = g^2 cells, got L = {alpha.shape[-1]}.")
  rows, cols = cell_edges(image_hw[0], grid), cell_edges(image_hw[1], grid)
  cells = alpha.reshape(alpha.shape[:-1] + (grid, grid))
  heat = np.full(alpha.shape[:-1] + tuple(image_hw), np.nan)
  heat[..., :rows[-1], :cols[-1]] = np.repeat(np.repeat(cells, np.diff(rows), axis=-2),
                                              np.diff(cols), axis=-1)
  return heat


def save_attention_figure(path: str, images: np.ndarray, words: list[list[str]],
                          alpha: np.ndarray) -> None:
  """A row per image: the image, then the attention over it under each word.

  Args:
    path: the PNG to write.
    images: [R, H, W, C] float in [0, 1] (the first channel is shown, in grey).
    words: R lists of the words emitted, at most T each.
    alpha: [R, T, L] attention weights of the step that emitted each word (``L = g^2``
      row-major cells, drawn where ``attention_heatmap`` puts them: the cells
      ``metrics.grounding`` scores; a border no cell covers is tinted grey).

  One colour scale per row (0 to the row's largest weight), so words of a row compare.
  """
  rows, cols = len(images), 1 + max(len(w) for w in words)
  hw = images.shape[1:3]
  heat = attention_heatmap(alpha, hw)
  cmap = plt.get_cmap("jet").with_extremes(bad=(0.5, 0.5, 0.5))
  fig, axes = figure.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows))
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      ax.axis("off")
      if c > len(words[r]):
        continue
      ax.imshow(images[r, ..., 0], cmap="gray", vmin=0, vmax=1)
      if c == 0:
        continue
      ax.imshow(heat[r, c - 1], cmap=cmap, alpha=0.5, vmin=0.0, vmax=alpha[r].max())
      ax.set_title(words[r][c - 1], fontsize=8)
  figure.save(fig, path)


def save_semantic_attention_figure(path: str, images: np.ndarray, words: list[list[str]],
                                   attributes: list[list[str]], alpha: np.ndarray,
                                   beta: np.ndarray) -> None:
  """A row per image: the image, then the input attention ``alpha`` and the output attention
  ``beta`` over its detected attributes at each generated word (You et al. 2016, Fig. 5).

  Args:
    path: the PNG to write.
    images: [R, H, W, C] float in [0, 1] (the first channel is shown, in grey).
    words: R lists of the words emitted, at most T each (the heat maps' rows).
    attributes: R lists of K attribute words (the columns), most confident first.
    alpha, beta: [R, T, K] attention weights of the step that emitted each word.
  """
  alpha, beta = np.asarray(alpha), np.asarray(beta)
  if alpha.shape != beta.shape or alpha.ndim != 3 or len(alpha) != len(images):
    raise ValueError(f"alpha and beta must share one shape [R, T, K] with R = len(images) = "
                     f"{len(images)}, got {alpha.shape} and {beta.shape}.")
  rows = len(images)
  fig, axes = figure.subplots(rows, 3, figsize=(7.5, 2.2 * rows))
  for r in range(rows):
    axes[r, 0].imshow(images[r, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 0].axis("off")
    for ax, weights, name in ((axes[r, 1], alpha, "input attention"),
                              (axes[r, 2], beta, "output attention")):
      steps = len(words[r])
      ax.imshow(weights[r, :steps], cmap="viridis", vmin=0, vmax=1, aspect="auto")
      ax.set_xticks(range(len(attributes[r])), attributes[r], rotation=90, fontsize=7)
      ax.set_yticks(range(steps), words[r], fontsize=7)
      ax.set_title(name, fontsize=8)
  figure.save(fig, path)
