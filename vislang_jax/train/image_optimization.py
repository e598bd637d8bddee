"""Optimising an image (not a network) by gradient descent on a loss, the whole loop jitted.

Neural style (Gatys, Ecker & Bethge, "A neural algorithm of artistic style", 2015) finds the
image ``x`` that minimises ``L_total(p, a, x)`` (eq. 7) by gradient descent from white noise,
the network frozen; its released successors (jcjohnson/neural-style) use L-BFGS by default and
Adam as the alternative. ``optimize_image`` runs either one as a single ``jax.jit``: a
``lax.scan`` over the steps, whose body evaluates the loss and its gradient and applies one
optax update. The network's parameters are whatever ``loss_fn`` closes over: constants of
the computation, never updated.

L-BFGS is ``optax.lbfgs``: its two-loop recursion over the last ``memory_size`` steps and the
zoom line search (strong Wolfe conditions, at most 15 evaluations of the loss and gradient per
step). The line search leaves the loss and gradient at the accepted image in its state, and
``optax.value_and_grad_from_state`` reuses them at the next step, as the optax docs show.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vislang_jax.checks import check_choice, check_float, check_positive_int

OPTIMIZERS = ("lbfgs", "adam")
LossFn = Callable[[jax.Array], tuple[jax.Array, Any]]


def optimize_image(loss_fn: LossFn, init_image: jax.Array, *, optimizer: str = "lbfgs",
                   num_steps: int, learning_rate: float | None = None,
                   clip: tuple[float, float] | None = None,
                   memory_size: int = 10) -> tuple[jax.Array, dict[str, Any]]:
  """Minimises ``loss_fn`` over the image from ``init_image``, in ``num_steps`` jitted steps.

  Args:
    loss_fn: ``loss_fn(image) -> (scalar loss, aux)``, ``aux`` a pytree of arrays (e.g.
      ``{"content": .., "style": ..}``), differentiable in ``image``; it closes over the frozen
      network. A jit static argument: hashable, and the same object (not a new lambda each
      call) to reuse the compiled loop.
    init_image: the starting image, any shape (e.g. [B, H, W, 3]) and float dtype: white
      noise or the content image.
    optimizer: "lbfgs" (``optax.lbfgs``, module docstring) or "adam" (``optax.adam``).
    num_steps: the number of updates.
    learning_rate: Adam's step size (required). L-BFGS: None (default) for the line search's
      step along the L-BFGS direction; a float scales the direction before the line search.
    clip: ``(low, high)``: the image is clipped to this range after each update (e.g. the
      network's input range). With L-BFGS the loss and gradient at the clipped image are then
      computed afresh each step instead of taken from the line search.
    memory_size: L-BFGS's number of stored past updates.

  Returns:
    ``(image, history)``: the image after ``num_steps`` updates (``init_image``'s shape and
    dtype) and ``{"loss": [num_steps], "aux": aux with a leading [num_steps] axis, "final_loss":
    [], "final_aux": aux}``; entry ``i`` of ``loss``/``aux`` is at the image before update
    ``i`` (``loss[0]`` at ``init_image``), ``final_*`` at the returned image.

  Raises:
    ValueError: naming the argument, for an unknown optimizer, Adam without a learning rate,
      a bad ``num_steps``, ``clip``, ``memory_size`` or learning rate, a non-float
      ``init_image``, or a ``loss_fn`` that does not return ``(scalar, aux)``.
  """
  check_choice("optimizer", optimizer, OPTIMIZERS)
  num_steps = check_positive_int("num_steps", num_steps)
  memory_size = check_positive_int("memory_size", memory_size)
  if optimizer == "adam" and learning_rate is None:
    raise ValueError("learning_rate must be a positive float for optimizer='adam', got None.")
  if learning_rate is not None:
    learning_rate = check_float("learning_rate", learning_rate, low=0.0)
  if clip is not None:
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
      raise ValueError(f"clip must be None or a pair (low, high), got {clip!r}.")
    low = check_float("clip[0]", clip[0])
    clip = (low, check_float("clip[1]", clip[1], low=low))
  init_image = jnp.asarray(init_image)
  if not jnp.issubdtype(init_image.dtype, jnp.floating):
    raise ValueError(f"init_image must be a float array, got dtype {init_image.dtype}.")
  out = jax.eval_shape(loss_fn, init_image)
  if not isinstance(out, tuple) or len(out) != 2:
    raise ValueError(f"loss_fn must return a pair (scalar loss, aux), got {out}.")
  if out[0].shape != ():
    raise ValueError(f"loss_fn's loss must be a scalar (sum a per-example loss), got shape "
                     f"{out[0].shape}.")
  return _optimize(loss_fn, init_image, optimizer=optimizer, num_steps=num_steps,
                   learning_rate=learning_rate, clip=clip, memory_size=memory_size)


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "num_steps",
                                             "learning_rate", "clip", "memory_size"))
def _optimize(loss_fn: LossFn, init_image: jax.Array, *, optimizer: str, num_steps: int,
              learning_rate: float | None, clip: tuple[float, float] | None,
              memory_size: int) -> tuple[jax.Array, dict[str, Any]]:
  """``optimize_image``'s loop, checked arguments."""

  def value_fn(image):
    return loss_fn(image)[0]

  if optimizer == "adam":
    tx = optax.adam(learning_rate)
  else:
    tx = optax.lbfgs(learning_rate, memory_size=memory_size)
  from_state = optimizer == "lbfgs" and clip is None
  cached_value_and_grad = optax.value_and_grad_from_state(value_fn)

  def step(carry, _):
    image, state = carry
    if from_state:
      value, grad = cached_value_and_grad(image, state=state)
      aux = loss_fn(image)[1]
    else:
      (value, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(image)
    updates, state = tx.update(grad, state, image, value=value, grad=grad, value_fn=value_fn)
    image = optax.apply_updates(image, updates)
    if clip is not None:
      image = jnp.clip(image, *clip)
    return (image, state), (value, aux)

  (image, _), (losses, auxes) = jax.lax.scan(step, (init_image, tx.init(init_image)), None,
                                             length=num_steps)
  final_loss, final_aux = loss_fn(image)
  return image, {"loss": losses, "aux": auxes, "final_loss": final_loss,
                 "final_aux": final_aux}
