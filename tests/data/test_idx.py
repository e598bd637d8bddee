"""read_idx against hand-built IDX bytes, write_idx round trips, and corrupt-file errors."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vislang_jax.data.idx import read_idx, write_idx


def _write(path, payload: bytes):
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)
  return path


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_reads_hand_built_uint8_labels(tmp_path, name):
  # Magic 0x00000801, one dimension of 3, then the three label bytes.
  path = _write(tmp_path / name, b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([7, 2, 1]))
  labels = read_idx(path)
  assert labels.dtype == np.uint8
  np.testing.assert_array_equal(labels, [7, 2, 1])


def test_reads_big_endian_int32_in_native_order(tmp_path):
  payload = b"\x00\x00\x0c\x02" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
  payload += (258).to_bytes(4, "big", signed=True) + (-5).to_bytes(4, "big", signed=True)
  array = read_idx(_write(tmp_path / "x-idx2-int", payload))
  assert array.dtype == np.int32 and array.dtype.isnative
  np.testing.assert_array_equal(array, [[258, -5]])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trips_images_and_labels(tmp_path, suffix):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(5,), dtype=np.uint8)
  write_idx(tmp_path / f"images{suffix}", images)
  write_idx(tmp_path / f"labels{suffix}", labels)
  got_images, got_labels = read_idx(tmp_path / f"images{suffix}"), read_idx(
      tmp_path / f"labels{suffix}"
  )
  assert got_images.shape == (5, 28, 28) and got_images.dtype == np.uint8
  np.testing.assert_array_equal(got_images, images)
  np.testing.assert_array_equal(got_labels, labels)
  # The header is the one the MNIST files carry.
  raw = (gzip.open if suffix else open)(tmp_path / f"images{suffix}", "rb").read()
  assert raw[:16] == b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28))


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    )
)
def test_round_trip_property(tmp_path_factory, array):
  path = tmp_path_factory.mktemp("idx") / "a.gz"
  write_idx(path, array)
  got = read_idx(path)
  assert got.dtype == array.dtype and got.shape == array.shape
  np.testing.assert_array_equal(got, array)


def test_truncated_gzip_names_file(tmp_path):
  good = tmp_path / "good.gz"
  write_idx(good, np.zeros((10, 28, 28), np.uint8))
  bad = tmp_path / "t10k-images-idx3-ubyte.gz"
  bad.write_bytes(good.read_bytes()[:-20])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*gzip"):
    read_idx(bad)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\x08\x03\x00\x00" + bytes(12), "bad magic number"),
        (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00", "unknown type byte 0x07"),
        (
            b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(9),
            r"10 bytes of data.*holds 9 bytes",
        ),
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "truncated header"),
        (b"\x00\x00", "shorter than the 4-byte magic"),
    ],
)
def test_corrupt_files_raise_value_error(tmp_path, payload, reason):
  path = _write(tmp_path / "broken-idx", payload)
  with pytest.raises(ValueError, match=reason) as info:
    read_idx(path)
  assert "broken-idx" in str(info.value)


def test_write_rejects_unsupported_dtype(tmp_path):
  with pytest.raises(ValueError, match="dtype int64"):
    write_idx(tmp_path / "x", np.zeros(3, np.int64))
