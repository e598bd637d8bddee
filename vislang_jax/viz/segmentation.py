"""Semantic segmentation's pictures: each image beside its true and predicted label maps
(Long et al. 2015, Fig. 6; Noh et al. 2015, Fig. 6)."""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from vislang_jax.viz import figure

IGNORE_COLOUR = (1.0, 1.0, 1.0)  # VOC's 255 (object borders, "void")


def label_colours(num_classes: int) -> np.ndarray:
  """[num_classes, 3] RGB in [0, 1]: black for class 0 (background), tab20's colours after."""
  palette = plt.get_cmap("tab20").colors
  return np.array([(0.0, 0.0, 0.0)] + [palette[(c - 1) % len(palette)]
                                       for c in range(1, num_classes)], np.float32)


def colour_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[..., H, W] int class ids -> [..., H, W, 3] RGB; ids outside [0, num_classes) white."""
  labels = np.asarray(labels)
  valid = (labels >= 0) & (labels < num_classes)
  rgb = label_colours(num_classes)[np.where(valid, labels, 0)]
  rgb[~valid] = IGNORE_COLOUR
  return rgb


def save_segmentation_figure(path: str, images: np.ndarray, truth: np.ndarray,
                             predictions: np.ndarray, *, class_names: Sequence[str]) -> None:
  """A row per image: the image, the true labels, the predicted labels, and a legend of the
  classes either holds.

  Args:
    path: the PNG to write.
    images: [R, H, W, C] in [0, 1] (C = 1 or 3).
    truth, predictions: [R, H, W] int class ids (truth may hold an ignore label, drawn white).
    class_names: one name per class id.
  """
  images = figure.check_images("images", images, "[R, H, W, C]")
  truth, predictions = np.asarray(truth), np.asarray(predictions)
  if truth.shape != images.shape[:3] or predictions.shape != images.shape[:3]:
    raise ValueError(f"truth and predictions must have shape [R, H, W] = {images.shape[:3]}, "
                     f"got {truth.shape} and {predictions.shape}.")
  num_classes = len(class_names)
  colours = label_colours(num_classes)
  fig, axes = figure.subplots(len(images), 3, figsize=(6.6, 2.2 * len(images)))
  for r in range(len(images)):
    figure.show_image(axes[r, 0], images[r])
    figure.show_image(axes[r, 1], colour_labels(truth[r], num_classes))
    figure.show_image(axes[r, 2], colour_labels(predictions[r], num_classes))
    present = sorted({int(c) for c in np.unique(np.concatenate([truth[r].ravel(),
                                                                predictions[r].ravel()]))
                      if 0 <= c < num_classes})
    axes[r, 2].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in present],
                      labels=[class_names[c] for c in present], fontsize=6,
                      loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
  for ax, title in zip(axes[0], ("image", "truth", "prediction")):
    ax.set_title(title, fontsize=8)
  figure.save(fig, path)
