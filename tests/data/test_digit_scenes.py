"""`data.digit_scenes` against records drawn by the captioned-digits generator itself."""

import numpy as np

from vislang_jax.data import captioned_digits
from vislang_jax.data import digit_scenes as scenes

CONVERSE = {"the digit three is on the right of the digit five":
            "the digit five is on the left of the digit three",
            "the digit three is at the bottom of the digit five":
            "the digit five is at the top of the digit three"}


def test_scene_classes_match_the_generator():
  # Records made by the dataset's own generator, for every layout: the boxes give back the
  # scene, whose caption is the record's own for left/top/corners and its converse for
  # right/bottom.
  rng = np.random.default_rng(0)
  patches = rng.random((2, 28, 28))
  for layout in captioned_digits.LAYOUTS:
    digits = (3,) if layout in captioned_digits.POSITIONS else (3, 5)
    for _ in range(5):
      record = captioned_digits.make_example(layout, digits, patches[:len(digits)], rng)
      classes = scenes.scene_classes(record["labels"][None], record["boxes"][None],
                                     np.array([record["num_digits"]]))[0]
      assert scenes.caption_of(classes) == CONVERSE.get(record["caption"], record["caption"])
      assert scenes.scene_of(layout, digits) == (
          scenes.SCENE_LAYOUTS[classes[0]],
          tuple(d for d in classes[1:] if d != scenes.NO_DIGIT))
      assert (classes[2] == scenes.NO_DIGIT) == (record["num_digits"] == 1)
      # Each digit of the scene lies wholly inside its slot's window of the scene's layout.
      windows = scenes.WINDOWS[classes[0]]
      scene_digits = [d for d in classes[1:] if d != scenes.NO_DIGIT]
      assert len(windows) == len(scene_digits)
      for (row, col), digit in zip(windows, scene_digits):
        y0, x0, y1, x1 = record["boxes"][list(record["labels"]).index(digit)]
        assert row <= y0 and y1 <= row + scenes.WINDOW
        assert col <= x0 and x1 <= col + scenes.WINDOW


def test_windows_fit_the_canvas():
  size = captioned_digits.CANVAS_SIZE
  assert len(scenes.WINDOWS) == len(scenes.SCENE_LAYOUTS)
  for windows in scenes.WINDOWS:
    for row, col in windows:
      assert 0 <= row <= size - scenes.WINDOW and 0 <= col <= size - scenes.WINDOW


def test_probe_captions_flip_one_thing_and_list_the_held_out_scenes():
  pair = np.array([[scenes.SCENE_LAYOUTS.index("left"), 3, 4]])
  assert scenes.probe_captions(pair, count=1) == [
      "the digit three is on the left of the digit four",
      "the digit four is on the left of the digit four",
      "the digit three is at the top of the digit four"]
  corner = np.array([[scenes.SCENE_LAYOUTS.index("bottom right"), 7, scenes.NO_DIGIT],
                     [scenes.SCENE_LAYOUTS.index("top"), 1, 2]])
  assert scenes.probe_captions(corner, count=2) == [
      "the digit seven is at the bottom right of the image",
      "the digit one is at the top of the digit two",
      "the digit eight is at the bottom right of the image",
      "the digit seven is at the top left of the image"]
  # A split of held-out scenes (the "novel" split) gets every held-out caption, once.
  held_out = np.array([[scenes.SCENE_LAYOUTS.index("left"), 3, 5]])
  captions = scenes.probe_captions(held_out, count=1)
  assert sorted(captions) == sorted(captioned_digits.caption(*c)
                                    for c in captioned_digits.HELD_OUT)
  assert len(set(captions)) == len(captioned_digits.HELD_OUT)
