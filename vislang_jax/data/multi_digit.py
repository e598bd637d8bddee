"""A TFDS builder for canvases holding several digits (DRAW's two-digit MNIST), as array_record.

Gregor et al., "DRAW: A Recurrent Neural Network For Image Generation", ICML 2015, Sec. 4.3
("MNIST Generation with Two Digits"): 60x60 images, each with two 28x28 MNIST digits chosen at
random and placed at random positions on a black background; where they overlap the
intensities are added and clipped. (This description is from our reading of the paper; the
paper gives no further detail, e.g. how positions are distributed, so positions here are
uniform over every place where a digit fits wholly on the canvas.)

Splits, seeds and naming as every `digit_builder.DigitBuilder`. The example with key `index`
puts that split's digit `index` first and draws the other `num_digits - 1` from the same
split, so every digit of a split appears first exactly once and test digits never appear in
train. (TFDS stores the examples in an order shuffled by key, so a data source's record `i`
is not the key-`i` one.)
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_int
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare
from vislang_jax.data.distortions import to_uint8

_DIGIT_SIZE = 28


def place_digits(digits: np.ndarray, rng: np.random.Generator, *, canvas_size: int) -> np.ndarray:
  """Adds `digits` at uniformly random places of a black canvas and clips the sum.

  Args:
    digits: `[K, 28, 28]` intensities in [0, 255] (uint8 or float).
    rng: draws, per digit in order, its top row then its left column, each uniform in
      `[0, canvas_size - 28]`.
    canvas_size: side of the square canvas, >= 28.

  Returns:
    float32 `[canvas_size, canvas_size]` in [0, 255].

  Raises:
    ValueError: for digits not `[K, 28, 28]` or a canvas smaller than a digit.
  """
  digits = np.asarray(digits, np.float32)
  if digits.ndim != 3 or digits.shape[1:] != (_DIGIT_SIZE, _DIGIT_SIZE):
    raise ValueError(f"place_digits: digits must have shape [K, 28, 28], got {digits.shape}.")
  check_int("place_digits: canvas_size", canvas_size, low=_DIGIT_SIZE)
  canvas = np.zeros((canvas_size, canvas_size), np.float32)
  for digit in digits:
    y, x = rng.integers(0, canvas_size - _DIGIT_SIZE + 1, size=2)
    canvas[y : y + _DIGIT_SIZE, x : x + _DIGIT_SIZE] += digit
  return np.clip(canvas, 0.0, 255.0)


@dataclasses.dataclass(kw_only=True)
class MultiDigitConfig(DigitConfig):
  """Every parameter of `MultiDigit`; build with `MultiDigitConfig.make`, which validates.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    num_digits: digits per canvas.
    canvas_size: side of the square canvas.
  """

  num_digits: int = 2
  canvas_size: int = 60

  @classmethod
  def make(
      cls,
      *,
      source: str,
      mnist_dir: str | os.PathLike | None = None,
      seed: int = 0,
      num_digits: int = 2,
      canvas_size: int = 60,
  ) -> MultiDigitConfig:
    """Validates the parameters and names the config.

    Raises:
      ValueError: naming the argument, for any value out of range.
    """
    check_int("num_digits", num_digits, low=1)
    check_int("canvas_size", canvas_size, low=_DIGIT_SIZE)
    return cls.create(
        name=f"{source}-seed{seed}-digits{num_digits}-canvas{canvas_size}",
        description=f"{num_digits} {source} digits on a {canvas_size}x{canvas_size} canvas, seed {seed}.",
        source=source,
        mnist_dir=mnist_dir,
        seed=seed,
        num_digits=int(num_digits),
        canvas_size=int(canvas_size),
    )


class MultiDigit(DigitBuilder):
  """Several digits per canvas (DRAW, Gregor et al., 2015, Sec. 4.3).

  Construct with a `MultiDigitConfig`: `MultiDigit(config=MultiDigitConfig.make(...),
  data_dir=..., file_format="array_record")`. Records: `image` uint8
  `[canvas_size, canvas_size, 1]`; `label` int64 `[num_digits]`, the classes of the digits
  in the order they were placed.
  """

  # Bump on any change to the generated data (placement, split rule, sources).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    side = config.canvas_size
    return tfds.core.DatasetInfo(
        builder=self,
        description="Several digits at random places of one canvas (DRAW, Gregor et al., 2015, Sec. 4.3).",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(side, side, 1), dtype=np.uint8),
                "label": tfds.features.Tensor(shape=(config.num_digits,), dtype=np.int64),
            }
        ),
    )

  def _split_examples(self, digits):
    return {split: self._generate_examples(split, *part) for split, part in digits.items()}

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray):
    config = self.builder_config
    for index in range(len(images)):
      rng = self.example_rng(split, index)
      chosen = np.concatenate([[index], rng.integers(0, len(images), size=config.num_digits - 1)])
      image = place_digits(images[chosen], rng, canvas_size=config.canvas_size)
      yield index, {"image": to_uint8(image)[..., None], "label": labels[chosen].astype(np.int64)}


def build_multi_digit_dataset(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    num_digits: int = 2,
    canvas_size: int = 60,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a multi-digit dataset in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused.

  Args:
    source: "mnist" or "sklearn_digits" (see `sources.load_digits`).
    data_dir: TFDS data dir (None: TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets);
      the dataset lands in
      `data_dir/multi_digit/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for source="mnist" (else TFDS downloads MNIST).
    seed: base seed of the digit choices and placements.
    num_digits: digits per canvas (2 in the paper).
    canvas_size: side of the canvas (60 in the paper).

  Returns:
    `{"train", "validation", "test"}` -> random-access source of
    `{"image": uint8 [canvas_size, canvas_size, 1], "label": int64 [num_digits]}` records.

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = MultiDigitConfig.make(
      source=source, mnist_dir=mnist_dir, seed=seed, num_digits=num_digits, canvas_size=canvas_size
  )
  return prepare(MultiDigit, config, data_dir=data_dir)
