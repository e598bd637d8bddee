"""A TFDS builder for MNIST addition (Jaderberg et al., "Spatial Transformer Networks", 2015, A.1).

The paper's appendix A.1 (read in the paper's text): "Each digit is presented in a separate
42x42 input channel (giving 2-channel inputs), but each digit is transformed independently,
with random rotation, scale, and translation (RTS)"; the network outputs the sum of the two
digits, one of 19 classes (0-18). The RTS distortion here is the one of Sec. 4.1
(`distortions.rotate_translate_scale`: rotation in +-45 degrees, scale in [0.7, 1.2], placed at
a random position of the 42x42 canvas), drawn independently for each of the two digits.

Splits, seeds and naming as every `digit_builder.DigitBuilder`. The example with key `index`
of a split of N digits takes digit `index mod N` of that split for channel 0 and a partner
drawn uniformly from the same split for channel 1 (so test digits never appear in train);
"train" holds `copies` such passes over its digits (new partners and distortions each time),
"validation" and "test" one. Example `index` draws, from `default_rng([seed, split_id,
index])`, the partner, then channel 0's distortion, then channel 1's.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_int
from vislang_jax.data import distortions
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare

CANVAS_SIZE = 42  # A.1: "a separate 42x42 input channel"
NUM_CLASSES = 19  # sums 0..18


def addition_example(first: np.ndarray, partner_pool: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, int]:
  """One two-channel example: `first` and a random partner, each RTS-distorted on its own.

  Args:
    first: `[28, 28]` digit in [0, 255], channel 0.
    partner_pool: `[M, 28, 28]` digits (M >= 1) the channel-1 digit is drawn from.
    rng: draws the partner's index (uniform in [0, M)), then channel 0's RTS, then channel 1's.

  Returns:
    `(image, partner)`: float32 `[42, 42, 2]` in [0, 255], and the partner's index.
  """
  if len(partner_pool) == 0:
    raise ValueError("addition_example: partner_pool is empty; expected at least one digit.")
  partner = int(rng.integers(len(partner_pool)))
  channels = [distortions.rotate_translate_scale(digit, rng, canvas_size=CANVAS_SIZE)
              for digit in (first, partner_pool[partner])]
  return np.stack(channels, axis=-1), partner


@dataclasses.dataclass(kw_only=True)
class DigitAdditionConfig(DigitConfig):
  """Every parameter of `DigitAddition`; build with `DigitAdditionConfig.make`, which validates.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    copies: passes over the training digits (each with new partners and distortions).
  """

  copies: int = 1

  @classmethod
  def make(cls, *, source: str, mnist_dir: str | os.PathLike | None = None, seed: int = 0,
           copies: int = 1) -> DigitAdditionConfig:
    """Validates the parameters and names the config.

    Raises:
      ValueError: naming the argument, for any value out of range.
    """
    check_int("copies", copies, low=1)
    return cls.create(
        name=f"{source}-seed{seed}-copies{copies}",
        description=f"Two RTS {source} digits in two 42x42 channels, seed {seed}, "
                    f"{copies} train copies.",
        source=source, mnist_dir=mnist_dir, seed=seed, copies=int(copies))


class DigitAddition(DigitBuilder):
  """MNIST addition (STN, Jaderberg et al., 2015, A.1): two independently distorted digits.

  Construct with a `DigitAdditionConfig`: `DigitAddition(config=DigitAdditionConfig.make(...),
  data_dir=..., file_format="array_record")`. Records: `image` uint8 `[42, 42, 2]` (one digit
  per channel); `label` ClassLabel(19), the sum; `digits` int64 `[2]`, the two classes in
  channel order.
  """

  # Bump on any change to the generated data (pairing, distortion, split rule, sources).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="MNIST addition: two RTS digits in two channels, labelled with their sum "
                    "(Spatial Transformer Networks, Jaderberg et al., 2015, A.1).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(CANVAS_SIZE, CANVAS_SIZE, 2), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            "digits": tfds.features.Tensor(shape=(2,), dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_examples(self, digits):
    copies = self.builder_config.copies
    return {split: self._generate_examples(split, images, labels,
                                           copies if split == "train" else 1)
            for split, (images, labels) in digits.items()}

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray,
                         copies: int):
    for index in range(copies * len(images)):
      first = index % len(images)
      image, partner = addition_example(images[first], images, self.example_rng(split, index))
      pair = labels[[first, partner]].astype(np.int64)
      yield index, {"image": distortions.to_uint8(image), "label": int(pair.sum()),
                    "digits": pair}


def build_digit_addition_dataset(
    *, source: str, data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None, seed: int = 0, copies: int = 1,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares an MNIST-addition dataset in `data_dir` (once) and returns its data sources.

  Args:
    source: one of `sources.SOURCES` ("mnist", "mnist_test", "sklearn_digits").
    data_dir: TFDS data dir (None: TFDS's default); the dataset lands in
      `data_dir/digit_addition/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for the MNIST sources (else TFDS downloads MNIST).
    seed: base seed of the pairings and distortions.
    copies: passes over the training digits.

  Returns:
    `{"train", "validation", "test"}` -> random-access source of
    `{"image": uint8 [42, 42, 2], "label": int (sum), "digits": int64 [2]}` records.

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = DigitAdditionConfig.make(source=source, mnist_dir=mnist_dir, seed=seed,
                                    copies=copies)
  return prepare(DigitAddition, config, data_dir=data_dir)
