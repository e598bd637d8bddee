"""Attribute words and attribute targets from captions, worked by hand on a real Vocabulary."""

import jax
import numpy as np
import pytest

from vislang_jax.data import attributes
from vislang_jax.data import captioned_digits
from vislang_jax.data.vocabulary import Vocabulary

CAPTIONS = [
    "the digit three is on the left of the digit five",
    "the digit seven is at the top left of the image",
    "the digit one is at the bottom of the digit three",
]
# Counts: the 9, digit 5, is 3, of 3, at 2, left 2, three 2, then once each (alphabetical):
# bottom, five, image, on, one, seven, top. Ids start at 4 after the four specials.
WORDS = ("the", "digit", "is", "of", "at", "left", "three", "bottom", "five", "image", "on",
         "one", "seven", "top")


def _vocab():
  vocab = Vocabulary.build(CAPTIONS)
  assert vocab.words == WORDS
  return vocab


def test_content_words_drop_specials_and_stopwords_in_id_order():
  vocab = _vocab()
  assert attributes.content_words(vocab) == (
      "digit", "left", "three", "bottom", "five", "image", "one", "seven", "top")
  assert attributes.content_words(vocab, stopwords={"digit", "the"}) == tuple(
      w for w in WORDS if w not in ("digit", "the"))
  assert {"a", "an", "the", "is", "are", "of", "on", "at", "in", "with", "and", "to"} <= (
      attributes.STOPWORDS)


def test_content_words_of_every_captioned_digit_caption():
  captions = [captioned_digits.caption(layout, (d,) if layout in captioned_digits.POSITIONS
                                       else (d, (d + 1) % 10))
              for layout in captioned_digits.LAYOUTS for d in range(10)]
  words = attributes.content_words(Vocabulary.build(captions))
  assert sorted(words) == sorted(
      ("digit", "top", "bottom", "left", "right", "image") + captioned_digits.DIGIT_NAMES)


def test_attribute_ids_and_errors():
  vocab = _vocab()
  ids = attributes.attribute_ids(vocab, ["three", "left", "top"])
  assert ids.dtype == np.int32 and ids.tolist() == [10, 9, 17]
  with pytest.raises(ValueError, match=r"not in it: \['foo', 'dog'\]"):
    attributes.attribute_ids(vocab, ["three", "foo", "dog"])
  with pytest.raises(ValueError, match="at least one attribute"):
    attributes.attribute_ids(vocab, [])
  with pytest.raises(ValueError, match=r"repeated: \['left'\]"):
    attributes.attribute_ids(vocab, ["left", "top", "left"])
  with pytest.raises(ValueError, match="special tokens"):
    attributes.attribute_ids(vocab, ["<eos>", "top"])
  with pytest.raises(ValueError, match="one string"):
    attributes.attribute_ids(vocab, "top")
  with pytest.raises(ValueError, match="one string"):
    attributes.content_words(vocab, stopwords="the")
  with pytest.raises(ValueError, match="at least one content word"):
    attributes.content_words(vocab, stopwords=WORDS)


def test_attribute_targets_by_hand():
  vocab = _vocab()
  tokens, lengths = vocab.encode(CAPTIONS, max_len=13)
  ids = attributes.attribute_ids(vocab, ["three", "left", "top", "five", "image"])
  # Caption 0 cut before its last word "five" (token 10); a "top" written into caption 2's
  # padding lies past its length: neither counts.
  lengths = lengths.copy()
  lengths[0] = 10
  tokens = tokens.copy()
  tokens[2, -1] = vocab.token_id("top")
  want = np.asarray([[1, 1, 0, 0, 0],
                     [0, 1, 1, 0, 1],
                     [1, 0, 0, 0, 0]], np.float32)
  got = attributes.attribute_targets(tokens, lengths, ids)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(got), want)
  np.testing.assert_array_equal(np.asarray(jax.jit(attributes.attribute_targets)(
      tokens, lengths, ids)), want)
  per_caption = jax.vmap(lambda t, n: attributes.attribute_targets(t[None], n[None], ids)[0])
  np.testing.assert_array_equal(np.asarray(per_caption(tokens, lengths)), want)


def test_attribute_targets_errors():
  tokens = np.zeros((2, 3), np.int32)
  with pytest.raises(ValueError, match="lengths must have shape"):
    attributes.attribute_targets(tokens, np.zeros((3,), np.int32), np.asarray([4]))
  with pytest.raises(ValueError, match="attribute_ids must have shape"):
    attributes.attribute_targets(tokens, np.zeros((2,), np.int32), np.asarray([[4]]))
  with pytest.raises(ValueError, match="tokens must hold integers"):
    attributes.attribute_targets(tokens.astype(np.float32), np.zeros((2,), np.int32),
                                 np.asarray([4]))
