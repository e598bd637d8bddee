"""Images generated from captions, one row per caption (Mansimov et al. 2016, Fig. 2-4)."""

import textwrap
from collections.abc import Sequence

import numpy as np

from vislang_jax.viz import figure
from vislang_jax.viz.grid import image_grid


def save_caption_rows(path: str, captions: Sequence[str], images: np.ndarray) -> None:
  """Writes a PNG with a row per caption: the caption above its images.

  Args:
    path: the PNG to write (its folder is created).
    captions: S strings; a newline starts a new line (e.g. one caption per model).
    images: [S, K, H, W] (grey) or [S, K, H, W, C] in [0, 1], K images per caption.
  """
  images = np.asarray(images)
  if images.ndim not in (4, 5) or len(images) != len(captions):
    raise ValueError(f"images must be [S, K, H, W(, C)] with S = len(captions) = "
                     f"{len(captions)}, got shape {images.shape}.")
  rows = len(captions)
  width = max(1.0 * images.shape[1] + 0.5, 4.5)  # room for a caption over a single image
  titles = ["\n".join(textwrap.fill(line, width=int(width * 14)) for line in text.split("\n"))
            for text in captions]
  lines = max(title.count("\n") + 1 for title in titles)
  fig, axes = figure.subplots(rows, 1, figsize=(width, (1.2 + 0.12 * lines) * rows))
  for r, title in enumerate(titles):
    ax = axes[r, 0]
    ax.imshow(image_grid(images[r][None]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
  figure.save(fig, path)
