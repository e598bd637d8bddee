"""vislang_jax.checks: what each check accepts, and the message of what it refuses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax import checks


@pytest.mark.parametrize("value", [1, 7, np.int32(3)])
def test_positive_ints_pass(value):
  assert checks.check_positive_int("n", value) == int(value)


@pytest.mark.parametrize("value,kwargs,message", [
    (0, {"low": 1}, "n must be a positive int, got 0."),
    (True, {"low": 0}, "n must be an int >= 0, got True."),
    (2.0, {"low": 0}, "n must be an int >= 0, got 2.0."),
    (9, {"low": 1, "high": 8}, "n must be an int in [1, 8], got 9."),
    (9, {"high": 8}, "n must be an int <= 8, got 9."),
])
def test_ints_out_of_range_are_named(value, kwargs, message):
  with pytest.raises(ValueError) as error:
    checks.check_int("n", value, **kwargs)
  assert str(error.value) == message


def test_floats_choices_and_sizes():
  assert checks.check_float("p", 0.5, low=0.0, below=1.0) == 0.5
  for bad in (1.0, float("nan"), True, "0.5"):
    with pytest.raises(ValueError, match=r"p must be a finite float in \[0.0, 1.0\)"):
      checks.check_float("p", bad, low=0.0, below=1.0)
  assert checks.check_choice("kind", "fc", ("fc", "conv")) == "fc"
  with pytest.raises(ValueError, match=r"kind must be one of \('fc', 'conv'\), got 'rnn'."):
    checks.check_choice("kind", "rnn", ("fc", "conv"))
  assert checks.check_hw("out_hw", [4, 5]) == (4, 5)
  assert checks.check_hw("out_hw", None, allow_none=True) is None
  with pytest.raises(ValueError, match="out_hw must be a pair of positive ints"):
    checks.check_hw("out_hw", None)
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\], got \(2, 3\)."):
    checks.check_rank("images", np.zeros((2, 3)), "[B, H, W, C]")


def test_ids_are_range_checked_only_when_concrete():
  checks.check_ids("tokens", np.array([[0, 4]]), vocab_size=5)
  with pytest.raises(ValueError, match=r"tokens must hold ids in \[0, vocab_size\) = \[0, 5\), "
                                       r"got ids in \[0, 5\]"):
    checks.check_ids("tokens", jnp.array([[0, 5]]), vocab_size=5)
  with pytest.raises(ValueError, match="tokens must hold integer ids, got dtype float32"):
    checks.check_ids("tokens", np.zeros(2, np.float32), vocab_size=5)
  # Under jit the values are unknown: only the dtype is checked.
  jax.jit(lambda t: checks.check_ids("tokens", t, vocab_size=5) or t)(jnp.array([7]))
  assert checks.concrete(jnp.ones(2)) is not None
  assert jax.jit(lambda x: jnp.float32(checks.concrete(x) is None))(jnp.ones(2)) == 1.0
