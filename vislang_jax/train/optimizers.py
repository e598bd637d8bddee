"""The one optimizer factory: `make_optimizer(config.train)`, one config field per knob.

Fields of `config.train` (defaults in `experiments/configs/common.py`):
  optimizer: "adam", "adamw" (both with `b1`, the first moment's decay: 0.9, or DCGAN's 0.5),
    "sgd" (with `momentum`; 0 = plain SGD) or "rmsprop" (Tieleman and Hinton's, with
    `rmsprop_decay` and `momentum`).
  learning_rate: the base rate.
  schedule: "constant"; "step" (the rate times `decay_factor` at each fraction `decay_at` of
    `num_steps`, e.g. the STN paper's /10 at 1/3 and 2/3); "cosine" (to 0 at `num_steps`).
    Both decays start after `warmup_steps` of linear warm-up from 0 when that is > 0.
  grad_clip_norm: clip the gradient's global norm to this before the update (0 = off).
  weight_decay: "adamw": decoupled decay (Loshchilov & Hutter); others: an L2 term
    `weight_decay * params` added to the gradient (after clipping). 0 = off.
"""

from __future__ import annotations

import ml_collections
import optax

from vislang_jax.checks import check_choice, check_float, check_int

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")


def make_schedule(train: ml_collections.ConfigDict) -> optax.Schedule | float:
  """The learning rate of `train.schedule`: a float when constant, else an optax schedule."""
  rate = check_float("train.learning_rate", train.learning_rate, low=0.0)
  schedule = check_choice("train.schedule", train.schedule, SCHEDULES)
  num_steps = check_int("train.num_steps", train.num_steps, low=1)
  warmup = check_int("train.warmup_steps", train.warmup_steps, low=0, high=num_steps)
  if schedule == "constant" and not warmup:
    return rate
  decay_steps = num_steps - warmup
  if schedule == "step":
    check_float("train.decay_factor", train.decay_factor, low=0.0)
    scales = {}
    for f in tuple(train.decay_at):
      check_float("train.decay_at (each a fraction of num_steps)", f, low=0.0, below=1.0)
      boundary = max(round(f * num_steps) - warmup, 0)
      scales[boundary] = scales.get(boundary, 1.0) * train.decay_factor
    decayed = optax.piecewise_constant_schedule(rate, scales)
  elif schedule == "cosine":
    decayed = optax.cosine_decay_schedule(rate, max(decay_steps, 1))
  else:
    decayed = optax.constant_schedule(rate)
  if not warmup:
    return decayed
  return optax.join_schedules(
      [optax.linear_schedule(0.0, rate, warmup), decayed], boundaries=[warmup])


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax transformation `config.train` describes (module docstring).

  Raises:
    ValueError: naming the field, for an unknown optimizer or schedule or a value out of
      range.
  """
  name = check_choice("train.optimizer", train.optimizer, OPTIMIZERS)
  clip = check_float("train.grad_clip_norm", train.grad_clip_norm, low=0.0)
  decay = check_float("train.weight_decay", train.weight_decay, low=0.0)
  momentum = check_float("train.momentum", train.momentum, low=0.0, below=1.0)
  rate = make_schedule(train)
  parts = [optax.clip_by_global_norm(clip)] if clip else []
  if decay and name != "adamw":
    parts.append(optax.add_decayed_weights(decay))
  if name in ("adam", "adamw"):
    b1 = check_float("train.b1", train.b1, low=0.0, below=1.0)
    parts.append(optax.adam(rate, b1=b1) if name == "adam"
                 else optax.adamw(rate, b1=b1, weight_decay=decay))
  elif name == "sgd":
    parts.append(optax.sgd(rate, momentum=momentum or None))
  else:
    rms_decay = check_float("train.rmsprop_decay", train.rmsprop_decay, low=0.0, below=1.0)
    parts.append(optax.rmsprop(rate, decay=rms_decay, momentum=momentum or None))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)
