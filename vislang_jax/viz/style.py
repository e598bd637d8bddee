"""Neural style transfer's pictures (Gatys et al. 2015, Fig. 2-3): the result beside its
content and style images, one result per content/style ratio, and the loss curves."""

from collections.abc import Sequence

import numpy as np

from vislang_jax.viz import figure


def save_style_result(path: str, content: np.ndarray, style: np.ndarray,
                      result: np.ndarray) -> None:
  """Writes content | style | result, each [H, W, C] in [0, 1] (C = 1 or 3; sizes may differ)."""
  panels = [figure.check_images(name, image, "[H, W, C]") for name, image in
            (("content", content), ("style", style), ("result", result))]
  fig, axes = figure.subplots(1, 3, figsize=(9.0, 3.4))
  for ax, image, title in zip(axes[0], panels, ("content", "style", "result")):
    figure.show_image(ax, image)
    ax.set_title(title, fontsize=9)
  figure.save(fig, path)


def save_ratio_grid(path: str, results: Sequence[np.ndarray], ratios: Sequence[float]) -> None:
  """Writes one result per content/style ratio alpha / beta, titled with it (Fig. 3's columns).

  Args:
    results: R images [H, W, C] in [0, 1].
    ratios: R floats.
  """
  if len(results) != len(ratios) or not len(results):
    raise ValueError(f"results and ratios must be non-empty and of one length, got "
                     f"{len(results)} and {len(ratios)}.")
  fig, axes = figure.subplots(1, len(results), figsize=(3.0 * len(results), 3.4))
  for ax, image, ratio in zip(axes[0], results, ratios):
    figure.show_image(ax, figure.check_images("results entries", image, "[H, W, C]"))
    ax.set_title(f"alpha / beta = {ratio:g}", fontsize=9)
  figure.save(fig, path)


def save_loss_curves(path: str, curves: Sequence[np.ndarray], ratios: Sequence[float]) -> None:
  """Writes each run's total loss per step (log scale), one line per ratio."""
  if len(curves) != len(ratios) or not len(curves):
    raise ValueError(f"curves and ratios must be non-empty and of one length, got "
                     f"{len(curves)} and {len(ratios)}.")
  fig, axes = figure.subplots(1, 1, figsize=(5.0, 3.4))
  ax = axes[0, 0]
  for curve, ratio in zip(curves, ratios):
    ax.plot(np.arange(1, len(curve) + 1), np.asarray(curve), label=f"alpha / beta = {ratio:g}")
  ax.set_yscale("log")
  ax.set_xlabel("step", fontsize=8)
  ax.set_ylabel("alpha L_content + beta L_style", fontsize=8)
  ax.legend(fontsize=7)
  figure.save(fig, path)
