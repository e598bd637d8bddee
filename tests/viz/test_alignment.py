"""vislang_jax.viz.alignment: word colours follow each word's region, boxes follow `boxes`."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from vislang_jax.viz import alignment
from vislang_jax.viz import figure

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG


def test_alignment_maps_are_written(tmp_path):
  path = str(tmp_path / "maps.png")
  alignment.save_alignment_maps(path, [["a", "b"], ["c"]], np.ones((2, 3, 2)) / 2)
  assert _is_png(path)


def test_region_colours_in_order_of_first_use():
  colours = alignment.region_colours(np.array([3, 3, -1, 0, 3, 5, 0, -1]))
  assert list(colours) == [3, 0, 5]
  assert list(colours.values()) == list(alignment.REGION_COLOURS[:3])
  many = alignment.region_colours(np.arange(12))
  assert len(set(list(many.values())[:10])) == 10 and many[10] == many[0]


def _example():
  boxes = np.array([[[0, 0, 12, 10], [1, 2, 5, 6], [6, 1, 11, 9], [2, 2, 4, 4]],
                    [[0, 0, 12, 10], [7, 5, 12, 10], [0, 0, 3, 3], [0, 0, 1, 1]]], float)
  region_mask = np.array([[True, True, True, True], [True, True, True, False]])
  words = [["the", "digit", "three", "left", "of", "seven"], ["a", "seven", "here"]]
  regions = np.array([[0, 1, 1, 0, -1, 2, -1], [2, 1, 1, -1, -1, -1, -1]])
  return np.random.default_rng(0).uniform(size=(2, 10, 12, 1)), boxes, region_mask, words, regions


def test_words_take_the_colour_of_their_box(tmp_path, monkeypatch):
  images, boxes, region_mask, words, regions = _example()
  path = str(tmp_path / "sub" / "regions.png")
  alignment.save_region_alignment(path, images, boxes, region_mask, words, regions)
  assert _is_png(path)
  figures = []  # the figure itself, kept instead of written, to read its artists
  monkeypatch.setattr(figure, "save", lambda fig, path: figures.append(fig))
  alignment.save_region_alignment(path, images, boxes, region_mask, words, regions)
  for s, ax in enumerate(figures[0].axes):
    # Each drawn box: its region found from its corners; the whole image is the frame.
    box_colour = {}
    for patch in ax.patches:
      assert isinstance(patch, Rectangle)
      x0, y0 = patch.get_xy()
      corners = [x0 + 0.5, y0 + 0.5, x0 + 0.5 + patch.get_width(), y0 + 0.5 + patch.get_height()]
      (r,), = np.nonzero(np.all(boxes[s] == corners, axis=1))
      box_colour[r] = to_rgb(patch.get_edgecolor())
    if (regions[s] == 0).any():
      box_colour[0] = to_rgb(ax.spines["top"].get_edgecolor())
      assert ax.spines["top"].get_visible()
    else:
      assert not ax.spines["top"].get_visible()
    used = set(regions[s][regions[s] >= 0].tolist())
    assert set(box_colour) == used and len(set(box_colour.values())) == len(used)
    texts = [t for t in ax.artists[0].findobj(Text) if t.get_text()]
    assert [t.get_text() for t in texts] == words[s]
    for t, text in enumerate(texts):
      want = box_colour[regions[s, t]] if regions[s, t] >= 0 else alignment.UNALIGNED_COLOUR
      assert to_rgb(text.get_color()) == pytest.approx(want), (s, t)


def test_bad_shapes_are_named(tmp_path):
  images, boxes, region_mask, words, regions = _example()
  path = str(tmp_path / "x.png")
  call = lambda **kw: alignment.save_region_alignment(path, **{
      "images": images, "boxes": boxes, "region_mask": region_mask, "words": words,
      "regions": regions, **kw})
  with pytest.raises(ValueError, match=r"images must have shape \[S, H, W, C\]"):
    call(images=images[..., 0])
  with pytest.raises(ValueError, match=r"boxes must have shape \[S, R, 4\] with S = 2"):
    call(boxes=boxes[:, :, :2])
  with pytest.raises(ValueError, match=r"region_mask must be a bool array \[S, R\] = \(2, 4\)"):
    call(region_mask=region_mask[:, :3])
  with pytest.raises(ValueError, match=r"regions must be an int array \[S, N\]"):
    call(regions=regions.astype(float))
  with pytest.raises(ValueError, match=r"words must be S = 2 sentences of at most N = 7"):
    call(words=[words[0] + ["x", "y"], words[1]])
  with pytest.raises(ValueError, match=r"regions\[1, 3\] = 0"):  # a word past the sentence
    call(regions=np.where(np.arange(7) == 3, 0, regions))
  with pytest.raises(ValueError, match=r"regions\[1, 0\] = 3"):  # region 3 of image 1 is masked
    call(regions=np.where(np.arange(7) == 0, 3, regions))
  with pytest.raises(ValueError, match=r"\[0, R\) = \[0, 4\).*regions\[0, 1\] = 4"):
    call(regions=np.where(np.arange(7) == 1, 4, regions))
