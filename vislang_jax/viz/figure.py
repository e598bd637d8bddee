"""The one matplotlib set-up: a headless backend and a save that makes the folder."""

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vislang_jax.checks import check_rank  # pylint: disable=g-import-not-at-top


def subplots(rows: int, cols: int, *, figsize: tuple[float, float]):
  """`plt.subplots` with a 2-D array of axes whatever `rows` and `cols` are."""
  return plt.subplots(rows, cols, figsize=figsize, squeeze=False)


def save(fig, path: str, *, dpi: int = 80) -> None:
  """Lays out `fig`, writes it to `path` (creating its folder) and closes it."""
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def show_image(ax, image: np.ndarray, *, frame: tuple[float, float, float] | None = None,
               frame_width: float = 3.0) -> None:
  """Draws one [H, W, C] image in [0, 1] on `ax` without ticks (C = 1 in grey, C = 3 RGB).

  With `frame`, the axes' border is drawn in that colour: the image's own outline.
  """
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  if image.shape[-1] == 1:
    ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
  else:
    ax.imshow(image)
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(frame is not None)
    if frame is not None:
      spine.set_edgecolor(frame)
      spine.set_linewidth(frame_width)


def check_images(name: str, images: np.ndarray, layout: str) -> np.ndarray:
  """`images` as NumPy, or a ValueError unless it has `layout`'s axes with C = 1 or 3 last."""
  images = np.asarray(images)
  check_rank(name, images, layout)
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"{name} must have shape {layout} with C = 1 or 3, got {images.shape}.")
  return images
