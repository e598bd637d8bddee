"""Sort-of-CLEVR: six coloured squares and circles with relational and non-relational questions.

Santoro et al., "A simple neural network module for relational reasoning", NeurIPS 2017,
Sec. 4 and Appendix: each image holds 6 objects, one of each colour, each a square or a
circle; each image comes with 10 non-relational and 10 relational questions. The paper
encodes questions as binary vectors; we write them as English sentences (below), so
models read them with a vocabulary. Where the paper is silent we follow the authors'
released generator (kimhc6028/relational-networks, `sort_of_clevr_generator.py`), and
say where we differ.

Scene (`make_scene`), per image, for the objects in COLORS order:
  * colours: COLORS = red, green, blue, orange, gray, yellow, with the released RGB values
    (`COLOR_RGB`, its BGR triples reversed); object k has colour k.
  * centres (y, x): integers drawn uniformly in [object_size, image_size - object_size)
    each (as released: [5, 70) for the default 75 and 5), redrawn until the object's
    bounding box is disjoint from those already placed: the Chebyshev distance
    max(|dy|, |dx|) between centres is at least 2 * object_size + 1. So objects never
    overlap and every one is fully visible. The released code instead redraws while the
    Euclidean distance is below 2 * object_size, which lets squares overlap at their
    corners (a later object is painted over an earlier one).
  * shape: SHAPES[rng.integers(2)], square or circle with probability 1/2 each (as
    released); drawn after the object's centre.
  * image: uint8 `[image_size, image_size, 3]`, white background (as released). A square
    covers the pixels with |row - y| <= s and |col - x| <= s (side 2s + 1 pixels, as
    OpenCV's filled rectangle between the corners (x - s, y - s) and (x + s, y + s) of the
    released code), a circle those with (row - y)^2 + (col - x)^2 <= (s + 1/2)^2 (the disc as
    wide as the square, 2s + 1 pixels, as OpenCV's filled circle of radius s; their rims
    differ by a few pixels), s = object_size.

Questions (`make_questions`): `questions_per_group` non-relational questions, then as many
relational ones (Q = 2 * questions_per_group, 20 by default); each draws its colour
uniformly from COLORS, then its subtype uniformly among its type's three (as released).
`question_text` words them and the pure solver `answer` answers them:

  non-relational:
    shape:      "what is the shape of the red object" -> square / circle
    horizontal: "is the red object on the left" -> yes if x < image_size / 2, else no
    vertical:   "is the red object at the top" -> yes if y < image_size / 2 (rows count
                down from the top), else no
  relational (squared Euclidean distances between integer centres):
    closest_shape:  "what is the shape of the object closest to the red object"
                    -> the shape of the nearest other object
    farthest_shape: "what is the shape of the object farthest from the red object"
                    -> the shape of the farthest object
    count:          "how many objects have the same shape as the red object" -> "1" .. "6",
                    counting the object itself
  All as released: the thresholds compare the centre with image_size / 2 (x is OpenCV's
  first coordinate there), distance ties go to the first object in COLORS order (Python's
  `list.index` there, `np.argmin` / `np.argmax` here), and the count includes the object
  itself (answers 1..6). The released answer set is [yes, no, rectangle, circle] followed
  by the six counts; ours, ANSWERS, says "square" for "rectangle".

Splits: "train", "validation", "test", with num_train, num_validation, num_test images.
The released code writes 9,800 training and 200 test images (the paper's 10,000); we keep
those, and add 200 validation images of their own, generated like the others, so model
selection never sees the test images. Example `index` of a split draws its scene and
questions from `np.random.default_rng([seed, split_id, index])` (`digit_builder.SPLIT_IDS`:
train 0, validation 1, test 2), so records do not depend on the split sizes or the order in
which they are written; record `index` of a split is example `index`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data.digit_builder import OfflineBuilder, prepare

COLORS = ("red", "green", "blue", "orange", "gray", "yellow")
# RGB of each colour: the released generator's BGR triples, reversed.
COLOR_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 156, 0), (128, 128, 128), (255, 255, 0))
BACKGROUND_RGB = (255, 255, 255)
SHAPES = ("square", "circle")
NUM_OBJECTS = len(COLORS)
QUESTION_TYPES = ("non_relational", "relational")
QUESTION_SUBTYPES = ("shape", "horizontal", "vertical", "closest_shape", "farthest_shape",
                     "count")
# The subtypes of each question type, in QUESTION_TYPES order.
SUBTYPES_OF_TYPE = (("shape", "horizontal", "vertical"),
                    ("closest_shape", "farthest_shape", "count"))
ANSWERS = ("yes", "no") + SHAPES + tuple(str(n) for n in range(1, NUM_OBJECTS + 1))

_TEMPLATES = {
    "shape": "what is the shape of the {} object",
    "horizontal": "is the {} object on the left",
    "vertical": "is the {} object at the top",
    "closest_shape": "what is the shape of the object closest to the {} object",
    "farthest_shape": "what is the shape of the object farthest from the {} object",
    "count": "how many objects have the same shape as the {} object",
}


def question_text(color: str, subtype: str) -> str:
  """The question of `subtype` about the object of `color` (templates in the module doc).

  Raises:
    ValueError: for a colour not in COLORS or a subtype not in QUESTION_SUBTYPES.
  """
  check_choice("color", color, COLORS)
  check_choice("subtype", subtype, QUESTION_SUBTYPES)
  return _TEMPLATES[subtype].format(color)


def _check_scene(shapes: Any, centers: Any) -> tuple[np.ndarray, np.ndarray]:
  shapes, centers = np.asarray(shapes), np.asarray(centers)
  if shapes.shape != (NUM_OBJECTS,) or not np.isin(shapes, range(len(SHAPES))).all():
    raise ValueError(f"shapes must be {NUM_OBJECTS} indices into SHAPES, got {shapes!r}.")
  if centers.shape != (NUM_OBJECTS, 2) or not np.issubdtype(centers.dtype, np.integer):
    raise ValueError(f"centers must be int [{NUM_OBJECTS}, 2] (y, x), got {centers.dtype} "
                     f"{centers.shape}.")
  return shapes, centers.astype(np.int64)


def answer(shapes: Any, centers: Any, *, color: str, subtype: str, image_size: int) -> str:
  """The answer (one of ANSWERS) to `question_text(color, subtype)` about a scene.

  Args:
    shapes: int `[6]`, object k's shape as an index into SHAPES; object k has colour
      COLORS[k].
    centers: int `[6, 2]`, object k's centre (y, x) in pixels (rows from the top).
    color: the queried object's colour, one of COLORS.
    subtype: one of QUESTION_SUBTYPES.
    image_size: the image's side; the horizontal / vertical questions compare the centre
      with image_size / 2.

  Returns:
    "yes" / "no" (horizontal, vertical), "square" / "circle" (shape, closest_shape,
    farthest_shape) or "1" .. "6" (count); rules and ties in the module docstring.

  Raises:
    ValueError: naming the argument, for a malformed scene, colour, subtype or size.
  """
  shapes, centers = _check_scene(shapes, centers)
  check_choice("color", color, COLORS)
  check_choice("subtype", subtype, QUESTION_SUBTYPES)
  check_int("image_size", image_size, low=1)
  k = COLORS.index(color)
  if subtype == "shape":
    return SHAPES[shapes[k]]
  if subtype in ("horizontal", "vertical"):
    coordinate = centers[k, 1] if subtype == "horizontal" else centers[k, 0]
    return "yes" if coordinate < image_size / 2 else "no"
  if subtype == "count":
    return str(int(np.sum(shapes == shapes[k])))
  distances = np.sum((centers - centers[k]) ** 2, axis=-1).astype(np.float64)
  if subtype == "closest_shape":
    distances[k] = np.inf  # Not the object itself.
    return SHAPES[shapes[np.argmin(distances)]]
  return SHAPES[shapes[np.argmax(distances)]]  # farthest_shape; the object itself is at 0.


def check_scene_size(image_size: int, object_size: int) -> None:
  """A ValueError unless six objects always fit (so that placing them terminates).

  Placed objects rule out at most `(4 * object_size + 1)^2` centres each, of the
  `(image_size - 2 * object_size)^2` candidates; the sixth centre always finds a free one
  when five of those areas leave room.
  """
  check_int("image_size", image_size, low=1)
  check_int("object_size", object_size, low=1)
  free = image_size - 2 * object_size
  if free < 1 or (NUM_OBJECTS - 1) * (4 * object_size + 1) ** 2 >= free ** 2:
    raise ValueError(
        f"image_size must leave room for {NUM_OBJECTS} disjoint objects of object_size "
        f"{object_size}: (image_size - 2 * object_size)^2 > {NUM_OBJECTS - 1} * "
        f"(4 * object_size + 1)^2, got image_size={image_size}, object_size={object_size}.")


def make_scene(rng: np.random.Generator, *, image_size: int, object_size: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """Draws one scene: `(shapes int32 [6], centers int32 [6, 2] (y, x))` (module doc)."""
  check_scene_size(image_size, object_size)
  shapes = np.zeros((NUM_OBJECTS,), np.int32)
  centers = np.zeros((NUM_OBJECTS, 2), np.int32)
  for k in range(NUM_OBJECTS):
    while True:  # Ends: check_scene_size leaves a free centre.
      center = rng.integers(object_size, image_size - object_size, size=2)
      if np.all(np.max(np.abs(centers[:k] - center), axis=-1) > 2 * object_size):
        break
    centers[k] = center
    shapes[k] = rng.integers(len(SHAPES))
  return shapes, centers


def render(shapes: Any, centers: Any, *, image_size: int, object_size: int) -> np.ndarray:
  """The scene's image: uint8 `[image_size, image_size, 3]` (pixel rules in the module doc)."""
  shapes, centers = _check_scene(shapes, centers)
  rows, columns = np.mgrid[:image_size, :image_size]
  image = np.empty((image_size, image_size, 3), np.uint8)
  image[...] = BACKGROUND_RGB
  for k, ((y, x), shape) in enumerate(zip(centers, shapes)):
    dy, dx = rows - y, columns - x
    if SHAPES[shape] == "square":
      inside = (np.abs(dy) <= object_size) & (np.abs(dx) <= object_size)
    else:
      inside = dy ** 2 + dx ** 2 <= (object_size + 0.5) ** 2
    image[inside] = COLOR_RGB[k]
  return image


def make_questions(rng: np.random.Generator, shapes: Any, centers: Any, *, image_size: int,
                   questions_per_group: int) -> dict[str, Any]:
  """A scene's questions: the record's question fields (see `SortOfClevr`), Q = 2 * per group."""
  questions, answers, types, subtypes, colors = [], [], [], [], []
  for question_type, group in enumerate(SUBTYPES_OF_TYPE):
    for _ in range(questions_per_group):
      color = COLORS[rng.integers(NUM_OBJECTS)]
      subtype = group[rng.integers(len(group))]
      questions.append(question_text(color, subtype))
      answers.append(answer(shapes, centers, color=color, subtype=subtype,
                            image_size=image_size))
      types.append(question_type)
      subtypes.append(QUESTION_SUBTYPES.index(subtype))
      colors.append(COLORS.index(color))
  as_int32 = lambda values: np.asarray(values, np.int32)
  return {"questions": questions, "answers": answers, "question_types": as_int32(types),
          "question_subtypes": as_int32(subtypes), "question_colors": as_int32(colors)}


def make_example(rng: np.random.Generator, *, image_size: int, object_size: int,
                 questions_per_group: int) -> dict[str, Any]:
  """One record (see `SortOfClevr`): the scene, then its questions, from `rng`."""
  shapes, centers = make_scene(rng, image_size=image_size, object_size=object_size)
  return {
      "image": render(shapes, centers, image_size=image_size, object_size=object_size),
      **make_questions(rng, shapes, centers, image_size=image_size,
                       questions_per_group=questions_per_group),
      "colors": np.arange(NUM_OBJECTS, dtype=np.int32),
      "shapes": shapes,
      "centers": centers,
  }


def _check_known(fields: dict[str, Any]) -> None:
  if fields:
    raise ValueError(f"unknown Sort-of-CLEVR parameters {sorted(fields)}; expected seed, "
                     "num_train, num_validation, num_test, image_size, object_size, "
                     "questions_per_group.")


@dataclasses.dataclass(kw_only=True)
class SortOfClevrConfig(tfds.core.BuilderConfig):
  """Every parameter of `SortOfClevr`; build with `SortOfClevrConfig.make`.

  Attributes:
    seed: base seed of every example's generator.
    num_train, num_validation, num_test: images of each split.
    image_size: the images' side in pixels.
    object_size: s: squares and circles are 2s + 1 pixels wide (module docstring).
    questions_per_group: questions of each type per image (Q = twice this).
  """

  seed: int = 0
  num_train: int = 9800
  num_validation: int = 200
  num_test: int = 200
  image_size: int = 75
  object_size: int = 5
  questions_per_group: int = 10

  @classmethod
  def make(cls, *, seed: int = 0, num_train: int = 9800, num_validation: int = 200,
           num_test: int = 200, image_size: int = 75, object_size: int = 5,
           questions_per_group: int = 10, **unknown: Any) -> SortOfClevrConfig:
    """Validates the parameters and names the config after all of them.

    Raises:
      ValueError: naming the argument, for any value out of range, six objects that do
        not fit the image, or an unknown parameter.
    """
    _check_known(unknown)
    check_int("seed", seed, low=0)
    for name, value in (("num_train", num_train), ("num_validation", num_validation),
                        ("num_test", num_test), ("questions_per_group", questions_per_group)):
      check_int(name, value, low=1)
    check_scene_size(image_size, object_size)
    return cls(
        name=(f"seed{seed}-train{num_train}-validation{num_validation}-test{num_test}-"
              f"size{image_size}-object{object_size}-questions{questions_per_group}"),
        description=(f"Sort-of-CLEVR, seed {seed}, {num_train}/{num_validation}/{num_test} "
                     f"images of {image_size}x{image_size}, objects of size {object_size}, "
                     f"{questions_per_group} questions of each type per image."),
        seed=int(seed), num_train=int(num_train), num_validation=int(num_validation),
        num_test=int(num_test), image_size=int(image_size), object_size=int(object_size),
        questions_per_group=int(questions_per_group))


class SortOfClevr(OfflineBuilder):
  """Sort-of-CLEVR (Santoro et al., 2017, Sec. 4), generated as the module docstring says.

  Construct with a config: `SortOfClevr(config=SortOfClevrConfig.make(...), data_dir=...,
  file_format="array_record")`, or call `build_sort_of_clevr_dataset`. Records (Q = 2 *
  questions_per_group, S = image_size):
    image: uint8 `[S, S, 3]`.
    questions, answers: Q texts (bytes when read back), the non-relational ones first;
      answers from ANSWERS.
    question_types: int32 `[Q]`, into QUESTION_TYPES.
    question_subtypes: int32 `[Q]`, into QUESTION_SUBTYPES.
    question_colors: int32 `[Q]`, the queried object's colour, into COLORS.
    colors: int32 `[6]`, object k's colour (always k: 0 .. 5).
    shapes: int32 `[6]`, into SHAPES.
    centers: int32 `[6, 2]`, the objects' centres (y, x) in pixels.
  """

  # Bump on any change to the generated data (placement, drawing, questions, answers).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    side, count = config.image_size, 2 * config.questions_per_group
    int32 = lambda *shape: tfds.features.Tensor(shape=shape, dtype=np.int32)
    return tfds.core.DatasetInfo(
        builder=self,
        description="Sort-of-CLEVR (Santoro et al., 2017, Sec. 4) with English questions.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(side, side, 3), dtype=np.uint8),
            "questions": tfds.features.Sequence(tfds.features.Text(), length=count),
            "answers": tfds.features.Sequence(tfds.features.Text(), length=count),
            "question_types": int32(count),
            "question_subtypes": int32(count),
            "question_colors": int32(count),
            "colors": int32(NUM_OBJECTS),
            "shapes": int32(NUM_OBJECTS),
            "centers": int32(NUM_OBJECTS, 2),
        }),
        disable_shuffling=True,  # Record i of a split is example i (loaders shuffle).
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    sizes = {"train": config.num_train, "validation": config.num_validation,
             "test": config.num_test}
    return {split: self._generate_examples(split, size) for split, size in sizes.items()}

  def _generate_examples(self, split: str, size: int):
    config = self.builder_config
    for index in range(size):
      yield index, make_example(self.example_rng(split, index), image_size=config.image_size,
                                object_size=config.object_size,
                                questions_per_group=config.questions_per_group)


def build_sort_of_clevr_dataset(
    *, data_dir: str | os.PathLike | None, seed: int = 0, num_train: int = 9800,
    num_validation: int = 200, num_test: int = 200, image_size: int = 75, object_size: int = 5,
    questions_per_group: int = 10, **unknown: Any,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares Sort-of-CLEVR in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused.

  Args:
    data_dir: TFDS data dir (None: TFDS's default); the dataset lands in
      `data_dir/sort_of_clevr/<config name>/<version>/`.
    seed: base seed of the scenes and questions.
    num_train, num_validation, num_test: images of each split (defaults: the released
      9,800 / 200 test, plus 200 validation images).
    image_size, object_size, questions_per_group: see `SortOfClevrConfig`.

  Returns:
    `{"train", "validation", "test"}` -> random-access source of the records of
    `SortOfClevr`.

  Raises:
    ValueError: naming the argument, for bad or unknown parameters.
  """
  config = SortOfClevrConfig.make(
      seed=seed, num_train=num_train, num_validation=num_validation, num_test=num_test,
      image_size=image_size, object_size=object_size, questions_per_group=questions_per_group,
      **unknown)
  return prepare(SortOfClevr, config, data_dir=data_dir)
