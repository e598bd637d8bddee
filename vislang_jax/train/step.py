"""Pure train and eval steps built from an explicit loss and an optax optimizer."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from vislang_jax.train.state import TrainState

# loss_fn(params, batch, key) -> (scalar loss, {name: scalar metric}), or, for a
# task with extra state, loss_fn(params, batch, key, extra) ->
# (scalar loss, ({name: scalar metric}, new extra)).
LossFn = Callable[..., tuple[jax.Array, Any]]
# metric_fn(params, batch) -> {name: [b] per-example values}
MetricFn = Callable[[Any, dict], dict]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    *, with_extra: bool = False
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns `train_step(state, batch) -> (state, metrics)`, pure and unjitted.

  With `with_extra`, `loss_fn` also reads `state.extra` and returns its new
  value beside the metrics; it is not differentiated.

  The step's key is `fold_in(state.rng, state.step)`, so a resumed run draws the
  same randomness as an uninterrupted one. A non-finite loss or update leaves
  params and optimizer state untouched and records the step number (counted
  from 1, as in logs and checkpoints) in `state.bad_step`.
  """

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    if with_extra:
      (loss, (metrics, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, batch, key, state.extra)
    else:
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, batch, key)
      extra = state.extra
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(updates))
    keep = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(finite, n, o), new, old)
    bad_step = jnp.where((state.bad_step < 0) & ~finite, state.step + 1,
                         state.bad_step)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        bad_step=bad_step,
        extra=keep(extra, state.extra))
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return new_state, metrics

  return train_step


def make_eval_step(metric_fn: MetricFn) -> Callable[[Any, dict, jax.Array], dict]:
  """Returns `eval_step(params, batch, mask) -> {name: masked sum}` plus `count`.

  `mask` [b] is 1 for real examples and 0 for padding added to fill the last
  batch, so summing over batches and dividing by `count` gives exact means.
  """

  def eval_step(params: Any, batch: dict, mask: jax.Array) -> dict:
    per_example = metric_fn(params, batch)
    # where, not a product: a padding example's metric may be NaN (e.g. 0 / 0).
    sums = {k: jnp.sum(jnp.where(mask > 0, v, 0.0)) for k, v in per_example.items()}
    sums["count"] = jnp.sum(mask)
    return sums

  return eval_step
