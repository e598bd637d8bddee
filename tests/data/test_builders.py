"""The distorted-digits builder: splits, reproducibility, config names, bad parameters."""

import collections
import pathlib

import numpy as np
import pytest

from vislang_jax.data import distortions
from vislang_jax.data.builders import DigitsConfig, build_digits_dataset, image_shape
from vislang_jax.data.idx import write_idx
from vislang_jax.data.sources import load_digits


def _records(source):
  return [source[i] for i in range(len(source))]


def _label_counts(records):
  return collections.Counter(r["label"] for r in records)


def _image_bytes(records):
  return sorted(r["image"].tobytes() for r in records)


@pytest.fixture(scope="module")
def rts(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("rts")
  return data_dir, build_digits_dataset(
      distortion="RTS", source="sklearn_digits", data_dir=str(data_dir)
  )


def test_rts_splits_and_records(rts):
  _, data = rts
  assert {k: len(v) for k, v in data.items()} == {"train": 1350, "validation": 150, "test": 297}
  record = data["train"][0]
  assert record["image"].shape == (42, 42, 1) and record["image"].dtype == np.uint8
  assert 0 <= record["label"] < 10
  assert data["train"].dataset_info.features["image"].shape == image_shape("RTS") == (42, 42, 1)
  # Validation is the last 10% of the source's train split; test is its test split.
  _, train_labels = load_digits("sklearn_digits", "train")
  _, test_labels = load_digits("sklearn_digits", "test")
  assert _label_counts(_records(data["validation"])) == collections.Counter(
      train_labels[1350:].tolist()
  )
  assert _label_counts(_records(data["test"])) == collections.Counter(test_labels.tolist())


def test_each_record_comes_from_its_own_generator(rts):
  # Recompute the test split from the stated rule: rng([seed, split_id=2, index]).
  _, data = rts
  images, _ = load_digits("sklearn_digits", "test")
  expected = [
      distortions.to_uint8(
          distortions.rotate_translate_scale(image, np.random.default_rng([0, 2, i]))
      )[..., None]
      for i, image in enumerate(images)
  ]
  assert _image_bytes(_records(data["test"])) == sorted(e.tobytes() for e in expected)


def test_rebuild_elsewhere_is_byte_identical(rts, tmp_path):
  data_dir, data = rts
  again = build_digits_dataset(distortion="RTS", source="sklearn_digits", data_dir=str(tmp_path))
  for split in data:
    first, second = _records(data[split]), _records(again[split])
    assert all(
        np.array_equal(a["image"], b["image"]) and a["label"] == b["label"]
        for a, b in zip(first, second)
    )
  name = "RTS-sklearn_digits-seed0-copies1/1.0.0"
  files = sorted(p.name for p in (data_dir / "distorted_digits" / name).glob("*.array_record*"))
  assert len(files) == 3
  for f in files:
    a = (data_dir / "distorted_digits" / name / f).read_bytes()
    assert a == (tmp_path / "distorted_digits" / name / f).read_bytes()


def test_existing_dataset_is_reused(rts):
  data_dir, _ = rts
  files = list(pathlib.Path(data_dir).rglob("*.array_record*"))
  before = {f: f.stat().st_mtime_ns for f in files}
  build_digits_dataset(distortion="RTS", source="sklearn_digits", data_dir=str(data_dir))
  assert {f: f.stat().st_mtime_ns for f in files} == before


def test_other_seed_and_copies(rts, tmp_path):
  _, data = rts
  other = build_digits_dataset(
      distortion="RTS", source="sklearn_digits", data_dir=str(tmp_path), seed=1, copies=2
  )
  assert len(other["train"]) == 2 * 1350 and len(other["validation"]) == 150
  # Same digits, other seed: other images.
  assert not set(_image_bytes(_records(other["validation"]))) & set(
      _image_bytes(_records(data["validation"]))
  )
  # Each training digit appears twice, with two different distortions.
  counts = _label_counts(_records(other["train"]))
  assert sum(counts.values()) == 2700 and all(c % 2 == 0 for c in counts.values())
  assert len(set(_image_bytes(_records(other["train"])))) == 2700
  assert sorted(p.name for p in (tmp_path / "distorted_digits").iterdir()) == [
      "RTS-sklearn_digits-seed1-copies2"
  ]


def test_none_from_mnist_dir_passes_digits_through(tmp_path):
  rng = np.random.default_rng(0)
  mnist_dir = tmp_path / "mnist"
  mnist_dir.mkdir()
  train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
  test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
  for prefix, images in (("train", train), ("t10k", test)):
    write_idx(mnist_dir / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(
        mnist_dir / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(len(images)) % 10).astype(np.uint8)
    )
  data = build_digits_dataset(
      distortion="none", source="mnist", mnist_dir=str(mnist_dir), data_dir=str(tmp_path / "d")
  )
  assert {k: len(v) for k, v in data.items()} == {"train": 18, "validation": 2, "test": 10}
  assert _image_bytes(_records(data["validation"])) == sorted(
      im[..., None].tobytes() for im in train[18:]
  )
  assert _image_bytes(_records(data["test"])) == sorted(im[..., None].tobytes() for im in test)


def test_cluttered_shape_and_parameters(tmp_path):
  data = build_digits_dataset(
      distortion="cluttered",
      source="sklearn_digits",
      data_dir=str(tmp_path),
      canvas_size=40,
      num_clutter=2,
      clutter_size=6,
  )
  assert data["test"][0]["image"].shape == (40, 40, 1) == image_shape("cluttered", 40)
  assert (
      tmp_path / "distorted_digits" / "cluttered-sklearn_digits-seed0-copies1-canvas40-clutter2x6"
  ).is_dir()


def test_config_names_encode_every_data_parameter():
  settings = [
      dict(distortion="RTS", source="sklearn_digits"),
      dict(distortion="R", source="sklearn_digits"),
      dict(distortion="RTS", source="mnist"),
      dict(distortion="RTS", source="sklearn_digits", seed=1),
      dict(distortion="RTS", source="sklearn_digits", copies=3),
      dict(distortion="cluttered", source="sklearn_digits"),
      dict(distortion="cluttered", source="sklearn_digits", canvas_size=100),
      dict(distortion="cluttered", source="sklearn_digits", num_clutter=8),
      dict(distortion="cluttered", source="sklearn_digits", clutter_size=6),
  ]
  names = [DigitsConfig.make(**s).name for s in settings]
  assert len(set(names)) == len(names)
  assert names[0] == "RTS-sklearn_digits-seed0-copies1"
  assert names[5] == "cluttered-sklearn_digits-seed0-copies1-canvas60-clutter4x8"
  # Where MNIST is read from does not change the data, so not the name either.
  assert DigitsConfig.make(distortion="RTS", source="mnist", mnist_dir="/x").name == names[2]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(distortion="TPS"), "distortion"),
        (dict(source="emnist"), "source"),
        (dict(seed=-1), "seed"),
        (dict(copies=0), "copies"),
        (dict(copies=1.5), "copies"),
        (dict(distortion="none", copies=2), "copies"),
        (dict(canvas_size=60), "canvas_size"),
        (dict(distortion="cluttered", clutter_size=29), "clutter_size"),
        (dict(distortion="cluttered", canvas_size=20), "canvas_size"),
        (dict(distortion="cluttered", num_clutter=-2), "num_clutter"),
        (dict(mnist_dir="/tmp"), "mnist_dir"),
    ],
)
def test_bad_parameters_name_the_argument(tmp_path, kwargs, argument):
  params = dict(distortion="RTS", source="sklearn_digits", data_dir=str(tmp_path)) | kwargs
  with pytest.raises(ValueError, match=argument):
    build_digits_dataset(**params)
  assert not (tmp_path / "distorted_digits").exists()  # Nothing written.


def test_image_shape():
  assert (
      image_shape("none") == image_shape("R") == image_shape("P") == image_shape("E") == (28, 28, 1)
  )
  assert image_shape("RTS") == (42, 42, 1)
  assert image_shape("cluttered") == (60, 60, 1)
  with pytest.raises(ValueError, match="canvas_size"):
    image_shape("R", 60)
