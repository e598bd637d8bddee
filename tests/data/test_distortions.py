"""Distortions: determinism, shapes, and invariants against SciPy and exact placements."""

import numpy as np
import pytest
import scipy.ndimage

from vislang_jax.data import distortions as D
from vislang_jax.data.sources import load_digits

DIGITS, _ = load_digits("sklearn_digits", "test")
DIGIT = DIGITS[0]

ALL = {
    "R": (D.rotate, 28),
    "RTS": (D.rotate_translate_scale, 42),
    "P": (D.projective, 28),
    "E": (D.elastic, 28),
    "cluttered": (lambda digit, rng: D.cluttered(digit, DIGITS[1:20], rng), 60),
}


@pytest.mark.parametrize("name", list(ALL))
def test_deterministic_shape_and_range(name):
  fn, side = ALL[name]
  a = fn(DIGIT, np.random.default_rng(7))
  b = fn(DIGIT, np.random.default_rng(7))
  c = fn(DIGIT, np.random.default_rng(8))
  assert a.shape == (side, side) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.min() >= 0 and a.max() <= 255 and a.max() > 100


@pytest.mark.parametrize("name", list(ALL))
def test_input_dtype_does_not_matter(name):
  fn, _ = ALL[name]
  np.testing.assert_allclose(
      fn(DIGIT, np.random.default_rng(1)),
      fn(DIGIT.astype(np.float64), np.random.default_rng(1)),
      atol=1e-4,
  )


def test_rotation_by_zero_is_identity():
  np.testing.assert_array_equal(D.rotate(DIGIT, np.random.default_rng(0), max_angle=0.0), DIGIT)


@pytest.mark.parametrize("seed", range(5))
def test_rotation_matches_scipy_and_preserves_mass(seed):
  angle = np.random.default_rng(seed).uniform(-90, 90)  # The one draw `rotate` makes.
  out = D.rotate(DIGIT, np.random.default_rng(seed))
  reference = scipy.ndimage.rotate(DIGIT.astype(np.float32), angle, reshape=False, order=1)
  np.testing.assert_allclose(out, reference, atol=1e-3)
  np.testing.assert_allclose(out.sum(), DIGIT.sum(), rtol=0.03)


@pytest.mark.parametrize("seed", range(20))
def test_rts_keeps_ink_inside_and_scales_mass(seed):
  digit = DIGITS[seed]
  rng = np.random.default_rng(seed)
  rng.uniform(-45, 45)
  scale = rng.uniform(0.7, 1.2)  # The second draw of `rotate_translate_scale`.
  out = D.rotate_translate_scale(digit, np.random.default_rng(seed))
  assert out.shape == (42, 42)
  # Area scales by scale**2; nothing is cut off at the canvas border.
  np.testing.assert_allclose(out.sum(), digit.sum(dtype=np.float64) * scale**2, rtol=0.05)


def test_rts_places_digit_at_varied_locations():
  centres = []
  for seed in range(30):
    out = D.rotate_translate_scale(
        DIGIT, np.random.default_rng(seed), max_angle=0.0, scale_range=(1.0, 1.0)
    )
    centres.append(scipy.ndimage.center_of_mass(out))
  centres = np.asarray(centres)
  assert np.ptp(centres, axis=0).min() > 8  # Translation spans much of the 14 free pixels.


def test_projective_without_perturbation_is_identity_or_scaling():
  identity = D.projective(DIGIT, np.random.default_rng(0), scale_range=(1.0, 1.0), corner_std=0.0)
  np.testing.assert_allclose(identity, DIGIT, atol=1e-3)
  half = D.projective(DIGIT, np.random.default_rng(0), scale_range=(0.5, 0.5), corner_std=0.0)
  # Scaling by 1/2 about the centre (13.5, 13.5): mass x 1/4, centre of mass halfway in.
  com = np.asarray(scipy.ndimage.center_of_mass(DIGIT.astype(np.float64)))
  np.testing.assert_allclose(
      scipy.ndimage.center_of_mass(half), 13.5 + 0.5 * (com - 13.5), atol=0.05
  )
  np.testing.assert_allclose(half.sum(), DIGIT.sum() * 0.25, rtol=0.05)


def test_projective_moves_corners():
  # A white image's projective warp is white inside the moved corners' quadrilateral and
  # black outside: check that the edges move by about corner_std * 28 pixels.
  white = np.full((28, 28), 255, np.uint8)
  shifts = [
      np.abs(D.projective(white, np.random.default_rng(s), scale_range=(1.0, 1.0)) / 255 - 1).sum()
      / (4 * 28)
      for s in range(30)
  ]
  # Measured: about 0.6 px for corner_std=0.05, 0.94 for 0.1, 1.6 for 0.2 (30 draws each).
  assert 0.75 < np.mean(shifts) < 1.2


def test_elastic_with_zero_alpha_is_identity():
  np.testing.assert_array_equal(D.elastic(DIGIT, np.random.default_rng(0), alpha=0.0), DIGIT)


def test_elastic_displacement_is_smooth_and_small():
  # A ramp image reads the displacement field back: out - ramp = row displacement.
  ramp = np.tile(np.arange(28, dtype=np.float32)[:, None] * 5, (1, 28))
  out = D.elastic(ramp, np.random.default_rng(0))
  shift = (out - ramp)[6:22, 6:22] / 5  # Away from the border, where zeros come in.
  assert 0.5 < np.abs(shift).mean() < 6  # alpha=34, sigma=4: a few pixels.
  assert np.abs(np.diff(shift, axis=1)).max() < 1.5  # Neighbours move together.


def test_cluttered_without_clutter_is_the_digit_pasted():
  out = D.cluttered(DIGIT, DIGITS, np.random.default_rng(3), canvas_size=60, num_clutter=0)
  placements = [
      (y, x)
      for y in range(33)
      for x in range(33)
      if np.array_equal(out[y : y + 28, x : x + 28], DIGIT)
      and out.sum() == DIGIT.sum(dtype=np.float64)
  ]
  assert len(placements) >= 1
  placements = {
      D.cluttered(DIGIT, DIGITS, np.random.default_rng(seed), num_clutter=0).argmax()
      for seed in range(10)
  }
  assert len(placements) > 5  # The location is random.


def test_cluttered_clutter_pieces():
  blank = np.zeros((28, 28), np.uint8)
  out = D.cluttered(
      blank, DIGITS, np.random.default_rng(0), canvas_size=100, num_clutter=8, clutter_size=8
  )
  assert out.shape == (100, 100)
  assert 0 < np.count_nonzero(out) <= 8 * 8 * 8
  # The digit is added on top of the clutter: it is all still there.
  out = D.cluttered(
      DIGIT, DIGITS, np.random.default_rng(0), canvas_size=60, num_clutter=20, clutter_size=6
  )
  assert any(np.all(out[y : y + 28, x : x + 28] >= DIGIT) for y in range(33) for x in range(33))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"canvas_size": 27}, "canvas_size"),
        ({"num_clutter": -1}, "num_clutter"),
        ({"clutter_size": 29}, "clutter_size"),
        ({"clutter_size": 0}, "clutter_size"),
    ],
)
def test_cluttered_bad_sizes(kwargs, name):
  with pytest.raises(ValueError, match=name):
    D.cluttered(DIGIT, DIGITS, np.random.default_rng(0), **kwargs)


def test_cluttered_needs_sources():
  with pytest.raises(ValueError, match="clutter_sources"):
    D.cluttered(DIGIT, DIGITS[:0], np.random.default_rng(0))


def test_wrong_digit_shape():
  with pytest.raises(ValueError, match=r"shape \(28, 28\)"):
    D.rotate(np.zeros((8, 8)), np.random.default_rng(0))


def test_to_uint8_rounds_and_clips():
  np.testing.assert_array_equal(
      D.to_uint8(np.array([-3.0, 0.4, 0.6, 254.5, 300.0])), [0, 0, 1, 254, 255]
  )
