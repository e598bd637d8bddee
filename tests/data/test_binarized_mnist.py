"""data/binarized_mnist on TFDS's mock data (no download): what TFDS holds, as 0/255 records."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vislang_jax.data import binarized_mnist
from vislang_jax.data.pipeline import make_loader

N = 6  # mocked examples per split


def test_records_are_the_tfds_bits_times_255(tmp_path):
  # max_value=2: the mock draws every pixel from {0, 1}, as the real files hold.
  with tfds.testing.mock_data(num_examples=N, max_value=2):
    splits = binarized_mnist.load_binarized_mnist(tmp_path)
    direct = {split: np.stack([r["image"] for r in tfds.as_numpy(
        tfds.load("binarized_mnist", split=split, data_dir=str(tmp_path)))])
        for split in binarized_mnist.SPLITS}
  assert sorted(splits) == sorted(binarized_mnist.SPLITS)
  for split, source in splits.items():
    assert len(source) == N and repr(source) == f"BinarizedImages(binarized_mnist/{split}, {N} images)"
    images = np.stack([source[i]["image"] for i in range(N)])
    assert images.dtype == np.uint8 and images.shape == (N, 28, 28, 1)
    assert set(np.unique(direct[split])) == {0, 1}
    np.testing.assert_array_equal(images, 255 * direct[split].astype(np.uint8))
  # The loaders turn them back into the bits, as float32 0. and 1.
  batch = next(iter(make_loader(splits["test"], batch_size=N, seed=0, shuffle=False,
                                num_epochs=1, drop_remainder=False)))
  assert batch["image"].dtype == np.float32
  np.testing.assert_array_equal(batch["image"], direct["test"].astype(np.float32))


def test_images_that_are_not_bits_raise(tmp_path):
  with tfds.testing.mock_data(num_examples=N):  # pixels drawn from 0..254
    with pytest.raises(ValueError, match=r"split 'train' .* expected \[N, 28, 28, 1\] of 0s and 1s"):
      binarized_mnist.load_binarized_mnist(tmp_path)


def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(ValueError, match=r"could not read split 'train' of TFDS 'binarized_mnist'"
                                       r".*tfds build binarized_mnist --data_dir=DIR"):
    binarized_mnist.load_binarized_mnist(tmp_path)
