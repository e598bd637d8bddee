"""Semantic segmentation metrics: the confusion matrix and FCN's four scores.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
Sec. 5: with n_ij the number of pixels of class i predicted to be class j, t_i = sum_j n_ij
the pixels of class i and n_cl the number of classes,
  pixel accuracy           sum_i n_ii / sum_i t_i
  mean accuracy            (1 / n_cl) sum_i n_ii / t_i
  mean IU                  (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
  frequency weighted IU    (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)
As in the authors' scoring code (fcn.berkeleyvision.org, `score.py`: NumPy `nanmean`), a mean
runs over the classes where it is defined: mean IU over the classes present in the labels or
the predictions (others have 0 / 0), mean accuracy over the classes present in the labels.
A class that is predicted but absent from the labels has IU 0 and counts in the mean IU.

`confusion_matrix` is jittable and additive: the sum of the matrices of batches is the matrix
of their union, so evaluations accumulate it over batches (int32 counts: up to 2^31 - 1
pixels per cell) and score once at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_int, concrete


def confusion_matrix(predictions: jax.Array, labels: jax.Array, *, num_classes: int,
                     ignore_index: int = 255) -> jax.Array:
  """Counts of (label, prediction) pixel pairs; pixels labelled `ignore_index` count nowhere.

  Args:
    predictions: `[...]` int predicted classes in [0, num_classes) (the argmax of the scores).
    labels: `[...]` int (same shape) true classes in [0, num_classes), or `ignore_index`
      (VOC's 255: object borders and "void").
    num_classes: C.
    ignore_index: the label of pixels left out of every count.

  Returns:
    int32 `[C, C]`: entry [i, j] is n_ij, the pixels of class i predicted as j (rows are
    labels, columns predictions).

  Raises:
    ValueError: for different shapes, non-integer arrays or, outside `jax.jit`, classes out
      of range (traced values are not checked: out-of-range pixels then count nowhere).
  """
  num_classes = check_int("num_classes", num_classes, low=1)
  check_int("ignore_index", ignore_index)
  if np.shape(predictions) != np.shape(labels):
    raise ValueError(f"predictions and labels must share one shape, got {np.shape(predictions)} "
                     f"and {np.shape(labels)}.")
  for name, array in (("predictions", predictions), ("labels", labels)):
    dtype = jnp.asarray(array).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
      raise ValueError(f"{name} must hold integer classes, got dtype {dtype}.")
  _check_range("predictions", predictions, num_classes, None)
  _check_range("labels", labels, num_classes, ignore_index)
  predictions = jnp.asarray(predictions, jnp.int32).ravel()
  labels = jnp.asarray(labels, jnp.int32).ravel()
  valid = ((labels >= 0) & (labels < num_classes) & (predictions >= 0)
           & (predictions < num_classes))
  cells = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(cells, weights=valid.astype(jnp.int32), length=num_classes**2)
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def _check_range(name: str, array: jax.Array, num_classes: int, ignore_index: int | None) -> None:
  """Concrete classes lie in [0, num_classes) or equal `ignore_index` (when not None)."""
  values = concrete(array)
  if values is None:
    return
  bad = (values < 0) | (values >= num_classes)
  if ignore_index is not None:
    bad &= values != ignore_index
  if bad.any():
    allowed = f" or {ignore_index}" if ignore_index is not None else ""
    raise ValueError(f"{name} must hold classes in [0, {num_classes}){allowed}, got "
                     f"{values[bad].ravel()[0]}.")


def segmentation_metrics(confusion: jax.Array) -> dict[str, jax.Array]:
  """FCN's scores (Long et al. 2015, Sec. 5; module docstring) of a confusion matrix.

  Args:
    confusion: `[C, C]` counts, rows labels, columns predictions (`confusion_matrix`).

  Returns:
    float32 scalars "pixel_accuracy", "mean_accuracy" (over classes present in the labels),
    "mean_iou" (over classes present in the labels or the predictions),
    "frequency_weighted_iou", and "iou_per_class" `[C]` (NaN for a class absent from both).
    With no counted pixel at all every score is NaN. Jittable.

  Raises:
    ValueError: for a `confusion` that is not square.
  """
  shape = np.shape(confusion)
  if len(shape) != 2 or shape[0] != shape[1]:
    raise ValueError(f"confusion must have shape [C, C], got {shape}.")
  confusion = jnp.asarray(confusion, jnp.float32)
  hits = jnp.diag(confusion)
  label_pixels = confusion.sum(axis=1)  # t_i
  union = label_pixels + confusion.sum(axis=0) - hits
  iou = hits / jnp.where(union > 0, union, jnp.nan)
  accuracy = hits / jnp.where(label_pixels > 0, label_pixels, jnp.nan)
  total = label_pixels.sum()
  return {
      "pixel_accuracy": hits.sum() / total,
      "mean_accuracy": jnp.nanmean(accuracy),
      "mean_iou": jnp.nanmean(iou),
      "frequency_weighted_iou": jnp.nansum(label_pixels * iou) / total,
      "iou_per_class": iou,
  }
