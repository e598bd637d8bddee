"""Alignment heat maps: which words each step of a generator attends to (alignDRAW, Sec. 3.2)."""

from collections.abc import Sequence

import numpy as np

from vislang_jax.viz import figure


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
