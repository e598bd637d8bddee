"""Masks of padded sequences."""

import jax
import jax.numpy as jnp


def length_mask(lengths: jax.Array, max_len: int) -> jax.Array:
  """Which positions of a padded sequence are real.

  Args:
    lengths: [...] int, the number of real elements of each sequence.
    max_len: T, the padded length.

  Returns:
    [..., T] bool, True at positions ``t < lengths[...]``.
  """
  return jnp.arange(max_len) < jnp.asarray(lengths)[..., None]


def shift_right(tokens: jax.Array, *, bos_id: int) -> jax.Array:
  """Teacher forcing's decoder inputs: ``bos_id``, then the targets shifted right.

  Args:
    tokens: [B, T] int, the targets ``y_1..y_T``.
    bos_id: the id fed at the first step.

  Returns:
    [B, T], ``bos_id, y_1, ..., y_{T-1}``.
  """
  return jnp.concatenate([jnp.full_like(tokens[:, :1], bos_id), tokens[:, :-1]], axis=1)
