"""Where DRAW's read attention looked: glimpse boxes over the image, and what each glimpse saw.

A glimpse of ``N x N`` Gaussian filters centred at ``(gx, gy)`` with stride ``delta``
(Gregor et al. 2015, eq. 19-20) has its outer filter centres at ``g +- (N / 2 - 0.5) delta``;
the box drawn here adds half a stride on each side, a square of side ``N * delta`` around
``(gx, gy)``: the extent each filter covers one stride of.
"""

import numpy as np

from vislang_jax.checks import check_positive_int, check_rank
from vislang_jax.ops.filterbank import AttentionParams

BOX_COLOUR = np.array([1.0, 0.0, 0.0], np.float32)


def draw_glimpse_boxes(images: np.ndarray, read: AttentionParams, *, n: int) -> np.ndarray:
  """Outlines each glimpse's extent on its image.

  Args:
    images: [S, H, W, 1] or [S, H, W, 3] in [0, 1].
    read: attention parameters with each field [T, S] (1-based pixel coordinates, as
      `ops.filterbank.AttentionParams`).
    n: ``N``; a glimpse spans ``N * delta`` pixels around ``(gx, gy)``. Edges outside the
      image are drawn on its border.

  Returns:
    [S, T, H, W, 3]: RGB copies of each image, copy t with glimpse t's square in `BOX_COLOUR`.
  """
  check_rank("images", images, "[S, H, W, C]")
  check_positive_int("n", n)
  images = np.asarray(images, np.float32)
  rgb = np.broadcast_to(images, images.shape[:3] + (3,))
  gx, gy, delta = (np.asarray(v, np.float64) for v in (read.gx, read.gy, read.delta))
  if gx.ndim != 2 or gx.shape[1] != images.shape[0]:
    raise ValueError(f"read fields must have shape [T, S] with S = {images.shape[0]} images, "
                     f"got {gx.shape}.")
  steps, height, width = gx.shape[0], images.shape[1], images.shape[2]
  out = np.repeat(rgb[:, None], steps, axis=1)
  half = n * delta / 2
  for s in range(images.shape[0]):
    for t in range(steps):
      # 1-based centres -> 0-based pixel indices.
      top, bottom = (np.clip(np.rint(gy[t, s] - 1 + sign * half[t, s]), 0, height - 1).astype(int)
                     for sign in (-1, 1))
      left, right = (np.clip(np.rint(gx[t, s] - 1 + sign * half[t, s]), 0, width - 1).astype(int)
                     for sign in (-1, 1))
      frame = out[s, t]
      frame[[top, bottom], left:right + 1] = BOX_COLOUR
      frame[top:bottom + 1, [left, right]] = BOX_COLOUR
  return out


def enlarge(patches: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of [..., N, N, C] patches to [..., height, width, C].

  Output row ``i`` shows patch row ``floor(i * N / height)`` (likewise for columns), so
  each patch pixel fills a block of ``floor`` or ``ceil`` of ``height / N`` rows.
  """
  rows = np.arange(height) * patches.shape[-3] // height
  cols = np.arange(width) * patches.shape[-2] // width
  return patches[..., rows, :, :][..., cols, :]


def glimpse_grid(images: np.ndarray, read: AttentionParams, glimpses: np.ndarray, *,
                 n: int) -> np.ndarray:
  """Two grid rows per image: its glimpse boxes over time, and below, what each glimpse saw.

  Args:
    images: [S, H, W, C] in [0, 1], C = 1 or 3.
    read: attention parameters with each field [T, S].
    glimpses: [T, S, N, N, C], the reads ``r_t = gamma F_Y x F_X^T`` (eq. 27); shown as
      ``r_t / gamma``, so a glimpse looks as bright as the image under it.
    n: ``N``.

  Returns:
    [2 S, T, H, W, 3] for `viz.save_image_grid`: rows ``2 s`` are `draw_glimpse_boxes`,
    rows ``2 s + 1`` the glimpses `enlarge`d to the image size, clipped to [0, 1].
  """
  check_rank("glimpses", glimpses, "[T, S, N, N, C]")
  boxes = draw_glimpse_boxes(images, read, n=n)  # [S, T, H, W, 3]
  gamma = np.asarray(read.gamma, np.float32)[..., None, None, None]
  patches = np.clip(np.asarray(glimpses, np.float32) / gamma, 0.0, 1.0)
  patches = enlarge(np.swapaxes(patches, 0, 1), *boxes.shape[2:4])  # [S, T, H, W, C]
  patches = np.broadcast_to(patches, boxes.shape)
  return np.stack([boxes, patches], axis=1).reshape((-1,) + boxes.shape[1:])
