"""load_digits: the real local MNIST test set, fake IDX folders, scikit-learn digits, TFDS errors."""

import pathlib

import numpy as np
import pytest
import sklearn.datasets
import tensorflow_datasets as tfds

from vislang_jax.data import sources
from vislang_jax.data.idx import write_idx
from vislang_jax.data.sources import load_digits

# ARCHITECTURE.md: the real MNIST test set lives in ../shared/data/mnist beside the repo.
MNIST_DIR = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.fixture
def fake_mnist_dir(tmp_path):
  """Train files gzipped, test files raw: both spellings the loader accepts."""
  rng = np.random.default_rng(0)
  for prefix, n, suffix in (("train", 20, ".gz"), ("t10k", 10, "")):
    write_idx(
        tmp_path / f"{prefix}-images-idx3-ubyte{suffix}",
        rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
    )
    write_idx(
        tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8)
    )
  return tmp_path


def test_real_mnist_test_split():
  if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
    pytest.skip(f"no local MNIST at {MNIST_DIR}")
  images, labels = load_digits("mnist", "test", mnist_dir=str(MNIST_DIR))
  assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (10000,) and labels.dtype == np.int64
  # The first test labels of MNIST, and its class counts (LeCun et al.'s t10k set).
  np.testing.assert_array_equal(labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
  assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  assert images.max() == 255 and images.min() == 0


def test_real_mnist_dir_without_train_images_lists_files():
  if not MNIST_DIR.is_dir():
    pytest.skip(f"no local MNIST at {MNIST_DIR}")
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as info:
    load_digits("mnist", "train", mnist_dir=str(MNIST_DIR))
  assert "train-labels-idx1-ubyte.gz" in str(info.value)  # The full list of what is expected.


def test_mnist_test_source_splits_the_test_digits(tmp_path, monkeypatch):
  # A folder with only MNIST's test files, as ../shared/data/mnist: 8,000 train, the rest test.
  monkeypatch.setattr(sources, "MNIST_TEST_TRAIN_SIZE", 7)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
  write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
  write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (np.arange(10) % 10).astype(np.uint8))
  train = load_digits("mnist_test", "train", mnist_dir=tmp_path)
  test = load_digits("mnist_test", "test", mnist_dir=tmp_path)
  np.testing.assert_array_equal(train[0], images[:7])
  np.testing.assert_array_equal(test[0], images[7:])
  np.testing.assert_array_equal(np.concatenate([train[1], test[1]]), np.arange(10))
  with pytest.raises(ValueError, match="lacks train-images-idx3-ubyte.gz"):
    load_digits("mnist", "train", mnist_dir=tmp_path)


def test_real_mnist_test_source():
  if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
    pytest.skip(f"no local MNIST at {MNIST_DIR}")
  splits = sources.load_digit_splits("mnist_test", mnist_dir=str(MNIST_DIR))
  assert {k: len(v[0]) for k, v in splits.items()} == {"train": 7200, "validation": 800,
                                                        "test": 2000}
  np.testing.assert_array_equal(splits["train"][1][:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_fake_mnist_dir_both_splits(fake_mnist_dir):
  train_images, train_labels = load_digits("mnist", "train", mnist_dir=fake_mnist_dir)
  test_images, test_labels = load_digits("mnist", "test", mnist_dir=fake_mnist_dir)
  assert train_images.shape == (20, 28, 28) and test_images.shape == (10, 28, 28)
  assert train_labels.dtype == np.int64
  np.testing.assert_array_equal(test_labels, np.arange(10))


def test_missing_files_listed(tmp_path):
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz, t10k-labels-idx1-ubyte\.gz"):
    load_digits("mnist", "test", mnist_dir=tmp_path)


def test_image_label_count_mismatch(fake_mnist_dir):
  write_idx(fake_mnist_dir / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
  with pytest.raises(ValueError, match=r"labels of shape \(9,\); expected \(10,\)"):
    load_digits("mnist", "test", mnist_dir=fake_mnist_dir)


def test_sklearn_digits_split_and_format():
  train_images, train_labels = load_digits("sklearn_digits", "train")
  test_images, test_labels = load_digits("sklearn_digits", "test")
  assert train_images.shape == (1500, 28, 28) and test_images.shape == (297, 28, 28)
  assert train_images.dtype == np.uint8 and train_labels.dtype == np.int64
  assert set(train_labels.tolist()) == set(test_labels.tolist()) == set(range(10))
  raw = sklearn.datasets.load_digits()
  # The split partitions scikit-learn's digits in their order: train first, test last.
  np.testing.assert_array_equal(np.concatenate([train_labels, test_labels]), raw.target)
  images = np.concatenate([train_images, test_images])
  # Black outside the central 20x20 box; inside, the mean intensity of the 8x8 original.
  outside = images.copy()
  outside[:, 4:24, 4:24] = 0
  assert outside.max() == 0
  box_mean = images[:, 4:24, 4:24].reshape(len(images), -1).mean(axis=1)
  np.testing.assert_allclose(
      box_mean, raw.images.reshape(len(images), -1).mean(axis=1) * 255 / 16, rtol=0.01
  )
  assert images.max() == 255


def test_sklearn_digits_deterministic_and_not_aliased():
  first, _ = load_digits("sklearn_digits", "test")
  first[:] = 0  # A caller's changes must not leak into later calls.
  second, _ = load_digits("sklearn_digits", "test")
  third, _ = load_digits("sklearn_digits", "test")
  assert second.max() == 255
  np.testing.assert_array_equal(second, third)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (
            ("emnist", "train"),
            {},
            r"source must be one of \('mnist', 'sklearn_digits', 'mnist_test'\), got 'emnist'",
        ),
        (
            ("sklearn_digits", "validation"),
            {},
            r"split must be one of \('train', 'test'\), got 'validation'",
        ),
        (
            ("sklearn_digits", "train"),
            {"mnist_dir": "/tmp"},
            "mnist_dir is only used with source='mnist' or 'mnist_test'",
        ),
    ],
)
def test_bad_arguments(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    load_digits(*args, **kwargs)


def test_tfds_path_with_mocked_mnist():
  # tfds.testing.mock_data serves random records that follow MNIST's real feature spec.
  with tfds.testing.mock_data(num_examples=7):
    images, labels = load_digits("mnist", "test")
  assert images.shape == (7, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (7,) and labels.dtype == np.int64
  assert labels.min() >= 0 and labels.max() <= 9


class _Socket:

  def close(self):
    pass


@pytest.mark.parametrize("network", [True, False])
def test_tfds_failure_names_both_remedies(monkeypatch, network):
  calls = []

  def failing_data_source(name, **kwargs):
    calls.append(kwargs.get("download", True))
    raise RuntimeError("simulated TFDS failure")

  def probe(address, timeout):
    if not network:
      raise OSError("simulated: no route to host")
    return _Socket()

  monkeypatch.setattr(tfds, "data_source", failing_data_source)
  monkeypatch.setattr(sources.socket, "create_connection", probe)
  with pytest.raises(ValueError) as info:
    load_digits("mnist", "test")
  message = str(info.value)
  assert "mnist_dir" in message and "sklearn_digits" in message
  assert "t10k-images-idx3-ubyte.gz" in message
  # The first try never downloads; a download is only tried when the host answers.
  assert calls == ([False, True] if network else [False])
  assert ("simulated TFDS failure" if network else "unreachable") in message
