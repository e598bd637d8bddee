"""A TFDS builder of digit scenes labelled per pixel, the offline stand-in for FCN's data.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
Sec. 4 train and score on PASCAL VOC's per-pixel labels (`voc_segmentation`); here the scenes
are digits of a digit source on a black canvas, and every pixel's class is the digit whose
ink it shows: 0 is background, `d + 1` digit d (`NUM_CLASSES` = 11).

A digit's ink (`ink_mask`): the pixels of its 28x28 patch, as placed on the canvas, that are
> 0 and >= `INK_FRACTION` (0.5) of the digit's brightest pixel. (Relative, so a faint digit
still has ink; the faint fringe of a stroke is background.)

Layouts:
  "multi": 1..`max_digits` digits (count uniform), each at a uniformly random place where
    its 28x28 patch fits the canvas (patches may overlap). The image is the pixel-wise
    maximum of the digits' layers. Where the inks of several digits overlap, the pixel goes
    to the brightest there (the one whose ink the image shows), ties to the later placed.
  "cluttered": one digit among `num_clutter` crops of other digits of the same split
    (`distortions.cluttered`: RAM's translated, cluttered MNIST; its sum, clipped). Only the
    digit is labelled: clutter pixels are background (0), even where a crop holds a whole
    stroke; where clutter overlaps the digit's ink the pixel is the digit's.

Records: "image" uint8 `[S, S, 1]`; "segmentation" uint8 `[S, S]` in 0..10; "labels" int32
`[max_digits]`, the classes of the digits in placement order, -1 padded; "boxes" int32
`[max_digits, 4]`, each digit's 28x28 patch `(y0, x0, y1, x1)` (y1, x1 exclusive; the ink
lies inside), -1 padded.

Splits, seeds and naming as every `digit_builder.DigitBuilder`: "train" holds `copies` scenes
per digit of the source's train split less its last 10%, "validation" that last 10%, "test"
the source's test split. Scene `index` has its split's digit `index % n` as its first digit.
Draw order of a scene, from `example_rng(split, index)`: "multi": the digit count, the other
digits (uniform over the split), then per digit its top row and left column; "cluttered": the
draws of `distortions.cluttered` (clutter from the whole split).
"""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data import distortions
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare

LAYOUTS = ("multi", "cluttered")
NUM_CLASSES = 11  # background and the ten digits
INK_FRACTION = 0.5
# Per layout, the default max_digits; "cluttered" holds exactly one digit.
_MAX_DIGITS = {"multi": 3, "cluttered": 1}
# Defaults of the cluttered canvas's clutter (RAM's 4 pieces of 8x8).
_CLUTTER_DEFAULTS = {"num_clutter": 4, "clutter_size": 8}
_DIGIT_SIZE = 28


def ink_mask(layer: np.ndarray) -> np.ndarray:
  """bool, same shape: the pixels of one digit's layer > 0 and >= INK_FRACTION of its max."""
  layer = np.asarray(layer, np.float32)
  return (layer > 0) & (layer >= INK_FRACTION * layer.max(initial=0.0))


def label_pixels(layers: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The mask of overlapping digit layers: brightest ink wins, ties to the later layer.

  Args:
    layers: `[K, S, S]` each digit alone on the canvas, intensities in [0, 255].
    labels: `[K]` int digit classes 0..9.

  Returns:
    uint8 `[S, S]`: 0 where no digit has ink (`ink_mask`), else `labels[k] + 1` for the k
    whose ink there is brightest (the largest such k on ties).
  """
  layers = np.asarray(layers, np.float32)
  inks = np.stack([ink_mask(layer) for layer in layers])
  scores = np.where(inks, layers, -1.0)[::-1]  # reversed: argmax's first hit is the latest
  winner = len(layers) - 1 - np.argmax(scores, axis=0)
  mask = np.asarray(labels)[winner] + 1
  return np.where(inks.any(axis=0), mask, 0).astype(np.uint8)


@dataclasses.dataclass(kw_only=True)
class SegmentationDigitsConfig(DigitConfig):
  """Every parameter of `SegmentationDigits`; build with `make`, which validates.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    layout: one of LAYOUTS.
    canvas_size: side of the square canvas.
    max_digits: digits per scene at most ("cluttered": 1).
    num_clutter, clutter_size: the "cluttered" layout's crops (0 for "multi").
    copies: scenes per training digit.
  """

  layout: str = "multi"
  canvas_size: int = 64
  max_digits: int = 3
  num_clutter: int = 0
  clutter_size: int = 0
  copies: int = 1

  @classmethod
  def make(cls, *, source: str, mnist_dir: str | os.PathLike | None = None, seed: int = 0,
           layout: str = "multi", canvas_size: int = 64, max_digits: int | None = None,
           num_clutter: int | None = None, clutter_size: int | None = None,
           copies: int = 1) -> SegmentationDigitsConfig:
    """Validates the parameters, fills the layout's defaults and names the config.

    Raises:
      ValueError: naming the argument, for an unknown layout, a value out of range, more
        than one digit or no canvas room for the clutter with "cluttered", or clutter
        options with "multi".
    """
    check_choice("layout", layout, LAYOUTS)
    check_int("canvas_size", canvas_size, low=_DIGIT_SIZE)
    check_int("copies", copies, low=1)
    max_digits = _MAX_DIGITS[layout] if max_digits is None else max_digits
    check_int("max_digits", max_digits, low=1, high=1 if layout == "cluttered" else None)
    clutter = {"num_clutter": num_clutter, "clutter_size": clutter_size}
    if layout == "cluttered":
      clutter = {k: _CLUTTER_DEFAULTS[k] if v is None else v for k, v in clutter.items()}
      distortions.validate_clutter(canvas_size=canvas_size, **clutter)
      suffix = "-clutter{num_clutter}x{clutter_size}".format(**clutter)
    else:
      given = {k: v for k, v in clutter.items() if v is not None}
      if given:
        raise ValueError(f"{', '.join(given)} only apply to layout='cluttered', got {given} "
                         f"with layout={layout!r}.")
      clutter, suffix = {"num_clutter": 0, "clutter_size": 0}, ""
    return cls.create(
        name=f"{layout}-{source}-seed{seed}-canvas{canvas_size}-digits{max_digits}"
        f"-copies{copies}{suffix}",
        description=f"{source} digit scenes ({layout}) labelled per pixel, canvas "
        f"{canvas_size}, up to {max_digits} digits, seed {seed}{suffix}.",
        source=source, mnist_dir=mnist_dir, seed=seed, layout=layout,
        canvas_size=int(canvas_size), max_digits=int(max_digits), copies=int(copies),
        **{k: int(v) for k, v in clutter.items()})


class SegmentationDigits(DigitBuilder):
  """Digit scenes with per-pixel classes (the module docstring has every rule).

  Construct with a `SegmentationDigitsConfig`: `SegmentationDigits(config=..., data_dir=...,
  file_format="array_record")`, or call `build_segmentation_digits_dataset`.
  """

  # Bump on any change to the generated data (placement, labelling, split rule, sources).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    side, k = config.canvas_size, config.max_digits
    return tfds.core.DatasetInfo(
        builder=self,
        description="Digit scenes labelled per pixel (0 background, d + 1 digit d).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(side, side, 1), dtype=np.uint8),
            "segmentation": tfds.features.Tensor(shape=(side, side), dtype=np.uint8),
            "labels": tfds.features.Tensor(shape=(k,), dtype=np.int32),
            "boxes": tfds.features.Tensor(shape=(k, 4), dtype=np.int32),
        }),
    )

  def _split_examples(self, digits):
    copies = self.builder_config.copies
    return {split: self._generate_examples(split, images, labels,
                                           copies if split == "train" else 1)
            for split, (images, labels) in digits.items()}

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray, copies: int):
    config = self.builder_config
    scene = self._multi if config.layout == "multi" else self._cluttered
    for index in range(copies * len(images)):
      rng = self.example_rng(split, index)
      chosen, image, layers, tops = scene(images, index % len(images), rng)
      padding = config.max_digits - len(chosen)
      boxes = np.concatenate([tops, tops + _DIGIT_SIZE], axis=1)
      yield index, {
          "image": distortions.to_uint8(image)[..., None],
          "segmentation": label_pixels(layers, labels[chosen]),
          "labels": np.pad(labels[chosen], (0, padding), constant_values=-1).astype(np.int32),
          "boxes": np.pad(boxes, ((0, padding), (0, 0)), constant_values=-1).astype(np.int32),
      }

  def _multi(self, images, first, rng):
    """`(chosen [K], image [S, S], layers [K, S, S], tops [K, 2])` of a "multi" scene."""
    side = self.builder_config.canvas_size
    count = rng.integers(1, self.builder_config.max_digits + 1)
    chosen = np.concatenate([[first], rng.integers(0, len(images), size=count - 1)])
    tops = rng.integers(0, side - _DIGIT_SIZE + 1, size=(count, 2))
    layers = np.stack([_placed(images[i], top, side) for i, top in zip(chosen, tops)])
    return chosen, layers.max(axis=0), layers, tops

  def _cluttered(self, images, first, rng):
    """The same for a "cluttered" scene; the digit's place is found by replaying the draws
    with a white digit and blank clutter."""
    config = self.builder_config
    options = dict(canvas_size=config.canvas_size, num_clutter=config.num_clutter,
                   clutter_size=config.clutter_size)
    replay = copy.deepcopy(rng)
    image = distortions.cluttered(images[first], images, rng, **options)
    white = np.full((_DIGIT_SIZE, _DIGIT_SIZE), 255, np.uint8)
    blank = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), images.shape)
    patch = distortions.cluttered(white, blank, replay, **options) > 0
    top = np.argwhere(patch).min(axis=0)
    return (np.array([first]), image, _placed(images[first], top, config.canvas_size)[None],
            top[None])


def _placed(digit: np.ndarray, top: np.ndarray, side: int) -> np.ndarray:
  """float32 `[side, side]`: `digit` [28, 28] with its top-left pixel at `top`, black around."""
  layer = np.zeros((side, side), np.float32)
  layer[top[0] : top[0] + _DIGIT_SIZE, top[1] : top[1] + _DIGIT_SIZE] = digit
  return layer


def build_segmentation_digits_dataset(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    layout: str = "multi",
    canvas_size: int = 64,
    max_digits: int | None = None,
    num_clutter: int | None = None,
    clutter_size: int | None = None,
    copies: int = 1,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a per-pixel labelled digit dataset in `data_dir` (once); returns its sources.

  Args:
    source: one of `sources.SOURCES` ("sklearn_digits" works offline).
    data_dir: TFDS data dir (None: TFDS's default); the dataset lands in
      `data_dir/segmentation_digits/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for source="mnist" or "mnist_test".
    seed: base seed of every scene's draws.
    layout: "multi" (several digits) or "cluttered" (one digit among clutter).
    canvas_size: side S of the canvas, >= 28.
    max_digits: digits per scene at most (None: 3 for "multi", 1 for "cluttered", which
      allows only 1).
    num_clutter, clutter_size: "cluttered" only (None: 4 pieces of 8x8, RAM's).
    copies: scenes per training digit.

  Returns:
    `{"train", "validation", "test"}` -> random-access source of `{"image": uint8 [S, S, 1],
    "segmentation": uint8 [S, S], "labels": int32 [max_digits], "boxes": int32 [max_digits, 4]}`.

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = SegmentationDigitsConfig.make(
      source=source, mnist_dir=mnist_dir, seed=seed, layout=layout, canvas_size=canvas_size,
      max_digits=max_digits, num_clutter=num_clutter, clutter_size=clutter_size, copies=copies)
  return prepare(SegmentationDigits, config, data_dir=data_dir)
