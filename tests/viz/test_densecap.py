"""vislang_jax.viz.densecap: boxes drawn where they are, phrases in the legend, frames by hits."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle

from vislang_jax.viz import densecap


def _rectangles(ax):
  return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_boxes_outline_their_pixels(tmp_path, saved_figures):
  images = np.zeros((2, 16, 20, 1))
  boxes = [np.array([[2, 3, 7, 9], [0, 0, 20, 16]]), np.zeros((0, 4))]
  path = str(tmp_path / "f" / "dense.png")
  densecap.save_dense_caption_figure(path, images, boxes, [["a large seven", "a scene"], []],
                                     scores=[np.array([0.9, 0.2]), np.zeros(0)],
                                     truth_boxes=[np.array([[1, 1, 4, 4]]), np.zeros((0, 4))])
  ax = saved_figures[0].axes[0]
  first, second, third = _rectangles(ax)
  # The truth first (dashed, white), then the predictions in rank order.
  assert first.get_xy() == (0.5, 0.5) and first.get_width() == 3 and first.get_height() == 3
  assert second.get_xy() == (1.5, 2.5) and second.get_width() == 5 and second.get_height() == 6
  assert to_rgb(second.get_edgecolor()) == pytest.approx(densecap.BOX_COLOURS[0])
  assert to_rgb(third.get_edgecolor()) == pytest.approx(densecap.BOX_COLOURS[1])
  assert "1. a large seven (0.90)" in ax.get_xlabel()
  assert "2. a scene (0.20)" in ax.get_xlabel()
  assert not _rectangles(saved_figures[0].axes[1])


def test_retrieval_frames_follow_hits(tmp_path, saved_figures):
  hits = np.array([[True, False]])
  densecap.save_region_retrieval_figure(
      str(tmp_path / "r.png"), ["a small seven"], np.zeros((1, 2, 8, 8, 1)),
      np.array([[[1, 1, 4, 4], [0, 0, 8, 8]]]), np.array([[-1.5, -3.0]]), hits)
  axes = saved_figures[0].axes
  assert to_rgb(axes[1].spines["left"].get_edgecolor()) == pytest.approx((0.0, 0.6, 0.0))
  assert to_rgb(axes[2].spines["left"].get_edgecolor()) == pytest.approx((0.85, 0.0, 0.0))
  assert axes[1].get_title() == "1: -1.5"


def test_errors():
  with pytest.raises(ValueError, match="phrases must hold one entry per image"):
    densecap.save_dense_caption_figure("x.png", np.zeros((2, 8, 8, 1)), [np.zeros((0, 4))] * 2,
                                       [[]])
  with pytest.raises(ValueError, match=r"boxes\[0\] must have shape \[P, 4\]"):
    densecap.save_dense_caption_figure("x.png", np.zeros((1, 8, 8, 1)), [np.zeros((2, 3))],
                                       [["a", "b"]])
  with pytest.raises(ValueError, match="boxes, scores and hits must have shapes"):
    densecap.save_region_retrieval_figure("x.png", ["q"], np.zeros((1, 2, 8, 8, 1)),
                                          np.zeros((1, 2, 4)), np.zeros((1, 3)),
                                          np.zeros((1, 2), bool))
