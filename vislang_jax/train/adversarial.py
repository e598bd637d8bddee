"""Alternating updates of several players (a GAN's discriminator and generator) on the
harness's own-update path (`loop.Task.update_fn`).

Goodfellow et al. 2014, Algorithm 1: per training step, `k` updates of the discriminator,
each on its own minibatch, then one update of the generator. Each player is a `Player`:
its name in the parameter tree, its loss and its optimizer. `TrainState.params` holds every
player's Flax variables,

    {"discriminator": {"params": ..., "batch_stats": ...}, "generator": {...}, ...}

so batch-norm statistics live in the train state, are checkpointed with it and reach the
evaluators (which get `state.params`). A player's loss reads every player's variables and
returns the variables it changed without gradients (batch statistics); only its own
`"params"` are differentiated and stepped by its own optimizer, so a discriminator step never
moves the generator and the other way round, whatever the losses read.

  loss_fn(variables, batch, key) -> (scalar loss, {name: scalar}, new variables)

`new variables` is the whole tree with the collections the loss updated (e.g. the batch
statistics of every network it ran in training mode); its `"params"` entries are ignored.
The batch of one training step is split into `steps` equal chunks for a player with
`steps > 1` (each discriminator step sees its own real minibatch); a player with `steps == 1`
sees the whole batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Callable

import jax
import optax

from vislang_jax.checks import check_positive_int
from vislang_jax.train.step import UpdateFn

PlayerLossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict, Any]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Player:
  """One player of the game.

  Attributes:
    name: its key in `TrainState.params` and `opt_state`; metrics are logged as
      `<name>/<metric>` (`<name>/loss`, `<name>/grad_norm`, ...).
    loss_fn: (variables, batch, key) -> (loss, metrics, new variables) (module docstring).
    optimizer: the optax transformation of the gradient of `loss_fn` w.r.t.
      `variables[name]["params"]`.
    steps: updates per training step (the discriminator's `k`), each on its own
      `1 / steps` of the batch, in order.
  """

  name: str
  loss_fn: PlayerLossFn
  optimizer: optax.GradientTransformation
  steps: int = 1

  def __post_init__(self):
    check_positive_int(f"Player {self.name!r} steps", self.steps)


def _chunk(batch: dict, index: int, count: int) -> dict:
  """Chunk `index` of `count` equal parts of every array's leading axis."""
  if count == 1:
    return batch

  def part(x):
    if x.shape[0] % count:
      raise ValueError(f"the batch ({x.shape[0]} records) must split into {count} equal "
                       f"chunks, one per update of a player with steps={count}.")
    size = x.shape[0] // count
    return jax.lax.dynamic_slice_in_dim(x, index * size, size)

  return jax.tree.map(part, batch)


def _merge_state(variables: dict, new: dict) -> dict:
  """`new`'s non-parameter collections with `variables`' parameters."""
  return {name: {**new[name], "params": variables[name]["params"]} for name in variables}


def alternating_update(players: Sequence[Player]) -> tuple[UpdateFn, Callable[[Any], Any]]:
  """The `(update_fn, init_opt_state)` pair of a `loop.Task` that plays `players` in order.

  Each player takes `steps` gradient steps on its loss w.r.t. its own `"params"` (the
  others' variables as they are at that moment: the generator's update sees the
  discriminator just updated), with key `fold_in(key, i)` for the i-th update of the
  training step. Metrics are each player's last update's, prefixed `<name>/`, with
  `<name>/loss` and `<name>/grad_norm`.

  Raises:
    ValueError: for no players or two with one name.
  """
  names = [p.name for p in players]
  if not players or len(set(names)) != len(names):
    raise ValueError(f"players must be one or more with distinct names, got {names}.")

  def init_opt_state(variables):
    return {p.name: p.optimizer.init(variables[p.name]["params"]) for p in players}

  def update_fn(variables, opt_state, extra, batch, key):
    opt_state = dict(opt_state)
    metrics = {}
    count = 0
    for player in players:
      for i in range(player.steps):
        part = _chunk(batch, i, player.steps)
        step_key = jax.random.fold_in(key, count)
        count += 1

        def objective(params, player=player, part=part, step_key=step_key):
          trial = {**variables, player.name: {**variables[player.name], "params": params}}
          loss, values, new = player.loss_fn(trial, part, step_key)
          return loss, (values, new)

        own = variables[player.name]["params"]
        (loss, (values, new)), grads = jax.value_and_grad(objective, has_aux=True)(own)
        updates, opt_state[player.name] = player.optimizer.update(
            grads, opt_state[player.name], own)
        variables = _merge_state(variables, new)
        variables[player.name]["params"] = optax.apply_updates(own, updates)
      metrics.update({f"{player.name}/{k}": v for k, v in values.items()})
      metrics[f"{player.name}/loss"] = loss
      metrics[f"{player.name}/grad_norm"] = optax.global_norm(grads)
    return variables, opt_state, extra, metrics

  return update_fn, init_opt_state


def apply_player(module: Any, variables: dict, *args: Any, train: bool,
                 rngs: dict | None = None, method: Any = None, **kwargs: Any
                 ) -> tuple[Any, dict]:
  """`module.apply` with `train=train`; returns `(output, variables updated)`.

  In training mode the `batch_stats` collection is mutable and the returned variables hold
  the new statistics; in evaluation mode (running averages) they come back unchanged.
  """
  mutable = ["batch_stats"] if train and "batch_stats" in variables else False
  out = module.apply(variables, *args, train=train, rngs=rngs, method=method,
                     mutable=mutable, **kwargs)
  if mutable:
    out, changed = out
    return out, {**variables, **changed}
  return out, variables

