"""vislang_jax.viz.vqa: frames follow right/wrong answers; one heat map per layer, in its cells."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from vislang_jax.viz import retrieval, vqa


@pytest.mark.parametrize("channels", [1, 3])
def test_frames_titles_and_attention_panels(tmp_path, saved_figures, channels):
  rng = np.random.default_rng(channels)
  images = rng.uniform(size=(2, 8, 8, channels))
  attention = np.zeros((2, 3, 4))  # 3 layers over a 2x2 grid of 4x4-pixel cells
  attention[0, :, 1] = 1.0         # row 0 looks at the top-right cell
  attention[1, :, 2] = 1.0         # row 1 at the bottom-left one
  path = str(tmp_path / "sub" / "vqa.png")
  vqa.save_vqa_figure(path, images, ["is the red object on the left?", "where is the three?"],
                      ["yes", "left"], ["yes", "right"], attention, step_name="hop")
  assert (tmp_path / "sub" / "vqa.png").stat().st_size > 0
  axes = np.array(saved_figures[0].axes).reshape(2, 4)
  for r, right in enumerate((True, False)):
    want = retrieval.HIT_COLOUR if right else retrieval.MISS_COLOUR
    assert to_rgb(axes[r, 0].spines["left"].get_edgecolor()) == pytest.approx(want)
    assert [axes[r, 1 + k].get_title() for k in range(3)] == ["hop 1", "hop 2", "hop 3"]
    heat = axes[r, 1].get_images()[1].get_array()
    cell = (slice(0, 4), slice(4, 8)) if r == 0 else (slice(4, 8), slice(0, 4))
    np.testing.assert_array_equal(heat[cell], 1.0)
    assert float(np.sum(heat)) == 16.0  # nothing outside its cell
  assert axes[0, 0].get_xlabel() == "is the red object on the left?\nyes (true: yes)"
  assert axes[1, 0].get_xlabel() == "where is the three?\nleft (true: right)"


def test_without_attention_only_the_images(tmp_path, saved_figures):
  vqa.save_vqa_figure(str(tmp_path / "v.png"), np.zeros((3, 8, 8, 1)), ["q"] * 3, ["a"] * 3,
                      ["a"] * 3)
  assert len(saved_figures[0].axes) == 3


def test_bad_arguments_are_named(tmp_path):
  path = str(tmp_path / "x.png")
  images = np.zeros((2, 8, 8, 1))
  with pytest.raises(ValueError, match=r"answers must hold one text per image \(2\), got 1"):
    vqa.save_vqa_figure(path, images, ["q", "q"], ["a", "a"], ["a"])
  with pytest.raises(ValueError, match=r"attention must have shape \[R=2, K, L\], got \(2, 4\)"):
    vqa.save_vqa_figure(path, images, ["q", "q"], ["a", "a"], ["a", "a"], np.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"images must have shape \[R, H, W, C\]"):
    vqa.save_vqa_figure(path, np.zeros((8, 8, 1)), ["q"], ["a"], ["a"])
