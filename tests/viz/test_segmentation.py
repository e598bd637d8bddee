"""vislang_jax.viz.segmentation: label colours and the image / truth / prediction figure."""

import numpy as np
import pytest

from vislang_jax.viz.segmentation import (IGNORE_COLOUR, colour_labels, label_colours,
                                          save_segmentation_figure)


def test_colours_are_distinct_per_class_and_ignored_pixels_white():
  colours = label_colours(11)
  assert colours.shape == (11, 3) and (colours[0] == 0).all()
  assert len({tuple(c) for c in colours}) == 11
  rgb = colour_labels(np.array([[0, 3], [255, 10]]), 11)
  np.testing.assert_array_equal(rgb[0, 1], colours[3])
  np.testing.assert_array_equal(rgb[1, 0], IGNORE_COLOUR)
  np.testing.assert_array_equal(rgb[1, 1], colours[10])


def test_figure_shows_each_map_with_a_legend_of_present_classes(tmp_path, saved_figures):
  truth = np.zeros((2, 4, 4), int)
  truth[0, :2] = 3
  predictions = truth.copy()
  predictions[1, 0, 0] = 7
  save_segmentation_figure(str(tmp_path / "seg.png"), np.zeros((2, 4, 4, 1)), truth,
                           predictions, class_names=[f"c{i}" for i in range(11)])
  (fig,) = saved_figures
  axes = np.array(fig.axes).reshape(2, 3)
  np.testing.assert_allclose(axes[0, 1].images[0].get_array()[0, 0], label_colours(11)[3])
  np.testing.assert_allclose(axes[1, 2].images[0].get_array()[0, 0], label_colours(11)[7])
  assert [t.get_text() for t in axes[0, 2].get_legend().get_texts()] == ["c0", "c3"]
  assert [t.get_text() for t in axes[1, 2].get_legend().get_texts()] == ["c0", "c7"]
  with pytest.raises(ValueError, match="truth and predictions must have shape"):
    save_segmentation_figure(str(tmp_path / "x.png"), np.zeros((2, 4, 4, 1)), truth[:1],
                             predictions, class_names=["a"] * 11)
