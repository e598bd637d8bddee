"""vislang_jax.viz.gan: every cell of the written PNG shows its input image where it belongs
(read back pixel by pixel), the captions and titles sit where the papers put them, errors."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from PIL import Image

from vislang_jax.viz import gan

TOL = 2.5 / 255  # 8-bit PNG and the 256-entry grey colour map


def _cell(png: np.ndarray, ax, h: int, w: int) -> np.ndarray:
  """[h, w, 3]: the PNG sampled at the centres of an h x w image drawn filling `ax`'s box."""
  box = ax.get_position()  # after drawing: the box equal aspect shrank onto the image
  height, width = png.shape[:2]
  xs = box.x0 + (np.arange(w) + 0.5) / w * box.width
  ys = box.y1 - (np.arange(h) + 0.5) / h * box.height
  return png[np.floor((1 - ys) * height).astype(int)][:, np.floor(xs * width).astype(int), :3]


def _assert_shows(png, ax, image):
  image = np.broadcast_to(image, image.shape[:2] + (3,))
  np.testing.assert_allclose(_cell(png, ax, *image.shape[:2]), image, atol=TOL)


def _images(seed, shape):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 3])
def test_interpolation_rows_cells_and_end_captions(tmp_path, saved_figures, channels):
  images = _images(0, (2, 4, 6, 5, channels))
  left, right = ["a small bird with a red head", "a one"], ["a large blue bird", "a seven"]
  path = str(tmp_path / "sub" / "interp.png")
  gan.save_interpolation_rows(path, left, right, images)
  png = mpimg.imread(path)
  axes = np.array(saved_figures[0].axes).reshape(2, 4)
  for r in range(2):
    for s in range(4):
      _assert_shows(png, axes[r, s], images[r, s])
    (start,), (end,) = axes[r, 0].texts, axes[r, -1].texts
    assert start.get_text().replace("\n", " ") == left[r]
    assert end.get_text().replace("\n", " ") == right[r]
    assert start.get_position()[0] < 0 < 1 < end.get_position()[0]  # outside, either end
    assert all(not ax.texts for ax in axes[r, 1:-1])


@pytest.mark.parametrize("channels", [1, 3])
def test_style_transfer_query_column_then_one_column_per_caption(tmp_path, saved_figures,
                                                                 channels):
  queries, images = _images(1, (2, 6, 6, channels)), _images(2, (2, 3, 6, 6, channels))
  captions = ["a digit one", "a seven written with a long stroke and a bar", "a two"]
  path = str(tmp_path / "style.png")
  gan.save_style_transfer(path, queries, captions, images)
  png = mpimg.imread(path)
  axes = np.array(saved_figures[0].axes).reshape(2, 4)
  assert [ax.get_title().replace("\n", " ") for ax in axes[0]] == ["query"] + captions
  assert "\n" in axes[0, 2].get_title()  # the long caption is wrapped
  for r in range(2):
    _assert_shows(png, axes[r, 0], queries[r])
    for s in range(3):
      _assert_shows(png, axes[r, 1 + s], images[r, s])


def test_pyramid_levels_enlarged_in_constant_blocks(tmp_path, saved_figures):
  levels = [_images(3, (2, 3, 2, 1)), _images(4, (2, 6, 4, 1)), _images(5, (2, 6, 8, 1))]
  path = str(tmp_path / "pyramid.png")
  gan.save_pyramid_levels(path, levels)
  png = mpimg.imread(path)
  axes = np.array(saved_figures[0].axes).reshape(2, 3)
  assert [ax.get_title() for ax in axes[0]] == ["3x2", "6x4", "6x8"]
  for k, level in enumerate(levels):
    fy, fx = 6 // level.shape[1], 8 // level.shape[2]
    for n in range(2):
      big = np.kron(level[n, ..., 0], np.ones((fy, fx)))[..., None]  # 2x4 / 1x2 / 1x1 blocks
      _assert_shows(png, axes[n, k], big)


@pytest.mark.parametrize("channels", [1, 3])
def test_canvas_sequence_columns_in_time_order_and_gif(tmp_path, saved_figures, channels):
  canvases = _images(6, (3, 2, 5, 5, channels))
  path = str(tmp_path / "canvas.png")
  gan.save_canvas_sequence(path, canvases)
  png = mpimg.imread(path)
  axes = np.array(saved_figures[0].axes).reshape(2, 3)
  assert [ax.get_title() for ax in axes[0]] == ["t = 1", "t = 2", "t = 3"]
  for n in range(2):
    for t in range(3):
      _assert_shows(png, axes[n, t], canvases[t, n])
  with Image.open(tmp_path / "canvas.gif") as gif:
    assert gif.n_frames == 3
    assert gif.size == (2 * (2 * 6 + 1), 2 * (1 * 6 + 1))  # 1 x 2 cells, pad 1, scale 2


def test_canvas_gif_frames_follow_the_steps(tmp_path):
  canvases = np.broadcast_to(np.array([0.0, 0.5, 1.0])[:, None, None, None, None],
                             (3, 1, 4, 4, 1))
  gan.save_canvas_sequence(str(tmp_path / "c.png"), canvases)
  with Image.open(tmp_path / "c.gif") as gif:
    centres = []
    for t in range(3):
      gif.seek(t)
      centres.append(np.asarray(gif.convert("L"))[5, 5])
  np.testing.assert_allclose(centres, [0, 128, 255], atol=1)
  gan.save_canvas_sequence(str(tmp_path / "d.png"), canvases, gif=False)
  assert not (tmp_path / "d.gif").exists()


def test_png_grows_with_rows_and_columns(tmp_path):
  def size(name, write):
    path = str(tmp_path / f"{name}.png")
    write(path)
    return Image.open(path).size  # (width, height)

  small = size("a", lambda p: gan.save_canvas_sequence(p, np.zeros((2, 1, 4, 4, 1)), gif=False))
  wide = size("b", lambda p: gan.save_canvas_sequence(p, np.zeros((5, 1, 4, 4, 1)), gif=False))
  tall = size("c", lambda p: gan.save_canvas_sequence(p, np.zeros((2, 3, 4, 4, 1)), gif=False))
  assert wide[0] > small[0] and wide[1] == small[1]
  assert tall[1] > small[1] and tall[0] == small[0]
  one = size("d", lambda p: gan.save_interpolation_rows(p, ["a"], ["b"], np.zeros((1, 2, 4, 4, 1))))
  three = size("e", lambda p: gan.save_interpolation_rows(p, ["a"] * 3, ["b"] * 3,
                                                          np.zeros((3, 2, 4, 4, 1))))
  assert three[1] > one[1]


def test_bad_arguments_are_named(tmp_path):
  path = str(tmp_path / "x.png")
  grey = np.zeros((2, 3, 4, 4, 1))
  with pytest.raises(ValueError,
                     match=r"images must have shape \[R, S, H, W, C\], got \(3, 4, 4, 1\)"):
    gan.save_interpolation_rows(path, ["a"] * 3, ["b"] * 3, grey[0])
  with pytest.raises(ValueError, match=r"images must have shape \[R, S, H, W, C\] with C = 1 or 3"):
    gan.save_interpolation_rows(path, ["a"] * 2, ["b"] * 2, np.zeros((2, 3, 4, 4, 2)))
  with pytest.raises(ValueError, match=r"right_captions must hold one caption per row of images "
                                       r"\(2\), got 3"):
    gan.save_interpolation_rows(path, ["a"] * 2, ["b"] * 3, grey)
  with pytest.raises(ValueError, match=r"left_captions must be a sequence of strings, got 'ab'"):
    gan.save_interpolation_rows(path, "ab", ["b"] * 2, grey)
  with pytest.raises(ValueError, match=r"S >= 2 interpolation steps .*got shape \(2, 1, 4, 4, 1\)"):
    gan.save_interpolation_rows(path, ["a"] * 2, ["b"] * 2, grey[:, :1])
  with pytest.raises(ValueError, match=r"no empty axis, got \(0, 3, 4, 4, 1\)"):
    gan.save_interpolation_rows(path, [], [], grey[:0])

  with pytest.raises(ValueError, match=r"captions must hold one caption per column of images "
                                       r"\(3\), got 2"):
    gan.save_style_transfer(path, np.zeros((2, 4, 4, 1)), ["a", "b"], grey)
  with pytest.raises(ValueError, match=r"queries must have shape \[R, H, W, C\] = \(2, 4, 4, 1\) "
                                       r"to match images \(2, 3, 4, 4, 1\), got \(2, 5, 4, 1\)"):
    gan.save_style_transfer(path, np.zeros((2, 5, 4, 1)), ["a"] * 3, grey)
  with pytest.raises(ValueError, match=r"queries must have shape \[R, H, W, C\], got \(4, 4, 1\)"):
    gan.save_style_transfer(path, np.zeros((4, 4, 1)), ["a"] * 3, grey)

  with pytest.raises(ValueError, match=r"levels must hold at least one"):
    gan.save_pyramid_levels(path, [])
  with pytest.raises(ValueError, match=r"levels must be a sequence .* one array of shape"):
    gan.save_pyramid_levels(path, np.zeros((2, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"levels\[0\] must have N = 2 samples and C = 1 channels "
                                       r"as the finest level, got shape \(3, 2, 2, 1\)"):
    gan.save_pyramid_levels(path, [np.zeros((3, 2, 2, 1)), np.zeros((2, 8, 8, 1))])
  with pytest.raises(ValueError, match=r"levels\[1\] must have N = 2 samples and C = 3"):
    gan.save_pyramid_levels(path, [np.zeros((2, 2, 2, 3)), np.zeros((2, 4, 4, 1)),
                                   np.zeros((2, 8, 8, 3))])
  with pytest.raises(ValueError, match=r"levels\[0\]'s size must divide the finest level's "
                                       r"8x8, got 3x4"):
    gan.save_pyramid_levels(path, [np.zeros((2, 3, 4, 1)), np.zeros((2, 8, 8, 1))])
  with pytest.raises(ValueError, match=r"levels\[1\] must have shape \[N, H_k, W_k, C\]"):
    gan.save_pyramid_levels(path, [np.zeros((2, 4, 4, 1)), np.zeros((8, 8, 1))])

  with pytest.raises(ValueError,
                     match=r"canvases must have shape \[T, N, H, W, C\], got \(2, 4, 4, 1\)"):
    gan.save_canvas_sequence(path, grey[0, :2])
