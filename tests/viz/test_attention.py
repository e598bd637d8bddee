"""vislang_jax.viz.attention: each cell drawn where metrics.grounding counts it."""


import numpy as np
import pytest

from vislang_jax.metrics import grounding
from vislang_jax.viz.attention import (attention_heatmap, save_attention_figure,
                                       save_semantic_attention_figure)


@pytest.mark.parametrize("hw,grid", [((60, 60), 7), ((60, 47), 7), ((56, 56), 7), ((30, 30), 4)])
def test_heatmap_cells_are_the_cells_the_metric_counts(hw, grid):
  rng = np.random.default_rng(0)
  alpha = rng.dirichlet(np.ones(grid * grid), size=(2, 3))
  heat = attention_heatmap(alpha, hw)
  assert heat.shape == (2, 3) + hw
  s_y, s_x = hw[0] // grid, hw[1] // grid
  # Covered pixels are exactly the grid's g s_y x g s_x block from pixel 0; the rest NaN.
  covered = ~np.isnan(heat[0, 0])
  assert covered[:grid * s_y, :grid * s_x].all() and covered.sum() == grid * s_y * grid * s_x
  # Each pixel shows its cell's weight: spread over the cell's pixels, the heat map's mass in
  # any box is the metric's attention_in_box for that box.
  for _ in range(5):
    y0, x0 = rng.integers(0, hw[0] - 5), rng.integers(0, hw[1] - 5)
    y1, x1 = rng.integers(y0 + 1, hw[0] + 1), rng.integers(x0 + 1, hw[1] + 1)
    mass, share = grounding.attention_in_box(
        alpha[:, :1], np.full((2, 1), 10), np.ones(2, int), np.array([[4], [4]]),
        np.array([[[y0, x0, y1, x1]]] * 2), digit_of={10: 4}, image_hw=hw)
    box = np.nan_to_num(heat[:, 0, y0:y1, x0:x1]) / (s_y * s_x)
    np.testing.assert_allclose(box.sum((1, 2)), mass, rtol=1e-12)
    np.testing.assert_allclose(covered[y0:y1, x0:x1].sum() / covered.sum(), share[0],
                               rtol=1e-12)


def test_figure_is_written(tmp_path):
  path = str(tmp_path / "sub" / "attention.png")
  alpha = np.random.default_rng(1).dirichlet(np.ones(49), size=(2, 3))
  save_attention_figure(path, np.zeros((2, 60, 60, 1)), [["the", "digit"], ["a", "b", "c"]],
                        alpha)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_non_square_cells_are_named():
  with pytest.raises(ValueError, match="L = g\\^2 cells, got L = 48"):
    attention_heatmap(np.zeros((2, 48)), (60, 60))


def test_semantic_attention_figure_labels_words_and_attributes(tmp_path, saved_figures):
  rng = np.random.default_rng(2)
  alpha, beta = rng.dirichlet(np.ones(3), size=(2, 2, 4))
  words = [["the", "digit", "<eos>"], ["a", "<eos>"]]
  attributes = [["digit", "three", "top"], ["left", "seven", "image"]]
  save_semantic_attention_figure(str(tmp_path / "semantic.png"), np.zeros((2, 8, 8, 1)), words,
                                 attributes, alpha, beta)
  assert (tmp_path / "semantic.png").stat().st_size > 0
  (fig,) = saved_figures
  axes = fig.axes
  assert len(axes) == 6
  for r in range(2):
    for ax, weights in ((axes[3 * r + 1], alpha), (axes[3 * r + 2], beta)):
      assert [t.get_text() for t in ax.get_xticklabels()] == attributes[r]
      assert [t.get_text() for t in ax.get_yticklabels()] == words[r]
      # Row t is the step that emitted word t; only the caption's steps are drawn.
      np.testing.assert_allclose(ax.images[0].get_array(), weights[r, :len(words[r])])
  with pytest.raises(ValueError, match="alpha and beta must share"):
    save_semantic_attention_figure(str(tmp_path / "x.png"), np.zeros((2, 8, 8, 1)), words,
                                   attributes, alpha, beta[:, :2])
