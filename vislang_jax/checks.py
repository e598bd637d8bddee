"""The argument checks every layer shares; each raises a ValueError naming the argument.

Messages read "<name> must be <what is expected>, got <what was given>." so that a user
who passed a bad value sees which argument, what it should be and what it was.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def is_int(value: Any) -> bool:
  """True for Python and NumPy integers, False for bools."""
  return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, low: int | None = None,
              high: int | None = None) -> int:
  """`value` as an int, or a ValueError unless it is an integer in [low, high]."""
  if not is_int(value) or (low is not None and value < low) or (
      high is not None and value > high):
    if low is not None and high is not None:
      expected = f"an int in [{low}, {high}]"
    elif low is not None:
      expected = "a positive int" if low == 1 else f"an int >= {low}"
    elif high is not None:
      expected = f"an int <= {high}"
    else:
      expected = "an int"
    raise ValueError(f"{name} must be {expected}, got {value!r}.")
  return int(value)


def check_positive_int(name: str, value: Any) -> int:
  """`value` as an int, or a ValueError unless it is an integer >= 1 (a bool is not)."""
  return check_int(name, value, low=1)


def check_float(name: str, value: Any, *, low: float | None = None,
                below: float | None = None) -> float:
  """`value` as a float, or a ValueError unless it is a finite real in [low, below)."""
  if (isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating))
      or not np.isfinite(value) or (low is not None and value < low)
      or (below is not None and value >= below)):
    bounds = {(True, True): f" in [{low}, {below})", (True, False): f" >= {low}",
              (False, True): f" < {below}", (False, False): ""}[
                  (low is not None, below is not None)]
    raise ValueError(f"{name} must be a finite float{bounds}, got {value!r}.")
  return float(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
  """`value`, or a ValueError unless it is one of `choices`."""
  if value not in tuple(choices):
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
  return value


def check_rank(name: str, array: Any, layout: str) -> None:
  """A ValueError unless `array` has as many axes as `layout` names, e.g. "[B, H, W, C]"."""
  rank = len(layout.strip("[]").split(","))
  if np.ndim(array) != rank:
    raise ValueError(f"{name} must have shape {layout}, got {np.shape(array)}.")


def check_same_shape(layout: str, **arrays: Any) -> None:
  """A ValueError unless `arrays` share one shape with as many axes as `layout` names."""
  shapes = {name: tuple(np.shape(a)) for name, a in arrays.items()}
  if len(set(shapes.values())) != 1:
    raise ValueError(f"{', '.join(shapes)} must share one shape {layout}, got {shapes}.")
  check_rank(", ".join(shapes), next(iter(arrays.values())), layout)


def check_hw(name: str, value: Any, *, allow_none: bool = False) -> tuple[int, int] | None:
  """An output size as a (height, width) pair of positive ints (or None when allowed)."""
  if value is None and allow_none:
    return None
  if (not isinstance(value, (tuple, list)) or len(value) != 2
      or not all(is_int(n) and n > 0 for n in value)):
    expected = "None or a pair" if allow_none else "a pair"
    raise ValueError(f"{name} must be {expected} of positive ints (height, width), "
                     f"got {value!r}.")
  return int(value[0]), int(value[1])


def concrete(array: Any) -> np.ndarray | None:
  """`array`'s values as NumPy, or None when it is traced (inside `jax.jit`, `vmap`...)."""
  if isinstance(array, jax.core.Tracer):
    return None
  return np.asarray(array)


def check_ids(name: str, ids: Any, *, vocab_size: int) -> None:
  """Integer ids; concrete ones (outside `jax.jit`) must lie in [0, vocab_size).

  Traced ids pass the range check unchecked: their values are not known.
  """
  dtype = ids.dtype if hasattr(ids, "dtype") else np.asarray(ids).dtype
  if not np.issubdtype(dtype, np.integer):
    raise ValueError(f"{name} must hold integer ids, got dtype {dtype}.")
  values = concrete(ids)
  if values is not None and values.size and (values.min() < 0 or values.max() >= vocab_size):
    raise ValueError(f"{name} must hold ids in [0, vocab_size) = [0, {vocab_size}), got ids "
                     f"in [{values.min()}, {values.max()}].")

