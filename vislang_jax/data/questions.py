"""Visual question answering records: one batchable example per question of per-image QA data.

The QA builders (`digit_qa`, sort-of-CLEVR) write one record per image with Q questions:

  image: uint8 `[H, W, C]`;
  questions: Q texts (UTF-8 bytes when read back from a data source);
  answers: Q texts, each one of the dataset's fixed answer set (its module's ANSWERS);
  question_types: int `[Q]`, indices into the module's QUESTION_TYPES;
  and the scene's own fields (e.g. "labels", "boxes", "num_digits").

`QuestionAnswers` flattens such a source into one example per question, in order (image 0's
questions, then image 1's, ...), and turns each into NumPy arrays a grain loader
(`pipeline.make_loader`) can batch:

  image: float32 `[H, W, C]` in [0, 1] (the uint8 image / 255);
  question: int32 `[T]`, `T = max_len`: `Vocabulary.encode` of the question, its word ids
    then `<eos>`, padded with `<pad>` = 0;
  length: int32 scalar, the question's ids up to and including `<eos>`;
  answer: int32 scalar, the answer's index in `answers` (the class a model predicts);
  question_type: int32 scalar, the index into `question_types`;
  image_index: int32 scalar, the image's record in the source;
  index: int32 scalar, the example's position in the flattened source;
  and every other numeric field of the image record: a field named "question_<name>s" holds
  one value per question (e.g. "question_subtypes" `[Q]`) and becomes that question's
  "question_<name>" scalar; any other field (labels, boxes, num_digits ...) passes through
  unchanged (Python scalars become int32 / float32 / bool NumPy scalars). Text and nested
  fields are dropped.

Every image holds the same Q questions (Q read from record 0), or `question_counts` gives
each image's count (e.g. CLEVR, where images hold different numbers of questions).

`encode_question_splits` builds the question vocabulary from the training questions, checks
that the answer set covers every split, and wraps every split: what an experiment needs.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vislang_jax.checks import check_int
# Private helpers of the sibling captions module, shared rather than copied.
from vislang_jax.data.captions import as_array, as_text, check_source, is_numeric, source_repr
from vislang_jax.data.vocabulary import Vocabulary, tokenize

_PER_IMAGE_QA = ("questions", "answers", "question_types")
_DERIVED = ("image", "question", "length", "answer", "question_type", "image_index", "index")


def _digest(value: Any) -> str:
  """The first 16 hex digits of the sha256 of `value`'s sorted JSON (a stable repr)."""
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _check_names(name: str, values: Any) -> tuple[str, ...]:
  """A non-empty sequence of distinct strings, as a tuple, or a ValueError naming `name`."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise ValueError(f"{name} must be a sequence of strings, got {values!r}.")
  values = tuple(values)
  if not values or not all(isinstance(v, str) for v in values):
    raise ValueError(f"{name} must be a non-empty sequence of strings, got {values!r}.")
  duplicates = sorted(v for v, c in collections.Counter(values).items() if c > 1)
  if duplicates:
    raise ValueError(f"{name} must be distinct, got duplicates {duplicates}.")
  return values


def _record_qa(record: Mapping[str, Any]) -> tuple[list[str], list[str], list[int]]:
  """A record's (questions, answers, question types) as text and ints."""
  return ([as_text(q) for q in record["questions"]], [as_text(a) for a in record["answers"]],
          [int(t) for t in np.asarray(record["question_types"]).reshape(-1)])


class QuestionAnswers:
  """Random-access source of one `{"image", "question", "answer", ...}` per question (module doc).

  Args:
    source: random-access per-image QA records (module doc), e.g. a split of
      `digit_qa.build_digit_qa_dataset`.
    vocabulary: encodes the questions (build it from the training questions,
      `question_texts`).
    answers: the answer set, e.g. the dataset module's ANSWERS; "answer" is an index into it.
    max_len: T, the length of "question", `<eos>` included.
    question_types: the names of the question types, e.g. the module's QUESTION_TYPES.
    question_counts: None when every image holds the same number of questions (read from
      record 0); else int `[N]`, the questions of each of the N records.

  Reading an example raises a ValueError, naming the record, for: a record whose questions,
  answers and question types do not number its count; a question of more than
  `max_len - 1` words (naming `max_len`); an answer outside `answers`; a question type
  outside `range(len(question_types))`; an image that is not uint8.
  """

  def __init__(self, source: Sequence, vocabulary: Vocabulary, answers: Sequence[str], *,
               max_len: int, question_types: Sequence[str],
               question_counts: Sequence[int] | np.ndarray | None = None):
    check_source(source)
    if not isinstance(vocabulary, Vocabulary):
      raise ValueError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}.")
    self.answers = _check_names("answers", answers)
    self.question_types = _check_names("question_types", question_types)
    self.max_len = check_int("max_len", max_len, low=1)
    self.source = source
    self.vocabulary = vocabulary
    self._answer_ids = {a: i for i, a in enumerate(self.answers)}
    if question_counts is None:
      self.question_counts = None
      per_image = len(source[0]["questions"]) if len(source) else 0
      self._counts = np.full((len(source),), per_image, np.int64)
    else:
      counts = np.asarray(question_counts)
      if (counts.shape != (len(source),) or counts.dtype.kind not in "iu"
          or (counts.size and counts.min() < 0)):
        raise ValueError(
            f"question_counts must be None or {len(source)} non-negative ints (one per record of "
            f"source), got {counts.dtype} {counts.shape}.")
      self.question_counts = counts.astype(np.int64)
      self._counts = self.question_counts
    # ends[n]: the flattened index one past image n's last question.
    self._ends = np.cumsum(self._counts)
    self._vocabulary_digest = _digest(vocabulary.to_json_dict())

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def locate(self, index: int) -> tuple[int, int]:
    """`(image_index, question number)` of flattened example `index`."""
    if not 0 <= index < len(self):
      raise IndexError(f"index must be in [0, {len(self)}), got {index}.")
    image = int(np.searchsorted(self._ends, index, side="right"))
    return image, int(index - (self._ends[image] - self._counts[image]))

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    image_index, q = self.locate(int(index))
    record = self.source[image_index]
    where = f"record {image_index} of {source_repr(self.source)}"
    questions, answers, types = _record_qa(record)
    count = int(self._counts[image_index])
    given = {"questions": len(questions), "answers": len(answers), "question_types": len(types)}
    if set(given.values()) != {count}:
      origin = ("question_counts" if self.question_counts is not None
                else "record 0 (question_counts=None: every record holds the same number)")
      raise ValueError(f"{where} must hold {count} questions, answers and question types, as "
                       f"{origin} says, got {given}.")
    try:
      ids, lengths = self.vocabulary.encode([questions[q]], max_len=self.max_len)
    except ValueError as error:
      raise ValueError(f"{where}, question {q}: {error}") from error
    if answers[q] not in self._answer_ids:
      raise ValueError(f"answers does not cover answer {answers[q]!r} of {where}, question {q} "
                       f"({questions[q]!r}); answers has {len(self.answers)} entries.")
    if not 0 <= types[q] < len(self.question_types):
      raise ValueError(f"question_types has {len(self.question_types)} entries "
                       f"{self.question_types}, got question type {types[q]} in {where}, "
                       f"question {q}.")
    image = np.asarray(record["image"])
    if image.dtype != np.uint8:
      raise ValueError(f"{where}: image must be uint8 [H, W, C], got {image.dtype} {image.shape}.")
    example = {}
    for key, value in record.items():
      if key in _PER_IMAGE_QA or key in _DERIVED or not is_numeric(value):
        continue
      if key.startswith("question_") and key.endswith("s"):
        example[key[:-1]] = as_array(np.asarray(value)[q])
      else:
        example[key] = as_array(value)
    example.update(
        image=image.astype(np.float32) / 255.0,
        question=ids[0],
        length=lengths[0],
        answer=np.int32(self._answer_ids[answers[q]]),
        question_type=np.int32(types[q]),
        image_index=np.int32(image_index),
        index=np.int32(index),
    )
    return example

  def __repr__(self) -> str:
    # Grain stores this in checkpoints and checks it on restore: it names every parameter
    # (vocabulary, answers and counts by size and content digest) and no memory address.
    counts = ("None" if self.question_counts is None else
              f"<{len(self.question_counts)} counts, {len(self)} questions, sha256 "
              f"{_digest(self.question_counts.tolist())}>")
    return (
        f"QuestionAnswers(source={source_repr(self.source)}, "
        f"vocabulary=<Vocabulary of {len(self.vocabulary)} ids, sha256 {self._vocabulary_digest}>, "
        f"answers=<{len(self.answers)} answers, sha256 {_digest(self.answers)}>, "
        f"max_len={self.max_len}, question_types={self.question_types}, "
        f"question_counts={counts})"
    )


def _records(source: Sequence):
  """The per-image records of a source (a `QuestionAnswers` gives its wrapped source's)."""
  if isinstance(source, QuestionAnswers):
    source = source.source
  check_source(source)
  return (source[i] for i in range(len(source)))


def question_texts(source: Sequence) -> list[str]:
  """Every question of every record of a per-image QA source, in order (for `Vocabulary.build`)."""
  return [q for record in _records(source) for q in _record_qa(record)[0]]


def question_counts(source: Sequence) -> np.ndarray:
  """int64 `[N]`: the number of questions of each record (`QuestionAnswers`' question_counts)."""
  return np.array([len(record["questions"]) for record in _records(source)], np.int64)


def answer_counts(source: Sequence, *, question_type: int | None = None) -> collections.Counter:
  """How often each answer text occurs in a per-image QA source.

  Args:
    source: per-image QA records (a `QuestionAnswers` counts its wrapped source).
    question_type: count only the questions of this type index; None counts all.

  Returns:
    `Counter({answer text: count})`, e.g. for a majority-answer baseline.
  """
  counts = collections.Counter()
  for record in _records(source):
    _, answers, types = _record_qa(record)
    counts.update(a for a, t in zip(answers, types) if question_type is None or t == question_type)
  return counts


def check_answers_cover(source: Sequence, answers: Sequence[str], *, split: str) -> None:
  """A ValueError naming `split` and the missing answers unless `answers` holds every answer.

  Args:
    source: per-image QA records.
    answers: the answer set a model predicts over.
    split: the split's name, for the message.
  """
  answers = _check_names("answers", answers)
  missing = sorted(set(answer_counts(source)) - set(answers))
  if missing:
    raise ValueError(f"answers does not cover split {split!r}: its answers {missing} are missing "
                     f"from the {len(answers)} answers given.")


def encode_question_splits(
    splits: Mapping[str, Sequence], *, answers: Sequence[str], question_types: Sequence[str],
    max_len: int | None = None, vocabulary_split: str = "train",
) -> tuple[dict[str, QuestionAnswers], Vocabulary]:
  """Every split of a per-image QA dataset as `QuestionAnswers`, with one question vocabulary.

  Args:
    splits: `{split name: per-image QA source}`, e.g. `digit_qa.build_digit_qa_dataset(...)`.
    answers: the answer set (the dataset module's ANSWERS).
    question_types: the type names (the dataset module's QUESTION_TYPES).
    max_len: question ids per example, `<eos>` included; None: the longest question of any
      split plus one.
    vocabulary_split: the split whose questions build the vocabulary (words of other splits'
      questions that it lacks become `<unk>`).

  Returns:
    `({split: QuestionAnswers}, the Vocabulary)`; a split whose images hold different
    numbers of questions gets its `question_counts`.

  Raises:
    ValueError: for a missing vocabulary_split, or (naming the split) an answer outside
      `answers`.
  """
  if vocabulary_split not in splits:
    raise ValueError(f"vocabulary_split must be one of {tuple(splits)}, got {vocabulary_split!r}.")
  texts = {}
  for split, source in splits.items():
    check_answers_cover(source, answers, split=split)
    texts[split] = question_texts(source)
  vocabulary = Vocabulary.build(texts[vocabulary_split])
  if max_len is None:
    max_len = 1 + max((len(tokenize(t)) for ts in texts.values() for t in ts), default=0)
  encoded = {}
  for split, source in splits.items():
    counts = question_counts(source)
    same = len(set(counts.tolist())) <= 1
    encoded[split] = QuestionAnswers(source, vocabulary, answers, max_len=max_len,
                                     question_types=question_types,
                                     question_counts=None if same else counts)
  return encoded, vocabulary
