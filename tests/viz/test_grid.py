"""vislang_jax.viz.grid.grid_shape: the most nearly square grid of a count of cells."""

import pytest

from vislang_jax.viz.grid import grid_shape


@pytest.mark.parametrize("count,shape", [
    (1, (1, 1)), (4, (2, 2)), (7, (1, 7)), (8, (2, 4)), (10, (2, 5)), (12, (3, 4)),
    (36, (6, 6)), (64, (8, 8)), (99, (9, 11)),
])
def test_known_shapes(count, shape):
  assert grid_shape(count) == shape


def test_the_grid_is_the_squarest_factorisation():
  for count in range(1, 200):
    rows, cols = grid_shape(count)
    pairs = [(r, count // r) for r in range(1, count + 1) if count % r == 0 and r <= count // r]
    assert (rows, cols) == min(pairs, key=lambda p: p[1] - p[0]), count


@pytest.mark.parametrize("count", [0, -3, 2.0, True])
def test_bad_counts_raise(count):
  with pytest.raises(ValueError, match=f"count must be a positive int, got {count!r}"):
    grid_shape(count)
