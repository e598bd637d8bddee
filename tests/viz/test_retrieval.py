"""vislang_jax.viz.retrieval: frames and caption colours follow `hits`."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from vislang_jax.viz import retrieval

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG


def test_hit_colours_follow_hits():
  hits = np.array([[True, False, False], [False, False, True]])
  colours = retrieval.hit_colours(hits)
  assert colours.shape == (2, 3, 3)
  for q, j in np.ndindex(hits.shape):
    want = retrieval.HIT_COLOUR if hits[q, j] else retrieval.MISS_COLOUR
    np.testing.assert_array_equal(colours[q, j], want)


@pytest.mark.parametrize("channels", [1, 3])
def test_text_to_image_frames_follow_hits(tmp_path, saved_figures, channels):
  rng = np.random.default_rng(channels)
  hits = np.array([[False, True, False], [True, False, False]])
  images = rng.uniform(size=(2, 3, 8, 8, channels))
  path = str(tmp_path / "sub" / "t2i.png")
  retrieval.save_retrieval_figure(path, ["the digit three is at the top left of the image",
                                         "a seven"], images, hits)
  assert _is_png(path)
  axes = np.array(saved_figures[0].axes).reshape(2, 4)
  for q, j in np.ndindex(hits.shape):
    ax = axes[q, 1 + j]
    want = retrieval.HIT_COLOUR if hits[q, j] else retrieval.MISS_COLOUR
    assert to_rgb(ax.spines["left"].get_edgecolor()) == pytest.approx(want)
    shown = ax.get_images()[0]
    np.testing.assert_allclose(shown.get_array(), images[q, j, ..., 0] if channels == 1
                               else images[q, j], rtol=1e-6)
    assert shown.get_cmap().name == "gray" or channels == 3
  assert "top left" in axes[0, 0].texts[0].get_text()


def test_image_to_text_marks_follow_hits(tmp_path, saved_figures):
  hits = np.array([[True, False], [False, True], [False, False]])
  captions = [[f"caption {q}.{j}" for j in range(2)] for q in range(3)]
  path = str(tmp_path / "i2t.png")
  retrieval.save_image_to_text_figure(path, np.full((3, 8, 8, 1), 0.5), captions, hits)
  assert _is_png(path)
  axes = np.array(saved_figures[0].axes).reshape(3, 2)
  for q in range(3):
    texts = axes[q, 1].texts
    assert [t.get_text().split()[-1] for t in texts] == [f"{q}.{j}" for j in range(2)]
    for j, text in enumerate(texts):
      hit = hits[q, j]
      assert (retrieval.HIT_MARK if hit else retrieval.MISS_MARK) in text.get_text()
      want = retrieval.HIT_COLOUR if hit else retrieval.MISS_COLOUR
      assert to_rgb(text.get_color()) == pytest.approx(want)


def test_bad_shapes_are_named(tmp_path):
  path = str(tmp_path / "x.png")
  with pytest.raises(ValueError, match=r"images must have shape \[Q, k, H, W, C\], got"):
    retrieval.save_retrieval_figure(path, ["a"], np.zeros((1, 8, 8, 1)), np.ones((1, 1), bool))
  with pytest.raises(ValueError, match="Q = len\\(queries\\) = 2"):
    retrieval.save_retrieval_figure(path, ["a", "b"], np.zeros((1, 2, 8, 8, 1)),
                                    np.ones((1, 2), bool))
  with pytest.raises(ValueError, match="C = 1 or 3"):
    retrieval.save_retrieval_figure(path, ["a"], np.zeros((1, 2, 8, 8, 2)),
                                    np.ones((1, 2), bool))
  with pytest.raises(ValueError, match=r"hits must be a bool array \[Q, k\] = \(1, 2\)"):
    retrieval.save_retrieval_figure(path, ["a"], np.zeros((1, 2, 8, 8, 1)),
                                    np.ones((1, 3), bool))
  with pytest.raises(ValueError, match=r"captions must be Q = 2 lists"):
    retrieval.save_image_to_text_figure(path, np.zeros((2, 8, 8, 3)), [["a"], ["b", "c"]],
                                        np.ones((2, 1), bool))
  with pytest.raises(ValueError, match=r"hits must be a bool array"):
    retrieval.save_image_to_text_figure(path, np.zeros((2, 8, 8, 3)), [["a"], ["b"]],
                                        np.ones((2, 1), int))
