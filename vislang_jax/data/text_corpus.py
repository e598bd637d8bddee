"""Plain-text corpora: one sentence per line, read as UTF-8 (`read_lines`).

Used by the parallel-text readers (`translation.read_iwslt14`) and by the language model on
any text file. Lines are split on "\\n" only (a trailing "\\r" is dropped, so "\\r\\n" files
read the same), never on the other Unicode line breaks that `str.splitlines` honours: the
line numbers of two parallel files must stay aligned. Blank lines are kept as "" by default,
for the same reason; `skip_blank=True` drops them (a monolingual corpus).
"""

from __future__ import annotations

import os
from typing import Any


def as_text(value: Any) -> str:
  """A sentence as `str`: TFDS gives text features as UTF-8 bytes."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_lines(path: str | os.PathLike, *, skip_blank: bool = False) -> list[str]:
  """The lines of a UTF-8 text file, without their line endings.

  Args:
    path: the file.
    skip_blank: drop the lines that hold only whitespace (else they are kept, so that line
      `i` of the result is line `i + 1` of the file).

  Returns:
    The lines in file order; a final newline does not start an extra empty line.

  Raises:
    ValueError: naming the path, for a missing file, a directory, a file that is not UTF-8
      (with the line), or a file with no non-blank line (an empty file among them).
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise ValueError(f"path must be a text file, got the directory {path!r}.")
  if not os.path.isfile(path):
    raise ValueError(f"path must be an existing text file, got {path!r}, which does not exist.")
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as error:
    line = data[: error.start].count(b"\n") + 1
    raise ValueError(f"path={path!r} must be UTF-8 text, got undecodable bytes on line {line}: "
                     f"{error}.") from error
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  lines = [line[:-1] if line.endswith("\r") else line for line in lines]
  if not any(line.strip() for line in lines):
    raise ValueError(f"path={path!r} must hold at least one non-blank line, got "
                     f"{'an empty file' if not data else f'{len(lines)} blank lines'}.")
  if skip_blank:
    lines = [line for line in lines if line.strip()]
  return lines
