"""Attention overlays: where a captioner looked as it emitted each word (Xu et al. 2015, Fig. 2)."""

import numpy as np

from vislang_jax.viz import figure


def save_attention_figure(path: str, images: np.ndarray, words: list[list[str]],
                          alpha: np.ndarray) -> None:
  """A row per image: the image, then its attention upsampled over it under each word.

  Args:
    path: the PNG to write.
    images: [R, H, W, C] float in [0, 1] (the first channel is shown, in grey).
    words: R lists of the words emitted, at most T each.
    alpha: [R, T, L] attention weights of the step that emitted each word; ``L = g^2``
      row-major cells, cell ``(r, c)`` covering the ``s x s`` pixels from ``(r s, c s)``,
      ``s = H // g``.

  One colour scale per row (0 to the row's largest weight), so words of a row compare.
  """
  rows, cols = len(images), 1 + max(len(w) for w in words)
  hw = images.shape[1:3]
  grid = int(round(np.sqrt(alpha.shape[-1])))
  stride = hw[0] // grid
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
      heat = np.kron(alpha[r, c - 1].reshape(grid, grid), np.ones((stride, stride)))
      ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=alpha[r].max(),
                extent=(-0.5, grid * stride - 0.5, grid * stride - 0.5, -0.5))
      ax.set_xlim(-0.5, hw[1] - 0.5)
      ax.set_ylim(hw[0] - 0.5, -0.5)
      ax.set_title(words[r][c - 1], fontsize=8)
  figure.save(fig, path)
