"""ops/sequence.py against NumPy."""

import jax
import numpy as np

from vislang_jax.ops.sequence import length_mask, shift_right


def test_length_mask_marks_the_first_lengths_positions():
  lengths = np.array([0, 2, 4])
  want = np.array([[t < n for t in range(4)] for n in lengths])
  np.testing.assert_array_equal(length_mask(lengths, 4), want)


def test_shift_right_feeds_bos_then_the_targets_and_jits():
  tokens = np.array([[5, 6, 2, 0], [7, 2, 0, 0]], np.int32)
  want = np.array([[1, 5, 6, 2], [1, 7, 2, 0]], np.int32)
  np.testing.assert_array_equal(shift_right(tokens, bos_id=1), want)
  np.testing.assert_array_equal(jax.jit(shift_right, static_argnames="bos_id")(tokens, bos_id=1),
                                want)
