"""Word alignments: which words each step of a generator attends to (alignDRAW, Sec. 3.2), and
which image region each word of a sentence is grounded in (DVSA, Karpathy & Fei-Fei 2015, Fig. 5).
"""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker
from matplotlib.patches import Rectangle

from vislang_jax.checks import check_rank
from vislang_jax.viz import figure

REGION_COLOURS = tuple(plt.get_cmap("tab10").colors)
UNALIGNED_COLOUR = (0.5, 0.5, 0.5)


def save_alignment_maps(path: str, words: Sequence[Sequence[str]],
                        alignment: np.ndarray) -> None:
  """Writes a PNG with one heat map per caption: steps (rows) x the caption's words.

  Args:
    path: the PNG to write (its folder is created).
    words: S captions as their tokens, e.g. ``["the", "digit", ..., "<eos>"]``; caption s
      has ``len(words[s]) <= Ty`` tokens and only those columns are drawn.
    alignment: [S, T, Ty] float, ``alpha_t`` over each caption's tokens at each step t.
  """
  alignment = np.asarray(alignment)
  if alignment.ndim != 3 or len(alignment) != len(words) or any(
      len(w) > alignment.shape[2] for w in words):
    raise ValueError(f"alignment must be [S, T, Ty] with S = len(words) = {len(words)} and "
                     f"Ty >= the longest caption ({max(map(len, words), default=0)} tokens), "
                     f"got shape {alignment.shape}.")
  fig, axes = figure.subplots(1, len(words), figsize=(2.6 * len(words), 3.0))
  for s, tokens in enumerate(words):
    ax = axes[0, s]
    ax.imshow(alignment[s, :, :len(tokens)], cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(len(tokens)), list(tokens), rotation=90, fontsize=7)
    ax.set_ylabel("step t", fontsize=7)
  figure.save(fig, path)


def region_colours(regions: np.ndarray) -> dict[int, tuple[float, float, float]]:
  """The colour of each region a sentence's words align to.

  Args:
    regions: [N] int, each word's region (-1 at padding or an unaligned word).

  Returns:
    ``{region: RGB}`` for the used regions in the order the sentence first uses them, taking
    ``REGION_COLOURS`` in turn (distinct for up to 10 regions, then cycling), so neighbouring
    snippets get different colours whatever the region ids.
  """
  used = [int(r) for r in dict.fromkeys(np.asarray(regions).tolist()) if r >= 0]
  return {r: REGION_COLOURS[i % len(REGION_COLOURS)] for i, r in enumerate(used)}


def _word_lines(words: Sequence[str], colours: Sequence[tuple[float, float, float]], *,
                width: int) -> VPacker:
  """The words, each in its colour, in lines of at most `width` characters (a longer word
  gets a line of its own)."""
  lines, line, used = [], [], 0
  for word, colour in zip(words, colours):
    if line and used + 1 + len(word) > width:
      lines.append(HPacker(children=line, pad=0, sep=3))
      line, used = [], 0
    line.append(TextArea(word, textprops={"color": colour, "fontsize": 8}))
    used += len(word) + bool(used)
  lines.append(HPacker(children=line, pad=0, sep=3))
  return VPacker(children=lines, pad=0, sep=2, align="left")


def save_region_alignment(path: str, images: np.ndarray, boxes: np.ndarray,
                          region_mask: np.ndarray, words: Sequence[Sequence[str]],
                          regions: np.ndarray) -> None:
  """Writes a PNG with a column per example: the image with the boxes its words align to, and
  the sentence below with each word coloured like its box (DVSA, Fig. 5; the alignment of
  Sec. 3.1.4, e.g. from ``ops.chain_mrf.align_words``).

  A box covering the whole image (``x0, y0 <= 0``, ``x1 >= W``, ``y1 >= H``; DVSA's region 0)
  is drawn as the image's frame. Words aligned to no region (-1) are ``UNALIGNED_COLOUR``.

  Args:
    path: the PNG to write (its folder is created).
    images: [S, H, W, C] float in [0, 1], C = 1 (grey) or 3.
    boxes: [S, R, 4] float ``(x0, y0, x1, y1)`` in pixels, ``x1``, ``y1`` exclusive (as
      ``ops.sampling.box_theta``).
    region_mask: [S, R] bool, True at the real regions.
    words: S sentences as their words, ``len(words[s]) <= N``.
    regions: [S, N] int, word ``t``'s region in ``[0, R)`` (a real one) or -1; -1 at every
      ``t >= len(words[s])`` (padding).
  """
  images = figure.check_images("images", images, "[S, H, W, C]")
  num, height, width = images.shape[:3]
  boxes, region_mask, regions = map(np.asarray, (boxes, region_mask, regions))
  check_rank("boxes", boxes, "[S, R, 4]")
  if boxes.shape[0] != num or boxes.shape[2] != 4:
    raise ValueError(f"boxes must have shape [S, R, 4] with S = {num} images, got "
                     f"{boxes.shape}.")
  if region_mask.shape != boxes.shape[:2] or region_mask.dtype != bool:
    raise ValueError(f"region_mask must be a bool array [S, R] = {boxes.shape[:2]}, got "
                     f"{region_mask.dtype} {region_mask.shape}.")
  if regions.ndim != 2 or regions.shape[0] != num or not np.issubdtype(regions.dtype,
                                                                       np.integer):
    raise ValueError(f"regions must be an int array [S, N] with S = {num} images, got "
                     f"{regions.dtype} {regions.shape}.")
  lengths = [len(w) for w in words]
  if len(words) != num or max(lengths, default=0) > regions.shape[1]:
    raise ValueError(f"words must be S = {num} sentences of at most N = {regions.shape[1]} "
                     f"words, got lengths {lengths}.")
  padding = np.arange(regions.shape[1])[None, :] >= np.array(lengths)[:, None]
  real = np.take_along_axis(region_mask, np.clip(regions, 0, boxes.shape[1] - 1), axis=1)
  bad = (padding & (regions != -1)) | (~padding & (regions != -1) & (
      (regions < 0) | (regions >= boxes.shape[1]) | ~real))
  if bad.any():
    s, t = np.argwhere(bad)[0]
    raise ValueError(f"regions must be -1 at padding (t >= len(words[s])) and -1 or a real "
                     f"region in [0, R) = [0, {boxes.shape[1]}) elsewhere, got "
                     f"regions[{s}, {t}] = {regions[s, t]}.")
  fig, axes = figure.subplots(1, num, figsize=(2.4 * num, 3.2))
  for s in range(num):
    colours = region_colours(regions[s])
    frame = None
    for r, colour in colours.items():
      x0, y0, x1, y1 = boxes[s, r]
      if x0 <= 0 and y0 <= 0 and x1 >= width and y1 >= height:
        frame = colour
      else:  # pixel i spans [i - 0.5, i + 0.5] on imshow's axes
        axes[0, s].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       edgecolor=colour, linewidth=2))
    figure.show_image(axes[0, s], images[s], frame=frame)
    if words[s]:  # the sentence hangs below the image
      word_colours = [colours.get(int(r), UNALIGNED_COLOUR) for r in regions[s, :lengths[s]]]
      axes[0, s].add_artist(AnchoredOffsetbox(
          loc="upper left", child=_word_lines(words[s], word_colours, width=26), frameon=False,
          pad=0, borderpad=0, bbox_to_anchor=(0.0, -0.04), bbox_transform=axes[0, s].transAxes))
  figure.save(fig, path)
