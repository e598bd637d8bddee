"""vislang_jax.viz.style: the result panel, the ratio grid and the loss curves."""

import numpy as np
import pytest

from vislang_jax.viz.style import save_loss_curves, save_ratio_grid, save_style_result


def test_style_figures(tmp_path, saved_figures):
  rng = np.random.default_rng(0)
  images = [rng.random((6, 8, 3)) for _ in range(3)]
  save_style_result(str(tmp_path / "r.png"), images[0], rng.random((5, 5, 3)), images[1])
  save_ratio_grid(str(tmp_path / "g.png"), images, [1e-2, 1e-3, 1e-4])
  save_loss_curves(str(tmp_path / "l.png"), [np.array([4.0, 2.0, 1.0])] * 2, [1e-3, 1e-4])
  result, grid, curves = saved_figures
  assert [ax.get_title() for ax in result.axes] == ["content", "style", "result"]
  np.testing.assert_allclose(result.axes[2].images[0].get_array(), images[1])
  assert [ax.get_title() for ax in grid.axes] == [f"alpha / beta = {r:g}"
                                                  for r in (1e-2, 1e-3, 1e-4)]
  (ax,) = curves.axes
  np.testing.assert_array_equal(ax.lines[0].get_ydata(), [4.0, 2.0, 1.0])
  assert ax.get_yscale() == "log"
  with pytest.raises(ValueError, match="one length"):
    save_ratio_grid(str(tmp_path / "x.png"), images, [1e-2])
