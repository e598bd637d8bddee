"""F1 of mentioning novel (held-out) words: DCC's measure of describing unseen objects.

Hendricks et al., "Deep Compositional Captioning: Describing Novel Object Categories without
Paired Training Data", CVPR 2016, Sec. 4 (COCO held-out objects, "F1"): for each held-out
word, over the test images, a generated caption is a positive prediction when it mentions the
word and an image is a positive when it contains the object; precision, recall and F1 of the
first against the second, then the mean F1 over the held-out words (the paper's headline
mean F1 of 39.8 over eight objects).

* A caption "mentions" a word when one of its tokens equals the word or one of the variants
  passed with it (e.g. ``("bus", "buses")``); string captions are lower-cased and split on
  anything that is not a letter or digit, token lists are compared as given (lower-cased).
* What "contains" means is the caller's choice (COCO object labels, or a ground-truth caption
  mentioning the word; the paper's exact labelling, and its handling of plurals and synonyms,
  were not verified here).
* Degenerate counts: precision is 0 when nothing mentions the word, recall is 0 when no image
  contains it, F1 is 0 when precision + recall is 0 (the sklearn ``zero_division=0`` choice).

Pure Python / NumPy; not for jit.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(caption: Any, index: int) -> set[str]:
  if isinstance(caption, str):
    return set(_TOKEN.findall(caption.lower()))
  if isinstance(caption, Sequence) and all(isinstance(t, str) for t in caption):
    return {t.lower() for t in caption}
  raise ValueError(f"captions[{index}] must be a string or a sequence of string tokens, got "
                   f"{caption!r}.")


def _variants(word: Any) -> set[str]:
  words = (word,) if isinstance(word, str) else tuple(word) if isinstance(
      word, Sequence) else None
  if not words or not all(isinstance(w, str) and w.strip() for w in words):
    raise ValueError(f"word must be a non-empty string or a non-empty sequence of them "
                     f"(variants), got {word!r}.")
  return {w.lower().strip() for w in words}


def _contains(name: str, contains: Any, size: int) -> np.ndarray:
  array = np.asarray(contains)
  if array.shape != (size,):
    raise ValueError(f"{name} must have shape [B] = ({size},) (one flag per caption), got "
                     f"{array.shape}.")
  if array.dtype != np.bool_ and not (
      np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all()):
    raise ValueError(f"{name} must hold booleans (or 0/1), got dtype {array.dtype} with "
                     f"values {np.unique(array)[:5].tolist()}.")
  return array.astype(bool)


def mentions(captions: Sequence[Any], word: Any) -> np.ndarray:
  """[B] bool: whether each caption mentions ``word`` (a string or a sequence of variants)."""
  if isinstance(captions, str) or not isinstance(captions, Sequence):
    raise ValueError(f"captions must be a sequence of captions, got {type(captions).__name__}.")
  variants = _variants(word)
  return np.array([bool(_tokens(c, i) & variants) for i, c in enumerate(captions)], bool)


def f1_mentions(captions: Sequence[Any], contains: Any, word: Any) -> dict[str, float]:
  """Precision, recall and F1 of "the caption mentions ``word``" vs "the image contains it".

  Args:
    captions: B generated captions (strings or token lists), one per test image.
    contains: [B] bool, whether each image contains the object.
    word: the word, or a sequence of its accepted variants.

  Returns:
    {"precision", "recall", "f1", "tp", "fp", "fn"} (counts as floats).
  """
  said = mentions(captions, word)
  truth = _contains("contains", contains, len(said))
  tp = float(np.sum(said & truth))
  fp = float(np.sum(said & ~truth))
  fn = float(np.sum(~said & truth))
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def novel_word_f1(captions: Sequence[Any], contains: Mapping[str, Any], *,
                  variants: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
  """Per held-out word F1 (``f1_mentions``) and their mean (DCC's mean F1).

  Args:
    captions: B generated captions.
    contains: {word: [B] bool} for each held-out word.
    variants: optional {word: accepted variants} (the word itself is always accepted).

  Returns:
    {"per_word": {word: f1_mentions(...)}, "mean_f1": float}.
  """
  if not isinstance(contains, Mapping) or not contains:
    raise ValueError(f"contains must be a non-empty mapping word -> [B] bool, got "
                     f"{contains!r}.")
  variants = dict(variants or {})
  unknown = sorted(set(variants) - set(contains))
  if unknown:
    raise ValueError(f"variants must only name words in contains {sorted(contains)}, got "
                     f"{unknown}.")
  per_word = {}
  for word, flags in contains.items():
    forms = (word, *variants.get(word, ()))
    try:
      per_word[word] = f1_mentions(captions, flags, forms)
    except ValueError as error:
      raise ValueError(f"for held-out word {word!r}: {error}") from None
  return {"per_word": per_word,
          "mean_f1": float(np.mean([r["f1"] for r in per_word.values()]))}
