"""The one matplotlib set-up: a headless backend and a save that makes the folder."""

import os

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def subplots(rows: int, cols: int, *, figsize: tuple[float, float]):
  """`plt.subplots` with a 2-D array of axes whatever `rows` and `cols` are."""
  return plt.subplots(rows, cols, figsize=figsize, squeeze=False)


def save(fig, path: str, *, dpi: int = 80) -> None:
  """Lays out `fig`, writes it to `path` (creating its folder) and closes it."""
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
