"""Sort-of-CLEVR: every stored answer re-derived from the rendered pixels; splits, seeds, errors.

The checks find each object in the image by its colour (the released generator's RGB values,
written out here), measure its centre and shape from its pixels, parse the question texts
with their own patterns, and answer them with their own rules; they do not reuse the
builder's solver or tables.
"""

import collections
import re

import numpy as np
import pytest

from vislang_jax.data import sort_of_clevr
from vislang_jax.data.questions import encode_question_splits
from vislang_jax.data.sort_of_clevr import (ANSWERS, QUESTION_SUBTYPES, QUESTION_TYPES,
                                            SortOfClevrConfig, answer,
                                            build_sort_of_clevr_dataset, make_example)

SIZE = 75
OBJECT = 5
RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
       "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0)}
NAMES = ("red", "green", "blue", "orange", "gray", "yellow")
SIZES = {"train": 40, "validation": 10, "test": 10}
_C = "(red|green|blue|orange|gray|yellow)"
PATTERNS = {  # subtype -> (question type, pattern)
    "shape": ("non_relational", rf"what is the shape of the {_C} object"),
    "horizontal": ("non_relational", rf"is the {_C} object on the left"),
    "vertical": ("non_relational", rf"is the {_C} object at the top"),
    "closest_shape": ("relational", rf"what is the shape of the object closest to the {_C} object"),
    "farthest_shape": ("relational",
                       rf"what is the shape of the object farthest from the {_C} object"),
    "count": ("relational", rf"how many objects have the same shape as the {_C} object"),
}


def _detect(image):
  """{colour: (centre (y, x), "square"/"circle", pixel count)} found from the pixels alone."""
  objects = {}
  for name, rgb in RGB.items():
    rows, columns = np.nonzero(np.all(image == rgb, axis=-1))
    assert rows.size, f"no {name} object"
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    assert height == width == 2 * OBJECT + 1, (name, height, width)
    fill = rows.size / (height * width)  # 1 for a square, about pi / 4 for a disc
    shape = "square" if fill > 0.95 else "circle"
    assert shape == "square" or 0.6 < fill < 0.85, (name, fill)
    centre = (rows.mean(), columns.mean())
    assert np.allclose(centre, np.round(centre)), (name, centre)  # symmetric shapes
    objects[name] = (tuple(int(c) for c in np.round(centre)), shape, rows.size)
  return objects


def _parse(question):
  for subtype, (qtype, pattern) in PATTERNS.items():
    if m := re.fullmatch(pattern, question):
      return qtype, subtype, m[1]
  raise AssertionError(f"question fits no template: {question!r}")


def _solve(objects, subtype, colour):
  """The answer from detected objects, by the rules of Santoro et al.'s released generator."""
  (y, x), shape, _ = objects[colour]
  if subtype == "shape":
    return shape
  if subtype == "horizontal":
    return "yes" if x < SIZE / 2 else "no"
  if subtype == "vertical":
    return "yes" if y < SIZE / 2 else "no"
  if subtype == "count":
    return str(sum(s == shape for _, s, _ in objects.values()))
  others = [(_distance((y, x), c), NAMES.index(n), s) for n, (c, s, _) in objects.items()
            if n != colour]
  if subtype == "closest_shape":
    return min(others)[2]  # ties: the first colour
  farthest = max(d for d, _, _ in others)
  return min(o for o in others if o[0] == farthest)[2]


def _distance(a, b):
  return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data = build_sort_of_clevr_dataset(data_dir=str(tmp_path_factory.mktemp("soc")),
                                     num_train=SIZES["train"],
                                     num_validation=SIZES["validation"],
                                     num_test=SIZES["test"])
  return {split: [source[i] for i in range(len(source))] for split, source in data.items()}


def test_splits_fields_and_shapes(built):
  assert {split: len(records) for split, records in built.items()} == SIZES
  record = built["train"][0]
  assert record["image"].dtype == np.uint8 and record["image"].shape == (SIZE, SIZE, 3)
  assert len(record["questions"]) == len(record["answers"]) == 20
  for field, shape in (("question_types", (20,)), ("question_subtypes", (20,)),
                       ("question_colors", (20,)), ("colors", (6,)), ("shapes", (6,)),
                       ("centers", (6, 2))):
    assert record[field].dtype == np.int32 and record[field].shape == shape, field
  assert ANSWERS == ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
  assert QUESTION_TYPES == ("non_relational", "relational")


def test_objects_and_answers_rederived_from_pixels(built):
  # A disc as wide as the square: pixel centres within OBJECT + 1/2 of its centre.
  offsets = range(-OBJECT, OBJECT + 1)
  circle_pixels = sum(dy * dy + dx * dx <= (OBJECT + 0.5) ** 2 for dy in offsets for dx in offsets)
  for records in built.values():
    for record in records:
      image = record["image"]
      objects = _detect(image)
      # Six disjoint whole objects on a white background, nothing else.
      counts = [n for _, _, n in objects.values()]
      assert all(n in ((2 * OBJECT + 1) ** 2, circle_pixels) for n in counts)
      assert sum(counts) + np.all(image == 255, axis=-1).sum() == SIZE * SIZE
      # The stored object list is what the pixels show.
      np.testing.assert_array_equal(record["colors"], np.arange(6))
      np.testing.assert_array_equal(record["centers"], [objects[n][0] for n in NAMES])
      assert [("square", "circle")[s] for s in record["shapes"]] == [
          objects[n][1] for n in NAMES]
      # Every answer, from the detected objects and the parsed question.
      parsed = [_parse(q.decode()) for q in record["questions"]]
      assert [t for t, _, _ in parsed] == ["non_relational"] * 10 + ["relational"] * 10
      assert [QUESTION_TYPES[t] for t in record["question_types"]] == [t for t, _, _ in parsed]
      assert [QUESTION_SUBTYPES[s] for s in record["question_subtypes"]] == [
          s for _, s, _ in parsed]
      assert [NAMES[c] for c in record["question_colors"]] == [c for _, _, c in parsed]
      assert [a.decode() for a in record["answers"]] == [
          _solve(objects, s, c) for _, s, c in parsed]


def test_answers_are_not_degenerate(built):
  records = [r for split in built.values() for r in split]
  subtypes = collections.Counter(QUESTION_SUBTYPES[s] for r in records
                                 for s in r["question_subtypes"])
  # 600 questions of each type, each subtype drawn with probability 1/3.
  assert set(subtypes) == set(QUESTION_SUBTYPES) and min(subtypes.values()) > 150, subtypes
  by_subtype = collections.defaultdict(collections.Counter)
  for r in records:
    for s, a in zip(r["question_subtypes"], r["answers"]):
      by_subtype[QUESTION_SUBTYPES[s]][a.decode()] += 1
  for subtype in ("horizontal", "vertical"):
    assert set(by_subtype[subtype]) == {"yes", "no"}, by_subtype[subtype]
  for subtype in ("shape", "closest_shape", "farthest_shape"):
    assert set(by_subtype[subtype]) == {"square", "circle"}, by_subtype[subtype]
  assert len(by_subtype["count"]) >= 4, by_subtype["count"]
  colours = collections.Counter(c for r in records for c in r["question_colors"])
  assert len(colours) == 6


def test_records_follow_their_own_generators(built):
  # Record i of split s is make_example(default_rng([seed, split_id, i])), ids 0 / 1 / 2.
  for split, split_id in (("train", 0), ("validation", 1), ("test", 2)):
    for index in (0, SIZES[split] - 1):
      expected = make_example(np.random.default_rng([0, split_id, index]), image_size=SIZE,
                              object_size=OBJECT, questions_per_group=10)
      record = built[split][index]
      np.testing.assert_array_equal(record["image"], expected["image"])
      assert [a.decode() for a in record["answers"]] == expected["answers"]


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
  again = build_sort_of_clevr_dataset(data_dir=str(tmp_path / "a"), num_train=3,
                                      num_validation=1, num_test=1)
  other = build_sort_of_clevr_dataset(data_dir=str(tmp_path / "b"), seed=1, num_train=3,
                                      num_validation=1, num_test=1)
  for i in range(3):  # Split sizes do not change the examples.
    assert again["train"][i]["image"].tobytes() == built["train"][i]["image"].tobytes()
    assert again["train"][i]["questions"] == built["train"][i]["questions"]
    assert other["train"][i]["image"].tobytes() != built["train"][i]["image"].tobytes()


def test_solver_rules_on_a_hand_made_scene():
  # red square at (10, 37), green circle at (10, 38): x = 37 < 37.5 is left, 38 is not.
  shapes = [0, 1, 1, 0, 1, 0]
  centers = np.array([[10, 37], [10, 38], [37, 10], [38, 60], [60, 60], [60, 20]])
  ask = lambda color, subtype: answer(shapes, centers, color=color, subtype=subtype,
                                      image_size=75)
  assert (ask("red", "horizontal"), ask("green", "horizontal")) == ("yes", "no")
  assert (ask("blue", "vertical"), ask("orange", "vertical")) == ("yes", "no")
  assert ask("red", "closest_shape") == "circle"  # green, not itself
  assert ask("red", "farthest_shape") == "circle"  # gray at (60, 60)
  assert ask("red", "count") == "3" and ask("green", "count") == "3"  # itself included
  # Distance ties go to the first colour: from green (20, 0), red and blue are both at
  # distance 20, orange and yellow both at sqrt(2000).
  tie = np.array([[0, 0], [20, 0], [40, 0], [0, 40], [20, 40], [40, 40]])
  tie_shapes = [0, 1, 1, 0, 1, 1]  # red and orange squares, blue and yellow circles
  ask = lambda subtype: answer(tie_shapes, tie, color="green", subtype=subtype, image_size=75)
  assert ask("closest_shape") == "square" and ask("farthest_shape") == "square"


@pytest.mark.parametrize("kwargs, name", [
    ({"num_train": -1}, "num_train"), ({"num_validation": 0}, "num_validation"),
    ({"num_test": -5}, "num_test"), ({"questions_per_group": 0}, "questions_per_group"),
    ({"seed": -1}, "seed"), ({"object_size": -2}, "object_size"),
    ({"image_size": 20}, "image_size"), ({"image_size": 0}, "image_size"),
    ({"num_trian": 5}, "num_trian"),
])
def test_bad_config_names_the_argument(kwargs, name, tmp_path):
  with pytest.raises(ValueError, match=name):
    SortOfClevrConfig.make(**kwargs)
  with pytest.raises(ValueError, match=name):
    build_sort_of_clevr_dataset(data_dir=str(tmp_path), **kwargs)


def test_config_name_spells_every_parameter():
  name = SortOfClevrConfig.make(seed=3, num_train=7, num_validation=2, num_test=1,
                                image_size=64, object_size=4, questions_per_group=5).name
  for value in ("3", "7", "2", "1", "64", "4", "5"):
    assert value in name
  assert len({SortOfClevrConfig.make(**{k: v}).name for k, v in (
      ("seed", 1), ("num_train", 1), ("num_validation", 1), ("num_test", 1),
      ("image_size", 70), ("object_size", 4), ("questions_per_group", 1))}) == 7
  assert sort_of_clevr.question_text("red", "count") == (
      "how many objects have the same shape as the red object")


def test_question_answers_flattens_a_split(built):
  splits, vocabulary = encode_question_splits(
      {"validation": built["validation"]}, answers=ANSWERS, question_types=QUESTION_TYPES,
      vocabulary_split="validation")
  flat = splits["validation"]
  assert len(flat) == SIZES["validation"] * 20
  example = flat[23]  # image 1, question 3 (non-relational)
  record = built["validation"][1]
  assert ANSWERS[example["answer"]] == record["answers"][3].decode()
  assert example["question_type"] == 0 and example["image_index"] == 1
  assert example["question_subtype"] == record["question_subtypes"][3]
  assert example["question_color"] == record["question_colors"][3]
  np.testing.assert_array_equal(example["centers"], record["centers"])
  assert example["image"].shape == (SIZE, SIZE, 3) and example["image"].max() == 1.0
