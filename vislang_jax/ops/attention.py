"""Additive ("concat", Bahdanau) attention as pure functions of projected arrays.

Bahdanau, Cho, Bengio, "Neural machine translation by jointly learning to align and
translate", ICLR 2015, eq. (5)-(6) and Appendix A.1.2:

    e_j = v^T tanh(W s + U h_j + b)        (scores, one per position j = 1..L)
    a_j = exp(e_j) / sum_k exp(e_k)        (the alignment, over the real positions only)
    c   = sum_j a_j h_j                    (the context)

Show-Attend-and-Tell's ``f_att`` (Xu et al. 2015, eq. 4-5) and alignDRAW's alignment over
the caption (Mansimov et al. 2016, eq. 2) are the same equation. Parameters stay in the
modules: a caller passes ``query = W s + b`` and ``keys = U h_j`` already projected (``U h_j``
does not depend on the decoder step, so a module computes it once per sequence) and the
vector ``v``. Every function broadcasts over leading axes and works under ``jit``, ``vmap``
and ``grad``.

Masks mark the real positions of padded sequences (``ops.sequence.length_mask``): a masked
position gets weight exactly 0 and no gradient. A row with no real position has no
distribution: with a concrete mask that is a ``ValueError``; under tracing (where values are
unknown) its weights are all 0 and its context is 0, never NaN.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import concrete


def additive_scores(query: jax.Array, keys: jax.Array, v: jax.Array) -> jax.Array:
  """The scores ``e_j = v^T tanh(query + keys_j)``.

  Args:
    query: [..., A] float, ``W s + b`` (the decoder-side projection with the bias).
    keys: [..., L, A] float, ``U h_j`` for each position ``j``.
    v: [A] float.

  Returns:
    [..., L] float scores.

  Raises:
    ValueError: when the ``A`` axes of ``query``, ``keys`` and ``v`` differ or ``keys`` has
      no position axis.
  """
  width = np.shape(v)
  if (len(width) != 1 or np.ndim(keys) < 2 or np.shape(query)[-1:] != width
      or np.shape(keys)[-1:] != width):
    raise ValueError(f"query [..., A], keys [..., L, A] and v [A] must share A, got query "
                     f"{np.shape(query)}, keys {np.shape(keys)}, v {width}.")
  return jnp.tanh(jnp.expand_dims(query, -2) + keys) @ v


def masked_log_softmax(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """``log a_j`` over the real positions; ``-inf`` at masked ones (module docstring).

  Args:
    scores: [..., L] float.
    mask: [..., L] bool, True at real positions, broadcastable to ``scores``; None: all real.

  Returns:
    [..., L] float log-weights.

  Raises:
    ValueError: for a mask that does not broadcast to ``scores``, or a concrete mask with a
      row that has no real position.
  """
  if mask is None:
    return jax.nn.log_softmax(scores, axis=-1)
  try:
    shape = np.broadcast_shapes(np.shape(mask), np.shape(scores))
  except ValueError:
    shape = None
  if shape != np.shape(scores):
    raise ValueError(f"mask must broadcast to the scores' shape {np.shape(scores)}, got "
                     f"{np.shape(mask)}.")
  values = concrete(mask)
  if values is not None:
    empty = ~np.any(np.broadcast_to(values, np.shape(scores)), axis=-1)
    if np.any(empty):
      raise ValueError(f"mask must mark at least one real position per row; rows "
                       f"{np.argwhere(empty).tolist()} of mask {np.shape(mask)} have none.")
  mask = jnp.broadcast_to(jnp.asarray(mask, bool), jnp.shape(scores))
  peak = jax.lax.stop_gradient(jnp.max(jnp.where(mask, scores, -jnp.inf), -1, keepdims=True))
  any_real = jnp.any(mask, -1, keepdims=True)
  shifted = jnp.where(mask, scores - jnp.where(any_real, peak, 0.0), -jnp.inf)
  total = jnp.sum(jnp.exp(shifted), -1, keepdims=True)
  return shifted - jnp.log(jnp.where(any_real, total, 1.0))


def masked_softmax(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """The alignment ``a_j``: a softmax over the real positions, 0 at masked ones.

  Args and errors as ``masked_log_softmax``.

  Returns:
    [..., L] float weights summing to 1 over each row's real positions.
  """
  return jnp.exp(masked_log_softmax(scores, mask))


def context(weights: jax.Array, values: jax.Array) -> jax.Array:
  """The context ``c = sum_j a_j h_j``.

  Args:
    weights: [..., L] float, the alignment.
    values: [..., L, D] float, the ``h_j``.

  Returns:
    [..., D] float.
  """
  if np.ndim(values) < 2 or np.shape(values)[-2] != np.shape(weights)[-1]:
    raise ValueError(f"values must have shape [..., L, D] with L = weights.shape[-1] = "
                     f"{np.shape(weights)[-1:]}, got {np.shape(values)}.")
  return jnp.einsum("...l,...ld->...d", weights, values)


def additive_attention(query: jax.Array, keys: jax.Array, v: jax.Array, values: jax.Array,
                       mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Scores, masked softmax and context in one call (module docstring).

  Args:
    query: [..., A] float, ``W s + b``.
    keys: [..., L, A] float, ``U h_j``.
    v: [A] float.
    values: [..., L, D] float, the ``h_j`` averaged by the weights.
    mask: [..., L] bool, True at real positions; None: all real.

  Returns:
    ``(context [..., D], weights [..., L])``.
  """
  weights = masked_softmax(additive_scores(query, keys, v), mask)
  return context(weights, values), weights
