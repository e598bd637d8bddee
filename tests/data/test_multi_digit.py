"""The multi-digit canvas and builder: placement, clipping, splits, the per-record rule."""

import numpy as np
import pytest

from vislang_jax.data.multi_digit import MultiDigitConfig, build_multi_digit_dataset, place_digits
from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.sources import load_digits


def _shifted(digit, top, left, canvas_size):
  """`digit` at (top, left) of a black canvas, by padding (not by slicing)."""
  return np.pad(
      digit.astype(np.float32), ((top, canvas_size - 28 - top), (left, canvas_size - 28 - left))
  )


def test_place_digits_adds_shifted_digits_and_clips():
  digits = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
  canvas = place_digits(digits, np.random.default_rng(5), canvas_size=50)
  # The documented draws: per digit, top then left, uniform in [0, 50 - 28].
  positions = np.random.default_rng(5).integers(0, 23, size=(3, 2))
  expected = sum(_shifted(d, top, left, 50) for d, (top, left) in zip(digits, positions))
  assert canvas.dtype == np.float32 and canvas.shape == (50, 50)
  np.testing.assert_array_equal(canvas, np.clip(expected, 0, 255))


def test_place_digits_on_a_digit_sized_canvas():
  digit = np.random.default_rng(1).integers(0, 256, (28, 28)).astype(np.uint8)
  np.testing.assert_array_equal(
      place_digits(digit[None], np.random.default_rng(0), canvas_size=28), digit
  )
  white = np.full((2, 28, 28), 255, np.uint8)
  np.testing.assert_array_equal(place_digits(white, np.random.default_rng(0), canvas_size=28), 255)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(digits=np.zeros((2, 20, 20))),
            r"digits must have shape \[K, 28, 28\], got \(2, 20, 20\)",
        ),
        (dict(digits=np.zeros((28, 28))), r"digits must have shape \[K, 28, 28\]"),
        (
            dict(digits=np.zeros((2, 28, 28)), canvas_size=27),
            "canvas_size must be an int >= 28, got 27",
        ),
    ],
)
def test_place_digits_bad_arguments(kwargs, match):
  kwargs = {"canvas_size": 60, **kwargs}
  with pytest.raises(ValueError, match=match):
    place_digits(kwargs.pop("digits"), np.random.default_rng(0), **kwargs)


@pytest.fixture(scope="module")
def two_digit(tmp_path_factory):
  return build_multi_digit_dataset(
      source="sklearn_digits", data_dir=str(tmp_path_factory.mktemp("two"))
  )


def _records(source):
  return [source[i] for i in range(len(source))]


def test_splits_shapes_and_first_digits(two_digit):
  assert {k: len(v) for k, v in two_digit.items()} == {
      "train": 1350,
      "validation": 150,
      "test": 297,
  }
  records = _records(two_digit["test"])
  assert all(r["image"].shape == (60, 60, 1) and r["image"].dtype == np.uint8 for r in records)
  assert all(r["label"].shape == (2,) for r in records)
  # Every test digit comes first in exactly one record.
  _, test_labels = load_digits("sklearn_digits", "test")
  assert sorted(int(r["label"][0]) for r in records) == sorted(test_labels.tolist())


def test_each_record_follows_the_stated_rule(two_digit):
  # The key-i test example: rng([seed=0, split_id=2, i]) picks the partner, then places both.
  images, labels = load_digits("sklearn_digits", "test")
  expected = []
  for i in range(len(images)):
    rng = np.random.default_rng([0, 2, i])
    partner = rng.integers(0, len(images))
    positions = rng.integers(0, 33, size=(2, 2))
    canvas = sum(_shifted(images[j], *p, 60) for j, p in zip((i, partner), positions))
    image = np.clip(canvas, 0, 255).astype(np.uint8)[..., None]
    expected.append((image.tobytes(), labels[[i, partner]].tobytes()))
  stored = [(r["image"].tobytes(), r["label"].tobytes()) for r in _records(two_digit["test"])]
  assert sorted(stored) == sorted(expected)


def test_records_batch_through_the_loader(two_digit):
  batch = next(
      iter(
          make_loader(
              two_digit["validation"],
              batch_size=5,
              seed=0,
              shuffle=False,
              num_epochs=1,
              drop_remainder=True,
          )
      )
  )
  assert batch["image"].shape == (5, 60, 60, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (5, 2)


def test_config_names_and_bad_parameters():
  assert (
      MultiDigitConfig.make(source="mnist", seed=3, num_digits=3, canvas_size=80).name
      == "mnist-seed3-digits3-canvas80"
  )
  for kwargs, match in [
      (dict(source="cifar"), "source must be one of"),
      (dict(source="sklearn_digits", mnist_dir="/x"), "mnist_dir is only for source='mnist' or 'mnist_test'"),
      (dict(source="mnist", num_digits=0), "num_digits must be a positive int, got 0"),
      (dict(source="mnist", canvas_size=20), "canvas_size must be an int >= 28, got 20"),
      (dict(source="mnist", seed=-1), "seed must be an int >= 0, got -1"),
  ]:
    with pytest.raises(ValueError, match=match):
      MultiDigitConfig.make(**kwargs)
