"""Segmentation metrics: a hand-worked example, the ignore label, empty classes, accumulation."""

import jax
import numpy as np
import pytest

from vislang_jax.metrics.segmentation import confusion_matrix, segmentation_metrics

# 4x4 labels (255: ignored) and predictions; C = 5 with class 3 only predicted, class 4 unseen.
LABELS = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 255], [2, 2, 2, 255]])
PREDICTIONS = np.array([[0, 1, 1, 1], [0, 0, 1, 3], [2, 2, 0, 0], [2, 2, 2, 1]])
# By hand: row i, column j = pixels of label i predicted j (the two 255 pixels count nowhere).
HAND = np.array([[3, 1, 0, 0, 0], [0, 3, 0, 1, 0], [1, 0, 5, 0, 0], [0] * 5, [0] * 5])


def test_hand_worked_example():
  confusion = confusion_matrix(PREDICTIONS, LABELS, num_classes=5)
  assert confusion.dtype == np.int32
  np.testing.assert_array_equal(confusion, HAND)
  scores = segmentation_metrics(confusion)
  # IU_i = n_ii / (t_i + sum_j n_ji - n_ii): 3/(4+4-3), 3/(4+4-3), 5/(6+5-5), 0/(0+1-0), 0/0.
  np.testing.assert_allclose(scores["iou_per_class"], [3 / 5, 3 / 5, 5 / 6, 0.0, np.nan],
                             rtol=1e-6)
  # Class 3 (predicted, never a label) counts in the mean IU; class 4 (neither) does not.
  np.testing.assert_allclose(scores["mean_iou"], (3 / 5 + 3 / 5 + 5 / 6 + 0) / 4, rtol=1e-6)
  np.testing.assert_allclose(scores["pixel_accuracy"], 11 / 14, rtol=1e-6)
  np.testing.assert_allclose(scores["mean_accuracy"], (3 / 4 + 3 / 4 + 5 / 6) / 3, rtol=1e-6)
  np.testing.assert_allclose(scores["frequency_weighted_iou"],
                             (4 * 3 / 5 + 4 * 3 / 5 + 6 * 5 / 6) / 14, rtol=1e-6)


def test_ignore_index_and_perfect_predictions():
  np.testing.assert_array_equal(
      confusion_matrix(np.zeros((2, 2), np.int32), np.full((2, 2), 7), num_classes=3,
                       ignore_index=7), np.zeros((3, 3)))
  scores = segmentation_metrics(confusion_matrix(LABELS % 255, LABELS, num_classes=3))
  for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
    np.testing.assert_allclose(scores[key], 1.0)


def test_no_pixels_gives_nan():
  scores = segmentation_metrics(np.zeros((3, 3), np.int32))
  assert all(np.isnan(v).all() for v in scores.values())


def test_batches_accumulate_and_match_numpy_under_jit():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 6, (4, 7, 9))
  labels[rng.random(labels.shape) < 0.2] = 255
  predictions = rng.integers(0, 6, (4, 7, 9))
  reference = np.zeros((6, 6), np.int64)
  keep = labels != 255
  np.add.at(reference, (labels[keep], predictions[keep]), 1)
  counted = jax.jit(lambda p, l: confusion_matrix(p, l, num_classes=6))
  np.testing.assert_array_equal(counted(predictions, labels), reference)
  # Batch by batch, with the uint8 masks of the datasets.
  batches = sum(np.asarray(counted(p, l)) for p, l in zip(predictions, labels.astype(np.uint8)))
  np.testing.assert_array_equal(batches, reference)
  np.testing.assert_allclose(jax.jit(segmentation_metrics)(reference)["mean_iou"],
                             segmentation_metrics(reference)["mean_iou"])


@pytest.mark.parametrize("args,kwargs,match", [
    ((np.zeros((2, 2), int), np.zeros((2, 3), int)), {},
     r"predictions and labels must share one shape, got \(2, 2\) and \(2, 3\)"),
    ((np.zeros(3), np.zeros(3, int)), {}, "predictions must hold integer classes, got dtype float"),
    ((np.array([0, 3]), np.array([0, 1])), {}, r"predictions must hold classes in \[0, 3\), got 3"),
    ((np.array([0, 1]), np.array([0, 254])), {},
     r"labels must hold classes in \[0, 3\) or 255, got 254"),
    ((np.array([0]), np.array([0])), {"num_classes": 0}, "num_classes must be a positive int"),
])
def test_bad_arguments(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    confusion_matrix(*args, **{"num_classes": 3, **kwargs})
  with pytest.raises(ValueError, match=r"confusion must have shape \[C, C\], got \(2, 3\)"):
    segmentation_metrics(np.zeros((2, 3)))
