"""Digit-scene question answering: four questions about each captioned-digits scene, as array_record.

The scenes are those of `captioned_digits` (Mansimov et al., 2016, Sec. 5.1): one digit in a
corner of a 60x60 canvas, or two digits side by side or one above the other, with the same
layouts, placements, held-out combinations (`captioned_digits.HELD_OUT`) and splits; with the
same seed, record `i` of a split shows exactly the image of captioned digits' record `i`.
"train", "validation" and "test" hold only seen scenes; "novel" holds only held-out ones, so
every one of its questions asks about a scene never trained on. Each image comes with one
question of each of `QUESTION_TYPES`, in that order (the per-image QA record of
`data/questions.py`, Q = 4), in the spirit of the relational and non-relational questions of
Sort-of-CLEVR (Santoro et al., "A simple neural network module for relational reasoning",
NeurIPS 2017, Sec. 4):

  * "relation": "which digit is left of the seven" (or "right of", "above", "below"). The
    named digit is one of the scene's, drawn uniformly. The answer is the name of the digit
    in that relation to it, or "nothing". In a two-digit scene the relation that holds is
    asked with probability `HOLDS` = 0.8, else one of the three others, uniformly; a
    one-digit scene gets a relation drawn uniformly and the answer "nothing" (so about 0.6
    of all relation answers are "nothing": the majority baseline of `accuracy_relation`). Identical digits are well defined: the left three of
    a pair of threes is left of the right three, so "which digit is left of the three" ->
    "three".
  * "position": "where is the three" (a digit of the scene, drawn uniformly) -> a single
    digit's corner ("top left", ...); for a pair, the side of the canvas the named digit
    lies on ("left", "right", "top", "bottom"), or "left and right" / "top and bottom" when
    both digits are threes.
  * "count": "how many digits are there" -> "one" or "two".
  * "exists": "is there a five" (or "an eight"): with probability 1/2 a digit of the scene
    (drawn uniformly), else a digit absent from it (uniformly) -> "yes" / "no".

`answer(layout, digits, question)` solves a question from the scene alone; the builder draws
`Question`s after the scene (from the same example generator, after the digit offsets) and
stores the solver's answers. Every answer is one of `ANSWERS`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, is_int
from vislang_jax.data.captioned_digits import (
    CANVAS_SIZE,
    DIGIT_NAMES,
    LAYOUTS,
    MAX_DIGITS,
    POSITIONS,
    CaptionedDigits,
    CaptionedDigitsConfig,
    make_example,
)
from vislang_jax.data.digit_builder import prepare

QUESTION_TYPES = ("relation", "position", "count", "exists")
QUESTION_RELATIONS = ("left", "right", "above", "below")
SIDES = ("left", "right", "top", "bottom")
NOTHING = "nothing"
# Digit names (also the counts "one", "two"), "nothing", corners, sides, both sides, yes / no.
ANSWERS = (DIGIT_NAMES + (NOTHING,) + POSITIONS + SIDES + ("left and right", "top and bottom")
           + ("yes", "no"))
HOLDS = 0.8  # probability that a two-digit scene's relation question asks the relation it has
_RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


class Question(NamedTuple):
  """A question spec: its type (one of QUESTION_TYPES), the digit it names and the relation.

  `digit` is a label 0..9 for every type but "count" (None); `relation` is one of
  QUESTION_RELATIONS for "relation" questions, else None.
  """

  type: str
  digit: int | None = None
  relation: str | None = None


def _check_question(question: Question) -> None:
  if not isinstance(question, Question):
    raise ValueError(f"question must be a digit_qa.Question, got {question!r}.")
  check_choice("question.type", question.type, QUESTION_TYPES)
  if question.type == "count":
    if question.digit is not None or question.relation is not None:
      raise ValueError(f"question must name no digit or relation for type 'count', got {question}.")
    return
  if not (is_int(question.digit) and 0 <= question.digit <= 9):
    raise ValueError(f"question.digit must be a label in 0..9 for type {question.type!r}, got "
                     f"{question.digit!r}.")
  if question.type == "relation":
    check_choice("question.relation", question.relation, QUESTION_RELATIONS)
  elif question.relation is not None:
    raise ValueError(f"question.relation must be None for type {question.type!r}, got "
                     f"{question.relation!r}.")


def question_text(question: Question) -> str:
  """The question's words, e.g. "which digit is left of the seven" (module doc)."""
  _check_question(question)
  if question.type == "count":
    return "how many digits are there"
  name = DIGIT_NAMES[question.digit]
  if question.type == "relation":
    return f"which digit is {_RELATION_WORDS[question.relation]} the {name}"
  if question.type == "position":
    return f"where is the {name}"
  return f"is there {'an' if name == 'eight' else 'a'} {name}"  # "a one", "an eight"


def _cells(layout: str, digits: tuple[int, ...]) -> list[tuple[int, int, int]]:
  """The scene's digits as `(label, row, column)` on a 3x3 grid of the canvas (1 = middle).

  `layout, digits` is a captioned-digits combination (the caption's order): "left" puts the
  first digit left of the second, "right" the first right of the second, and so on.
  """
  check_choice("layout", layout, LAYOUTS)
  expected = 1 if layout in POSITIONS else 2
  if len(digits) != expected or not all(is_int(d) and 0 <= d <= 9 for d in digits):
    raise ValueError(f"digits must be {expected} labels in 0..9 for layout={layout!r}, got "
                     f"{digits!r}.")
  if layout in POSITIONS:
    vertical, horizontal = layout.split()
    return [(int(digits[0]), 0 if vertical == "top" else 2, 0 if horizontal == "left" else 2)]
  first, second = {"left": ((1, 0), (1, 2)), "right": ((1, 2), (1, 0)),
                   "top": ((0, 1), (2, 1)), "bottom": ((2, 1), (0, 1))}[layout]
  return [(int(digits[0]), *first), (int(digits[1]), *second)]


def _holds(relation: str, other: tuple[int, int, int], subject: tuple[int, int, int]) -> bool:
  """`other` is `relation` (left of / right of / above / below) `subject` (grid cells)."""
  (_, row, column), (_, subject_row, subject_column) = other, subject
  return {"left": row == subject_row and column < subject_column,
          "right": row == subject_row and column > subject_column,
          "above": column == subject_column and row < subject_row,
          "below": column == subject_column and row > subject_row}[relation]


def answer(layout: str, digits: tuple[int, ...], question: Question) -> str:
  """Answers a question about a scene, from the scene alone.

  Args:
    layout: one of `captioned_digits.LAYOUTS`.
    digits: the labels in caption order (one for a corner, two for a relation), e.g.
      `("left", (3, 5))`: a three left of a five.
    question: the question; a "relation" or "position" question must name a digit of the
      scene ("exists" may name any).

  Returns:
    One of ANSWERS (module doc).

  Raises:
    ValueError: for a bad layout, digits or question, or a relation / position question
      about a digit the scene does not hold.
  """
  cells = _cells(layout, digits)
  _check_question(question)
  if question.type == "count":
    return DIGIT_NAMES[len(cells)]
  subjects = [c for c in cells if c[0] == question.digit]
  if question.type == "exists":
    return "yes" if subjects else "no"
  if not subjects:
    raise ValueError(f"question.digit must be a digit of the scene {layout!r} {tuple(digits)} for "
                     f"a {question.type!r} question, got {question.digit}.")
  if question.type == "relation":
    related = {DIGIT_NAMES[o[0]] for s in subjects for o in cells
               if o is not s and _holds(question.relation, o, s)}
    return related.pop() if related else NOTHING  # Two digits: at most one is related.
  if len(cells) == 1:
    return layout
  sides = [{(1, 0): "left", (1, 2): "right", (0, 1): "top", (2, 1): "bottom"}[s[1:]]
           for s in subjects]
  return " and ".join(sorted(sides, key=SIDES.index))


def draw_questions(layout: str, digits: tuple[int, ...], rng: np.random.Generator
                   ) -> list[Question]:
  """One question of each of QUESTION_TYPES about a scene, drawn as the module doc says.

  Args:
    layout, digits: the scene (see `answer`).
    rng: draws, in order: the relation question's digit slot, whether the relation holds
      (two digits) and the relation; the position question's slot; whether the digit of
      the "exists" question is present, and the digit.
  """
  cells = _cells(layout, digits)
  subject = cells[int(rng.integers(len(cells)))]
  if len(cells) == 2:
    other = next(c for c in cells if c is not subject)
    holding = next(r for r in QUESTION_RELATIONS if _holds(r, other, subject))
    if rng.random() < HOLDS:
      relation = holding
    else:
      relation = [r for r in QUESTION_RELATIONS if r != holding][int(rng.integers(3))]
  else:
    relation = QUESTION_RELATIONS[int(rng.integers(len(QUESTION_RELATIONS)))]
  position = cells[int(rng.integers(len(cells)))][0]
  present = sorted({c[0] for c in cells})
  if rng.random() < 0.5:
    named = cells[int(rng.integers(len(cells)))][0]
  else:
    absent = [d for d in range(10) if d not in present]
    named = absent[int(rng.integers(len(absent)))]
  return [Question("relation", subject[0], relation), Question("position", position),
          Question("count"), Question("exists", named)]


class DigitQA(CaptionedDigits):
  """Digit-scene question answering (module doc) over any digit source.

  Construct with a config of `digit_qa_config`: `DigitQA(config=digit_qa_config(...),
  data_dir=..., file_format="array_record")`, or call `build_digit_qa_dataset`. Records:
    image: uint8 `[60, 60, 1]`.
    questions, answers: 4 texts each (bytes when read back), one per QUESTION_TYPES.
    question_types: int32 `[4]`, `[0, 1, 2, 3]` (indices into QUESTION_TYPES).
    labels: int32 `[2]`, the digits in the scene's caption order, -1 where there is none.
    boxes: int32 `[2, 4]`, each digit's 28x28 patch `(y0, x0, y1, x1)`, y1 and x1
      exclusive, -1 where there is no digit.
    num_digits: int32 scalar, 1 or 2.
  The splits and scenes are `CaptionedDigits`' (a subclass, so they are drawn by the same
  code); bump VERSION when either changes.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "HOLDS 0.8 (was 0.5): 'nothing' answers 0.6 of the relation "
                            "questions (was 0.75)."}

  def _info(self) -> tfds.core.DatasetInfo:
    side, count = CANVAS_SIZE, len(QUESTION_TYPES)
    return tfds.core.DatasetInfo(
        builder=self,
        description="Questions about captioned-digit scenes, with a held-out 'novel' split.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(side, side, 1), dtype=np.uint8),
            "questions": tfds.features.Sequence(tfds.features.Text(), length=count),
            "answers": tfds.features.Sequence(tfds.features.Text(), length=count),
            "question_types": tfds.features.Tensor(shape=(count,), dtype=np.int32),
            "labels": tfds.features.Tensor(shape=(MAX_DIGITS,), dtype=np.int32),
            "boxes": tfds.features.Tensor(shape=(MAX_DIGITS, 4), dtype=np.int32),
            "num_digits": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
    )

  def _record(self, layout, digits, patches, rng):
    record = make_example(layout, digits, patches, rng)
    del record["caption"]
    questions = draw_questions(layout, digits, rng)
    record.update(
        questions=[question_text(q) for q in questions],
        answers=[answer(layout, digits, q) for q in questions],
        question_types=np.array([QUESTION_TYPES.index(q.type) for q in questions], np.int32),
    )
    return record


def digit_qa_config(*, source: str, mnist_dir: str | os.PathLike | None = None, seed: int = 0,
                    copies: int = 1, novel_size: int = 1000) -> CaptionedDigitsConfig:
  """The config of a `DigitQA` dataset: `CaptionedDigitsConfig.make`'s, with its description.

  Raises:
    ValueError: naming the argument, for any value out of range.
  """
  config = CaptionedDigitsConfig.make(source=source, mnist_dir=mnist_dir, seed=seed,
                                      copies=copies, novel_size=novel_size)
  return dataclasses.replace(
      config, description=f"Questions about captioned {source} digits, seed {seed}, {copies} "
      f"train copies, {novel_size} novel examples.")


def build_digit_qa_dataset(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    copies: int = 1,
    novel_size: int = 1000,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a digit-QA dataset in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused. Wrap the
  splits for training with `questions.encode_question_splits(splits, answers=ANSWERS,
  question_types=QUESTION_TYPES)`.

  Args:
    source: "mnist" or "sklearn_digits" (see `sources.load_digits`).
    data_dir: TFDS data dir (None: TFDS's default); the dataset lands in
      `data_dir/digit_qa/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for source="mnist" (else TFDS downloads MNIST).
    seed: base seed of the scenes and questions (the scenes are captioned digits' with this
      seed).
    copies: examples per training digit (train split only).
    novel_size: examples of held-out scenes in the "novel" split.

  Returns:
    `{"train", "validation", "test", "novel"}` -> random-access source of the records of
    `DigitQA`.

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = digit_qa_config(source=source, mnist_dir=mnist_dir, seed=seed, copies=copies,
                           novel_size=novel_size)
  return prepare(DigitQA, config, data_dir=data_dir)
