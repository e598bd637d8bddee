"""Binarized MNIST with the fixed binarization DRAW's Table 2 is measured on, through TFDS.

TFDS's `binarized_mnist` holds Larochelle's files of the binarization of Salakhutdinov &
Murray (2008, "On the quantitative analysis of deep belief networks"): every pixel of
MNIST sampled once, to 0 or 1, with 50,000 train, 10,000 validation and 10,000 test
images. Models scored on it see the same bits in every run, unlike the "dynamic"
binarization (`ops.binarize`) of grey-level digits.

The dataset must already be prepared in the TFDS data dir (this module does not download:
TFDS fetches it from www.cs.toronto.edu, see `load_binarized_mnist`).
"""

from __future__ import annotations

import os

import numpy as np

NAME = "binarized_mnist"
SPLITS = ("train", "validation", "test")
SIZES = {"train": 50_000, "validation": 10_000, "test": 10_000}
IMAGE_SHAPE = (28, 28, 1)
_READ_BATCH = 10_000  # images per tf.data batch when reading a split


class BinarizedImages:
  """Random-access records `{"image": uint8 [28, 28, 1]}` with pixels 0 or 255.

  Pixels are 255 for a 1 so that the loaders' `pipeline.ImageToFloat` (uint8 / 255) gives
  the bits, 0. or 1., as float32.
  """

  def __init__(self, bits: np.ndarray, split: str):
    self._images = np.asarray(bits, np.uint8) * np.uint8(255)
    self._images.flags.writeable = False
    self.split = split

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"image": self._images[index]}

  def __repr__(self) -> str:
    # Grain stores this in checkpoints and checks it on restore: no memory address.
    return f"BinarizedImages({NAME}/{self.split}, {len(self)} images)"


def load_binarized_mnist(data_dir: str | os.PathLike | None = None
                         ) -> dict[str, BinarizedImages]:
  """`{"train", "validation", "test"}` -> the split's images, read whole into memory.

  Args:
    data_dir: the TFDS data dir holding `binarized_mnist/` (None: TFDS's default,
      $TFDS_DATA_DIR or ~/tensorflow_datasets). Prepare it once where there is a network:
      `tfds build binarized_mnist --data_dir=DIR` (or
      `tfds.builder("binarized_mnist", data_dir=DIR).download_and_prepare()`).

  Returns:
    `BinarizedImages` per split (50,000 / 10,000 / 10,000 images with the real data).

  Raises:
    ValueError: when the dataset is not prepared in `data_dir` (saying how to prepare it),
      or holds images that are not [N, 28, 28, 1] of 0s and 1s.
  """
  import tensorflow_datasets as tfds  # Deferred: importing TFDS takes seconds.

  data_dir = None if data_dir is None else os.fspath(data_dir)
  splits = {}
  for split in SPLITS:
    try:
      batches = tfds.as_numpy(tfds.load(NAME, split=split, data_dir=data_dir,
                                        download=False, batch_size=_READ_BATCH))
      bits = np.concatenate([batch["image"] for batch in batches])
    except Exception as error:  # Not prepared, or unreadable: the same remedy.
      raise ValueError(
          f"load_binarized_mnist: could not read split {split!r} of TFDS {NAME!r} from "
          f"data_dir={data_dir!r} ({type(error).__name__}: {error}). Prepare it once with "
          f"`tfds build {NAME} --data_dir=DIR` and pass that DIR (config.data.dir), or use "
          "data.source='mnist' / 'mnist_test' (grey digits binarized at every step)."
      ) from error
    if bits.ndim != 4 or bits.shape[1:] != IMAGE_SHAPE or not np.isin(bits, (0, 1)).all():
      values = np.unique(bits)[:5].tolist()
      raise ValueError(
          f"load_binarized_mnist: split {split!r} of {data_dir!r} holds images of shape "
          f"{bits.shape} with values {values}...; expected [N, 28, 28, 1] of 0s and 1s.")
    splits[split] = BinarizedImages(bits, split)
  return splits
