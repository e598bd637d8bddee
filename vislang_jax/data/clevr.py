"""CLEVR (Johnson et al., CVPR 2017) through TFDS, as per-image question-answer records.

For users who have CLEVR v1.0 prepared as array_record in a TFDS data dir (18 GB download,
once; nothing here downloads):

  tfds.builder("clevr", data_dir=..., file_format="array_record").download_and_prepare()

TFDS's "clevr" (3.1.0) holds one record per image: "image" (PNG, 480x320), "file_name",
"objects" (a sequence of color / material / shape / size / rotation / 3d_coords /
pixel_coords) and "question_answer" (a sequence of {"question", "answer"} texts; an image
holds a varying number of questions, about 10). `load_clevr` turns each split into the
per-image QA records of `questions.QuestionAnswers` (see `ClevrQuestions`) and counts the
questions of every image, which `QuestionAnswers(..., question_counts=...)` needs to flatten
them.

Answers: CLEVR's 28 (the paper's Sec. 3 question families answer with a boolean, an
integer 0..10 or an attribute value): ANSWERS = yes, no, "0" .. "10", the 8 colours, the 3
shapes, the 2 materials, the 2 sizes (attribute values in TFDS's ClassLabel order, so an
object's class ids index COLORS, SHAPES, MATERIALS, SIZES).
Question types, derived from the answer (`question_type`), QUESTION_TYPES:
  yes_no: "yes" / "no" (exist, compare-integer and compare-attribute questions);
  count: "0" .. "10" (count questions);
  attribute: a colour, shape, material or size (query-attribute questions).
The test split's answers are withheld (empty), so only "train" and "validation" load.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from vislang_jax.checks import check_int
from vislang_jax.data.captions import as_text, resize_square

COLORS = ("gray", "blue", "brown", "yellow", "red", "green", "purple", "cyan")
SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("rubber", "metal")
SIZES = ("small", "large")
COUNTS = tuple(str(n) for n in range(11))
ANSWERS = ("yes", "no") + COUNTS + COLORS + SHAPES + MATERIALS + SIZES
QUESTION_TYPES = ("yes_no", "count", "attribute")
SPLITS = ("train", "validation")  # TFDS's names; the test split has no answers.

_TYPE_OF_ANSWER = {
    **{a: 0 for a in ("yes", "no")},
    **{a: 1 for a in COUNTS},
    **{a: 2 for a in COLORS + SHAPES + MATERIALS + SIZES},
}


def question_type(answer: str | bytes) -> int:
  """The index into QUESTION_TYPES of a question with this answer (module docstring).

  Raises:
    ValueError: naming the answer, for one outside ANSWERS.
  """
  answer = as_text(answer)
  if answer not in _TYPE_OF_ANSWER:
    raise ValueError(f"answer must be one of CLEVR's {len(ANSWERS)} ANSWERS, got {answer!r}.")
  return _TYPE_OF_ANSWER[answer]


class ClevrQuestions:
  """Random-access per-image QA records of a CLEVR split (`questions` module contract).

  Args:
    source: the TFDS data source of the split, read with `SkipDecoding` on "image" (the PNG
      bytes), as `load_clevr` opens it; any sequence of such records works.
    image_size: S, the side the images are resized to.
    name: what `repr` calls the source (grain compares reprs on restore).

  Records:
    image: uint8 `[S, S, 3]`: the whole PNG as RGB (alpha dropped), squeezed to a square
      with `captions.resize_square(..., center_crop=False)` (bicubic); CLEVR's 3:2 images
      keep every object, as the question needs.
    questions, answers: the image's n texts (UTF-8 bytes, as TFDS gives them).
    question_types: int32 `[n]`, `question_type` of each answer.
    file_name: the PNG's name (bytes).
    objects: TFDS's object fields, as it gives them (a dict of `[num_objects, ...]`
      arrays; `QuestionAnswers` drops nested fields).

  Reading a record raises a ValueError, naming it, for an answer outside ANSWERS.
  """

  def __init__(self, source: Sequence, *, image_size: int, name: str):
    self.source = source
    self.image_size = check_int("image_size", image_size, low=1)
    self.name = name

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self.source[index]
    qa = record["question_answer"]
    questions = [q if isinstance(q, bytes) else as_text(q).encode() for q in qa["question"]]
    answers = [a if isinstance(a, bytes) else as_text(a).encode() for a in qa["answer"]]
    try:
      types = np.array([question_type(a) for a in answers], np.int32)
    except ValueError as error:
      raise ValueError(f"record {index} ({as_text(record['file_name'])!r}) of {self!r}: "
                       f"{error}") from error
    with Image.open(io.BytesIO(record["image"])) as picture:
      image = np.asarray(picture.convert("RGB"))
    return {
        "image": resize_square(image, size=self.image_size, center_crop=False),
        "questions": questions,
        "answers": answers,
        "question_types": types,
        "file_name": record["file_name"],
        "objects": record["objects"],
    }

  def __repr__(self) -> str:
    return f"ClevrQuestions(source={self.name}, image_size={self.image_size})"


def count_questions(source: Sequence, *, chunk: int = 1024) -> np.ndarray:
  """int64 `[N]`: each record's number of questions, read from `question_answer` only.

  `source` is a TFDS data source read with `SkipDecoding` on the image, so no PNG is
  decoded; every record is still read from disk once (all of CLEVR train's ~70,000 images,
  a few GB: minutes, so compute it once per run). Reads `chunk` records at a time through
  the source's `__getitems__` where it has one (array_record reads them in parallel).
  """
  counts = np.zeros((len(source),), np.int64)
  for start in range(0, len(source), chunk):
    keys = list(range(start, min(start + chunk, len(source))))
    records = (source.__getitems__(keys) if hasattr(source, "__getitems__")
               else [source[k] for k in keys])
    counts[start:start + len(keys)] = [len(r["question_answer"]["question"]) for r in records]
  return counts


def load_clevr(*, data_dir: str | os.PathLike | None = None, image_size: int = 128,
               splits: Sequence[str] = SPLITS
               ) -> tuple[dict[str, ClevrQuestions], dict[str, np.ndarray]]:
  """CLEVR's splits as per-image QA sources, with each image's question count.

  Args:
    data_dir: the TFDS data dir holding CLEVR prepared as array_record (None: TFDS's
      default, $TFDS_DATA_DIR or ~/tensorflow_datasets). Nothing is downloaded.
    image_size: S of the records' `[S, S, 3]` images (128 in Santoro et al.'s CLEVR
      experiments).
    splits: some of "train", "validation".

  Returns:
    `({split: ClevrQuestions}, {split: question_counts int64 [N]})`; flatten a split with
    `questions.QuestionAnswers(source, ..., answers=ANSWERS, question_types=QUESTION_TYPES,
    question_counts=question_counts[split])`. Counting reads every record once (see
    `count_questions`).

  Raises:
    ValueError: naming the argument, for a bad image_size, an unknown or empty split list
      (naming "test": it has no answers), or a data_dir without CLEVR prepared as
      array_record.
  """
  check_int("image_size", image_size, low=1)
  if isinstance(splits, str) or not splits or any(s not in SPLITS for s in splits):
    raise ValueError(f"splits must be a non-empty sequence of {SPLITS} (CLEVR's test split has "
                     f"no answers), got {splits!r}.")
  builder = tfds.builder("clevr", data_dir=None if data_dir is None else os.fspath(data_dir))
  if not builder.is_prepared():
    raise ValueError(
        f"data_dir={data_dir!r} holds no prepared CLEVR (looked in {builder.data_path}); "
        "prepare it once with tfds.builder('clevr', data_dir=..., "
        "file_format='array_record').download_and_prepare() (an 18 GB download).")
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f"data_dir={data_dir!r} holds CLEVR as {builder.info.file_format.value}, but random "
        "access needs array_record; prepare it with file_format='array_record'.")
  sources, counts = {}, {}
  for split in splits:
    raw = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    sources[split] = ClevrQuestions(raw, image_size=image_size,
                                    name=f"clevr/{split} in {builder.data_path}")
    counts[split] = count_questions(raw)
  return sources, counts
