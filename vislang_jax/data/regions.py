"""Images with described regions as batchable records (dense captioning, Johnson et al. 2016).

`EncodedRegions` wraps any random-access source of region-annotated images (the splits of
`dense_digits.build_dense_digits_dataset`, or Visual Genome's `visual_genome` records), each
record holding

  image: uint8 `[H, W, C]`;
  boxes: `[R, 4]` `(y0, x0, y1, x1)` pixels, exclusive ends, padded past `num_regions`;
  phrases: R region phrases (str or UTF-8 bytes), padded with "";
  num_regions: int scalar, the real regions (at least one);

and turns it into NumPy arrays a grain loader batches and the harness shards:

  image: float32 `[H, W, C]` in [0, 1];
  boxes: float32 `[R, 4]` `(x0, y0, x1, y1)` (the library's convention, `ops.boxes`), zeros
    on padding;
  region_mask: bool `[R]`, True on the real regions;
  tokens: int32 `[R, T]`: each phrase's word ids then `<eos>`, `<pad>` after (padding
    regions: all `<pad>`); the captioning targets, as `captions.EncodedCaptions`' `tokens`;
  lengths: int32 `[R]`, ids up to and including `<eos>` (0 on padding);
  index: int32 scalar, the record's position in the source;
  and every other numeric field of the record unchanged (dense digits' `labels`, ...).

`region_references(source)` gives every record's real boxes and phrases, keyed like `index`,
for `metrics.dense_captioning`; `phrase_texts(source)` the phrases a vocabulary is built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vislang_jax.data.captions import (EncodingSource, as_array, as_text, check_source,
                                       is_numeric, source_repr)
from vislang_jax.ops.boxes import yxyx_to_xyxy

_DERIVED = ("image", "boxes", "phrases", "region_mask", "tokens", "lengths", "index")


def record_regions(record: dict[str, Any], *, where: str = "record"
                   ) -> tuple[np.ndarray, list[str]]:
  """A record's real regions: `(boxes [n, 4] float32 (x0, y0, x1, y1), n phrases as str)`.

  Raises:
    ValueError: naming `where`, for a record without regions (an empty scene), or fewer
      boxes / phrases than `num_regions`.
  """
  count = int(record["num_regions"])
  boxes = np.asarray(record["boxes"], np.float32)
  phrases = list(record["phrases"])
  if count < 1:
    raise ValueError(f"{where}: num_regions must be >= 1 (dense captioning needs a described "
                     f"region in every image), got {count}.")
  if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) < count or len(phrases) < count:
    raise ValueError(f"{where}: boxes must have shape [R, 4] and phrases R entries with "
                     f"R >= num_regions = {count}, got boxes {boxes.shape} and "
                     f"{len(phrases)} phrases.")
  return yxyx_to_xyxy(boxes[:count]), [as_text(p) for p in phrases[:count]]


class EncodedRegions(EncodingSource):
  """Random-access source of `{"image", "boxes", "region_mask", "tokens", "lengths", "index",
  ...}` (module doc).

  Args:
    source: random-access records with "image", "boxes", "phrases" and "num_regions".
    vocabulary: encodes the phrases (build it from the training phrases, `phrase_texts`).
    max_len: T, the length of each phrase's `tokens`, `<eos>` included.
    truncate: keep the first `max_len - 1` words of a longer phrase instead of raising.

  Reading a record raises a ValueError naming it when a phrase is longer than `max_len - 1`
  words (unless `truncate`) or the image has no region.
  """

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    record = self.source[index]
    where = f"record {index} of {source_repr(self.source)}"
    boxes, phrases = record_regions(record, where=where)
    slots = len(record["phrases"])
    try:
      ids, lengths = self.vocabulary.encode(phrases, max_len=self.max_len,
                                            truncate=self.truncate)
    except ValueError as error:
      raise ValueError(f"{where}: {error}") from error
    count = len(phrases)
    encoded = {k: as_array(v) for k, v in record.items() if k not in _DERIVED and is_numeric(v)}
    encoded.update(
        image=np.asarray(record["image"]).astype(np.float32) / 255.0,
        boxes=np.zeros((slots, 4), np.float32),
        region_mask=np.arange(slots) < count,
        tokens=np.zeros((slots, self.max_len), np.int32),
        lengths=np.zeros((slots,), np.int32),
        index=np.int32(index),
    )
    encoded["boxes"][:count] = boxes
    encoded["tokens"][:count] = ids
    encoded["lengths"][:count] = lengths
    return encoded


def _records(source: Sequence, count: int | None = None):
  if isinstance(source, EncodedRegions):
    source = source.source
  check_source(source)
  for index in range(len(source) if count is None else min(count, len(source))):
    yield index, source[index]


def phrase_texts(source: Sequence) -> list[str]:
  """Every real region phrase of `source` (or of an `EncodedRegions`' source), in order.

  A source with a `phrases()` method (`visual_genome.VisualGenomeRegions`) gives them without
  decoding its images.
  """
  if isinstance(source, EncodedRegions):
    source = source.source
  if callable(getattr(source, "phrases", None)):
    return list(source.phrases())
  return [p for index, record in _records(source)
          for p in record_regions(record, where=f"record {index}")[1]]


def region_references(source: Sequence, *, count: int | None = None
                      ) -> list[tuple[np.ndarray, list[str]]]:
  """The real regions of the first `count` records (None: all), `[(boxes [n, 4]
  (x0, y0, x1, y1), n phrases), ...]` in record order: the references of
  `metrics.dense_captioning`."""
  return [record_regions(record, where=f"record {index}")
          for index, record in _records(source, count)]
