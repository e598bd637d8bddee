"""ops/attention.py against the equations in NumPy float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vislang_jax.ops import attention
from vislang_jax.ops.sequence import length_mask


def _reference(query, keys, v, values, lengths):
  """Bahdanau eq. (5)-(6) per row, only over the first ``length`` positions, in float64."""
  query, keys, v, values = (np.asarray(x, np.float64) for x in (query, keys, v, values))
  batch, num = keys.shape[:2]
  weights = np.zeros((batch, num))
  contexts = np.zeros((batch, values.shape[-1]))
  for b in range(batch):
    n = lengths[b]
    e = np.array([v @ np.tanh(query[b] + keys[b, j]) for j in range(n)])
    a = np.exp(e - e.max())
    weights[b, :n] = a / a.sum()
    contexts[b] = weights[b, :n] @ values[b, :n]
  return contexts, weights


def _inputs(seed, batch=3, num=5, width=4, dim=6):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(batch, width)).astype(np.float32),
          rng.normal(size=(batch, num, width)).astype(np.float32),
          rng.normal(size=(width,)).astype(np.float32),
          rng.normal(size=(batch, num, dim)).astype(np.float32))


@pytest.mark.parametrize("lengths", [(5, 5, 5), (1, 3, 5)])
def test_matches_the_equations(lengths):
  query, keys, v, values = _inputs(0)
  mask = length_mask(np.array(lengths), 5)
  got_context, got_weights = attention.additive_attention(query, keys, v, values, mask)
  want_context, want_weights = _reference(query, keys, v, values, lengths)
  np.testing.assert_allclose(got_weights, want_weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_context, want_context, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(got_weights)[~np.asarray(mask)] == 0.0)


def test_padding_contents_do_not_matter():
  query, keys, v, values = _inputs(1)
  mask = length_mask(np.array([2, 4, 3]), 5)
  garbage_keys = np.where(mask[..., None], keys, 1e4)
  garbage_values = np.where(mask[..., None], values, -1e4)
  first = attention.additive_attention(query, keys, v, values, mask)
  second = attention.additive_attention(query, garbage_keys, v, garbage_values, mask)
  for a, b in zip(first, second):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_no_mask_is_the_plain_softmax_and_broadcasts_over_steps():
  query, keys, v, values = _inputs(2)
  scores = attention.additive_scores(query, keys, v)
  np.testing.assert_allclose(attention.masked_softmax(scores), jax.nn.softmax(scores, -1),
                             rtol=1e-6)
  # A [B, L] mask over [B, T, L] scores (T decoder steps over one source).
  steps = jnp.stack([scores, 2.0 * scores], axis=1)
  mask = length_mask(np.array([2, 5, 3]), 5)
  weights = attention.masked_softmax(steps, mask[:, None, :])
  np.testing.assert_allclose(weights[:, 1], attention.masked_softmax(2.0 * scores, mask),
                             rtol=1e-6)


def test_a_fully_masked_row_is_an_error_and_zeros_under_jit():
  scores = jnp.zeros((2, 3))
  mask = np.array([[True, False, False], [False, False, False]])
  with pytest.raises(ValueError, match=r"rows \[\[1\]\]"):
    attention.masked_softmax(scores, mask)
  weights = jax.jit(attention.masked_softmax)(scores, mask)
  np.testing.assert_array_equal(weights, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
  grads = jax.jit(jax.grad(lambda s, m: jnp.sum(attention.masked_softmax(s, m) * s)))(scores,
                                                                                      mask)
  assert np.all(np.isfinite(grads))


def test_named_shape_errors():
  query, keys, v, values = _inputs(3)
  with pytest.raises(ValueError, match="must share A"):
    attention.additive_scores(query[:, :3], keys, v)
  with pytest.raises(ValueError, match="mask must broadcast"):
    attention.masked_softmax(jnp.zeros((3, 5)), np.ones((3, 4), bool))
  with pytest.raises(ValueError, match="values must have shape"):
    attention.context(jnp.zeros((3, 5)), values[:, :4])


def test_gradients_match_finite_differences_and_skip_padding():
  query, keys, v, values = _inputs(4, batch=2, num=4, width=3, dim=2)
  mask = length_mask(np.array([2, 4]), 4)

  def fn(query, keys, v, values):
    return attention.additive_attention(query, keys, v, values, mask)[0]

  args = tuple(np.asarray(x, np.float64) for x in (query, keys, v, values))
  with jax.enable_x64():
    check_grads(fn, args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
  grads = jax.grad(lambda k, h: jnp.sum(fn(query, k, v, h) ** 2), (0, 1))(keys, values)
  for grad in grads:
    assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)


def test_vmap_equals_the_batched_call():
  query, keys, v, values = _inputs(5)
  mask = length_mask(np.array([1, 5, 2]), 5)
  batched = attention.additive_attention(query, keys, v, values, mask)
  mapped = jax.vmap(attention.additive_attention, in_axes=(0, 0, None, 0, 0))(query, keys, v,
                                                                              values, mask)
  for a, b in zip(batched, mapped):
    np.testing.assert_allclose(a, b, rtol=1e-6)
