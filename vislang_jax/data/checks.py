"""Argument checks shared by the digit dataset builders; each raises a ValueError naming the argument."""

from __future__ import annotations

import os

import numpy as np

from vislang_jax.data.sources import SOURCES


def is_int(value) -> bool:
  """True for Python and NumPy integers, False for bools."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def check_int(name: str, value, *, low: int) -> None:
  if not is_int(value) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def check_digit_source(source: str, mnist_dir: str | os.PathLike | None) -> None:
  """`source` is one of `sources.SOURCES`; `mnist_dir` is given only with source="mnist"."""
  check_choice("source", source, SOURCES)
  if mnist_dir is not None and source != "mnist":
    raise ValueError(
        f"mnist_dir is only for source='mnist', got mnist_dir={mnist_dir!r} with source={source!r}."
    )
