"""Per-pixel labelled digit scenes: ink masks, overlaps, the stated draws, splits, errors."""

import numpy as np
import pytest

from vislang_jax.data import distortions
from vislang_jax.data.segmentation_digits import (
    NUM_CLASSES, SegmentationDigitsConfig, build_segmentation_digits_dataset, label_pixels)
from vislang_jax.data.sources import load_digits


def _layer(digit, top, left, side):
  """`digit` at (top, left) of a black canvas, by padding (not by slicing)."""
  return np.pad(digit.astype(np.float32), ((top, side - 28 - top), (left, side - 28 - left)))


def _ink(layer):
  return (layer > 0) & (layer >= 0.5 * layer.max())


def test_label_pixels_by_hand():
  a = np.array([[0, 10, 100, 200]], np.float32)  # ink: 100, 200 (>= 100)
  b = np.array([[50, 50, 100, 40]], np.float32)   # ink: all (>= 25)
  mask = label_pixels(np.stack([a, b]), np.array([3, 7]))
  # b alone, b alone, tie at 100 -> later (b), a brighter.
  np.testing.assert_array_equal(mask, [[8, 8, 8, 4]])
  np.testing.assert_array_equal(label_pixels(np.zeros((1, 2, 2)), np.array([5])), 0)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
  return build_segmentation_digits_dataset(
      source="sklearn_digits", data_dir=str(tmp_path_factory.mktemp("seg")), canvas_size=40)


def _records(source):
  return [source[i] for i in range(len(source))]


def test_splits_shapes_and_classes(multi):
  assert {k: len(v) for k, v in multi.items()} == {"train": 1350, "validation": 150, "test": 297}
  for r in _records(multi["validation"]):
    assert r["image"].shape == (40, 40, 1) and r["image"].dtype == np.uint8
    assert r["segmentation"].shape == (40, 40) and r["segmentation"].dtype == np.uint8
    assert r["labels"].shape == (3,) and r["boxes"].shape == (3, 4)
    present = r["labels"][r["labels"] >= 0]
    # Classes in the mask are those of the scene's digits (+1), within NUM_CLASSES.
    assert set(np.unique(r["segmentation"]).tolist()) - {0} <= set((present + 1).tolist())
    assert r["segmentation"].max() < NUM_CLASSES


def test_each_multi_record_follows_the_stated_rule(multi):
  images, labels = load_digits("sklearn_digits", "test")
  expected = {}
  for i in range(len(images)):
    rng = np.random.default_rng([0, 2, i])
    count = rng.integers(1, 4)
    chosen = np.concatenate([[i], rng.integers(0, len(images), size=count - 1)])
    tops = rng.integers(0, 13, size=(count, 2))
    layers = np.stack([_layer(images[j], *t, 40) for j, t in zip(chosen, tops)])
    mask = np.zeros((40, 40), np.uint8)
    best = np.full((40, 40), -1.0)
    for layer, j in zip(layers, chosen):  # later digits win ties: >=
      wins = _ink(layer) & (layer >= best)
      mask[wins], best[wins] = labels[j] + 1, layer[wins]
    image = np.clip(np.rint(layers.max(axis=0)), 0, 255).astype(np.uint8)
    expected[image.tobytes()] = (mask, labels[chosen], tops)
  for r in _records(multi["test"]):
    mask, digits, tops = expected[r["image"][..., 0].tobytes()]
    np.testing.assert_array_equal(r["segmentation"], mask)
    k = len(digits)
    np.testing.assert_array_equal(r["labels"], np.pad(digits, (0, 3 - k), constant_values=-1))
    np.testing.assert_array_equal(r["boxes"][:k], np.concatenate([tops, tops + 28], axis=1))
    assert (r["boxes"][k:] == -1).all()


def test_cluttered_labels_only_the_digit(tmp_path):
  data = build_segmentation_digits_dataset(
      source="sklearn_digits", data_dir=str(tmp_path), layout="cluttered", canvas_size=48,
      num_clutter=6, clutter_size=10)
  images, labels = load_digits("sklearn_digits", "test")
  records = _records(data["test"])
  assert len(records) == 297
  by_image = {r["image"].tobytes(): r for r in records}
  for i in range(0, len(images), 37):
    image = distortions.cluttered(images[i], images, np.random.default_rng([0, 2, i]),
                                  canvas_size=48, num_clutter=6, clutter_size=10)
    r = by_image[distortions.to_uint8(image)[..., None].tobytes()]
    y0, x0, y1, x1 = r["boxes"][0]
    assert (y1 - y0, x1 - x0) == (28, 28) and r["labels"][0] == labels[i]
    layer = _layer(images[i], y0, x0, 48)
    np.testing.assert_array_equal(r["segmentation"], np.where(_ink(layer), labels[i] + 1, 0))
    # The digit's ink shows in the image at its box (sums only grow).
    assert (r["image"][..., 0][_ink(layer)] >= layer[_ink(layer)] - 0.5).all()


def test_deterministic_by_seed(tmp_path):
  kwargs = dict(source="sklearn_digits", canvas_size=32, max_digits=2)
  a = build_segmentation_digits_dataset(data_dir=str(tmp_path / "a"), **kwargs)["validation"]
  b = build_segmentation_digits_dataset(data_dir=str(tmp_path / "b"), **kwargs)["validation"]
  c = build_segmentation_digits_dataset(data_dir=str(tmp_path / "c"), seed=1, **kwargs)
  masks = lambda s: sorted(s[i]["segmentation"].tobytes() for i in range(len(s)))
  assert masks(a) == masks(b)
  assert masks(a) != masks(c["validation"])


def test_config_names_and_bad_parameters():
  assert SegmentationDigitsConfig.make(source="mnist").name == (
      "multi-mnist-seed0-canvas64-digits3-copies1")
  assert SegmentationDigitsConfig.make(source="mnist", layout="cluttered").name == (
      "cluttered-mnist-seed0-canvas64-digits1-copies1-clutter4x8")
  for kwargs, match in [
      (dict(layout="grid"), r"layout must be one of \('multi', 'cluttered'\), got 'grid'"),
      (dict(canvas_size=20), "canvas_size must be an int >= 28, got 20"),
      (dict(max_digits=0), "max_digits must be a positive int, got 0"),
      (dict(layout="cluttered", max_digits=2), r"max_digits must be an int in \[1, 1\], got 2"),
      (dict(num_clutter=3), "num_clutter only apply to layout='cluttered'"),
      (dict(layout="cluttered", clutter_size=40), "clutter_size must be an int in"),
      (dict(copies=0), "copies must be a positive int, got 0"),
      (dict(source="cifar"), "source must be one of"),
  ]:
    with pytest.raises(ValueError, match=match):
      SegmentationDigitsConfig.make(**{"source": "mnist", **kwargs})
