"""Mixed precision: matmuls and convolutions in a compute dtype, everything else in float32.

`config.train.compute_dtype` ("float32" | "bfloat16") names the dtype of the layers that
multiply: Flax's `Dense`, `DenseGeneral`, `Einsum`, `Conv`, `ConvTranspose`, `Embed`
(lookups and `attend`) and the recurrent cells' gate matmuls (`OptimizedLSTMCell`, `LSTMCell`,
`GRUCell`, `SimpleCell`). Parameters and optimiser state stay float32 (the layer casts its
float32 variables to the compute dtype on the fly, so their gradients come back float32); each
such layer casts its inputs to the compute dtype itself (Flax's `promote_dtype`) and its
outputs are cast back to float32, so that nonlinearities, attention softmaxes, recurrent
states, losses and their reductions run in float32. The biases of `Dense`, `DenseGeneral`,
`Conv` and `ConvTranspose` are added after that cast, in float32, so that their gradients
(sums over every position of the batch) are not reduced in bfloat16. XLA accumulates
bfloat16 dot products in float32 on GPUs and TPUs.

Inside a recurrent cell the gate pre-activations come out of the matmul in the compute dtype
and the gates are applied in it too, but the cell state `c` stays float32 (`f * c` promotes).
Parameters a model multiplies by hand go through `ops.matmul.matmul`, which this policy also
sets (the Show-Attend-Tell LSTM, whose input projection is split around its scan); other
hand-written products (`jnp.dot(x, self.param(...))`) and the parameter-free ops
(`ops.sampling`, `ops.filterbank`) stay float32.

This is done without touching the models: `compute_in(dtype)` is a Flax method interceptor
(`flax.linen.intercept_methods`) that runs each of those layers as its twin with `dtype`
set, on the same variables. `with_compute_dtype(update_fn, dtype)` traces a train step's update
under it (`train.loop.fit` does this for every experiment); float32 leaves the update as it is.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_choice
from vislang_jax.ops.matmul import computing_in

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# The Flax layers whose `dtype` is the dtype of their matmul or convolution.
LAYERS = (nn.Dense, nn.DenseGeneral, nn.Einsum, nn.Conv, nn.ConvTranspose, nn.Embed,
          nn.OptimizedLSTMCell, nn.LSTMCell, nn.GRUCell, nn.SimpleCell)


# The layers whose bias `_interceptor` adds in float32.
_BIASED = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose)


def compute_dtype(name: str) -> jnp.dtype:
  """The dtype named by `config.train.compute_dtype`; a ValueError for any other name."""
  return COMPUTE_DTYPES[check_choice("train.compute_dtype", name, tuple(COMPUTE_DTYPES))]


def _as_float32(tree: Any) -> Any:
  return jax.tree.map(
      lambda x: x.astype(jnp.float32) if jnp.issubdtype(jnp.result_type(x), jnp.floating)
      else x, tree)


def _interceptor(dtype: jnp.dtype):
  def intercept(next_fun, args, kwargs, context):
    module = context.module
    method = getattr(type(module), context.method_name, None)
    if (type(module) not in LAYERS or module.is_initializing() or module.dtype == dtype
        or method is None):
      return next_fun(*args, **kwargs)
    variables = module.variables
    if (isinstance(module, _BIASED) and context.method_name == "__call__" and module.use_bias
        and not getattr(module, "batch_dims", ())):
      # The bias is added in float32 after the cast, so that its gradient (a sum over every
      # position of the batch) is reduced in float32, not in the compute dtype.
      params = dict(variables["params"])
      bias = params.pop("bias")
      twin = module.clone(parent=None, dtype=dtype, use_bias=False)
      return _as_float32(twin.apply({**variables, "params": params}, *args, **kwargs)) + bias
    twin = module.clone(parent=None, dtype=dtype)
    return _as_float32(twin.apply(variables, *args, method=context.method_name, **kwargs))

  return intercept


@contextlib.contextmanager
def compute_in(dtype: jnp.dtype) -> Iterator[None]:
  """Within this context (while tracing), `LAYERS` compute in `dtype`; see the module doc."""
  if jnp.dtype(dtype) == jnp.float32:
    yield
    return
  with nn.intercept_methods(_interceptor(jnp.dtype(dtype))), computing_in(dtype):
    yield


def with_compute_dtype(fn: Callable, name: str) -> Callable:
  """`fn` (a train step's update, a loss...) traced with its layers in dtype `name`."""
  dtype = compute_dtype(name)
  if dtype == jnp.float32:
    return fn

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with compute_in(dtype):
      return fn(*args, **kwargs)

  return wrapped
