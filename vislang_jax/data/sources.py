"""Digit sources: MNIST (local IDX files or TFDS) and scikit-learn's embedded 8x8 digits.

Every source returns the same thing, `(images uint8 [N, 28, 28], labels int64 [N])`, with
MNIST's conventions: white (255) ink on black (0), the digit inside the central 20x20 box.
"""

from __future__ import annotations

import functools
import os
import socket

import numpy as np
import scipy.ndimage

from vislang_jax.data.idx import read_idx

SOURCES = ("mnist", "sklearn_digits", "mnist_test")
# mnist_test: MNIST's 10,000 test digits alone, the first MNIST_TEST_TRAIN_SIZE as "train".
MNIST_TEST_TRAIN_SIZE = 8000
SOURCE_SPLITS = ("train", "test")  # what a source provides; derived datasets: digit_builder.SPLITS

# Base names of the files on the MNIST site, per split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where `tfds.data_source('mnist')` downloads from; probed before a download so that a
# machine without network fails in seconds instead of retrying for minutes.
_TFDS_MNIST_HOST = "storage.googleapis.com"
_PROBE_TIMEOUT_S = 3.0

# scikit-learn digits: the last SKLEARN_TEST_SIZE of the 1,797 (in the order
# `sklearn.datasets.load_digits` returns them) are the test split, the rest train.
SKLEARN_TEST_SIZE = 297
# Each 8x8 digit is resized to a BOX x BOX box centred in a CANVAS x CANVAS image, as
# MNIST's digits are size-normalised to a 20x20 box inside 28x28 (LeCun et al., 1998).
_SKLEARN_BOX = 20
_CANVAS = 28


def load_digits(
    source: str, split: str, *, mnist_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Loads one split of a digit source.

  Args:
    source: "mnist", "sklearn_digits" or "mnist_test".
      "mnist": with `mnist_dir`, the IDX files of the MNIST site in that folder
        (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz` for "train",
        `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` for "test"; the names
        without `.gz` work too). Without it, `tfds.data_source('mnist')`, which
        downloads MNIST into the TFDS data dir on first use (60,000 train, 10,000 test).
      "sklearn_digits": the 1,797 8x8 digits that ship with scikit-learn, works
        offline. Intensities 0..16 are scaled to 0..255 and each digit is resized
        bilinearly (`scipy.ndimage.zoom`, order 1, pixels treated as areas) to 20x20 and
        centred in 28x28, like MNIST's 20x20 box. Fixed split: the first 1,500 in
        scikit-learn's order are "train", the last 297 "test".
      "mnist_test": real MNIST digits for machines that hold only MNIST's test files
        (`t10k-*`; from `mnist_dir`, else TFDS): its first 8,000 digits are "train", the
        last 2,000 "test". MNIST's test set has the 5,000 digits of SD-3 (Census employees)
        first and the 5,000 of SD-1 (students) last, so this "test" holds SD-1 writers only
        (harder than MNIST's whole test set).
    split: "train" or "test".
    mnist_dir: folder with the MNIST IDX files; only for source="mnist" or "mnist_test".

  Returns:
    `(images, labels)`: images uint8 `[N, 28, 28]`, labels int64 `[N]` in 0..9.

  Raises:
    ValueError: for an unknown source or split, `mnist_dir` with another source, a
      missing or corrupt IDX file, or MNIST unavailable from TFDS (the message says
      how to get it).
  """
  if source not in SOURCES:
    raise ValueError(f"load_digits: source must be one of {SOURCES}, got {source!r}.")
  if split not in SOURCE_SPLITS:
    raise ValueError(f"load_digits: split must be one of {SOURCE_SPLITS}, got {split!r}.")
  if source == "sklearn_digits":
    if mnist_dir is not None:
      raise ValueError(
          f"load_digits: mnist_dir is only used with source='mnist' or 'mnist_test', got "
          f"mnist_dir={mnist_dir!r} with source='sklearn_digits'."
      )
    images, labels = _sklearn_digits()
    part = slice(None, -SKLEARN_TEST_SIZE) if split == "train" else slice(-SKLEARN_TEST_SIZE, None)
    return images[part].copy(), labels[part].copy()
  if source == "mnist_test":
    images, labels = load_digits("mnist", "test", mnist_dir=mnist_dir)
    part = slice(None, MNIST_TEST_TRAIN_SIZE) if split == "train" else slice(MNIST_TEST_TRAIN_SIZE, None)
    return images[part].copy(), labels[part].copy()
  if mnist_dir is not None:
    return _mnist_from_idx(os.fspath(mnist_dir), split)
  return _mnist_from_tfds(split)


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
  import sklearn.datasets  # Deferred: only this source needs scikit-learn.

  digits = sklearn.datasets.load_digits()
  small = digits.images * (255.0 / 16.0)  # [1797, 8, 8] float, 0..255
  factor = _SKLEARN_BOX / small.shape[-1]
  box = scipy.ndimage.zoom(small, (1, factor, factor), order=1, mode="nearest", grid_mode=True)
  images = np.zeros((len(small), _CANVAS, _CANVAS), np.uint8)
  lo = (_CANVAS - _SKLEARN_BOX) // 2
  images[:, lo : lo + _SKLEARN_BOX, lo : lo + _SKLEARN_BOX] = np.clip(np.rint(box), 0, 255)
  images.flags.writeable = False
  labels = digits.target.astype(np.int64)
  labels.flags.writeable = False
  return images, labels


def _mnist_from_idx(mnist_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  paths, missing = [], []
  for base in MNIST_FILES[split]:
    found = [p for p in (f"{base}.gz", base) if os.path.isfile(os.path.join(mnist_dir, p))]
    if found:
      paths.append(os.path.join(mnist_dir, found[0]))
    else:
      missing.append(f"{base}.gz")
  if missing:
    expected = ", ".join(f"{b}.gz" for b in MNIST_FILES[split])
    present = sorted(os.listdir(mnist_dir)) if os.path.isdir(mnist_dir) else "folder does not exist"
    raise ValueError(
        f"load_digits: mnist_dir={mnist_dir!r} lacks {', '.join(missing)} for split={split!r}. "
        f"Expected there: {expected} (un-gzipped names work too), as on the MNIST site. "
        f"Found: {present}."
    )
  images, labels = (read_idx(p) for p in paths)
  if images.ndim != 3 or images.shape[1:] != (_CANVAS, _CANVAS) or images.dtype != np.uint8:
    raise ValueError(
        f"load_digits: {paths[0]!r} holds {images.dtype} {images.shape}; expected uint8 [N, 28, 28]."
    )
  if labels.shape != (len(images),):
    raise ValueError(
        f"load_digits: {paths[1]!r} holds labels of shape {labels.shape}; expected ({len(images)},) "
        f"to match {paths[0]!r}."
    )
  return images, labels.astype(np.int64)


def _mnist_from_tfds(split: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    source = _tfds_mnist_source(split)
    records = [source[i] for i in range(len(source))]
  except Exception as e:  # Any failure here has the same two remedies.
    raise ValueError(
        f"load_digits: could not load MNIST split {split!r} from TFDS "
        f"(tfds.data_source('mnist') failed: {type(e).__name__}: {e}). Either pass "
        "data.mnist_dir, a folder holding the four IDX .gz files from the MNIST site "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz), or use source='sklearn_digits', which works offline."
    ) from e
  images = np.stack([r["image"][..., 0] for r in records]).astype(np.uint8)
  labels = np.asarray([r["label"] for r in records], np.int64)
  return images, labels


def _tfds_mnist_source(split: str):
  import tensorflow_datasets as tfds  # Deferred: importing TFDS takes seconds.

  try:  # Already prepared in the TFDS data dir: no network needed.
    return tfds.data_source("mnist", split=split, download=False)
  except Exception:
    pass
  try:
    socket.create_connection((_TFDS_MNIST_HOST, 443), timeout=_PROBE_TIMEOUT_S).close()
  except OSError as e:
    raise ConnectionError(
        f"MNIST is not prepared locally and {_TFDS_MNIST_HOST}:443 is unreachable ({e})"
    ) from e
  return tfds.data_source("mnist", split=split)


# The derived datasets' validation split: the last 10% of the source's train split.
VALIDATION_FRACTION = 0.1


def load_digit_splits(
    source: str, *, mnist_dir: str | os.PathLike | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`{"train", "validation", "test"}` -> `(images uint8 [N, 28, 28], labels int64 [N])`.

  "validation" is the last `VALIDATION_FRACTION` of the source's train split and "train"
  the rest, so every derived dataset holds out the same digits.
  """
  train_images, train_labels = load_digits(source, "train", mnist_dir=mnist_dir)
  cut = len(train_images) - int(round(VALIDATION_FRACTION * len(train_images)))
  return {
      "train": (train_images[:cut], train_labels[:cut]),
      "validation": (train_images[cut:], train_labels[cut:]),
      "test": load_digits(source, "test", mnist_dir=mnist_dir),
  }
