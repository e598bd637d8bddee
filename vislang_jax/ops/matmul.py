"""Hand-written matrix products in the step's compute dtype (`config.train.compute_dtype`).

Flax's layers take their compute dtype from `train.precision`'s interceptor; a model that
multiplies its own parameters (e.g. an LSTM whose input projection is split around a
`lax.scan`) calls `matmul` instead of `@`, which reads the dtype `train.precision.compute_in`
sets while a step is traced: float32 (the default) is `x @ w` itself; bfloat16 multiplies
bfloat16 operands and returns the float32 result of a float32 accumulation.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax
import jax.numpy as jnp

_COMPUTE_DTYPE = contextvars.ContextVar("compute_dtype", default=jnp.dtype(jnp.float32))


@contextlib.contextmanager
def computing_in(dtype: jnp.dtype) -> Iterator[None]:
  """Within this context (while tracing), `matmul` multiplies in `dtype`."""
  token = _COMPUTE_DTYPE.set(jnp.dtype(dtype))
  try:
    yield
  finally:
    _COMPUTE_DTYPE.reset(token)


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x @ w`` ([..., k] x [k, n] -> [..., n] float32) in the current compute dtype."""
  dtype = _COMPUTE_DTYPE.get()
  if dtype == jnp.float32:
    return x @ w
  return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)
