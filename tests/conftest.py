"""Shared pytest fixtures (test modules are imported with importlib and cannot import each
other)."""

import functools
import os
from collections.abc import Callable
from typing import Any

# XLA's backend (LLVM) optimisations off for every test, before JAX starts its backend (the
# subprocesses that tests launch inherit it): for the suite's tiny models compilation is
# nearly all the time, and at level 0 it takes about a third less (measured on the
# experiment tests). XLA:CPU's older loop emitters instead of its fusion emitters compile the
# same programs faster again (DRAW's model and experiment tests: 181 s -> 132 s). The
# computations are the same, only less optimised machine code.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
     "--xla_cpu_use_fusion_emitters=false"]).strip()

import chex  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


def _check_adam_training(loss_fn: Callable[[Any], jax.Array], params: Any, *, steps: int,
                         learning_rate: float = 3e-2) -> None:
  """Trains ``params`` with Adam on a deterministic ``loss_fn(params) -> scalar``.

  Asserts that the first step's gradient is finite and nonzero for every parameter, that the
  jitted step traces ``loss_fn`` once, and that the last loss is below 0.85 of the first.
  """
  optimizer = optax.adam(learning_rate)
  traced_once = chex.assert_max_traces(loss_fn, n=1)

  # XLA's backend optimisations off: for tiny models compilation is nearly all the time.
  @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(traced_once)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  opt_state = optimizer.init(params)
  losses = []
  for i in range(steps):  # the second and later calls must reuse the first trace
    params, opt_state, loss, grads = step(params, opt_state)
    if i == 0:
      for path, g in jax.tree_util.tree_leaves_with_path(grads):
        name = jax.tree_util.keystr(path)
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.max(jnp.abs(g))) > 0.0, name
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.85 * losses[0], losses


@pytest.fixture
def check_adam_training() -> Callable[..., None]:
  """``check_adam_training(loss_fn, params, *, steps)``: Adam lowers the loss, one trace.

  Also checks the first gradient: finite and nonzero for every parameter.
  """
  return _check_adam_training
