"""Tests for vislang_jax.metrics.grounding against a per-pixel computation and hand-placed maps."""

import numpy as np
import pytest

from vislang_jax.metrics import grounding

SEVEN, THREE, WORD, EOS = 10, 11, 5, 2
DIGIT_OF = {SEVEN: 7, THREE: 3}


def _pixels(alpha_t, image_hw):
  """One step's [L] attention as an [H, W] map: each cell's weight spread evenly over its
  s_y x s_x pixels from the top-left corner (pixels past grid * s are no cell's)."""
  grid = int(np.sqrt(alpha_t.shape[-1]))
  s_y, s_x = image_hw[0] // grid, image_hw[1] // grid
  pixels = np.zeros(image_hw)
  pixels[:grid * s_y, :grid * s_x] = np.kron(
      alpha_t.reshape(grid, grid), np.ones((s_y, s_x))) / (s_y * s_x)
  return pixels


def _per_pixel(alpha, tokens, lengths, labels, boxes, *, image_hw):
  """Each cell's weight spread over its s_y x s_x pixels, summed over the box's pixels."""
  grid = int(np.sqrt(alpha.shape[-1]))
  s_y, s_x = image_hw[0] // grid, image_hw[1] // grid
  covered = np.zeros(image_hw)
  covered[:grid * s_y, :grid * s_x] = 1.0
  mass, share = [], []
  for n in range(len(tokens)):
    for t in range(lengths[n]):
      label = DIGIT_OF.get(int(tokens[n, t]))
      if label is None or label not in labels[n]:
        continue
      y0, x0, y1, x1 = boxes[n, list(labels[n]).index(label)]
      mass.append(_pixels(alpha[n, t], image_hw)[y0:y1, x0:x1].sum())
      share.append(covered[y0:y1, x0:x1].sum() / covered.sum())
  return np.array(mass), np.array(share)


@pytest.mark.parametrize("hw", [(60, 60), (60, 47)])  # strides 8 x 8 and 8 x 6
def test_mass_and_share_match_per_pixel_upsampling_with_unaligned_boxes(hw):
  rng = np.random.default_rng(0)
  n, steps, grid = 3, 6, 7  # the grid covers 56x56 of 60x60, 56x42 of 60x47
  alpha = rng.dirichlet(np.ones(grid * grid), size=(n, steps))
  tokens = rng.choice([SEVEN, THREE, WORD], size=(n, steps))
  tokens[0, :3] = [SEVEN, THREE, SEVEN]  # image 0 holds a 7 and a 3: both scored
  tokens[2, 4] = SEVEN                   # past image 2's length: not scored
  lengths = np.array([6, 5, 3])
  labels = np.array([[7, 3], [3, -1], [7, -1]])
  boxes = np.array([[[3, 5, 31, 33], [29, 17, 57, 45]],   # unaligned; the second overlaps
                    [[30, 19, 58, 47], [-1, -1, -1, -1]],  # the uncovered border
                    [[11, 19, 39, 47], [-1, -1, -1, -1]]])
  mass, share = grounding.attention_in_box(alpha, tokens, lengths, labels, boxes,
                                           digit_of=DIGIT_OF, image_hw=hw)
  expected_mass, expected_share = _per_pixel(alpha, tokens, lengths, labels, boxes, image_hw=hw)
  assert len(mass) == len(expected_mass) >= 4
  np.testing.assert_allclose(mass, expected_mass, rtol=1e-12)
  np.testing.assert_allclose(share, expected_share, rtol=1e-12)
  # A box over the whole image holds all of the attention and all of the covered image.
  whole = np.array([[[0, 0, *hw], [0, 0, *hw]]] * n)
  mass, share = grounding.attention_in_box(alpha, tokens, lengths, labels, whole,
                                           digit_of=DIGIT_OF, image_hw=hw)
  np.testing.assert_allclose(mass, 1.0)
  np.testing.assert_allclose(share, 1.0)


def test_hand_placed_attention():
  tokens = np.array([[SEVEN, EOS]])
  labels = np.array([[7, -1]])
  boxes = np.array([[[0, 0, 28, 28], [-1, -1, -1, -1]]])  # cells 0..2 and 3.5 of 7, stride 8
  alpha = np.zeros((1, 2, 49))
  alpha[0, 0, 0] = 0.5       # cell (0, 0): inside
  alpha[0, 0, 3] = 0.25      # cell (0, 3): half inside (pixels 24..32 vs box ..28)
  alpha[0, 0, 48] = 0.25     # cell (6, 6): outside
  mass, share = grounding.attention_in_box(alpha, tokens, np.array([2]), labels, boxes,
                                           digit_of=DIGIT_OF, image_hw=(60, 60))
  np.testing.assert_allclose(mass, [0.5 + 0.125])
  np.testing.assert_allclose(share, [3.5 * 3.5 / 49])
  # A digit word that names no digit of the image is not scored.
  mass, share = grounding.attention_in_box(alpha, tokens, np.array([2]), np.array([[3, -1]]),
                                           boxes, digit_of=DIGIT_OF, image_hw=(60, 60))
  assert mass.shape == share.shape == (0,)


THE, DIGIT = 6, 7
PHRASE_IDS = (THE, DIGIT)


def _phrase_brute_force(alpha, tokens, lengths, labels, boxes, *, image_hw):
  """Every phrase found by scanning back from each scored word; pixels as _per_pixel."""
  mass = []
  for n in range(len(tokens)):
    for t in range(lengths[n]):
      label = DIGIT_OF.get(int(tokens[n, t]))
      if label is None or label not in labels[n]:
        continue
      y0, x0, y1, x1 = boxes[n, list(labels[n]).index(label)]
      steps = [t]
      while steps[0] > 0 and tokens[n, steps[0] - 1] in PHRASE_IDS:
        steps.insert(0, steps[0] - 1)
      in_box = sum(_pixels(alpha[n, s], image_hw)[y0:y1, x0:x1].sum() for s in steps)
      mass.append(in_box / len(steps))
  return np.array(mass)


def test_phrase_mass_matches_brute_force_and_word_share():
  rng = np.random.default_rng(1)
  n, steps, grid, hw = 4, 9, 7, (60, 60)
  alpha = rng.dirichlet(np.ones(grid * grid), size=(n, steps))
  tokens = rng.choice([SEVEN, THREE, WORD, THE, DIGIT], size=(n, steps))
  tokens[0] = [THE, DIGIT, SEVEN, WORD, WORD, THE, DIGIT, THREE, EOS]  # two 3-word phrases
  tokens[1, :3] = [SEVEN, DIGIT, THREE]  # a phrase starting at step 0, one just after a word
  lengths = np.array([9, 8, 9, 5])
  labels = np.array([[7, 3], [3, 7], [7, 3], [3, -1]])
  boxes = np.array([[[3, 5, 31, 33], [29, 17, 57, 45]]] * 3
                   + [[[30, 19, 58, 47], [-1, -1, -1, -1]]])
  args = (alpha, tokens, lengths, labels, boxes)
  mass, share = grounding.phrase_attention_in_box(*args, digit_of=DIGIT_OF,
                                                  phrase_ids=PHRASE_IDS, image_hw=hw)
  expected = _phrase_brute_force(*args, image_hw=hw)
  word_mass, word_share = grounding.attention_in_box(*args, digit_of=DIGIT_OF, image_hw=hw)
  assert len(mass) == len(expected) == len(word_mass) >= 6
  np.testing.assert_allclose(mass, expected, rtol=1e-12)
  np.testing.assert_array_equal(share, word_share)
  # Without phrase words the phrase is the word alone.
  mass, _ = grounding.phrase_attention_in_box(*args, digit_of=DIGIT_OF, phrase_ids=(),
                                              image_hw=hw)
  np.testing.assert_allclose(mass, word_mass, rtol=1e-12)


def test_hand_placed_phrase():
  tokens = np.array([[WORD, THE, DIGIT, SEVEN, EOS]])  # the phrase is steps 1..3
  boxes = np.array([[[0, 0, 16, 16], [-1, -1, -1, -1]]])  # cells (0..1, 0..1) of 7, stride 8
  alpha = np.zeros((1, 5, 49))
  alpha[0, :, 48] = 1.0     # cell (6, 6): outside
  alpha[0, 1] = 0.0
  alpha[0, 1, 8] = 1.0      # "the": all on cell (1, 1), inside
  alpha[0, 3, [0, 48]] = 0.5  # "seven": half inside
  mass, share = grounding.phrase_attention_in_box(
      alpha, tokens, np.array([5]), np.array([[7, -1]]), boxes, digit_of=DIGIT_OF,
      phrase_ids=PHRASE_IDS, image_hw=(60, 60))
  np.testing.assert_allclose(mass, [(1.0 + 0.0 + 0.5) / 3])
  np.testing.assert_allclose(share, [4 / 49])


def test_cell_edges():
  np.testing.assert_array_equal(grounding.cell_edges(60, 7), [0, 8, 16, 24, 32, 40, 48, 56])
  np.testing.assert_array_equal(grounding.cell_edges(224, 14), np.arange(15) * 16)
  with pytest.raises(ValueError, match="grid must be at most size = 5 cells, got 6"):
    grounding.cell_edges(5, 6)
  with pytest.raises(ValueError, match="grid must be a positive int"):
    grounding.cell_edges(5, 0)


def test_bad_arguments_are_named():
  alpha, tokens = np.zeros((1, 2, 49)), np.array([[SEVEN, EOS]])
  lengths, labels, boxes = np.array([2]), np.array([[7, -1]]), np.zeros((1, 2, 4), int)
  kwargs = dict(digit_of=DIGIT_OF, image_hw=(60, 60))
  with pytest.raises(ValueError, match=r"alpha must have shape \[N, T, L\]"):
    grounding.attention_in_box(alpha[0], tokens, lengths, labels, boxes, **kwargs)
  with pytest.raises(ValueError, match="must agree on N and T"):
    grounding.attention_in_box(alpha, tokens[:, :1], lengths, labels, boxes, **kwargs)
  with pytest.raises(ValueError, match=r"boxes must have shape \[N, K, 4\] with K = 2"):
    grounding.attention_in_box(alpha, tokens, lengths, labels, boxes[:, :1], **kwargs)
  with pytest.raises(ValueError, match="L = g\\^2 cells .* got L = 48"):
    grounding.attention_in_box(alpha[..., :48], tokens, lengths, labels, boxes, **kwargs)
  with pytest.raises(ValueError, match="image_hw must be a pair"):
    grounding.attention_in_box(alpha, tokens, lengths, labels, boxes, digit_of=DIGIT_OF,
                               image_hw=60)
  with pytest.raises(ValueError, match=r"alpha must have shape \[N, T, L\]"):
    grounding.phrase_attention_in_box(alpha[0], tokens, lengths, labels, boxes,
                                      phrase_ids=PHRASE_IDS, **kwargs)
