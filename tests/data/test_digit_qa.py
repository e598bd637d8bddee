"""Digit-scene QA: every stored answer re-derived from the stored boxes; held-out split; balance.

The checks parse the stored questions with their own grammar and number words and answer
them from the digits' boxes (pixel geometry), so they share neither the builder's question
templates nor its solver. The held-out scenes are written out by hand.
"""

import collections
import re

import numpy as np
import pytest

from vislang_jax.data import digit_qa
from vislang_jax.data.captioned_digits import build_captioned_digits_dataset
from vislang_jax.data.digit_qa import ANSWERS, QUESTION_TYPES, Question, answer
from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.questions import QuestionAnswers, encode_question_splits
from vislang_jax.data.vocabulary import UNK_ID

NAMES = "zero one two three four five six seven eight nine".split()
_NAME = "(" + "|".join(NAMES) + ")"
RELATION = re.compile(rf"which digit is (left of|right of|above|below) the {_NAME}")
POSITION = re.compile(rf"where is the {_NAME}")
EXISTS = re.compile(rf"is there (a|an) {_NAME}")
# Scenes as (kind, digits in reading order: left then right, upper then lower).
HELD_OUT_SCENES = {("top left", (6,)), ("top right", (2,)), ("bottom left", (9,)),
                   ("bottom right", (4,)), ("side by side", (3, 5)), ("side by side", (0, 8)),
                   ("stacked", (7, 1)), ("stacked", (2, 9))}
NOVEL_SIZE = 120


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("digit_qa")
  data = digit_qa.build_digit_qa_dataset(source="sklearn_digits", data_dir=str(data_dir),
                                         novel_size=NOVEL_SIZE)
  records = {split: [source[i] for i in range(len(source))] for split, source in data.items()}
  return data_dir, data, records


def _text(value):
  return value.decode() if isinstance(value, bytes) else value


def _digits(record):
  """[(label, y0, x0)] of the record's digits, from its labels and boxes."""
  n = int(record["num_digits"])
  return [(int(record["labels"][k]), int(record["boxes"][k][0]), int(record["boxes"][k][1]))
          for k in range(n)]


def _scene(record):
  """(kind, digits in reading order), from pixel offsets alone."""
  digits = _digits(record)
  if len(digits) == 1:
    label, y, x = digits[0]
    return f"{'top' if y < 16 else 'bottom'} {'left' if x < 16 else 'right'}", (label,)
  (a, ya, xa), (b, yb, xb) = digits
  if abs(xa - xb) > abs(ya - yb):
    return "side by side", (a, b) if xa < xb else (b, a)
  return "stacked", (a, b) if ya < yb else (b, a)


def _related(relation, other, subject):
  """`other` is `relation` `subject`: offsets differ by over 20 px on one axis, not the other."""
  _, y, x = other
  _, sy, sx = subject
  far = {"left of": sx - x, "right of": x - sx, "above": sy - y, "below": y - sy}[relation]
  across = abs(y - sy) if relation in ("left of", "right of") else abs(x - sx)
  return far > 20 and across < 5


def _side(digit, digits):
  """Where a digit of a pair lies on the canvas, by comparing it with the other's offsets."""
  (_, y, x), (_, oy, ox) = digit, next(d for d in digits if d is not digit)
  if abs(x - ox) > abs(y - oy):
    return "left" if x < ox else "right"
  return "top" if y < oy else "bottom"


def _solve(question, digits):
  """The test's own answer to a question text about digits [(label, y0, x0)]."""
  if question == "how many digits are there":
    return {1: "one", 2: "two"}[len(digits)]
  if m := EXISTS.fullmatch(question):
    assert (m[1] == "an") == (m[2] == "eight"), question
    return "yes" if NAMES.index(m[2]) in [d[0] for d in digits] else "no"
  if m := POSITION.fullmatch(question):
    subjects = [d for d in digits if d[0] == NAMES.index(m[1])]
    assert subjects, f"position question about an absent digit: {question!r}"
    if len(digits) == 1:
      _, y, x = digits[0]
      return f"{'top' if y < 16 else 'bottom'} {'left' if x < 16 else 'right'}"
    sides = sorted(_side(s, digits) for s in subjects)
    return {("left", "right"): "left and right", ("bottom", "top"): "top and bottom"}.get(
        tuple(sides), sides[0])
  m = RELATION.fullmatch(question)
  assert m, f"question fits no template: {question!r}"
  subjects = [d for d in digits if d[0] == NAMES.index(m[2])]
  assert subjects, f"relation question about an absent digit: {question!r}"
  found = {NAMES[o[0]] for s in subjects for o in digits if o is not s and _related(m[1], o, s)}
  assert len(found) <= 1
  return found.pop() if found else "nothing"


def test_splits_and_record_format(built):
  _, data, records = built
  assert {k: len(v) for k, v in data.items()} == {"train": 1350, "validation": 150, "test": 297,
                                                  "novel": NOVEL_SIZE}
  for split, recs in records.items():
    for r in recs:
      assert r["image"].shape == (60, 60, 1) and r["image"].dtype == np.uint8
      assert len(r["questions"]) == len(r["answers"]) == 4
      assert r["question_types"].dtype == np.int32 and r["question_types"].tolist() == [0, 1, 2, 3]
      assert r["labels"].shape == (2,) and r["boxes"].shape == (2, 4)
      n = int(r["num_digits"])
      assert np.all(r["labels"][n:] == -1) and np.all(r["boxes"][n:] == -1)
      assert {_text(a) for a in r["answers"]} <= set(ANSWERS)
  assert QUESTION_TYPES == ("relation", "position", "count", "exists")
  assert len(set(ANSWERS)) == len(ANSWERS) == 23


def test_every_answer_rederived_from_the_boxes(built):
  _, _, records = built
  checked = 0
  for split, recs in records.items():
    for i, r in enumerate(recs):
      digits = _digits(r)
      for q, a in zip(r["questions"], r["answers"]):
        assert _solve(_text(q), digits) == _text(a), (split, i, _text(q), digits)
        checked += 1
  assert checked == 4 * (1350 + 150 + 297 + NOVEL_SIZE)


def test_held_out_scenes_only_in_novel(built):
  _, _, records = built
  scenes = {split: {_scene(r) for r in recs} for split, recs in records.items()}
  assert scenes["novel"] == HELD_OUT_SCENES  # Every one of the 8 appears in 120 draws.
  for split in ("train", "validation", "test"):
    assert not scenes[split] & HELD_OUT_SCENES, split
  # The held-out digits are asked about in training, in other scenes.
  asked = {_text(q) for r in records["train"] for q in r["questions"]}
  assert {"where is the six", "which digit is left of the five", "is there a nine"} <= asked


def test_balance(built):
  _, _, records = built
  train = records["train"]
  by_type = collections.defaultdict(collections.Counter)
  pair_nothing = []
  for r in train:
    for t, a in zip(r["question_types"], r["answers"]):
      by_type[QUESTION_TYPES[t]][_text(a)] += 1
    if int(r["num_digits"]) == 2:
      pair_nothing.append(_text(r["answers"][0]) == "nothing")
    else:
      assert _text(r["answers"][0]) == "nothing"
  n = len(train)
  assert 0.4 < by_type["exists"]["yes"] / n < 0.6
  assert 0.4 < by_type["count"]["two"] / n < 0.6
  # A pair's relation holds 0.8 of the time; one-digit scenes (half of them) answer "nothing".
  assert 0.1 < np.mean(pair_nothing) < 0.3
  assert 0.5 < by_type["relation"]["nothing"] / n < 0.7
  assert set(by_type["relation"]) == set(NAMES) | {"nothing"}
  assert set(by_type["position"]) == {"top left", "top right", "bottom left", "bottom right",
                                      "left", "right", "top", "bottom", "left and right",
                                      "top and bottom"}
  assert {a for c in by_type.values() for a in c} == set(ANSWERS)  # Train covers every answer.


def test_same_scenes_as_captioned_digits(built, tmp_path):
  _, _, records = built
  captioned = build_captioned_digits_dataset(source="sklearn_digits", data_dir=str(tmp_path),
                                             novel_size=NOVEL_SIZE)
  for split, recs in records.items():
    for i in range(0, len(recs), 7):
      other = captioned[split][i]
      for key in ("image", "labels", "boxes"):
        np.testing.assert_array_equal(recs[i][key], other[key], err_msg=f"{split} {i} {key}")


def test_rebuild_elsewhere_is_byte_identical(built, tmp_path):
  data_dir, _, records = built
  again = digit_qa.build_digit_qa_dataset(source="sklearn_digits", data_dir=str(tmp_path),
                                          novel_size=NOVEL_SIZE)
  name = (f"digit_qa/sklearn_digits-seed0-copies1-novel{NOVEL_SIZE}/"
          f"{digit_qa.DigitQA.VERSION}")
  files = sorted(p.name for p in (data_dir / name).glob("*.array_record*"))
  assert len(files) == 4
  for f in files:
    assert (data_dir / name / f).read_bytes() == (tmp_path / name / f).read_bytes()
  assert again["novel"][5]["questions"] == records["novel"][5]["questions"]


def test_encoded_for_training(built):
  _, data, records = built
  encoded, vocabulary = encode_question_splits(data, answers=ANSWERS,
                                               question_types=QUESTION_TYPES)
  assert encoded["train"].max_len == 8  # "which digit is left of the seven" + <eos>
  for split, qa in encoded.items():
    assert isinstance(qa, QuestionAnswers) and len(qa) == 4 * len(records[split])
    for i in range(0, len(qa), 97):
      example = qa[i]
      record = records[split][i // 4]
      assert not np.any(example["question"] == UNK_ID)
      assert ANSWERS[int(example["answer"])] == _text(record["answers"][i % 4])
      assert QUESTION_TYPES[int(example["question_type"])] == QUESTION_TYPES[i % 4]
  batch = next(iter(make_loader(encoded["novel"], batch_size=8, seed=0, shuffle=True,
                                num_epochs=1, drop_remainder=True)))
  assert batch["image"].shape == (8, 60, 60, 1) and batch["question"].shape == (8, 8)
  assert batch["labels"].shape == (8, 2) and batch["answer"].shape == (8,)


def test_solver_examples():
  # Identical digits: the left three is left of the right three.
  assert answer("left", (3, 3), Question("relation", 3, "left")) == "three"
  assert answer("left", (3, 3), Question("relation", 3, "above")) == "nothing"
  assert answer("left", (3, 3), Question("position", 3)) == "left and right"
  assert answer("bottom", (4, 4), Question("position", 4)) == "top and bottom"
  # "bottom": the first digit (seven) is below the second (one).
  assert answer("bottom", (7, 1), Question("relation", 7, "above")) == "one"
  assert answer("bottom", (7, 1), Question("relation", 1, "above")) == "nothing"
  assert answer("bottom", (7, 1), Question("position", 7)) == "bottom"
  assert answer("right", (2, 5), Question("relation", 2, "left")) == "five"
  assert answer("top right", (8,), Question("position", 8)) == "top right"
  assert answer("top right", (8,), Question("relation", 8, "left")) == "nothing"
  assert answer("top right", (8,), Question("count")) == "one"
  assert answer("top", (8, 0), Question("exists", 0)) == "yes"
  assert answer("top", (8, 0), Question("exists", 6)) == "no"
  assert digit_qa.question_text(Question("exists", 8)) == "is there an eight"
  assert digit_qa.question_text(Question("relation", 7, "below")) == "which digit is below the seven"


@pytest.mark.parametrize("layout, digits, question, match", [
    ("left", (3, 5), Question("relation", 4, "left"), "question.digit"),
    ("left", (3, 5), Question("position", 4), "question.digit"),
    ("left", (3, 5), Question("relation", 3, "under"), "question.relation"),
    ("left", (3, 5), Question("colour", 3), "question.type"),
    ("left", (3, 5), Question("count", 3), "count"),
    ("left", (3, 5), Question("exists", 12), "question.digit"),
    ("left", (3,), Question("count"), "digits"),
    ("middle", (3,), Question("count"), "layout"),
])
def test_solver_errors(layout, digits, question, match):
  with pytest.raises(ValueError, match=match):
    answer(layout, digits, question)


@pytest.mark.parametrize("kwargs, match", [
    (dict(source="emnist"), "source"),
    (dict(source="sklearn_digits", copies=0), "copies"),
    (dict(source="sklearn_digits", novel_size=0), "novel_size"),
    (dict(source="sklearn_digits", seed=-1), "seed"),
    (dict(source="sklearn_digits", mnist_dir="/tmp"), "mnist_dir"),
])
def test_bad_parameters(kwargs, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    digit_qa.build_digit_qa_dataset(data_dir=str(tmp_path), **kwargs)
  assert not list(tmp_path.iterdir())
