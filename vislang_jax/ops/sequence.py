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
