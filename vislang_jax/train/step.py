"""The pure train step: a task's update wrapped with the key schedule and the non-finite guard.

A task gives either a loss (`gradient_update` turns it and an optax optimizer into an update)
or its own update, e.g. a GAN's k discriminator steps per generator step with two optimizers:

  LossFn:   loss_fn(params, batch, key, extra) -> (scalar loss, {name: scalar}, new extra)
  UpdateFn: update_fn(params, opt_state, extra, batch, key)
                -> (params, opt_state, extra, {name: scalar})

`extra` is state updated without gradients (None for most tasks, which return it as given).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from vislang_jax.train.state import TrainState

LossFn = Callable[[Any, dict, jax.Array, Any], tuple[jax.Array, dict, Any]]
UpdateFn = Callable[[Any, Any, Any, dict, jax.Array], tuple[Any, Any, Any, dict]]


def mean_loss(per_example_fn: Callable[[Any, dict, jax.Array], dict], *,
              loss: str = "loss") -> LossFn:
  """A LossFn from `per_example_fn(params, batch, key) -> {name: [b]}`.

  The loss is the batch mean of `per_example_fn(...)[loss]`, the metrics the batch means of
  the other values; `extra` passes through. One function then serves training and
  `evaluate.MeanMetrics`.
  """

  def loss_fn(params, batch, key, extra):
    values = per_example_fn(params, batch, key)
    means = {name: jnp.mean(value) for name, value in values.items()}
    return means.pop(loss), means, extra

  return loss_fn


def gradient_update(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> UpdateFn:
  """One optimizer step on `loss_fn`; adds `loss` and `grad_norm` to its metrics."""

  def update(params, opt_state, extra, batch, key):
    def objective(p):
      loss, metrics, new_extra = loss_fn(p, batch, key, extra)
      return loss, (metrics, new_extra)

    (loss, (metrics, extra)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, extra, dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))

  return update


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(update: UpdateFn
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns `train_step(state, batch) -> (state, metrics)`, pure and unjitted.

  The step's key is `fold_in(state.rng, state.step)`, so a resumed run draws the
  same randomness as an uninterrupted one. A step whose metrics (the loss among them) or
  new parameters are not all finite leaves params, optimizer state and extra untouched and
  records its number (counted from 1, as in logs and checkpoints) in `state.bad_step`.
  """

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    params, opt_state, extra, metrics = update(state.params, state.opt_state, state.extra,
                                               batch, key)
    finite = _all_finite(metrics) & _all_finite(params)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    bad_step = jnp.where((state.bad_step < 0) & ~finite, state.step + 1, state.bad_step)
    return state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        bad_step=bad_step,
        extra=keep(extra, state.extra)), metrics

  return train_step
