"""Binarized images, the data of DRAW and alignDRAW: each pixel ~ Bernoulli(grey level).

Two uses, one design (a key in, bits out):
  * training draws new bits at every step ("dynamic" binarization): `binarize(key, images)`
    with the step's key;
  * evaluation fixes the bits of each record once: `binarize_records(key, index, images)`
    draws record `i` from `fold_in(key, i)`, so a record gets the same bits in every
    evaluation, batch, order and process (with the evaluator's fixed key,
    `train.evaluate.named_key`).
"""

import jax
import jax.numpy as jnp


def binarize(key: jax.Array, images: jax.Array) -> jax.Array:
  """Bernoulli bits of grey levels.

  Args:
    key: PRNG key of the draw.
    images: [B, ...] float in [0, 1], the probability of a 1.

  Returns:
    [B, ...] float32 in {0., 1.}.
  """
  return jax.random.bernoulli(key, images).astype(jnp.float32)


def binarize_records(key: jax.Array, index: jax.Array, images: jax.Array) -> jax.Array:
  """Bernoulli bits of each record drawn from its own key, `fold_in(key, index[b])`.

  Args:
    key: PRNG key shared by all records.
    index: [B] int, each record's identity (its position in its split).
    images: [B, ...] float in [0, 1].

  Returns:
    [B, ...] float32 in {0., 1.}; row b depends only on `key`, `index[b]` and `images[b]`.
  """
  return jax.vmap(lambda i, x: binarize(jax.random.fold_in(key, i), x))(index, images)
