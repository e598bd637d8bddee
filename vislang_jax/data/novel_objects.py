"""Held-out (novel object) splits: paired data without some words, evaluation data with them.

Hendricks et al., "Deep Compositional Captioning: Describing Novel Object Categories without
Paired Training Data", CVPR 2016, Sec. 4 (MSCOCO held-out objects): eight COCO objects are
held out of the paired image-sentence training data; the model learns them from unpaired
data only (their images with labels, and text), and is scored (``metrics.novel_words``) on
test images that show them.

Held-out words (``words`` below) are given as a mapping ``{word: variants}`` (e.g.
``DCC_COCO_HELD_OUT``) or a sequence whose entries are a word or a sequence of its variants
(``("zebra", ("bus", "buses"))``, the first variant naming the entry). A text "mentions" an
entry when one of its tokens equals the word or a variant (``metrics.novel_words.mentions``:
lower-cased, split on anything that is not a letter or digit). A record mentions it when its
"references" (COCO: all the image's captions) do, or, without "references", its "caption".

Whole records are removed: a COCO image leaves the paired data when any of its captions
mentions a held-out word, so none of its sentences stays paired with its picture. (That is
how DCC's split is usually described; the split files themselves ship in the released code's
data archive, ``annotations_DCC/``, which was not read here.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vislang_jax.checks import check_int
from vislang_jax.data.captions import (CocoCaptions, as_text, check_source, load_coco_captions,
                                       source_repr)
from vislang_jax.metrics.novel_words import mentions

# DCC's eight held-out COCO objects and the words that count as mentioning them: the
# ``rm_word_dict`` of the released code (LisaAnne/DCC, ``eval/eval_sentences.py``; the same
# words are transferred in ``utils/transfer_experiments/transfer_words_coco1.txt``), plus
# "buses", the usual plural, which that list lacks (it has "busses" only).
DCC_COCO_HELD_OUT: dict[str, tuple[str, ...]] = {
    "bottle": ("bottle", "bottles"),
    "bus": ("bus", "busses", "buses"),
    "couch": ("couch", "couches", "sofa", "sofas"),
    "microwave": ("microwave", "microwaves"),
    "pizza": ("pizza", "pizzas"),
    "racket": ("racket", "rackets", "racquet", "racquets"),
    "suitcase": ("suitcase", "suitcases", "luggage", "luggages"),
    "zebra": ("zebra", "zebras"),
}


def held_out_variants(words: Any, *, name: str = "words") -> dict[str, tuple[str, ...]]:
  """``words`` (module doc) as ``{word: (word, *variants)}``, lower-cased.

  The result is a valid ``words`` again, and its values fit ``metrics.novel_words.
  novel_word_f1``'s ``variants``. ``name`` is the argument's name in error messages.

  Raises:
    ValueError: for no words, or an entry that is not a non-empty string or a non-empty
      sequence of them.
  """
  if isinstance(words, Mapping):
    entries = [(word, *variants) if isinstance(variants, Sequence) and not isinstance(
        variants, (str, bytes)) else (word, variants) for word, variants in words.items()]
  elif isinstance(words, Sequence) and not isinstance(words, (str, bytes)):
    entries = [(entry,) if isinstance(entry, (str, bytes)) or not isinstance(
        entry, Sequence) else tuple(entry) for entry in words]
  else:
    entries = []
  if not entries:
    raise ValueError(f"{name} must be a non-empty mapping word -> variants or a non-empty "
                     f"sequence of words (or of variant sequences), got {words!r}.")
  result = {}
  for forms in entries:
    if not forms or not all(isinstance(f, str) and f.strip() for f in forms):
      raise ValueError(f"{name} must hold non-empty strings (a word, or a word and its "
                       f"variants), got the entry {forms!r}.")
    forms = tuple(dict.fromkeys(f.strip().lower() for f in forms))
    result[forms[0]] = forms
  return result


def _texts(record: Any) -> list[str]:
  """A record's captions as text: its "references" when it has them, else its "caption"."""
  if not isinstance(record, Mapping) or not ("references" in record or "caption" in record):
    raise ValueError(f"record must be a mapping with 'references' or 'caption', got "
                     f"{type(record).__name__}"
                     f"{f' with keys {sorted(record)}' if isinstance(record, Mapping) else ''}.")
  texts = record["references"] if "references" in record else [record["caption"]]
  return [as_text(t) for t in texts]


def _first_mention(record: Any, held: dict[str, tuple[str, ...]]
                   ) -> tuple[str, str, str] | None:
  """(held-out word, the variant found, the caption) of the record's first mention, or None."""
  texts = _texts(record)
  for word, forms in held.items():
    said = mentions(texts, forms)
    if said.any():
      caption = texts[int(np.argmax(said))]
      found = next(f for f in forms if mentions([caption], f)[0])
      return word, found, caption
  return None


def mentions_any(record: Any, words: Any) -> bool:
  """Whether the record's references (or caption) mention any of ``words`` (variants too)."""
  return _first_mention(record, held_out_variants(words)) is not None


class Subset:
  """The records of a random-access ``source`` at ``indices``, in that order.

  Args:
    source: random-access records.
    indices: [N] ints in ``[0, len(source))``.

  ``subset[i]`` is ``source[indices[i]]``; ``repr`` names the source and the indices' count
  and SHA-256 digest (grain checks it when restoring a data iterator).
  """

  def __init__(self, source: Sequence, indices: Any):
    check_source(source)
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
      raise ValueError(f"indices must be a [N] sequence of ints, got {array.dtype} of shape "
                       f"{array.shape}.")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= len(source)):
      raise ValueError(f"indices must lie in [0, len(source)) = [0, {len(source)}), got "
                       f"indices in [{array.min()}, {array.max()}].")
    self.source = source
    self.indices = array
    self._digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> Any:
    if not 0 <= index < len(self.indices):
      raise IndexError(f"index must be in [0, {len(self.indices)}), got {index}.")
    return self.source[int(self.indices[index])]

  def __repr__(self) -> str:
    return (f"Subset(source={source_repr(self.source)}, indices=<{len(self.indices)} indices, "
            f"sha256 {self._digest}>)")


def _mention_flags(source: Sequence, words: Any) -> np.ndarray:
  """[len(source)] bool: whether each record mentions a held-out word."""
  check_source(source)
  held = held_out_variants(words)
  return np.array([_first_mention(source[i], held) is not None for i in range(len(source))],
                  bool)


def without_words(source: Sequence, words: Any) -> Subset:
  """The paired training data: the records none of whose captions mention a held-out word.

  Args:
    source: random-access captioned records ("references" and/or "caption").
    words: the held-out words (module doc).

  Returns:
    ``Subset`` of ``source`` in its order. Reads every record once.
  """
  return Subset(source, np.flatnonzero(~_mention_flags(source, words)))


def with_words(source: Sequence, words: Any) -> Subset:
  """The records that mention at least one held-out word (the "novel" evaluation split)."""
  return Subset(source, np.flatnonzero(_mention_flags(source, words)))


def check_paired(source: Sequence, words: Any, *, name: str = "paired data") -> None:
  """A ValueError naming the first record of ``source`` that mentions a held-out word.

  Args:
    source: the paired training data (random-access captioned records).
    words: the held-out words (module doc).
    name: what ``source`` is, for the message.

  Raises:
    ValueError: "paired data must not mention the held-out words; record 12 mentions
      'zebra': 'a zebra ...'" (with "(as 'zebras')" when a variant was found).
  """
  check_source(source)
  held = held_out_variants(words)
  for index in range(len(source)):
    found = _first_mention(source[index], held)
    if found is not None:
      word, variant, caption = found
      form = "" if variant == word else f" (as {variant!r})"
      raise ValueError(f"{name} must not mention the held-out words; record {index} mentions "
                       f"{word!r}{form}: {caption!r}.")


class CocoReferences:
  """Each image's captions, ``{"references": texts}``, of a TFDS ``coco_captions`` source,
  without resizing its image (text scans over all of COCO train)."""

  def __init__(self, coco: CocoCaptions):
    self.source = coco.source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"references": self.source[index]["captions"]["text"]}


def _coco_subset(coco: CocoCaptions, keep: np.ndarray) -> Subset:
  """The records of ``coco`` whose image has ``keep`` [images] True (all its captions)."""
  per_image = coco.captions_per_image
  images = np.flatnonzero(keep)
  return Subset(coco, (images[:, None] * per_image + np.arange(per_image)).ravel())


def load_coco_held_out(*, data_dir: str | os.PathLike, image_size: int,
                       held_out: Any = DCC_COCO_HELD_OUT, download: bool = False,
                       captions_per_image: int = 1, validation_split: str = "val",
                       test_split: str = "test") -> dict[str, Any]:
  """COCO captions split for novel-object captioning (DCC Sec. 4), via ``load_coco_captions``.

  Args:
    data_dir: TFDS data dir of ``coco_captions`` (see ``captions.load_coco_captions``).
    image_size: S, the side of the square images.
    held_out: the held-out words (module doc); DCC's eight objects by default.
    download: download and prepare ``coco_captions`` (37.6 GiB) when missing.
    captions_per_image: records per image of "train" and "unpaired" (``CocoCaptions``); the
      evaluation splits have one record per image with all its references.
    validation_split, test_split: TFDS split expressions over COCO val2014 (see below).

  Returns:
    ``{"train": the paired data, COCO train2014 (TFDS "train", 82,783 images) without the
    images any of whose captions mentions a held-out word; "unpaired": all of COCO train
    (its captions are the unpaired text, its object words the unpaired labels);
    "validation", "test": ``validation_split``, ``test_split``; "novel": the test images
    whose references mention a held-out word}``, each a random-access source of
    ``CocoCaptions`` records.

  DCC splits COCO val2014 into two halves of about 20,000 images (the released code's
  ``utils/image_list/coco2014_cocoid.val_val.txt`` and ``...val_test.txt``), which TFDS's
  splits cannot reproduce without those lists; the defaults use Karpathy's "val" and "test"
  (5,000 images each, both from val2014, so disjoint from the training images). Finding the
  held-out mentions reads every train and test image's captions once (it decodes the images
  too, without resizing them: minutes for COCO train).
  """
  held = held_out_variants(held_out, name="held_out")
  check_int("captions_per_image", captions_per_image, low=1)
  common = dict(data_dir=data_dir, image_size=image_size, download=download)
  unpaired = load_coco_captions(split="train", captions_per_image=captions_per_image, **common)
  validation = load_coco_captions(split=validation_split, **common)
  test = load_coco_captions(split=test_split, **common)
  return {
      "train": _coco_subset(unpaired, ~_mention_flags(CocoReferences(unpaired), held)),
      "unpaired": unpaired,
      "validation": validation,
      "test": test,
      "novel": _coco_subset(test, _mention_flags(CocoReferences(test), held)),
  }
