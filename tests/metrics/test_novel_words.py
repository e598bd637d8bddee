"""Tests for vislang_jax.metrics.novel_words against hand counts."""

import numpy as np
import pytest

from vislang_jax.metrics import novel_words

CAPTIONS = [
    "a zebra standing in a field",       # 0 mentions zebra
    "A horse and a Zebra.",              # 1 mentions zebra (case, punctuation)
    "a horse in a field",                # 2 no zebra
    ["two", "zebras", "grazing"],        # 3 "zebras" only (a variant)
    "a zebrafish tank",                  # 4 no zebra (not a whole token)
]
#                     0     1      2     3     4
ZEBRA_IN = np.array([True, False, True, True, False])
HORSE_IN = np.array([False, True, True, False, False])


def test_f1_mentions_hand_counts():
  # "zebra" alone mentions captions 0, 1. In images 0, 2, 3.
  # tp = {0} = 1, fp = {1} = 1, fn = {2, 3} = 2: P = 1/2, R = 1/3, F1 = 2 PR/(P+R) = 0.4.
  got = novel_words.f1_mentions(CAPTIONS, ZEBRA_IN, "zebra")
  assert (got["tp"], got["fp"], got["fn"]) == (1, 1, 2)
  assert got["precision"] == pytest.approx(0.5)
  assert got["recall"] == pytest.approx(1 / 3)
  assert got["f1"] == pytest.approx(0.4)
  # With the plural: mentions 0, 1, 3: tp = {0, 3} = 2, fp = {1} = 1, fn = {2} = 1:
  # P = R = 2/3, F1 = 2/3.
  got = novel_words.f1_mentions(CAPTIONS, ZEBRA_IN, ("zebra", "zebras"))
  assert (got["tp"], got["fp"], got["fn"]) == (2, 1, 1)
  assert got["f1"] == pytest.approx(2 / 3)


def test_novel_word_f1_mean_and_degenerate():
  # horse: mentioned in 1, 2; in images 1, 2: tp = 2, fp = fn = 0, F1 = 1.
  # zebra (with "zebras"): F1 = 2/3 as above. Mean = (1 + 2/3) / 2 = 5/6.
  got = novel_words.novel_word_f1(CAPTIONS, {"zebra": ZEBRA_IN, "horse": HORSE_IN},
                                  variants={"zebra": ["zebras"]})
  assert got["per_word"]["horse"]["f1"] == pytest.approx(1.0)
  assert got["per_word"]["zebra"]["f1"] == pytest.approx(2 / 3)
  assert got["mean_f1"] == pytest.approx(5 / 6)
  # Never mentioned (a paired-only captioner): tp = fp = 0, P = 0, R = 0, F1 = 0.
  got = novel_words.f1_mentions(CAPTIONS, ZEBRA_IN, "otter")
  assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
  assert got["fn"] == 3


def test_errors():
  with pytest.raises(ValueError, match=r"contains must have shape \[B\]"):
    novel_words.f1_mentions(CAPTIONS, ZEBRA_IN[:3], "zebra")
  with pytest.raises(ValueError, match="contains must hold booleans"):
    novel_words.f1_mentions(CAPTIONS, np.array([0.5, 0, 1, 1, 0]), "zebra")
  with pytest.raises(ValueError, match="word must be a non-empty string"):
    novel_words.f1_mentions(CAPTIONS, ZEBRA_IN, "")
  with pytest.raises(ValueError, match=r"captions\[1\] must be a string"):
    novel_words.f1_mentions(["a zebra", 3], np.array([True, False]), "zebra")
  with pytest.raises(ValueError, match="captions must be a sequence"):
    novel_words.f1_mentions("a zebra", np.array([True]), "zebra")
  with pytest.raises(ValueError, match="variants must only name words"):
    novel_words.novel_word_f1(CAPTIONS, {"zebra": ZEBRA_IN}, variants={"cat": ["cats"]})
  with pytest.raises(ValueError, match="held-out word 'horse'"):
    novel_words.novel_word_f1(CAPTIONS, {"zebra": ZEBRA_IN, "horse": HORSE_IN[:2]})
  with pytest.raises(ValueError, match="contains must be a non-empty mapping"):
    novel_words.novel_word_f1(CAPTIONS, {})
