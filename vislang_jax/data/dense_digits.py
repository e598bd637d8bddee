"""Dense digit scenes: several digits per canvas, each with its box and a region phrase.

A small stand-in for Visual Genome's region descriptions (Krishna et al. 2017), the data of
DenseCap (Johnson, Karpathy, Fei-Fei, "DenseCap: Fully Convolutional Localization Networks
for Dense Captioning", CVPR 2016, Sec. 4): every scene holds 1..`max_digits` digits of a
digit source at varied scales, tilts and stroke weights on a black `canvas_size` square, and
every region's phrase states what the rendering made of it, so a phrase can be checked
against the pixels.

Rendering one digit (`render_digit`), from the source's `[28, 28]` digit (ink in a central
20x20 box, `sources.load_digits`):
  1. stroke (`STROKES`): "thin" = grey erosion, "bold" = grey dilation, both with a 2x2
     footprint at the source's resolution (`scipy.ndimage.grey_erosion` / `grey_dilation`);
     "regular" unchanged. (Erosion keeps about 60% of an MNIST digit's ink, dilation adds
     about 40%.)
  2. scale: `scipy.ndimage.zoom` (bilinear) by `size * canvas_size / SOURCE_INK`, so the
     source's 20-pixel ink box (MNIST's size normalisation; the upscaled scikit-learn
     digits' blurred ink spans about 22) becomes `size` of the canvas's side. `size` is drawn
     uniformly in the band of its class (`SIZE_BANDS`, fractions of the canvas side):
     small [0.16, 0.22], medium [0.26, 0.32], large [0.36, 0.44]. The gaps between bands
     keep the classes apart.
  3. tilt: `scipy.ndimage.rotate` (bilinear, the patch grown to hold the whole rotation) by
     `angle` degrees, counter-clockwise as displayed; "upright": `angle` uniform in
     [-5, 5]; "tilted": `|angle|` uniform in [25, 40], either sign.
  4. quantised to uint8 (`distortions.to_uint8`) and cropped to its ink, the pixels that
     round to >= 1.
Phrases (`digit_phrase`): "a" / "an", then the words of the size, stroke and tilt classes
that have one ("small" / "large", "thin" / "bold", "tilted"; the middle size, the regular
stroke and upright have none), then the digit's name: "a seven", "an eight", "a large
seven", "a small bold tilted three".

Placing (`make_scene`): the canvas is the pixel-wise maximum of the digits' uint8 layers.
A digit's box is the tight box of its own ink, `(y0, x0, y1, x1)` in pixels, y1 and x1
exclusive, inside the canvas (overlapping digits may put another digit's ink inside it).
The digits are placed largest ink box first, each at a uniformly random place where its
ink fits the canvas; a place whose box
overlaps a box already placed by more than `max_overlap` (default `MAX_OVERLAP` = 0.3) is
redrawn, up to `PLACEMENT_TRIES` times, after which that digit is left out (so crowded
scenes of large digits hold fewer digits than drawn). The overlap of two boxes is their
intersection over the smaller one's area (`overlap`): it bounds their IoU too (IoU <=
overlap), and unlike the IoU it keeps a small digit from lying wholly inside a large one's
box, hidden by its strokes. The image is zero outside the union of the digit boxes.

Pair phrases (`pair_phrase`): after the digits, up to `max_pairs` phrases about two of
them, "a three left of a seven", "a seven above a two" (`RELATIONS`: "left of", "right of",
"above", "below"; digit names only, no attributes). A pair qualifies when its two boxes are
separated along exactly one axis (one box ends at or before the other starts, in columns
for left / right or in rows for above / below, but not both): the relation is then plain
to see. Pairs are drawn uniformly without replacement among those that qualify; which of
the two is the subject is a coin flip. The pair's box is the union of its two boxes.

Held out (`HELD_OUT`, (word, digit) pairs): a large three, a small seven, a tilted five, a
bold two, a thin nine. No digit of "train", "validation" or "test" is rendered so (such a
digit's attribute is drawn among the other classes); each of these digits and words still
appears in training in other combinations. The "novel" split holds only them: each of its
digits is a held-out combination (drawn uniformly), its other attributes drawn as usual, so
the phrase of every digit region of "novel" names an attribute-digit combination never seen
in training (its pair phrases are of the usual kind).

Splits, seeds and naming as every `digit_builder.DigitBuilder`: "train" (`copies` scenes
per digit of the source's train split less its last 10%), "validation" (that last 10%),
"test" (the source's test split); scene `index` of these has the split's digit
`index % n` as its first digit and the others drawn uniformly from the same split.
"novel": `novel_size` scenes of the source's test digits. Draw order of a scene: the digit
count (uniform in 1..max_digits); per digit, its source digit (not for the first of a
seen split) [novel: its held-out combination, then its source digit], its size, tilt and
stroke classes; per digit, its size and angle; the placements, the digit with the largest
ink box first (which packs crowded scenes better); then the pairs.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.ndimage
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_float, check_int, is_int
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare
from vislang_jax.data.distortions import to_uint8

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZES = ("small", "medium", "large")
SIZE_BANDS = ((0.16, 0.22), (0.26, 0.32), (0.36, 0.44))  # digit ink side / canvas side
TILTS = ("upright", "tilted")
TILT_BANDS = ((0.0, 5.0), (25.0, 40.0))  # |angle| in degrees
STROKES = ("thin", "regular", "bold")
# The word each attribute class puts in a phrase ("" for none).
SIZE_WORDS = ("small", "", "large")
TILT_WORDS = ("", "tilted")
STROKE_WORDS = ("thin", "", "bold")
ATTRIBUTES = ("size", "tilt", "stroke")  # the columns of a record's `attributes`
_CLASSES = {"size": SIZES, "tilt": TILTS, "stroke": STROKES}
_WORDS = {"size": SIZE_WORDS, "tilt": TILT_WORDS, "stroke": STROKE_WORDS}
RELATIONS = ("left of", "right of", "above", "below")
REGION_KINDS = ("digit", "pair")  # a record's `kinds` index this (-1: padding)
SOURCE_INK = 20  # side of a source digit's ink box (MNIST's size normalisation)
MAX_OVERLAP = 0.3
PLACEMENT_TRIES = 50
MIN_CANVAS = 64
_MORPHOLOGY_FOOTPRINT = (2, 2)

# (word, digit): attribute-digit combinations only the "novel" split renders.
HELD_OUT = frozenset({("large", 3), ("small", 7), ("tilted", 5), ("bold", 2), ("thin", 9)})
_HELD_OUT_ORDER = tuple(sorted(HELD_OUT, key=lambda c: (c[1], c[0])))


def _attribute_of(word: str) -> tuple[str, int]:
  """(attribute, class id) of a phrase word, e.g. "tilted" -> ("tilt", 1)."""
  return next((a, words.index(word)) for a, words in _WORDS.items() if word in words)


def digit_phrase(label: int, *, size: str, tilt: str, stroke: str) -> str:
  """The phrase of one rendered digit, e.g. `digit_phrase(3, size="small", tilt="tilted",
  stroke="bold") == "a small bold tilted three"` (module doc).

  Raises:
    ValueError: naming the argument, for a label outside 0..9 or an unknown class.
  """
  if not (is_int(label) and 0 <= label <= 9):
    raise ValueError(f"label must be a digit in 0..9, got {label!r}.")
  check_choice("size", size, SIZES)
  check_choice("tilt", tilt, TILTS)
  check_choice("stroke", stroke, STROKES)
  words = [SIZE_WORDS[SIZES.index(size)], STROKE_WORDS[STROKES.index(stroke)],
           TILT_WORDS[TILTS.index(tilt)], DIGIT_NAMES[label]]
  words = [w for w in words if w]
  return " ".join([_article(words[0])] + words)


def pair_phrase(subject: int, relation: str, object_: int) -> str:
  """The phrase of a pair of digits, e.g. `pair_phrase(3, "left of", 7) == "a three left of a
  seven"`.

  Raises:
    ValueError: naming the argument, for a label outside 0..9 or an unknown relation.
  """
  for name, label in (("subject", subject), ("object_", object_)):
    if not (is_int(label) and 0 <= label <= 9):
      raise ValueError(f"{name} must be a digit in 0..9, got {label!r}.")
  check_choice("relation", relation, RELATIONS)
  first, second = DIGIT_NAMES[subject], DIGIT_NAMES[object_]
  return f"{_article(first)} {first} {relation} {_article(second)} {second}"


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def render_digit(digit: np.ndarray, *, scale: float, angle: float, stroke: str) -> np.ndarray:
  """One digit's layer, cropped to its ink (module doc, steps 1-4).

  Args:
    digit: `[28, 28]` intensities in [0, 255] (uint8 or float), ink bright on black.
    scale: zoom factor (> 0) of the source digit.
    angle: rotation in degrees, counter-clockwise as displayed.
    stroke: one of STROKES.

  Returns:
    uint8 `[h, w]`, every edge row and column holding ink; `[0, 0]` for a digit without
    ink.

  Raises:
    ValueError: for a digit not `[28, 28]`, a scale <= 0 or an unknown stroke.
  """
  digit = np.asarray(digit, np.float32)
  if digit.shape != (28, 28):
    raise ValueError(f"digit must have shape (28, 28), got {digit.shape}.")
  check_float("scale", scale, low=0.0)
  if scale == 0:
    raise ValueError(f"scale must be > 0, got {scale!r}.")
  check_float("angle", angle)
  check_choice("stroke", stroke, STROKES)
  if stroke == "thin":
    digit = scipy.ndimage.grey_erosion(digit, size=_MORPHOLOGY_FOOTPRINT)
  elif stroke == "bold":
    digit = scipy.ndimage.grey_dilation(digit, size=_MORPHOLOGY_FOOTPRINT)
  zoomed = scipy.ndimage.zoom(digit, scale, order=1, mode="grid-constant", grid_mode=True)
  rotated = scipy.ndimage.rotate(zoomed, angle, reshape=True, order=1, mode="constant")
  layer = to_uint8(rotated)
  rows, columns = np.flatnonzero(layer.any(axis=1)), np.flatnonzero(layer.any(axis=0))
  if len(rows) == 0:
    return np.zeros((0, 0), np.uint8)
  return layer[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]


def overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Intersection over the smaller area of one `(y0, x0, y1, x1)` box (exclusive ends, not
  empty) with each of `boxes` `[K, 4]` -> float64 `[K]` in [0, 1]; >= their IoU."""
  box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
  top_left = np.maximum(box[:2], boxes[:, :2])
  bottom_right = np.minimum(box[2:], boxes[:, 2:])
  intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
  area = np.prod(box[2:] - box[:2])
  areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
  return intersection / np.minimum(area, areas)


def relation_of(subject_box: np.ndarray, object_box: np.ndarray) -> str | None:
  """Where the subject's box lies from the object's, one of RELATIONS, or None.

  None unless the boxes are separated along exactly one axis (module doc): "left of" when
  the subject ends at or before the object's first column, and so on.
  """
  sy0, sx0, sy1, sx1 = (int(v) for v in subject_box)
  oy0, ox0, oy1, ox1 = (int(v) for v in object_box)
  horizontal = "left of" if sx1 <= ox0 else "right of" if ox1 <= sx0 else None
  vertical = "above" if sy1 <= oy0 else "below" if oy1 <= sy0 else None
  if (horizontal is None) == (vertical is None):
    return None
  return horizontal or vertical


def _draw_attributes(label: int, rng: np.random.Generator, *,
                     fixed: tuple[str, int] | None, novel: bool) -> dict[str, int]:
  """Class ids of size, tilt and stroke, drawn uniformly in that order.

  A seen split (`novel` False) draws among the classes that are not held out for `label`;
  `fixed` (attribute, class id) is the held-out combination of a "novel" digit.
  """
  classes = {}
  for attribute in ATTRIBUTES:
    if fixed is not None and fixed[0] == attribute:
      classes[attribute] = fixed[1]
      continue
    allowed = [c for c, word in enumerate(_WORDS[attribute])
               if novel or (word, label) not in HELD_OUT]
    classes[attribute] = allowed[int(rng.integers(len(allowed)))]
  return classes


def _draw_rendering(classes: dict[str, int], rng: np.random.Generator) -> tuple[float, float]:
  """(size fraction, angle in degrees) within the bands of the drawn classes."""
  size = float(rng.uniform(*SIZE_BANDS[classes["size"]]))
  low, high = TILT_BANDS[classes["tilt"]]
  magnitude = float(rng.uniform(low, high))
  sign = 1.0 if rng.random() < 0.5 else -1.0
  return size, sign * magnitude


@dataclasses.dataclass(frozen=True)
class Scene:
  """A rendered scene before padding (`make_scene`).

  Attributes:
    image: uint8 `[S, S]`.
    boxes: int32 `[N, 4]` `(y0, x0, y1, x1)`: the placed digits', then the pairs'.
    phrases: N phrases.
    labels: int32 `[N]`: digit classes, -1 for pairs.
    kinds: int32 `[N]`: indices into REGION_KINDS.
    attributes: int32 `[N, 3]`: class ids of ATTRIBUTES, -1 for pairs.
    sizes: float32 `[N]`: ink side / canvas side as drawn (0 for pairs).
    angles: float32 `[N]`: rotation in degrees (0 for pairs).
    pairs: int32 `[N, 2]`: for a pair, the regions of its subject and object; else -1.
  """

  image: np.ndarray
  boxes: np.ndarray
  phrases: tuple[str, ...]
  labels: np.ndarray
  kinds: np.ndarray
  attributes: np.ndarray
  sizes: np.ndarray
  angles: np.ndarray
  pairs: np.ndarray


def make_scene(digits: list[tuple[np.ndarray, int, dict[str, int]]], rng: np.random.Generator,
               *, canvas_size: int, max_overlap: float, max_pairs: int) -> Scene:
  """Renders and places digits, then draws pair phrases (module doc).

  Args:
    digits: per digit, `(source digit [28, 28], label, attribute class ids)`.
    rng: the example's generator; draws each digit's size and angle (in the order of
      `digits`), then the placements (largest ink box first), then the pairs.
    canvas_size, max_overlap, max_pairs: as `DenseDigitsConfig`.

  Returns:
    The `Scene`, its digits in the order of `digits` (those placed), with at least one
    digit unless none has ink.
  """
  drawn = []
  for digit, label, classes in digits:
    size, angle = _draw_rendering(classes, rng)
    layer = render_digit(digit, scale=size * canvas_size / SOURCE_INK, angle=angle,
                         stroke=STROKES[classes["stroke"]])
    drawn.append((layer, label, classes, size, angle))
  placed = {}  # index in `digits` -> box
  for k in sorted(range(len(drawn)), key=lambda k: -drawn[k][0].size):  # stable: ties in order
    height, width = drawn[k][0].shape
    if height == 0 or height > canvas_size or width > canvas_size:
      continue
    for _ in range(PLACEMENT_TRIES):
      y = int(rng.integers(canvas_size - height + 1))
      x = int(rng.integers(canvas_size - width + 1))
      box = np.array([y, x, y + height, x + width], np.int32)
      if not placed or overlap(box, np.stack(list(placed.values()))).max() <= max_overlap:
        placed[k] = box
        break
  layers, boxes, phrases, labels, attributes, sizes, angles = [], [], [], [], [], [], []
  for k in sorted(placed):
    layer, label, classes, size, angle = drawn[k]
    layers.append((layer, placed[k]))
    boxes.append(placed[k])
    phrases.append(digit_phrase(label, **{a: _CLASSES[a][classes[a]] for a in ATTRIBUTES}))
    labels.append(label)
    attributes.append([classes[a] for a in ATTRIBUTES])
    sizes.append(size)
    angles.append(angle)
  image = np.zeros((canvas_size, canvas_size), np.uint8)
  for layer, (y0, x0, y1, x1) in layers:
    np.maximum(image[y0:y1, x0:x1], layer, out=image[y0:y1, x0:x1])
  num_digits = len(boxes)
  candidates = [(i, j) for i in range(num_digits) for j in range(i + 1, num_digits)
                if relation_of(boxes[i], boxes[j]) is not None]
  chosen = rng.permutation(len(candidates))[:max_pairs] if candidates else []
  pairs = [[-1, -1]] * num_digits
  for c in chosen:
    subject, object_ = candidates[int(c)]
    if rng.random() < 0.5:
      subject, object_ = object_, subject
    relation = relation_of(boxes[subject], boxes[object_])
    phrases.append(pair_phrase(labels[subject], relation, labels[object_]))
    union = np.concatenate([np.minimum(boxes[subject][:2], boxes[object_][:2]),
                            np.maximum(boxes[subject][2:], boxes[object_][2:])])
    boxes.append(union.astype(np.int32))
    pairs.append([subject, object_])
  num_pairs = len(boxes) - num_digits
  return Scene(
      image=image,
      boxes=np.array(boxes, np.int32).reshape(-1, 4),
      phrases=tuple(phrases),
      labels=np.array(labels + [-1] * num_pairs, np.int32),
      kinds=np.array([0] * num_digits + [1] * num_pairs, np.int32),
      attributes=np.array(attributes + [[-1] * len(ATTRIBUTES)] * num_pairs,
                          np.int32).reshape(-1, len(ATTRIBUTES)),
      sizes=np.array(sizes + [0.0] * num_pairs, np.float32),
      angles=np.array(angles + [0.0] * num_pairs, np.float32),
      pairs=np.array(pairs, np.int32).reshape(-1, 2),
  )


def pad_scene(scene: Scene, *, max_regions: int) -> dict[str, np.ndarray]:
  """A scene as a record of fixed shapes (see `DenseDigits`), R = `max_regions`."""
  count = len(scene.phrases)
  if count > max_regions:
    raise ValueError(f"max_regions must be >= the scene's {count} regions, got {max_regions}.")

  def padded(values, fill, dtype):
    values = np.asarray(values, dtype)
    out = np.full((max_regions,) + values.shape[1:], fill, dtype)
    out[:count] = values
    return out

  side = scene.image.shape[0]
  return {
      "image": scene.image[..., None],
      "image_hw": np.array([side, side], np.int32),
      "boxes": padded(scene.boxes, -1, np.int32),
      "phrases": list(scene.phrases) + [""] * (max_regions - count),
      "num_regions": np.int32(count),
      "num_digits": np.int32(np.sum(scene.kinds == 0)),
      "labels": padded(scene.labels, -1, np.int32),
      "kinds": padded(scene.kinds, -1, np.int32),
      "attributes": padded(scene.attributes, -1, np.int32),
      "sizes": padded(scene.sizes, 0.0, np.float32),
      "angles": padded(scene.angles, 0.0, np.float32),
      "pairs": padded(scene.pairs, -1, np.int32),
  }


@dataclasses.dataclass(kw_only=True)
class DenseDigitsConfig(DigitConfig):
  """Every parameter of `DenseDigits`; build with `DenseDigitsConfig.make`.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    canvas_size: S, the side of the square canvas (>= 64).
    max_digits: most digits per scene; a scene draws 1..max_digits.
    max_pairs: most pair phrases per scene (0: none).
    max_overlap: the largest `overlap` (intersection over the smaller area, >= IoU) of
      two digit boxes, in [0, 1].
    copies: scenes per training digit (train split only).
    novel_size: scenes in the "novel" split.
  """

  canvas_size: int = 64
  max_digits: int = 5
  max_pairs: int = 2
  max_overlap: float = MAX_OVERLAP
  copies: int = 1
  novel_size: int = 1000

  @property
  def max_regions(self) -> int:
    """R, the region slots of a record: `max_digits + max_pairs`."""
    return self.max_digits + self.max_pairs

  @classmethod
  def make(cls, *, source: str, mnist_dir: str | os.PathLike | None = None, seed: int = 0,
           canvas_size: int = 64, max_digits: int = 5, max_pairs: int = 2,
           max_overlap: float = MAX_OVERLAP, copies: int = 1, novel_size: int = 1000
           ) -> DenseDigitsConfig:
    """Validates the parameters and names the config.

    Raises:
      ValueError: naming the argument, for an unknown source, a `mnist_dir` without an
        MNIST source, a negative seed, a canvas below 64, max_digits outside 1..10,
        a negative max_pairs, max_overlap outside [0, 1], or copies / novel_size below 1.
    """
    check_int("canvas_size", canvas_size, low=MIN_CANVAS)
    check_int("max_digits", max_digits, low=1, high=10)
    check_int("max_pairs", max_pairs, low=0)
    check_float("max_overlap", max_overlap, low=0.0)
    if max_overlap > 1:
      raise ValueError(f"max_overlap must be an overlap fraction in [0, 1], got "
                       f"{max_overlap!r}.")
    check_int("copies", copies, low=1)
    check_int("novel_size", novel_size, low=1)
    return cls.create(
        name=(f"{source}-seed{seed}-canvas{canvas_size}-digits{max_digits}-pairs{max_pairs}"
              f"-overlap{float(max_overlap):g}-copies{copies}-novel{novel_size}"),
        description=(f"Dense {source} digit scenes on a {canvas_size}-pixel canvas, seed {seed}, "
                     f"1-{max_digits} digits, {max_pairs} pair phrases, overlap <= "
                     f"{float(max_overlap):g}, {copies} train copies, {novel_size} novel "
                     "scenes."),
        source=source, mnist_dir=mnist_dir, seed=seed, canvas_size=int(canvas_size),
        max_digits=int(max_digits), max_pairs=int(max_pairs), max_overlap=float(max_overlap),
        copies=int(copies), novel_size=int(novel_size))


class DenseDigits(DigitBuilder):
  """Dense digit scenes with region phrases (module doc) over any digit source.

  Construct with a `DenseDigitsConfig`: `DenseDigits(config=DenseDigitsConfig.make(...),
  data_dir=..., file_format="array_record")`, or call `build_dense_digits_dataset`.
  Records (S = canvas_size, R = max_digits + max_pairs; the digits' regions first, then
  the pairs', then padding):
    image: uint8 `[S, S, 1]`.
    image_hw: int32 `[2]`, `(S, S)` (Visual Genome's records hold the resized size here).
    boxes: int32 `[R, 4]`, `(y0, x0, y1, x1)` pixels, y1 and x1 exclusive, -1 padded:
      a digit's tight ink box, a pair's union of its two boxes.
    phrases: R texts (bytes when read back), "" padded.
    num_regions: int32 scalar, the filled regions (digits + pairs).
    num_digits: int32 scalar, the digit regions (>= 1).
    labels: int32 `[R]`, a digit region's class, -1 for pairs and padding.
    kinds: int32 `[R]`, index into REGION_KINDS ("digit", "pair"), -1 padded.
    attributes: int32 `[R, 3]`, a digit's class ids of ATTRIBUTES (SIZES, TILTS,
      STROKES), -1 for pairs and padding.
    sizes: float32 `[R]`, a digit's drawn ink side / S (0 elsewhere).
    angles: float32 `[R]`, a digit's rotation in degrees, counter-clockwise (0 elsewhere).
    pairs: int32 `[R, 2]`, a pair's subject and object regions, -1 elsewhere.
  """

  # Bump on any change to the generated data (rendering, phrases, held-out set, splits).
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "The overlap limit bounds intersection over the smaller box (was "
                            "IoU): no small digit hidden inside a large one's box."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    side, regions = config.canvas_size, config.max_regions
    tensor = tfds.features.Tensor
    return tfds.core.DatasetInfo(
        builder=self,
        description="Dense digit scenes with region phrases (for DenseCap), with a held-out "
                    "'novel' split.",
        features=tfds.features.FeaturesDict({
            "image": tensor(shape=(side, side, 1), dtype=np.uint8),
            "image_hw": tensor(shape=(2,), dtype=np.int32),
            "boxes": tensor(shape=(regions, 4), dtype=np.int32),
            "phrases": tfds.features.Sequence(tfds.features.Text(), length=regions),
            "num_regions": tensor(shape=(), dtype=np.int32),
            "num_digits": tensor(shape=(), dtype=np.int32),
            "labels": tensor(shape=(regions,), dtype=np.int32),
            "kinds": tensor(shape=(regions,), dtype=np.int32),
            "attributes": tensor(shape=(regions, len(ATTRIBUTES)), dtype=np.int32),
            "sizes": tensor(shape=(regions,), dtype=np.float32),
            "angles": tensor(shape=(regions,), dtype=np.float32),
            "pairs": tensor(shape=(regions, 2), dtype=np.int32),
        }),
    )

  def _split_examples(self, digits):
    return self._seen_and_novel_splits(digits, {d for _, d in HELD_OUT})

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray, copies: int):
    config = self.builder_config
    for index in range(copies * len(images)):
      rng = self.example_rng(split, index)
      count = int(rng.integers(1, config.max_digits + 1))
      digits = []
      for k in range(count):
        chosen = index % len(images) if k == 0 else int(rng.integers(len(images)))
        label = int(labels[chosen])
        digits.append((images[chosen], label,
                       _draw_attributes(label, rng, fixed=None, novel=False)))
      yield index, self._record(digits, rng)

  def _generate_novel(self, images: np.ndarray, labels: np.ndarray):
    config = self.builder_config
    for index in range(config.novel_size):
      rng = self.example_rng("novel", index)
      count = int(rng.integers(1, config.max_digits + 1))
      digits = []
      for _ in range(count):
        word, label = _HELD_OUT_ORDER[int(rng.integers(len(_HELD_OUT_ORDER)))]
        chosen = int(rng.choice(np.flatnonzero(labels == label)))
        digits.append((images[chosen], label,
                       _draw_attributes(label, rng, fixed=_attribute_of(word), novel=True)))
      yield index, self._record(digits, rng)

  def _record(self, digits, rng) -> dict:
    config = self.builder_config
    scene = make_scene(digits, rng, canvas_size=config.canvas_size,
                       max_overlap=config.max_overlap, max_pairs=config.max_pairs)
    if not np.any(scene.kinds == 0):
      raise ValueError("dense digits: a scene's digits all came out without ink; the source "
                       f"{config.source!r} holds blank digits.")
    return pad_scene(scene, max_regions=config.max_regions)


def build_dense_digits_dataset(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    canvas_size: int = 64,
    max_digits: int = 5,
    max_pairs: int = 2,
    max_overlap: float = MAX_OVERLAP,
    copies: int = 1,
    novel_size: int = 1000,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a dense-digits dataset in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused.

  Args:
    source: "mnist", "mnist_test" or "sklearn_digits" (see `sources.load_digits`).
    data_dir: TFDS data dir (None: TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets);
      the dataset lands in `data_dir/dense_digits/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for an MNIST source (else TFDS downloads MNIST).
    seed: base seed of the scenes.
    canvas_size: S, the canvas side (>= 64).
    max_digits: most digits per scene (1..10).
    max_pairs: most pair phrases per scene.
    max_overlap: the largest overlap of two digit boxes (intersection over the smaller
      area, which bounds their IoU).
    copies: scenes per training digit (train split only).
    novel_size: scenes of held-out combinations in the "novel" split.

  Returns:
    `{"train", "validation", "test", "novel"}` -> random-access source of the records of
    `DenseDigits` (image uint8 `[S, S, 1]`, boxes int32 `[R, 4]`, phrases R bytes, ...).

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = DenseDigitsConfig.make(
      source=source, mnist_dir=mnist_dir, seed=seed, canvas_size=canvas_size,
      max_digits=max_digits, max_pairs=max_pairs, max_overlap=max_overlap, copies=copies,
      novel_size=novel_size)
  return prepare(DenseDigits, config, data_dir=data_dir)
