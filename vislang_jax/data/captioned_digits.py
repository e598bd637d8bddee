"""Captioned MNIST: one or two digits on a 60x60 canvas with a caption, as array_record.

Mansimov et al., "Generating Images from Captions with Attention", ICLR 2016, Sec. 5.1:
"each image contains one or two digits located at random positions on a 60x60 blank
image", with captions such as "the digit three is at the top of the digit one" or "the digit
seven is at the bottom left of the image"; to test generalisation, some digit/layout
combinations are hidden during training and the model is asked for them afterwards. The
placement ranges below are our reading of the authors' released data code; the paper
itself gives no more detail.

Layouts (`LAYOUTS`, drawn uniformly, so half the examples hold two digits). Offsets are the
(row, column) of a 28x28 digit patch's top-left pixel, drawn uniformly from inclusive ranges:
  * one digit, `POSITIONS`: "top left", "top right", "bottom left", "bottom right"; rows
    0..2 (top) or 30..32 (bottom), columns 0..4 (left) or 28..32 (right).
    Caption: "the digit {d} is at the {position} of the image".
  * two digits, `RELATIONS`: "left" / "right": both on one row in 16..18, the left patch at a
    column in 0..4, the right one in 28..32; "top" / "bottom": both on one column in 16..18,
    the upper patch at a row in 0..2, the lower one in 30..32.
    Captions: "the digit {a} is on the left of the digit {b}",
    "the digit {a} is on the right of the digit {b}", "the digit {a} is at the top of the
    digit {b}", "the digit {a} is at the bottom of the digit {b}"; {a} is the first digit
    of the record, {b} the second.
  Digit names are "zero" ... "nine". Patches may overlap by a few columns (never the 20x20
  ink box of an MNIST digit); the canvas takes the maximum of the patches.

Held out (`HELD_OUT`, in no train/validation/test example, and the only content of "novel"):
  * single digits: six at the top left, two at the top right, nine at the bottom left,
    four at the bottom right;
  * pairs, as scenes under both captions that describe them: three left of five (= five
    right of three), zero left of eight (= eight right of zero), seven above one (= one
    below seven), two above nine (= nine below two).

Splits: "train" (the source's train split less its last 10%; `copies` examples per digit),
"validation" (that last 10%), "test" (the source's test split): example `index` of these
has the split's digit `index % n` as its first digit, a layout and (for two digits) a second
digit of the same split drawn until the combination is not held out. "novel": `novel_size`
examples, each a held-out combination drawn uniformly, with digits of the source's test
split drawn uniformly among those of the needed classes. Seeds and naming as every
`digit_builder.DigitBuilder`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_int, is_int
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare
from vislang_jax.data.distortions import to_uint8
from vislang_jax.data.vocabulary import tokenize

CANVAS_SIZE = 60
DIGIT_SIZE = 28
MAX_DIGITS = 2
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
RELATIONS = ("left", "right", "top", "bottom")
LAYOUTS = POSITIONS + RELATIONS

# Inclusive ranges of a patch's top-left row or column.
_NEAR = (0, 2)  # top rows
_FAR = (30, 32)  # bottom rows
_NEAR_COLUMNS = (0, 4)
_FAR_COLUMNS = (28, 32)
_MIDDLE = (16, 18)  # the shared row (left/right) or column (top/bottom) of a pair


def _scene(first: int, second: int, relation: str) -> tuple[tuple[str, tuple[int, int]], ...]:
  """A pair held out under both captions: `first` on the left of / above `second`."""
  converse = {"left": "right", "top": "bottom"}[relation]
  return ((relation, (first, second)), (converse, (second, first)))


# A combination is `(layout, digits)`: `digits` the labels in caption order.
HELD_OUT = frozenset(
    [("top left", (6,)), ("top right", (2,)), ("bottom left", (9,)), ("bottom right", (4,))]
    + [
        c
        for f, s, r in ((3, 5, "left"), (0, 8, "left"), (7, 1, "top"), (2, 9, "top"))
        for c in _scene(f, s, r)
    ]
)
_HELD_OUT_ORDER = tuple(sorted(HELD_OUT))


def caption(layout: str, digits: tuple[int, ...]) -> str:
  """The caption of a combination, e.g. `caption("left", (3, 5))`.

  Args:
    layout: one of LAYOUTS.
    digits: the labels in caption order: one for a position, two for a relation.

  Returns:
    "the digit three is on the left of the digit five" (templates in the module docstring).

  Raises:
    ValueError: for an unknown layout, or a digit count or label that does not fit it.
  """
  check_choice("layout", layout, LAYOUTS)
  expected = 1 if layout in POSITIONS else 2
  if len(digits) != expected or not all(is_int(d) and 0 <= d <= 9 for d in digits):
    raise ValueError(
        f"digits must be {expected} labels in 0..9 for layout={layout!r}, got {digits!r}."
    )
  names = [f"the digit {DIGIT_NAMES[d]}" for d in digits]
  if layout in POSITIONS:
    return f"{names[0]} is at the {layout} of the image"
  preposition = "on the" if layout in ("left", "right") else "at the"
  return f"{names[0]} is {preposition} {layout} of {names[1]}"


# Structure variables of the structure-content neural language model (Kiros, Salakhutdinov,
# Zemel 2014, Sec. 3.3, where they are part-of-speech tags): one word class per token of the
# caption templates above, and EOS_CLASS for the <eos> that ends every encoded caption.
EOS_CLASS = "eos"
STRUCTURE_CLASSES = ("det", "noun", "number", "verb", "preposition", "position", EOS_CLASS)
WORD_CLASSES: dict[str, str] = {
    "the": "det",
    "digit": "noun",
    "image": "noun",
    **{name: "number" for name in DIGIT_NAMES},
    "is": "verb",
    "at": "preposition",
    "on": "preposition",
    "of": "preposition",
    **{side: "position" for side in ("top", "bottom", "left", "right")},
}


def caption_structure(caption: str) -> tuple[str, ...]:
  """The word classes of a caption's tokens: one per word, then EOS_CLASS for <eos>.

  The caption is split by `vocabulary.tokenize`, as `Vocabulary.encode` splits it, so the
  result lines up with the encoded ids (the words' ids, then <eos>); turn it into ids with
  `STRUCTURE_CLASSES.index`.

  Args:
    caption: a caption of the templates above, e.g. "the digit three is at the top left of
      the image".

  Returns:
    `len(tokenize(caption)) + 1` names from STRUCTURE_CLASSES, the last EOS_CLASS.

  Raises:
    ValueError: naming the first word that is not in WORD_CLASSES.
  """
  words = tokenize(caption)
  unknown = [w for w in words if w not in WORD_CLASSES]
  if unknown:
    raise ValueError(f"caption must hold only words of WORD_CLASSES, got {unknown[0]!r} in "
                     f"{caption!r}.")
  return tuple(WORD_CLASSES[w] for w in words) + (EOS_CLASS,)


def place(
    layout: str, patches: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Places one or two 28x28 digit patches on a black 60x60 canvas in a layout.

  Args:
    layout: one of LAYOUTS.
    patches: `[K, 28, 28]` intensities in [0, 255]; K = 1 for a position, 2 for a
      relation, in caption order (the first is the caption's subject).
    rng: draws the offsets: for a position, its row then its column; for a relation, the
      shared row/column, then the first patch's free coordinate, then the second's.

  Returns:
    `(image, boxes)`: image float32 `[60, 60]` (the maximum of the placed patches); boxes
    int32 `[K, 4]`, each patch's `(y0, x0, y1, x1)`, pixel rows/columns, y1 and x1
    exclusive (`y1 = y0 + 28`).
  """
  check_choice("layout", layout, LAYOUTS)
  patches = np.asarray(patches, np.float32)
  expected = 1 if layout in POSITIONS else 2
  if patches.shape != (expected, DIGIT_SIZE, DIGIT_SIZE):
    raise ValueError(
        f"patches must have shape ({expected}, 28, 28) for layout={layout!r}, got {patches.shape}."
    )

  def draw(bounds):
    return int(rng.integers(bounds[0], bounds[1] + 1))

  if layout in POSITIONS:
    vertical, horizontal = layout.split()
    corners = [
        (
            draw(_NEAR if vertical == "top" else _FAR),
            draw(_NEAR_COLUMNS if horizontal == "left" else _FAR_COLUMNS),
        )
    ]
  else:
    shared = draw(_MIDDLE)
    first_near = layout in ("left", "top")
    near, far = (_NEAR_COLUMNS, _FAR_COLUMNS) if layout in ("left", "right") else (_NEAR, _FAR)
    free = [draw(near if first_near else far), draw(far if first_near else near)]
    corners = [(shared, f) if layout in ("left", "right") else (f, shared) for f in free]
  image = np.zeros((CANVAS_SIZE, CANVAS_SIZE), np.float32)
  boxes = np.zeros((len(corners), 4), np.int32)
  for k, (y, x) in enumerate(corners):
    window = image[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
    np.maximum(window, patches[k], out=window)
    boxes[k] = (y, x, y + DIGIT_SIZE, x + DIGIT_SIZE)
  return image, boxes


def make_example(
    layout: str, labels: tuple[int, ...], patches: np.ndarray, rng: np.random.Generator
) -> dict:
  """One record: `{"image", "caption", "labels", "boxes", "num_digits"}` (see the builder)."""
  image, boxes = place(layout, patches, rng)
  num = len(labels)
  padded_labels = np.full((MAX_DIGITS,), -1, np.int32)
  padded_labels[:num] = labels
  padded_boxes = np.full((MAX_DIGITS, 4), -1, np.int32)
  padded_boxes[:num] = boxes
  return {
      "image": to_uint8(image)[..., None],
      "caption": caption(layout, tuple(int(d) for d in labels)),
      "labels": padded_labels,
      "boxes": padded_boxes,
      "num_digits": np.int32(num),
  }


@dataclasses.dataclass(kw_only=True)
class CaptionedDigitsConfig(DigitConfig):
  """Every parameter of `CaptionedDigits`; build with `CaptionedDigitsConfig.make`.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    copies: examples per training digit (train split only).
    novel_size: examples in the "novel" split.
  """

  copies: int = 1
  novel_size: int = 1000

  @classmethod
  def make(
      cls,
      *,
      source: str,
      mnist_dir: str | os.PathLike | None = None,
      seed: int = 0,
      copies: int = 1,
      novel_size: int = 1000,
  ) -> CaptionedDigitsConfig:
    """Validates the parameters and names the config.

    Raises:
      ValueError: naming the argument, for any value out of range.
    """
    check_int("copies", copies, low=1)
    check_int("novel_size", novel_size, low=1)
    return cls.create(
        name=f"{source}-seed{seed}-copies{copies}-novel{novel_size}",
        description=f"Captioned {source} digits, seed {seed}, {copies} train copies, {novel_size} novel examples.",
        source=source,
        mnist_dir=mnist_dir,
        seed=seed,
        copies=int(copies),
        novel_size=int(novel_size),
    )


class CaptionedDigits(DigitBuilder):
  """Captioned MNIST (Mansimov et al., 2016, Sec. 5.1) over any digit source.

  Construct with a `CaptionedDigitsConfig`: `CaptionedDigits(config=CaptionedDigitsConfig.make(...),
  data_dir=..., file_format="array_record")`. Records:
    image: uint8 `[60, 60, 1]`.
    caption: text (bytes when read back from a data source).
    labels: int32 `[2]`, the digits in caption order, -1 where there is no digit.
    boxes: int32 `[2, 4]`, each digit's 28x28 patch `(y0, x0, y1, x1)` in pixels, y1 and
      x1 exclusive, -1 where there is no digit.
    num_digits: int32 scalar, 1 or 2.
  """

  # Bump on any change to the generated data (layouts, captions, held-out set, splits).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    side = CANVAS_SIZE
    return tfds.core.DatasetInfo(
        builder=self,
        description="Captioned MNIST (Mansimov et al., 2016, Sec. 5.1), with a held-out 'novel' split.",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(side, side, 1), dtype=np.uint8),
                "caption": tfds.features.Text(),
                "labels": tfds.features.Tensor(shape=(MAX_DIGITS,), dtype=np.int32),
                "boxes": tfds.features.Tensor(shape=(MAX_DIGITS, 4), dtype=np.int32),
                "num_digits": tfds.features.Tensor(shape=(), dtype=np.int32),
            }
        ),
    )

  def _split_examples(self, digits):
    return self._seen_and_novel_splits(digits, {d for _, pair in HELD_OUT for d in pair})

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray, copies: int):
    """The seen combinations of a train/validation/test split."""
    for index in range(copies * len(images)):
      rng = self.example_rng(split, index)
      chosen = [index % len(images)]
      while True:  # Ends: every digit has layouts that are not held out.
        layout = LAYOUTS[rng.integers(len(LAYOUTS))]
        chosen = chosen[:1] + ([int(rng.integers(len(images)))] if layout in RELATIONS else [])
        digits = tuple(int(labels[i]) for i in chosen)
        if (layout, digits) not in HELD_OUT:
          break
      yield index, self._record(layout, digits, images[chosen], rng)

  def _generate_novel(self, images: np.ndarray, labels: np.ndarray):
    config = self.builder_config
    for index in range(config.novel_size):
      rng = self.example_rng("novel", index)
      layout, digits = _HELD_OUT_ORDER[rng.integers(len(_HELD_OUT_ORDER))]
      chosen = [int(rng.choice(np.flatnonzero(labels == d))) for d in digits]
      yield index, self._record(layout, digits, images[chosen], rng)

  def _record(self, layout: str, digits: tuple[int, ...], patches: np.ndarray,
              rng: np.random.Generator) -> dict:
    """The record of a drawn scene: `make_example`; `digit_qa.DigitQA` adds its questions.

    `rng` is the example's generator, after the draws of the scene's layout and digits.
    """
    return make_example(layout, digits, patches, rng)


def build_captioned_digits_dataset(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    copies: int = 1,
    novel_size: int = 1000,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a captioned-digits dataset in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused.

  Args:
    source: "mnist" or "sklearn_digits" (see `sources.load_digits`).
    data_dir: TFDS data dir (None: TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets);
      the dataset lands in
      `data_dir/captioned_digits/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for source="mnist" (else TFDS downloads MNIST).
    seed: base seed of the layouts, digit choices and offsets.
    copies: examples per training digit (train split only).
    novel_size: examples of held-out combinations in the "novel" split.

  Returns:
    `{"train", "validation", "test", "novel"}` -> random-access source of records
    `{"image": uint8 [60, 60, 1], "caption": bytes, "labels": int32 [2],
    "boxes": int32 [2, 4], "num_digits": int32}` (see `CaptionedDigits`).

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = CaptionedDigitsConfig.make(
      source=source, mnist_dir=mnist_dir, seed=seed, copies=copies, novel_size=novel_size
  )
  return prepare(CaptionedDigits, config, data_dir=data_dir)
