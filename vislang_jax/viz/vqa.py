"""Visual question answering figures: the image, the question, the answer and where each
attention layer (SAN, Yang et al. 2016, Fig. 5) or memory hop (Sukhbaatar et al. 2015) looked."""

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from vislang_jax.viz import figure
from vislang_jax.viz.attention import attention_heatmap
from vislang_jax.viz.retrieval import hit_colours


def save_vqa_figure(path: str, images: np.ndarray, questions: Sequence[str],
                    predictions: Sequence[str], answers: Sequence[str],
                    attention: np.ndarray | None = None, *, step_name: str = "layer") -> None:
  """A row per question: the image framed green (answered right) or red, then its attention.

  Args:
    path: the PNG to write.
    images: [R, H, W, C] float in [0, 1], C = 1 (grey) or 3 (RGB).
    questions, predictions, answers: R texts each: the question, the model's answer, the
      true answer; under the image the question (wrapped), then "answer (true: ...)".
    attention: [R, K, L] weights of K attention layers / hops over L = g^2 row-major grid
      cells (``viz.attention.attention_heatmap``), drawn over the image in grey, one panel
      each titled "`step_name` k"; None for a model without attention (the image alone).
    step_name: what a panel of the attention is ("layer" for SAN, "hop" for memory networks).

  Raises:
    ValueError: naming the argument whose length or shape does not match the images.
  """
  images = figure.check_images("images", images, "[R, H, W, C]")
  rows = len(images)
  for name, texts in (("questions", questions), ("predictions", predictions),
                      ("answers", answers)):
    if len(texts) != rows:
      raise ValueError(f"{name} must hold one text per image ({rows}), got {len(texts)}.")
  steps = 0
  if attention is not None:
    attention = np.asarray(attention)
    if attention.ndim != 3 or attention.shape[0] != rows:
      raise ValueError(f"attention must have shape [R={rows}, K, L], got {attention.shape}.")
    steps = attention.shape[1]
    heat = attention_heatmap(attention, images.shape[1:3])
  correct = np.array([p == a for p, a in zip(predictions, answers)])
  frames = hit_colours(correct)
  cmap = plt.get_cmap("jet").with_extremes(bad=(0.5, 0.5, 0.5))
  fig, axes = figure.subplots(rows, 1 + steps, figsize=(2.2 + 1.6 * steps, 2.3 * rows))
  for r in range(rows):
    ax = axes[r, 0]
    figure.show_image(ax, images[r], frame=tuple(frames[r]))
    ax.set_xlabel(f"{textwrap.fill(questions[r], 32)}\n{predictions[r]} (true: {answers[r]})",
                  fontsize=7)
    grey = images[r].mean(-1, keepdims=True)
    for k in range(steps):
      ax = axes[r, 1 + k]
      figure.show_image(ax, grey)
      ax.imshow(heat[r, k], cmap=cmap, alpha=0.5, vmin=0.0, vmax=attention[r].max())
      ax.set_title(f"{step_name} {k + 1}", fontsize=7)
  figure.save(fig, path)
