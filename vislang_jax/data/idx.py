"""Reader and writer for the IDX format of the MNIST files (LeCun et al., 1998).

An IDX file is a 4-byte magic number, `0x00 0x00 <dtype> <ndim>`, then `ndim` big-endian
uint32 dimensions, then the array in C order with big-endian elements. The files on the
MNIST site are gzipped; `read_idx` recognises gzip by its magic bytes, not by the name.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

# IDX type byte -> NumPy dtype (big-endian where it matters).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike) -> bytes:
  with open(path, "rb") as f:
    raw = f.read()
  if not raw.startswith(_GZIP_MAGIC):
    return raw
  try:
    return gzip.decompress(raw)
  except (EOFError, OSError, zlib.error) as e:
    raise ValueError(f"IDX file {os.fspath(path)!r}: corrupt or truncated gzip data ({e}).") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzipped or not, into an array in native byte order.

  Args:
    path: the file, e.g. `t10k-images-idx3-ubyte.gz`.

  Returns:
    The array with the header's shape and dtype (uint8 for the MNIST files:
    images `[N, 28, 28]`, labels `[N]`).

  Raises:
    ValueError: naming the file, for a truncated gzip stream, a bad magic number, an
      unknown type byte, or a payload whose size does not match the header.
  """
  name = os.fspath(path)
  data = _read_bytes(path)
  if len(data) < 4:
    raise ValueError(f"IDX file {name!r}: {len(data)} bytes, shorter than the 4-byte magic number.")
  if data[0] != 0 or data[1] != 0:
    raise ValueError(
        f"IDX file {name!r}: bad magic number 0x{data[:4].hex()}; expected it to start with 0x0000."
    )
  type_byte, ndim = data[2], data[3]
  if type_byte not in _DTYPES:
    known = ", ".join(f"0x{t:02X}" for t in _DTYPES)
    raise ValueError(
        f"IDX file {name!r}: unknown type byte 0x{type_byte:02X}; expected one of {known}."
    )
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise ValueError(
        f"IDX file {name!r}: truncated header, {len(data)} bytes for {ndim} dimensions "
        f"(needs {header_len})."
    )
  shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  dtype = _DTYPES[type_byte]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  got = len(data) - header_len
  if got != expected:
    raise ValueError(
        f"IDX file {name!r}: header says shape {shape} of {dtype.name} ({expected} bytes of data), "
        f"but the file holds {got} bytes after the header."
    )
  array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes `array` as an IDX file; gzipped when `path` ends in `.gz`.

  Args:
    path: destination file.
    array: any shape with at most 255 axes; dtype one of uint8, int8, int16, int32,
      float32, float64.

  Raises:
    ValueError: for an array whose dtype IDX cannot hold.
  """
  array = np.asarray(array)
  by_kind = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
  code = by_kind.get((array.dtype.kind, array.dtype.itemsize))
  if code is None:
    raise ValueError(
        f"write_idx: array dtype {array.dtype} has no IDX type; expected one of "
        f"{sorted(dt.name for dt in _DTYPES.values())}."
    )
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
  payload = header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
  opener = gzip.open if os.fspath(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)
