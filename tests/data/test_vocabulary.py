"""Vocabulary: tokenization, ordering, specials, encode/decode, max_len, save/load."""

import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.data.vocabulary import Vocabulary, tokenize

CAPTIONS = ["A dog runs.", "the dog, the cat!", "The CAT sleeps", "a bird"]
# Counts: the 3, a 2, cat 2, dog 2, bird 1, runs 1, sleeps 1.
WORDS = ("the", "a", "cat", "dog", "bird", "runs", "sleeps")


def test_tokenize():
  assert tokenize("A man, riding a HORSE.") == ["a", "man", "riding", "a", "horse"]
  assert tokenize("don't  stop_now\tcafé 42") == ["don", "t", "stop", "now", "café", "42"]
  assert tokenize(" ,. ") == []


def test_build_orders_by_count_then_alphabet():
  vocab = Vocabulary.build(CAPTIONS)
  assert vocab.words == WORDS and vocab.counts == (3, 2, 2, 2, 1, 1, 1)
  assert vocab.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
  assert len(vocab) == 4 + 7
  assert [vocab.token_id(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>", "the", "sleeps")] == [
      0,
      1,
      2,
      3,
      4,
      10,
  ]
  # Caption order does not matter.
  assert Vocabulary.build(CAPTIONS[::-1]) == vocab


def test_min_count_maps_rare_words_to_unk():
  vocab = Vocabulary.build(CAPTIONS, min_count=2)
  assert vocab.words == ("the", "a", "cat", "dog")
  ids, lengths = vocab.encode(["the bird sleeps"], max_len=5)
  np.testing.assert_array_equal(ids, [[4, 3, 3, 2, 0]])
  assert vocab.decode(ids, lengths) == ["the <unk> <unk>"]


def test_encode_by_hand():
  vocab = Vocabulary.build(CAPTIONS)
  ids, lengths = vocab.encode(["The dog sleeps.", "", "zebra cat"], max_len=5)
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  np.testing.assert_array_equal(ids, [[4, 7, 10, 2, 0], [2, 0, 0, 0, 0], [3, 6, 2, 0, 0]])
  np.testing.assert_array_equal(lengths, [4, 1, 3])
  empty_ids, empty_lengths = vocab.encode([], max_len=3)
  assert empty_ids.shape == (0, 3) and empty_lengths.shape == (0,)


def test_strict_encode_names_every_unknown_word_and_its_captions():
  vocab = Vocabulary.build(CAPTIONS)
  captions = ["the dog sleeps", "a zebra cat"]
  # Known words only: the same arrays as the lenient encode.
  for lenient, strict in zip(vocab.encode(captions[:1], max_len=5),
                             vocab.encode(captions[:1], max_len=5, strict=True)):
    np.testing.assert_array_equal(strict, lenient)
  with pytest.raises(ValueError, match=r"unknown words: 'purple' \(captions \[0, 2\]\), "
                                       r"'zebra' \(captions \[1, 2\]\)\.$"):
    vocab.encode(["the purple cat", "a zebra", "zebra purple purple"], max_len=5, strict=True)
  # The words of a vocabulary built with min_count are unknown to it even if seen once.
  with pytest.raises(ValueError, match=r"unknown words: 'bird' \(captions \[0\]\)"):
    Vocabulary.build(CAPTIONS, min_count=2).encode(["a bird"], max_len=4, strict=True)


def test_decode_round_trip():
  vocab = Vocabulary.build(CAPTIONS)
  ids, lengths = vocab.encode(CAPTIONS, max_len=6)
  expected = [" ".join(tokenize(c)) for c in CAPTIONS]
  assert vocab.decode(ids, lengths) == expected
  assert vocab.decode(ids) == expected  # Stops at <eos> without lengths.
  assert vocab.decode(jnp.asarray(ids), jnp.asarray(lengths)) == expected
  # Decoder outputs: <bos> and <pad> skipped, nothing read after <eos> or past lengths.
  assert vocab.decode(np.array([[1, 4, 0, 7, 2, 5], [4, 7, 10, 5, 5, 5]]), [6, 2]) == [
      "the dog",
      "the dog",
  ]


def test_max_len():
  vocab = Vocabulary.build(CAPTIONS)
  with pytest.raises(ValueError, match=r"max_len=3 .*caption 1, which has 4 tokens \+ <eos> = 5"):
    vocab.encode(["a dog", "the dog the cat"], max_len=3)
  ids, lengths = vocab.encode(["a dog", "the dog the cat"], max_len=3, truncate=True)
  np.testing.assert_array_equal(ids, [[5, 7, 2], [4, 7, 2]])
  np.testing.assert_array_equal(lengths, [3, 3])
  with pytest.raises(ValueError, match="max_len"):
    vocab.encode(["a"], max_len=0)


def test_save_load(tmp_path):
  vocab = Vocabulary.build(CAPTIONS, min_count=1)
  path = tmp_path / "new" / "workdir" / "vocab.json"  # save makes the folders
  vocab.save(path)
  loaded = Vocabulary.load(path)
  assert loaded == vocab and loaded.tokens == vocab.tokens
  assert Vocabulary.from_json_dict(vocab.to_json_dict()) == vocab
  np.testing.assert_array_equal(
      loaded.encode(CAPTIONS, max_len=6)[0], vocab.encode(CAPTIONS, max_len=6)[0]
  )


def test_max_size_keeps_the_most_frequent_words_against_brute_force():
  rng = np.random.default_rng(0)
  letters = list("abcdef")
  # Words of 1-2 letters from a skewed distribution: many ties in count.
  words = ["".join(rng.choice(letters, size=rng.integers(1, 3))) for _ in range(40)]
  captions = [" ".join(rng.choice(words, size=rng.integers(0, 8))) for _ in range(60)]
  tokens = [w for c in captions for w in c.split()]
  distinct = sorted(set(tokens))
  counts = {w: sum(t == w for t in tokens) for w in distinct}
  for min_count in (1, 3):
    for max_size in (1, 5, 12, len(distinct), len(distinct) + 10):
      vocab = Vocabulary.build(captions, min_count=min_count, max_size=max_size)
      eligible = [w for w in distinct if counts[w] >= min_count]
      # A word is kept when fewer than max_size eligible words rank ahead of it.
      ahead = {
          w: sum(counts[v] > counts[w] or (counts[v] == counts[w] and v < w) for v in eligible)
          for w in eligible
      }
      assert set(vocab.words) == {w for w in eligible if ahead[w] < max_size}
      assert len(vocab.words) == min(max_size, len(eligible))
      assert vocab.counts == tuple(counts[w] for w in vocab.words)
      # The order of the capped vocabulary is the uncapped one's, cut.
      uncapped = Vocabulary.build(captions, min_count=min_count)
      assert vocab.words == uncapped.words[:max_size]
  capped = Vocabulary.build(CAPTIONS, max_size=3)
  assert capped.words == ("the", "a", "cat") and len(capped) == 4 + 3
  ids, _ = capped.encode(["the dog"], max_len=3)
  np.testing.assert_array_equal(ids, [[4, 3, 2]])  # dog was cut: <unk>.


@pytest.mark.parametrize(
    "captions, kwargs, match",
    [
        ([], {}, "empty vocabulary"),
        (["", " ?!"], {}, "empty vocabulary"),
        (["a b", "b c"], {"min_count": 3}, "min_count=3"),
        (["a b"], {"min_count": 0}, "min_count"),
        (["a b"], {"max_size": 0}, "max_size must be a positive int, got 0"),
        (["a b"], {"max_size": 2.0}, "max_size"),
        (["a b"], {"max_size": True}, "max_size"),
        ("a dog", {}, "captions"),
        ([b"a dog"], {}, "caption must be a str"),
    ],
)
def test_build_errors(captions, kwargs, match):
  with pytest.raises(ValueError, match=match):
    Vocabulary.build(captions, **kwargs)


def test_other_errors(tmp_path):
  vocab = Vocabulary.build(CAPTIONS)
  with pytest.raises(ValueError, match="captions"):
    vocab.encode("a dog", max_len=4)
  with pytest.raises(ValueError, match="ids"):
    vocab.decode(np.array([[4, 99]]))
  with pytest.raises(ValueError, match="ids"):
    vocab.decode(np.array([4, 5]))
  with pytest.raises(ValueError, match="lengths"):
    vocab.decode(np.array([[4, 5]]), [1, 2])
  with pytest.raises(ValueError, match="format"):
    Vocabulary.from_json_dict({"words": ["a"], "counts": [1]})
  with pytest.raises(ValueError, match="distinct"):
    Vocabulary(words=("a", "a"), counts=(1, 1))
  with pytest.raises(ValueError, match="words"):
    Vocabulary(words=("Big",), counts=(1,))
  (tmp_path / "bad.json").write_text("not json")
  with pytest.raises(ValueError, match="not JSON"):
    Vocabulary.load(tmp_path / "bad.json")
