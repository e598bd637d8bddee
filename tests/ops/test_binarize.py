"""Dynamic and per-record binarization: Bernoulli statistics and where the bits come from."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.ops.binarize import binarize, binarize_records


def test_bits_follow_the_grey_levels():
  grey = jnp.linspace(0.0, 1.0, 11)[None, :].repeat(4000, axis=0)  # [4000, 11]
  bits = binarize(jax.random.PRNGKey(0), grey)
  assert set(np.unique(bits)) == {0.0, 1.0}
  assert not bits[:, 0].any() and bits[:, -1].all()  # black stays black, white stays white
  # Bernoulli(p): the mean of 4000 draws is within 4 standard errors of p.
  p = np.linspace(0.0, 1.0, 11)
  np.testing.assert_allclose(bits.mean(0), p, atol=4 * np.sqrt(0.25 / 4000))


def test_dynamic_bits_change_with_the_key():
  grey = jnp.full((8, 6, 6, 1), 0.5)
  a, b = (binarize(jax.random.PRNGKey(k), grey) for k in (1, 2))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, binarize(jax.random.PRNGKey(1), grey))


def test_record_bits_depend_only_on_the_record():
  key = jax.random.PRNGKey(0)
  images = jnp.full((3, 5, 5, 1), 0.5)
  first = binarize_records(key, jnp.array([7, 8, 9]), images)
  again = jax.jit(binarize_records)(key, jnp.array([9, 7]), images[:2])
  np.testing.assert_array_equal(again, first[jnp.array([2, 0])])
  np.testing.assert_array_equal(first[0], binarize(jax.random.fold_in(key, 7), images[0]))
  assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("fn", [binarize, lambda k, x: binarize_records(k, jnp.arange(2), x)])
def test_every_pixel_is_a_draw(fn):
  bits = fn(jax.random.PRNGKey(3), jnp.full((2, 64, 64), 0.3))
  assert bits.dtype == jnp.float32 and bits.shape == (2, 64, 64)
  assert float(bits.mean()) == pytest.approx(0.3, abs=0.02)
