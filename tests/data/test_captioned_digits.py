"""Captioned digits: captions agree with labels, boxes and pixels; held-out split; determinism.

The checks parse the stored captions back with their own grammar and number words, and test
the layouts against the offsets stated in the module docstring, so they do not reuse the
builder's tables.
"""

import collections
import re

import numpy as np
import pytest

from vislang_jax.data import captioned_digits
from vislang_jax.data.captioned_digits import build_captioned_digits_dataset
from vislang_jax.data.idx import write_idx
from vislang_jax.data.sources import load_digits
from vislang_jax.data.vocabulary import UNK_ID, Vocabulary

NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
_WORD = "(zero|one|two|three|four|five|six|seven|eight|nine)"
SINGLE = re.compile(rf"the digit {_WORD} is at the (top|bottom) (left|right) of the image")
PAIR = re.compile(
    rf"the digit {_WORD} is (?:on the (left|right)|at the (top|bottom)) of the digit {_WORD}"
)
HELD_OUT_CAPTIONS = {
    "the digit six is at the top left of the image",
    "the digit two is at the top right of the image",
    "the digit nine is at the bottom left of the image",
    "the digit four is at the bottom right of the image",
    "the digit three is on the left of the digit five",
    "the digit five is on the right of the digit three",
    "the digit zero is on the left of the digit eight",
    "the digit eight is on the right of the digit zero",
    "the digit seven is at the top of the digit one",
    "the digit one is at the bottom of the digit seven",
    "the digit two is at the top of the digit nine",
    "the digit nine is at the bottom of the digit two",
}
NOVEL_SIZE = 200


def _parse(caption):
  """(layout, digits) from a caption, by the templates of the module docstring."""
  if m := SINGLE.fullmatch(caption):
    return f"{m[2]} {m[3]}", (NUMBERS[m[1]],)
  m = PAIR.fullmatch(caption)
  assert m, f"caption fits no template: {caption!r}"
  return m[2] or m[3], (NUMBERS[m[1]], NUMBERS[m[4]])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("captioned")
  data = build_captioned_digits_dataset(
      source="sklearn_digits", data_dir=str(data_dir), novel_size=NOVEL_SIZE
  )
  records = {split: [source[i] for i in range(len(source))] for split, source in data.items()}
  return data_dir, data, records


def test_splits_and_record_format(built):
  _, data, records = built
  assert {k: len(v) for k, v in data.items()} == {
      "train": 1350,
      "validation": 150,
      "test": 297,
      "novel": NOVEL_SIZE,
  }
  for split, recs in records.items():
    for r in recs:
      assert r["image"].shape == (60, 60, 1) and r["image"].dtype == np.uint8
      assert r["labels"].shape == (2,) and r["boxes"].shape == (2, 4)
      n = int(r["num_digits"])
      assert n in (1, 2)
      assert np.all(r["labels"][n:] == -1) and np.all(r["boxes"][n:] == -1)
  # Layouts are drawn uniformly: about half the seen examples hold two digits.
  two = sum(int(r["num_digits"]) == 2 for r in records["train"])
  assert 0.4 < two / len(records["train"]) < 0.6


def test_caption_agrees_with_labels_and_boxes(built):
  _, _, records = built
  for split, recs in records.items():
    for r in recs:
      layout, digits = _parse(r["caption"].decode())
      n = len(digits)
      assert int(r["num_digits"]) == n and r["labels"][:n].tolist() == list(digits), (
          split,
          r["caption"],
      )
      boxes = r["boxes"][:n]
      assert np.all(boxes[:, 2:] - boxes[:, :2] == 28)
      y0, x0 = boxes[:, 0], boxes[:, 1]
      if n == 1:  # Corner offsets: rows 0..2 / 30..32, columns 0..4 / 28..32.
        vertical, horizontal = layout.split()
        assert (0 <= y0[0] <= 2) if vertical == "top" else (30 <= y0[0] <= 32), (layout, boxes)
        assert (0 <= x0[0] <= 4) if horizontal == "left" else (28 <= x0[0] <= 32), (layout, boxes)
      elif layout in ("left", "right"):  # One row in 16..18; columns 0..4 and 28..32.
        assert y0[0] == y0[1] and 16 <= y0[0] <= 18
        subject_left = layout == "left"
        assert (x0[0] < x0[1]) == subject_left
        assert 0 <= min(x0) <= 4 and 28 <= max(x0) <= 32
      else:  # One column in 16..18; rows 0..2 and 30..32.
        assert x0[0] == x0[1] and 16 <= x0[0] <= 18
        assert (y0[0] < y0[1]) == (layout == "top")
        assert 0 <= min(y0) <= 2 and 30 <= max(y0) <= 32


def test_digits_lie_in_their_boxes_and_match_source_digits(built):
  _, _, records = built
  train_images, train_labels = load_digits("sklearn_digits", "train")
  test_images, test_labels = load_digits("sklearn_digits", "test")
  pools = {
      "train": (train_images[:1350], train_labels[:1350]),
      "validation": (train_images[1350:], train_labels[1350:]),
  }
  pools["test"] = pools["novel"] = (test_images, test_labels)
  for split, recs in records.items():
    images, labels = pools[split]
    for r in recs:
      image = r["image"][..., 0]
      n = int(r["num_digits"])
      inside = np.zeros((60, 60), bool)
      for y0, x0, y1, x1 in r["boxes"][:n]:
        inside[y0:y1, x0:x1] = True
      assert image[~inside].sum() == 0
      for k in range(n):
        y0, x0, y1, x1 = r["boxes"][k]
        # Where the other patch does not reach, the box holds a digit of the stated class.
        own = np.ones((28, 28), bool)
        for j in range(n):
          if j != k:
            oy0, ox0, oy1, ox1 = r["boxes"][j] - [y0, x0, y0, x0]
            own[max(oy0, 0) : max(oy1, 0), max(ox0, 0) : max(ox1, 0)] = False
        crop = image[y0:y1, x0:x1]
        candidates = images[labels == r["labels"][k]]
        assert np.any(np.all(candidates[:, own] == crop[own], axis=1)), (split, r["caption"], k)
        assert crop.sum() > 0


def test_held_out_combinations_only_in_novel(built):
  _, _, records = built
  captions = {split: {r["caption"].decode() for r in recs} for split, recs in records.items()}
  assert captions["novel"] == HELD_OUT_CAPTIONS  # Every one appears in 200 draws.
  for split in ("train", "validation", "test"):
    assert not captions[split] & HELD_OUT_CAPTIONS, split
  # The held-out digits still appear in training, elsewhere: the split tests composition.
  layouts_of = collections.defaultdict(set)
  for caption in captions["train"]:
    layout, digits = _parse(caption)
    layouts_of[digits[0]].add(layout)
  for digit, layout in ((6, "top left"), (2, "top right"), (9, "bottom left"), (4, "bottom right")):
    assert layouts_of[digit] - {layout}
  assert {
      (layout, digits) for layout, digits in map(_parse, HELD_OUT_CAPTIONS)
  } == captioned_digits.HELD_OUT


def test_train_vocabulary_covers_other_splits(built):
  _, _, records = built
  vocab = Vocabulary.build([r["caption"].decode() for r in records["train"]])
  assert len(vocab.words) == 21  # "the digit is at on of image" + 4 directions + 10 numbers.
  for split in ("validation", "test", "novel"):
    ids, lengths = vocab.encode([r["caption"].decode() for r in records[split]], max_len=12)
    assert not np.any(ids == UNK_ID) and lengths.max() <= 12


def test_rebuild_elsewhere_is_byte_identical(built, tmp_path):
  data_dir, data, records = built
  again = build_captioned_digits_dataset(
      source="sklearn_digits", data_dir=str(tmp_path), novel_size=NOVEL_SIZE
  )
  name = f"captioned_digits/sklearn_digits-seed0-copies1-novel{NOVEL_SIZE}/1.0.0"
  files = sorted(p.name for p in (data_dir / name).glob("*.array_record*"))
  assert len(files) == 4
  for f in files:
    assert (data_dir / name / f).read_bytes() == (tmp_path / name / f).read_bytes()
  assert again["novel"][5]["caption"] == records["novel"][5]["caption"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(source="emnist"), "source"),
        (dict(source="sklearn_digits", copies=0), "copies"),
        (dict(source="sklearn_digits", copies=1.5), "copies"),
        (dict(source="sklearn_digits", novel_size=0), "novel_size"),
        (dict(source="sklearn_digits", seed=-1), "seed"),
        (dict(source="sklearn_digits", mnist_dir="/tmp"), "mnist_dir"),
    ],
)
def test_bad_parameters(kwargs, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    build_captioned_digits_dataset(data_dir=str(tmp_path), **kwargs)
  assert not list(tmp_path.iterdir())


def test_source_without_held_out_classes(tmp_path):
  rng = np.random.default_rng(0)
  mnist_dir = tmp_path / "mnist"
  mnist_dir.mkdir()
  for prefix, labels in (
      ("train", np.arange(20) % 10),
      ("t10k", np.arange(10) % 5),
  ):  # test: classes 0..4
    write_idx(
        mnist_dir / f"{prefix}-images-idx3-ubyte.gz",
        rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8),
    )
    write_idx(mnist_dir / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
  with pytest.raises(ValueError, match=r"classes \[5, 6, 7, 8, 9\]"):
    build_captioned_digits_dataset(
        source="mnist", mnist_dir=str(mnist_dir), data_dir=str(tmp_path / "d")
    )


def test_caption_and_place_errors():
  assert captioned_digits.caption("top", (7, 1)) == "the digit seven is at the top of the digit one"
  with pytest.raises(ValueError, match="layout"):
    captioned_digits.caption("centre", (1,))
  with pytest.raises(ValueError, match="digits"):
    captioned_digits.caption("left", (1,))
  with pytest.raises(ValueError, match="patches"):
    captioned_digits.place("left", np.zeros((1, 28, 28)), np.random.default_rng(0))


# The templates' word classes written out by hand, one per token then <eos>'s.
_SINGLE_CLASSES = ("det noun number verb preposition det position position preposition det "
                   "noun eos").split()
_PAIR_CLASSES = "det noun number verb preposition det position preposition det noun number eos"


def test_caption_structure_covers_every_caption_of_every_layout(built):
  _, _, records = built
  stored = {r["caption"].decode() if isinstance(r["caption"], bytes) else r["caption"]
            for split in records.values() for r in split}
  generated = {captioned_digits.caption(layout, digits)
               for layout in captioned_digits.LAYOUTS
               for digits in ([(d,) for d in range(10)]
                              if layout in captioned_digits.POSITIONS
                              else [(a, b) for a in range(10) for b in range(10)])}
  assert stored <= generated and len(generated) == 4 * 10 + 4 * 100
  for text in generated:
    classes = captioned_digits.caption_structure(text)
    expected = _SINGLE_CLASSES if SINGLE.fullmatch(text) else _PAIR_CLASSES.split()
    assert list(classes) == expected, text
    assert set(classes) <= set(captioned_digits.STRUCTURE_CLASSES)
    assert len(classes) == len(text.split()) + 1
  assert classes[-1] == captioned_digits.EOS_CLASS


def test_caption_structure_names_an_unknown_word():
  with pytest.raises(ValueError, match="'zebra'"):
    captioned_digits.caption_structure("the digit zebra is at the top left of the image")
