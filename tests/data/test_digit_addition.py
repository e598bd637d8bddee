"""MNIST addition (STN A.1): the stated per-record rule, sums, splits, determinism, checks."""

import numpy as np
import pytest

from vislang_jax.data import distortions
from vislang_jax.data.digit_addition import (DigitAdditionConfig, addition_example,
                                             build_digit_addition_dataset)
from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.sources import load_digits


@pytest.fixture(scope="module")
def addition(tmp_path_factory):
  return build_digit_addition_dataset(source="sklearn_digits",
                                      data_dir=str(tmp_path_factory.mktemp("add")), copies=2)


def _records(source):
  return [source[i] for i in range(len(source))]


def test_splits_shapes_and_sums(addition):
  assert {k: len(v) for k, v in addition.items()} == {
      "train": 2 * 1350, "validation": 150, "test": 297}
  records = _records(addition["test"])
  assert all(r["image"].shape == (42, 42, 2) and r["image"].dtype == np.uint8 for r in records)
  # The label is the sum of the two digits, one of 19 classes; both classes occur.
  assert all(int(r["label"]) == int(r["digits"].sum()) for r in records)
  assert {int(r["label"]) for r in records} == set(range(19))
  # Every test digit is the channel-0 digit of exactly one record.
  _, test_labels = load_digits("sklearn_digits", "test")
  assert sorted(int(r["digits"][0]) for r in records) == sorted(test_labels.tolist())


def test_each_record_follows_the_stated_rule(addition):
  # Key i of the test split: rng([seed=0, split_id=2, i]) draws the partner, then the RTS of
  # channel 0's digit (test digit i), then the RTS of the partner's, each on its own canvas.
  images, labels = load_digits("sklearn_digits", "test")
  expected = []
  for i in range(len(images)):
    rng = np.random.default_rng([0, 2, i])
    partner = rng.integers(0, len(images))
    first = distortions.rotate_translate_scale(images[i], rng, canvas_size=42)
    second = distortions.rotate_translate_scale(images[partner], rng, canvas_size=42)
    image = distortions.to_uint8(np.stack([first, second], -1))
    expected.append((image.tobytes(), labels[[i, partner]].tobytes()))
  stored = [(r["image"].tobytes(), r["digits"].tobytes()) for r in _records(addition["test"])]
  assert sorted(stored) == sorted(expected)


def test_channels_are_distorted_independently():
  # The same digit twice: the two channels get different rotations, scales and places.
  digit = load_digits("sklearn_digits", "test")[0][0]
  image, partner = addition_example(digit, digit[None], np.random.default_rng(3))
  assert partner == 0 and image.shape == (42, 42, 2)
  assert image[..., 0].max() > 100 and image[..., 1].max() > 100
  assert np.abs(image[..., 0] - image[..., 1]).max() > 100
  with pytest.raises(ValueError, match="partner_pool is empty"):
    addition_example(digit, digit[:0], np.random.default_rng(0))


def test_deterministic_from_the_seed(tmp_path, addition):
  again = build_digit_addition_dataset(source="sklearn_digits", data_dir=str(tmp_path / "a"),
                                       copies=2)
  other = build_digit_addition_dataset(source="sklearn_digits", data_dir=str(tmp_path / "b"),
                                       seed=1)
  for split in ("validation", "test"):
    first = sorted(r["image"].tobytes() for r in _records(addition[split]))
    assert first == sorted(r["image"].tobytes() for r in _records(again[split]))
    assert set(first).isdisjoint(r["image"].tobytes() for r in _records(other[split]))


def test_records_batch_through_the_loader(addition):
  batch = next(iter(make_loader(addition["validation"], batch_size=5, seed=0, shuffle=False,
                                num_epochs=1, drop_remainder=True)))
  assert batch["image"].shape == (5, 42, 42, 2) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (5,)
  np.testing.assert_array_equal(batch["label"], batch["digits"].sum(-1))


def test_config_names_and_bad_parameters():
  assert DigitAdditionConfig.make(source="mnist_test", seed=3, copies=4).name == (
      "mnist_test-seed3-copies4")
  for kwargs, match in [
      (dict(source="cifar"), "source must be one of"),
      (dict(source="sklearn_digits", mnist_dir="/x"), "mnist_dir is only for source='mnist'"),
      (dict(source="mnist", copies=0), "copies must be a positive int, got 0"),
      (dict(source="mnist", seed=-1), "seed must be an int >= 0, got -1"),
  ]:
    with pytest.raises(ValueError, match=match):
      DigitAdditionConfig.make(**kwargs)
