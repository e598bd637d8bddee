"""The train-state pytree every experiment carries through its jitted step."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; all of it goes into the checkpoint.

  Attributes:
    step: [] int32, number of optimizer steps taken.
    params: the model parameters (the `params` collection; a dict of them for a task with
      several players, e.g. `{"generator": ..., "discriminator": ...}`).
    opt_state: the optimizer state (one optax state, or a task's own structure).
    rng: [2] uint32 base key; step `s` uses `jax.random.fold_in(rng, s)`.
    bad_step: [] int32, the first step (counted from 1) whose loss or update was
      non-finite, or -1. Such a step leaves params, opt_state and extra unchanged, so
      the host can stop training at its next sync point with the state good.
    extra: a pytree of state the step updates without gradients (e.g. the
      moving-average REINFORCE baseline of hard attention), or None.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  bad_step: jax.Array
  extra: Any = None

  @classmethod
  def create(cls, *, params: Any, opt_state: Any, rng: jax.Array,
             extra: Any = None) -> "TrainState":
    return cls(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=rng,
        bad_step=jnp.full((), -1, jnp.int32),
        extra=extra,
    )
