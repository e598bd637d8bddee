"""What a captioned-digits image shows: its scene, the scene's caption, where each digit lies.

`captioned_digits` draws both captions of a two-digit image ("the digit a is on the right of
the digit b" and "the digit b is on the left of the digit a" describe one image), so a judge
of generated images reads scenes, not captions. A scene is one of `SCENE_LAYOUTS` (the four
corners of a single digit, or two digits side by side, "left", or one above the other,
"top") and its digits in reading order: the single digit, or the left / upper one then the
right / lower one. As classes (`scene_classes`): `[layout id, first digit, second digit]`,
the second `NO_DIGIT` for a single digit.

Each digit's 28x28 patch lies, whatever its random offset, inside a `WINDOW` x `WINDOW`
window fixed by the scene's layout and the digit's slot (`WINDOWS`): a digit classifier that
reads windows is blind to the exact position (`metrics.judge.SceneJudge`).
"""

from __future__ import annotations

import numpy as np

from vislang_jax.data.captioned_digits import HELD_OUT, POSITIONS, caption

SCENE_LAYOUTS = POSITIONS + ("left", "top")
NO_DIGIT = 10  # the second-digit class of a one-digit scene (`metrics.judge`'s absent slot)
WINDOW = 32
# Per SCENE_LAYOUTS entry, the (row, column) of each digit's window: patches start at rows
# 0..2 (top) or 30..32 (bottom), columns 0..4 (left) or 28..32 (right), 16..18 in the middle
# of a pair (`captioned_digits`), so a window at 0, 28 or 14 holds the whole patch.
WINDOWS = (((0, 0),), ((0, 28),), ((28, 0),), ((28, 28),),
           ((14, 0), (14, 28)), ((0, 14), (28, 14)))
_HALF = 16  # patch offsets below this are "top" / "left"


def scene_of(layout: str, digits: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
  """The scene a caption describes: "right" / "bottom" captions become "left" / "top".

  `scene_of("right", (3, 5)) == ("left", (5, 3))`; other layouts are unchanged.
  """
  if layout in ("right", "bottom"):
    return {"right": "left", "bottom": "top"}[layout], (digits[1], digits[0])
  return layout, tuple(digits)


def scene_classes(labels: np.ndarray, boxes: np.ndarray, num_digits: np.ndarray) -> np.ndarray:
  """The scenes of records, read from the digits' boxes (not from the captions' words).

  Args:
    labels: [N, 2] int digits (-1 padded); boxes: [N, 2, 4] (y0, x0, y1, x1) of the
      28x28 patches; num_digits: [N] int, 1 or 2 (the record fields of `captioned_digits`).

  Returns:
    [N, 3] int: the SCENE_LAYOUTS id; the single digit, or the left / upper one; the right
    / lower one, or NO_DIGIT.
  """
  out = np.zeros((len(labels), 3), np.int32)
  for n in range(len(labels)):
    (ya, xa), (yb, xb) = boxes[n, 0, :2], boxes[n, 1, :2]
    a, b = int(labels[n, 0]), int(labels[n, 1])
    if num_digits[n] == 1:
      layout = f"{'top' if ya < _HALF else 'bottom'} {'left' if xa < _HALF else 'right'}"
      out[n] = (SCENE_LAYOUTS.index(layout), a, NO_DIGIT)
    elif abs(int(xa) - int(xb)) > abs(int(ya) - int(yb)):  # side by side
      out[n] = (SCENE_LAYOUTS.index("left"),) + ((a, b) if xa < xb else (b, a))
    else:  # one above the other
      out[n] = (SCENE_LAYOUTS.index("top"),) + ((a, b) if ya < yb else (b, a))
  return out


def caption_of(classes: np.ndarray) -> str:
  """[3] classes of one scene (`scene_classes`) -> its caption ("left" / "top" for pairs)."""
  layout = SCENE_LAYOUTS[int(classes[0])]
  digits = (int(classes[1]),) if layout in POSITIONS else (int(classes[1]), int(classes[2]))
  return caption(layout, digits)


def probe_captions(classes: np.ndarray, *, count: int) -> list[str]:
  """Captions to draw from, for a split whose first scenes are `classes` [N, 3].

  A split of held-out scenes (only "novel" holds them): every held-out combination, in
  sorted order. Otherwise the first `count` scenes' captions, then the paper's flips of the
  first (Mansimov et al. 2016, Fig. 3): its first digit changed (d -> d + 1 mod 10), and its
  layout changed (the next corner, or "left" <-> "top").
  """
  base = classes[0]
  if (SCENE_LAYOUTS[int(base[0])], tuple(d for d in base[1:] if d != NO_DIGIT)) in HELD_OUT:
    return [caption(layout, digits) for layout, digits in sorted(HELD_OUT)]
  digit_flip = base.copy()
  digit_flip[1] = (base[1] + 1) % 10
  layout = SCENE_LAYOUTS[int(base[0])]
  group = POSITIONS if layout in POSITIONS else SCENE_LAYOUTS[len(POSITIONS):]
  layout_flip = base.copy()
  layout_flip[0] = SCENE_LAYOUTS.index(group[(group.index(layout) + 1) % len(group)])
  return [caption_of(c) for c in classes[:count]] + [caption_of(digit_flip),
                                                      caption_of(layout_flip)]
