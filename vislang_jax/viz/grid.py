"""Image grids and canvas-over-time animations written as PNG / GIF."""

import math
import os

import numpy as np
from PIL import Image

from vislang_jax.checks import check_positive_int


def _to_uint8(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images, np.float32)
  return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def grid_shape(count: int) -> tuple[int, int]:
  """(rows, columns) of a grid of `count` cells: rows the largest divisor of `count` that is
  at most its square root (as square as `count` allows; a prime gives one row)."""
  check_positive_int("count", count)
  rows = max(d for d in range(1, math.isqrt(count) + 1) if count % d == 0)
  return rows, count // rows


def image_grid(images: np.ndarray, *, pad: int = 1, pad_value: float = 0.5
               ) -> np.ndarray:
  """Tiles `images` [R, C, H, W(, ch)] in [0, 1] into one [R*(H+pad)+pad, ...] image.

  Rows of the grid are the first axis, columns the second. Grayscale images
  give a [h, w] array, colour ones [h, w, ch].
  """
  images = np.asarray(images, np.float32)
  if images.ndim == 4:
    images = images[..., None]
  if images.ndim != 5:
    raise ValueError("images must be [rows, cols, H, W] or [rows, cols, H, W, C]; "
                     f"got shape {images.shape}.")
  rows, cols, h, w, ch = images.shape
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, ch), pad_value,
                 np.float32)
  for r in range(rows):
    for c in range(cols):
      top, left = pad + r * (h + pad), pad + c * (w + pad)
      grid[top:top + h, left:left + w] = images[r, c]
  return grid[..., 0] if ch == 1 else grid


def save_image_grid(path: str, images: np.ndarray, *, scale: int = 2,
                    pad: int = 1) -> None:
  """Writes `image_grid(images)` to the PNG `path`, upscaled `scale` times."""
  grid = _to_uint8(image_grid(images, pad=pad))
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  img = Image.fromarray(grid)
  img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def save_gif(path: str, frames: np.ndarray, *, scale: int = 2,
             duration_ms: int = 100) -> None:
  """Writes `frames` [T, rows, cols, H, W(, ch)] in [0, 1] as an animated GIF."""
  images = [Image.fromarray(_to_uint8(image_grid(f))) for f in frames]
  images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            for im in images]
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  images[0].save(path, save_all=True, append_images=images[1:],
                 duration=duration_ms, loop=0)
