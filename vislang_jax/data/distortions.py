"""Random distortions of single MNIST digits, as in the Spatial Transformer paper.

Jaderberg et al., "Spatial Transformer Networks", NIPS 2015, Sec. 4.1 and Appendix A:
rotated (R), rotated-translated-scaled (RTS), projective (P) and elastic (E) MNIST; and the
cluttered, translated MNIST of Mnih et al., "Recurrent Models of Visual Attention" (RAM),
NIPS 2014, Sec. 4.1, which DRAW (Gregor et al., ICML 2015, Sec. 4.1) also uses.

Conventions shared by every function here:
  * `digit` is one image `[28, 28]` (uint8 or float) with intensities in [0, 255], ink
    bright on a black background, as `vislang_jax.data.sources.load_digits` returns.
  * The result is a new float32 image `[S, S]` in [0, 255]; callers quantise (see
    `to_uint8`). Outside the source image is black.
  * Randomness comes only from the explicit `rng: np.random.Generator`, so the output is a
    pure function of `(digit, rng state, options)`.
  * Coordinates are (row, column) of pixel centres; warps sample bilinearly
    (`scipy.ndimage`, order 1), which never leaves the input's value range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage

from vislang_jax.checks import check_int

_DIGIT_SIZE = 28


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Rounds an image with intensities in [0, 255] to uint8 (clipping just in case)."""
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def rotate(digit: np.ndarray, rng: np.random.Generator, *, max_angle: float = 90.0) -> np.ndarray:
  """R: rotation by an angle uniform in [-max_angle, max_angle] degrees about the centre.

  STN Appendix A: "rotated (R): ... randomly rotated between -90 and +90 degrees".

  Args:
    digit: `[28, 28]` in [0, 255].
    rng: the generator; one draw.
    max_angle: half-width of the angle range, degrees (paper: 90).

  Returns:
    float32 `[28, 28]`.
  """
  digit = _check_digit(digit)
  angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
  centre = (np.asarray(digit.shape) - 1) / 2
  return _warp_similarity(digit, angle=angle, scale=1.0, out_size=_DIGIT_SIZE, out_centre=centre)


def rotate_translate_scale(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    max_angle: float = 45.0,
    scale_range: tuple[float, float] = (0.7, 1.2),
    canvas_size: int = 42,
) -> np.ndarray:
  """RTS: rotation, scaling, then placement at a random location of a larger canvas.

  STN Appendix A: "rotated, translated and scaled (RTS): ... randomly rotated between -45
  and +45 degrees, randomly scaled by a factor between 0.7 and 1.2, and placed at a random
  location in a 42x42 image".

  The location is uniform over the positions that keep the transformed bounding box of the
  digit's ink (its non-zero pixels) at least half a pixel inside the canvas; where the ink
  cannot fit (not the case for MNIST at the paper's settings) the digit is centred.

  Args:
    digit: `[28, 28]` in [0, 255].
    rng: the generator; draws angle, scale, then row and column offsets.
    max_angle: degrees (paper: 45).
    scale_range: `(low, high)` of the uniform scale factor (paper: 0.7, 1.2).
    canvas_size: side of the output (paper: 42).

  Returns:
    float32 `[canvas_size, canvas_size]`.
  """
  digit = _check_digit(digit)
  angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
  scale = rng.uniform(*scale_range)
  in_centre = (np.asarray(digit.shape) - 1) / 2
  ink = np.argwhere(digit > 0)
  if len(ink) == 0:  # Blank digit: only its box matters.
    ink = np.array([[0, 0], [digit.shape[0] - 1, digit.shape[1] - 1]])
  # Bounding box of the ink, relative to where the input centre lands.
  corners = np.array(
      [
          [r, c]
          for r in (ink[:, 0].min(), ink[:, 0].max())
          for c in (ink[:, 1].min(), ink[:, 1].max())
      ]
  )
  moved = (corners - in_centre) @ (scale * _rotation(angle)).T
  low = -moved.min(axis=0) + 0.5  # out_centre >= low keeps the ink inside
  high = (canvas_size - 1) - moved.max(axis=0) - 0.5
  offsets = rng.uniform(size=2)
  out_centre = np.where(high >= low, low + offsets * (high - low), (canvas_size - 1) / 2)
  return _warp_similarity(
      digit, angle=angle, scale=scale, out_size=canvas_size, out_centre=out_centre
  )


def projective(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (0.75, 1.0),
    corner_std: float = 0.1,
) -> np.ndarray:
  """P: a random projective (homography) warp.

  STN Appendix A describes P as a random scaling followed by perturbing the four corners
  of the image with Gaussian noise. Here: scale uniform in `scale_range` about the centre
  (paper: 0.75 to 1.0), then each of the four corners moves by independent
  N(0, (corner_std * 28)^2) pixels in rows and columns (default 0.1, i.e. 2.8 pixels),
  and the image is warped by the homography taking the original corners to the moved ones.

  Args:
    digit: `[28, 28]` in [0, 255].
    rng: the generator; draws the scale, then the 4x2 corner offsets.
    scale_range: `(low, high)` of the uniform scale.
    corner_std: standard deviation of each corner coordinate's offset, as a fraction of
      the image side.

  Returns:
    float32 `[28, 28]`.
  """
  digit = _check_digit(digit)
  size = digit.shape[0]
  scale = rng.uniform(*scale_range)
  centre = (size - 1) / 2
  src = np.array([[0, 0], [0, size - 1], [size - 1, 0], [size - 1, size - 1]], np.float64)
  dst = centre + scale * (src - centre) + rng.normal(0.0, corner_std * size, size=(4, 2))
  # The output at p samples the input at H^-1 p: fit the homography dst -> src directly.
  inverse = _homography(dst, src)
  rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
  points = np.stack([rows.ravel(), cols.ravel(), np.ones(rows.size)])
  mapped = inverse @ points
  coords = mapped[:2] / mapped[2]
  out = scipy.ndimage.map_coordinates(digit, coords, order=1, mode="constant", cval=0.0)
  return out.reshape(size, size).astype(np.float32)


def elastic(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    alpha: float = 34.0,
    sigma: float = 4.0,
) -> np.ndarray:
  """E: elastic distortion of Simard, Steinkraus and Platt (ICDAR 2003, Sec. 2).

  Two displacement fields (rows, columns) of i.i.d. uniform(-1, 1) values are smoothed by
  a Gaussian of standard deviation `sigma` pixels (`scipy.ndimage.gaussian_filter`, zero
  outside the image) and multiplied by `alpha`; each output pixel samples the input at its
  own position plus the displacement. sigma=4, alpha=34 are the values Simard et al.
  report for 28x28 MNIST; STN Appendix A uses "random elastic distortion" in this style.

  Args:
    digit: `[28, 28]` in [0, 255].
    rng: the generator; draws the row field, then the column field.
    alpha: scale of the displacement, pixels.
    sigma: smoothing of the displacement, pixels.

  Returns:
    float32 `[28, 28]`.
  """
  digit = _check_digit(digit)
  shape = digit.shape
  fields = [
      alpha
      * scipy.ndimage.gaussian_filter(
          rng.uniform(-1.0, 1.0, size=shape), sigma, mode="constant", cval=0.0
      )
      for _ in range(2)
  ]
  rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
  coords = np.stack([rows + fields[0], cols + fields[1]])
  return scipy.ndimage.map_coordinates(digit, coords, order=1, mode="constant", cval=0.0).astype(
      np.float32
  )


def cluttered(
    digit: np.ndarray,
    clutter_sources: np.ndarray | Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    canvas_size: int = 60,
    num_clutter: int = 4,
    clutter_size: int = 8,
) -> np.ndarray:
  """Translated, cluttered MNIST: the digit at a random place among crops of other digits.

  Follows DeepMind's generator (github.com/deepmind/mnist-cluttered): on a black canvas,
  `num_clutter` times, a `clutter_size` square crop at a uniformly random place of a
  uniformly chosen clutter source is added at a uniformly random place of the canvas;
  then the (untransformed) digit is added at a uniformly random place; the sum is clipped
  to [0, 255]. Paper settings:
    * RAM (Mnih et al., 2014, Sec. 4.1) 60x60 with 4 pieces of 8x8 clutter: the defaults;
    * RAM 100x100 with 8 pieces of 8x8, the setting DRAW (Gregor et al., 2015, Sec. 4.1)
      classifies: `canvas_size=100, num_clutter=8`.
    * The STN paper's translated-cluttered (TC) MNIST is also 60x60 with crops of other
      digits; its piece count and size could not be checked here (6x6 pieces is our
      reading), so experiments set `num_clutter` and `clutter_size` explicitly.

  Args:
    digit: `[28, 28]` in [0, 255].
    clutter_sources: `[M, 28, 28]` digits (M >= 1 when num_clutter > 0) to crop clutter
      from; the caller picks them (e.g. the same split, so test clutter stays in test).
    rng: the generator; per piece, draws source index, crop row, crop column, canvas row,
      canvas column; then the digit's row and column.
    canvas_size: side of the output, >= 28.
    num_clutter: pieces of clutter, >= 0.
    clutter_size: side of each piece, 1..28.

  Returns:
    float32 `[canvas_size, canvas_size]`.

  Raises:
    ValueError: for sizes out of range or no clutter sources when clutter is asked for.
  """
  digit = _check_digit(digit)
  validate_clutter(canvas_size=canvas_size, num_clutter=num_clutter, clutter_size=clutter_size)
  if num_clutter > 0 and len(clutter_sources) == 0:
    raise ValueError(
        "cluttered: clutter_sources is empty; expected at least one digit to crop clutter from."
    )
  canvas = np.zeros((canvas_size, canvas_size), np.float32)
  for _ in range(num_clutter):
    source = np.asarray(clutter_sources[rng.integers(len(clutter_sources))], np.float32)
    r, c = rng.integers(0, source.shape[0] - clutter_size + 1), rng.integers(
        0, source.shape[1] - clutter_size + 1
    )
    y, x = rng.integers(0, canvas_size - clutter_size + 1, size=2)
    canvas[y : y + clutter_size, x : x + clutter_size] += source[
        r : r + clutter_size, c : c + clutter_size
    ]
  y, x = rng.integers(0, canvas_size - _DIGIT_SIZE + 1, size=2)
  canvas[y : y + _DIGIT_SIZE, x : x + _DIGIT_SIZE] += digit
  return np.clip(canvas, 0.0, 255.0)


def validate_clutter(*, canvas_size: int, num_clutter: int, clutter_size: int) -> None:
  """Raises ValueError, naming the argument, for cluttered-canvas sizes out of range."""
  check_int("cluttered: canvas_size", canvas_size, low=_DIGIT_SIZE)
  check_int("cluttered: num_clutter", num_clutter, low=0)
  check_int("cluttered: clutter_size", clutter_size, low=1, high=_DIGIT_SIZE)


def _check_digit(digit: np.ndarray) -> np.ndarray:
  digit = np.asarray(digit)
  if digit.shape != (_DIGIT_SIZE, _DIGIT_SIZE):
    raise ValueError(f"digit must have shape (28, 28), got {digit.shape}.")
  return digit.astype(np.float32)


def _rotation(angle: float) -> np.ndarray:
  """2x2 rotation of (row, col) vectors by `angle` radians, counter-clockwise on screen."""
  cos, sin = np.cos(angle), np.sin(angle)
  return np.array([[cos, -sin], [sin, cos]])


def _warp_similarity(
    image: np.ndarray, *, angle: float, scale: float, out_size: int, out_centre: np.ndarray
) -> np.ndarray:
  """Rotates by `angle`, scales by `scale` about the input centre, which lands at `out_centre`.

  Forward map p_out = scale * R p_in' + out_centre (p_in' relative to the input centre);
  `affine_transform` wants the inverse, p_in = R^T (p_out - out_centre) / scale + centre.
  """
  in_centre = (np.asarray(image.shape) - 1) / 2
  matrix = _rotation(angle).T / scale
  offset = in_centre - matrix @ np.asarray(out_centre, np.float64)
  out = scipy.ndimage.affine_transform(
      image,
      matrix,
      offset=offset,
      output_shape=(out_size, out_size),
      order=1,
      mode="constant",
      cval=0.0,
  )
  return out.astype(np.float32)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """The 3x3 homography H (H[2, 2] = 1) with H [src_i, 1] ~ [dst_i, 1] for 4 point pairs."""
  rows = []
  rhs = []
  for (x, y), (u, v) in zip(src, dst):
    rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    rhs.extend([u, v])
  h = np.linalg.solve(np.asarray(rows, np.float64), np.asarray(rhs, np.float64))
  return np.append(h, 1.0).reshape(3, 3)
