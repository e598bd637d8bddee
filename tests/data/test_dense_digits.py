"""Dense digit scenes: boxes agree with the pixels, phrases with the rendering, held-out split.

The checks parse the stored phrases with their own grammar and test the attributes against
the bands stated in the module docstring (not the module's tables), the boxes against the
image's pixels, the overlaps with their own IoU, and the rotation against image moments.
"""

import re

import numpy as np
import pytest

from vislang_jax.data import dense_digits
from vislang_jax.data.dense_digits import (
    DenseDigitsConfig,
    build_dense_digits_dataset,
    digit_phrase,
    make_scene,
    pair_phrase,
    render_digit,
)
from vislang_jax.data.digit_builder import DigitBuilder
from vislang_jax.data.sources import load_digit_splits, load_digits

NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
_NAME = "(zero|one|two|three|four|five|six|seven|eight|nine)"
DIGIT = re.compile(rf"an? (?:(small|large) )?(?:(thin|bold) )?(?:(tilted) )?{_NAME}")
PAIR = re.compile(rf"an? {_NAME} (left of|right of|above|below) an? {_NAME}")
HELD_OUT = {("large", 3), ("small", 7), ("tilted", 5), ("bold", 2), ("thin", 9)}
# Bands of the module docstring: size as a fraction of the canvas, |angle| in degrees.
SIZE_BANDS = {"small": (0.16, 0.22), None: (0.26, 0.32), "large": (0.36, 0.44)}
TILT_BANDS = {None: (0.0, 5.0), "tilted": (25.0, 40.0)}
S, MAX_DIGITS, MAX_PAIRS, NOVEL_SIZE = 64, 5, 2, 100
R = MAX_DIGITS + MAX_PAIRS


def _area(box):
  return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a, b):
  """Of two (y0, x0, y1, x1) boxes, by hand."""
  return (max(0, min(a[2], b[2]) - max(a[0], b[0]))
          * max(0, min(a[3], b[3]) - max(a[1], b[1])))


def _iou(a, b):
  inter = _intersection(a, b)
  return inter / (_area(a) + _area(b) - inter)


def _over_smaller(a, b):
  return _intersection(a, b) / min(_area(a), _area(b))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("dense")
  data = build_dense_digits_dataset(source="sklearn_digits", data_dir=str(data_dir),
                                    novel_size=NOVEL_SIZE)
  records = {split: [source[i] for i in range(len(source))] for split, source in data.items()}
  return data_dir, records


def _regions(record):
  n = int(record["num_regions"])
  return [(record["phrases"][k].decode(), record["boxes"][k], int(record["kinds"][k]))
          for k in range(n)]


def test_splits_and_record_format(built):
  _, records = built
  assert {k: len(v) for k, v in records.items()} == {
      "train": 1350, "validation": 150, "test": 297, "novel": NOVEL_SIZE}
  counts = np.zeros(MAX_DIGITS + 1, int)
  for split, recs in records.items():
    for r in recs:
      assert r["image"].shape == (S, S, 1) and r["image"].dtype == np.uint8
      assert r["image_hw"].tolist() == [S, S]
      assert r["boxes"].shape == (R, 4) and r["boxes"].dtype == np.int32
      assert r["labels"].shape == (R,) and r["attributes"].shape == (R, 3)
      assert len(r["phrases"]) == R
      n, d = int(r["num_regions"]), int(r["num_digits"])
      assert 1 <= d <= MAX_DIGITS and d <= n <= d + MAX_PAIRS, (split, n, d)
      counts[d] += 1
      assert r["kinds"][:d].tolist() == [0] * d and r["kinds"][d:n].tolist() == [1] * (n - d)
      assert np.all(r["kinds"][n:] == -1) and np.all(r["boxes"][n:] == -1)
      assert np.all(r["labels"][d:] == -1) and np.all(r["attributes"][d:] == -1)
      assert all(p == b"" for p in r["phrases"][n:]) and all(r["phrases"][:n])
  # The count is drawn uniformly in 1..5; few digits fail to find a place.
  assert np.all(counts[1:] > 0.15 * counts.sum()), counts


def test_boxes_inside_canvas_tight_and_covering_the_ink(built):
  _, records = built
  for split, recs in records.items():
    for r in recs:
      image = r["image"][..., 0]
      covered = np.zeros((S, S), bool)
      for phrase, (y0, x0, y1, x1), kind in _regions(r):
        assert 0 <= y0 < y1 <= S and 0 <= x0 < x1 <= S, (split, phrase)
        if kind == 0:
          covered[y0:y1, x0:x1] = True
          crop = image[y0:y1, x0:x1]
          # Tight: ink on every edge of the box.
          assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
      assert not image[~covered].any(), split  # every ink pixel lies in some digit's box


def test_single_digit_scene_box_holds_all_its_ink():
  images, labels = load_digits("sklearn_digits", "test")
  for seed in range(10):
    rng = np.random.default_rng(seed)
    classes = {"size": seed % 3, "tilt": seed % 2, "stroke": (seed // 2) % 3}
    scene = make_scene([(images[seed], int(labels[seed]), classes)], rng, canvas_size=S,
                       max_overlap=0.3, max_pairs=2)
    (y0, x0, y1, x1), = scene.boxes
    assert scene.image.sum() == scene.image[y0:y1, x0:x1].sum() > 0


def test_overlap_limit(built):
  _, records = built
  worst_iou = worst = 0.0
  for recs in records.values():
    for r in recs:
      boxes = [b for _, b, kind in _regions(r) if kind == 0]
      for i in range(len(boxes)):
        for j in range(i):
          worst_iou = max(worst_iou, _iou(boxes[i], boxes[j]))
          worst = max(worst, _over_smaller(boxes[i], boxes[j]))
  # Overlaps happen, up to the limit on the intersection over the smaller box.
  assert 0.25 < worst <= 0.3 and worst_iou <= 0.3
  images, labels = load_digits("sklearn_digits", "test")
  for seed in range(5):  # max_overlap=0: no two digit boxes share a pixel
    rng = np.random.default_rng(seed)
    digits = [(images[k], int(labels[k]), {"size": 1, "tilt": 0, "stroke": 1})
              for k in range(5)]
    scene = make_scene(digits, rng, canvas_size=S, max_overlap=0.0, max_pairs=0)
    boxes = scene.boxes[scene.kinds == 0]
    assert len(boxes) >= 2
    assert all(_iou(boxes[i], boxes[j]) == 0 for i in range(len(boxes)) for j in range(i))


def test_digit_phrases_match_the_rendering(built):
  _, records = built
  side_ratios = {}
  for recs in records.values():
    for r in recs:
      for k in range(int(r["num_digits"])):
        m = DIGIT.fullmatch(r["phrases"][k].decode())
        assert m, r["phrases"][k]
        size_word, stroke_word, tilt_word, name = m.groups()
        assert int(r["labels"][k]) == NUMBERS[name]
        size, angle = float(r["sizes"][k]), float(r["angles"][k])
        low, high = SIZE_BANDS[size_word]
        assert low <= size <= high, (r["phrases"][k], size)
        low, high = TILT_BANDS[tilt_word]
        assert low <= abs(angle) <= high, (r["phrases"][k], angle)
        assert dense_digits.SIZES[r["attributes"][k, 0]] == (size_word or "medium")
        assert dense_digits.TILTS[r["attributes"][k, 1]] == (tilt_word or "upright")
        assert dense_digits.STROKES[r["attributes"][k, 2]] == (stroke_word or "regular")
        # The pixels follow the drawn size: the box's longer side is about size * S (the
        # sklearn digits' blurred ink is ~22 pixels of the 28, rotation and bold grow it).
        y0, x0, y1, x1 = r["boxes"][k]
        side_ratios.setdefault((tilt_word, stroke_word), []).append(
            max(y1 - y0, x1 - x0) / (size * S))
  for key, ratios in side_ratios.items():
    assert 0.85 < min(ratios) and max(ratios) < (1.4 if key[0] is None else 1.65), key
  upright = side_ratios[(None, None)]
  assert 1.0 < np.median(upright) < 1.25


def test_pair_phrases_name_separated_digits_and_union_boxes(built):
  _, records = built
  relations = set()
  for recs in records.values():
    for r in recs:
      d, n = int(r["num_digits"]), int(r["num_regions"])
      assert n - d <= MAX_PAIRS
      for k in range(d, n):
        m = PAIR.fullmatch(r["phrases"][k].decode())
        assert m, r["phrases"][k]
        first, relation, second = m.groups()
        s, o = r["pairs"][k]
        assert 0 <= s < d and 0 <= o < d and s != o
        assert (r["labels"][s], r["labels"][o]) == (NUMBERS[first], NUMBERS[second])
        a, b = r["boxes"][s], r["boxes"][o]
        union = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
        assert r["boxes"][k].tolist() == union
        left, right, above, below = a[3] <= b[1], b[3] <= a[1], a[2] <= b[0], b[2] <= a[0]
        holds = {"left of": left, "right of": right, "above": above, "below": below}
        assert holds[relation] and sum(holds.values()) == 1, (r["phrases"][k], a, b)
        relations.add(relation)
  assert relations == {"left of", "right of", "above", "below"}


def test_held_out_combinations_only_in_novel(built):
  _, records = built
  seen = {split: set() for split in records}
  for split, recs in records.items():
    for r in recs:
      for k in range(int(r["num_digits"])):
        words = r["phrases"][k].decode().split()
        label = NUMBERS[words[-1]]
        combos = {(w, label) for w in words[1:-1]} & HELD_OUT
        if split == "novel":
          assert combos, r["phrases"][k]  # every novel digit shows a held-out combination
          seen[split] |= combos
        else:
          assert not combos, (split, r["phrases"][k])
        seen[split] |= {(w, label) for w in words[1:-1]}
  assert HELD_OUT <= seen["novel"]
  # The held-out words and digits appear in training, in other combinations.
  for word, label in HELD_OUT:
    assert any(w == word for w, _ in seen["train"]) and any(d == label for _, d in seen["train"])


def _generated(config, split):
  """The records of one split straight from the builder's generators, by key."""
  builder = dense_digits.DenseDigits(config=config, data_dir="/nonexistent")
  generators = builder._split_examples(load_digit_splits(config.source))
  return dict(generators[split])


def _key(record):
  phrases = tuple(p if isinstance(p, bytes) else p.encode() for p in record["phrases"])
  return record["image"].tobytes(), phrases, record["boxes"].tobytes()


def test_deterministic_from_the_seed(built):
  _, records = built
  config = DenseDigitsConfig.make(source="sklearn_digits", novel_size=NOVEL_SIZE)
  first, again = _generated(config, "validation"), _generated(config, "validation")
  assert first.keys() == again.keys() == set(range(150))
  for index in first:
    assert _key(first[index]) == _key(again[index])
  # The stored split holds exactly the generated records.
  assert sorted(map(_key, first.values())) == sorted(map(_key, records["validation"]))
  other = _generated(DenseDigitsConfig.make(source="sklearn_digits", seed=1,
                                            novel_size=NOVEL_SIZE), "validation")
  assert sum(_key(first[i]) != _key(other[i]) for i in first) > 140


def test_phrase_grammar():
  assert digit_phrase(3, size="small", tilt="tilted", stroke="bold") == "a small bold tilted three"
  assert digit_phrase(7, size="large", tilt="upright", stroke="regular") == "a large seven"
  assert digit_phrase(8, size="medium", tilt="upright", stroke="regular") == "an eight"
  assert pair_phrase(3, "left of", 8) == "a three left of an eight"
  with pytest.raises(ValueError, match="label"):
    digit_phrase(10, size="small", tilt="upright", stroke="thin")
  with pytest.raises(ValueError, match="size"):
    digit_phrase(1, size="huge", tilt="upright", stroke="thin")
  with pytest.raises(ValueError, match="relation"):
    pair_phrase(1, "beside", 2)


def test_render_digit_crops_to_ink_and_follows_stroke_and_angle():
  images, _ = load_digits("sklearn_digits", "test")
  for digit in images[:5]:
    masses = [render_digit(digit, scale=1.0, angle=0.0, stroke=s).astype(float).sum()
              for s in ("thin", "regular", "bold")]
    assert masses[0] < 0.85 * masses[1] and masses[2] > 1.15 * masses[1]
    layer = render_digit(digit, scale=1.5, angle=30.0, stroke="regular")
    assert layer[0].any() and layer[-1].any() and layer[:, 0].any() and layer[:, -1].any()
  assert render_digit(np.zeros((28, 28)), scale=1.0, angle=0.0, stroke="bold").shape == (0, 0)
  # A vertical bar turned by +30 degrees leans counter-clockwise: its top goes left.
  bar = np.zeros((28, 28))
  bar[4:24, 13:15] = 255
  for angle in (30.0, -30.0):
    layer = render_digit(bar, scale=1.0, angle=angle, stroke="regular").astype(float)
    rows, cols = np.indices(layer.shape)
    w = layer / layer.sum()
    dy, dx = rows - (w * rows).sum(), cols - (w * cols).sum()
    cov = np.array([[(w * dy * dy).sum(), (w * dy * dx).sum()],
                    [(w * dy * dx).sum(), (w * dx * dx).sum()]])
    vy, vx = np.linalg.eigh(cov)[1][:, -1]  # principal axis (row, column)
    if vy > 0:  # point it up the bar (rows decreasing)
      vy, vx = -vy, -vx
    lean = np.degrees(np.arctan2(-vx, -vy))  # > 0: going up the bar goes left
    assert abs(abs(lean) - 30) < 2 and np.sign(lean) == np.sign(angle), (angle, lean)


@pytest.mark.parametrize("kwargs, name", [
    (dict(source="emnist"), "source"),
    (dict(source="sklearn_digits", mnist_dir="/tmp"), "mnist_dir"),
    (dict(source="sklearn_digits", seed=-1), "seed"),
    (dict(source="sklearn_digits", canvas_size=32), "canvas_size"),
    (dict(source="sklearn_digits", canvas_size=64.0), "canvas_size"),
    (dict(source="sklearn_digits", max_digits=0), "max_digits"),
    (dict(source="sklearn_digits", max_digits=11), "max_digits"),
    (dict(source="sklearn_digits", max_pairs=-1), "max_pairs"),
    (dict(source="sklearn_digits", max_overlap=1.5), "max_overlap"),
    (dict(source="sklearn_digits", max_overlap=-0.1), "max_overlap"),
    (dict(source="sklearn_digits", copies=0), "copies"),
    (dict(source="sklearn_digits", novel_size=0), "novel_size"),
])
def test_config_errors(kwargs, name):
  with pytest.raises(ValueError, match=name):
    DenseDigitsConfig.make(**kwargs)


def test_config_name_spells_out_the_data_parameters():
  a = DenseDigitsConfig.make(source="sklearn_digits")
  assert a.max_regions == 7
  names = {a.name} | {DenseDigitsConfig.make(source="sklearn_digits", **{k: v}).name
                      for k, v in dict(seed=1, canvas_size=96, max_digits=3, max_pairs=0,
                                       max_overlap=0.5, copies=2, novel_size=5).items()}
  assert len(names) == 8
  assert issubclass(dense_digits.DenseDigits, DigitBuilder)
