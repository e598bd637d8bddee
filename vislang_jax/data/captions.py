"""Captioned images as batchable records: encoded captions, reference captions, COCO via TFDS.

`EncodedCaptions` wraps any random-access source of captioned images (the splits of
`captioned_digits.build_captioned_digits_dataset`, or `load_coco_captions`) and turns each
record into NumPy arrays a grain loader can batch and the training harness can shard:

  image: float32 `[H, W, C]` in [0, 1] (the source's uint8 image / 255);
  tokens: int32 `[T]`, `T = max_len`: `Vocabulary.encode` of the caption, its word ids then
    `<eos>`, padded with `<pad>` = 0; these are the targets `y_1..y_T`. A decoder's teacher-
    forced inputs are `<bos>` then the targets shifted right: `[<bos>, y_1, ..., y_{T-1}]`;
  length: int32 scalar, the caption's ids up to and including `<eos>`;
  index: int32 scalar, the record's position in the source (the key of `references`);
  and every other numeric field of the source record unchanged (captioned digits: "labels",
  "boxes", "num_digits"; COCO: "image_id"; Python scalars become int32 / float32 / bool
  NumPy scalars); text and nested fields are dropped.

`pipeline.make_loader` batches these records as they are (its `ImageToFloat` keeps float
images and numeric fields), so the training harness trains on them unchanged.

`references(source)` gives every record's reference captions as text, keyed like `index`,
for `vislang_jax.metrics.captions.caption_metrics`.

COCO: `load_coco_captions` reads TFDS's `coco_captions` (MS COCO 2014 images with the
Karpathy & Li (2015) splits "train" 82,783 / "val" 5,000 / "test" 5,000 / "restval" 30,504
images, about five captions each; Show, Attend and Tell (Xu et al., 2015) train on
"train+restval" and report on "test") and serves `CocoCaptions` records:

  image: uint8 `[S, S, 3]`, resized with PIL's bicubic filter, after cropping the central
    square when `center_crop` (else the whole image is squeezed to a square);
  caption: bytes (UTF-8), one of the image's captions (see `captions_per_image`);
  references: tuple of bytes, all the image's captions;
  image_id: int32, COCO's image id.

Preparing `coco_captions` downloads 37.6 GiB, writes 18.8 GiB and needs TensorFlow (`pip install
vislang_jax[coco]`); so does reading it back through `tfds.data_source`, because the TFDS
COCO builder's feature spec names TensorFlow dtypes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from vislang_jax.data.captioned_digits import build_captioned_digits_dataset
from vislang_jax.checks import check_int
from vislang_jax.data.vocabulary import Vocabulary

COCO_SPLITS = ("train", "val", "test", "restval")
_DERIVED = ("image", "tokens", "length", "index")


def as_text(value: Any) -> str:
  """A caption as `str` (TFDS gives text as UTF-8 bytes)."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def is_numeric(value: Any) -> bool:
  """True for bool/int/float scalars and arrays: the fields a batch can carry to JAX."""
  if isinstance(value, (bool, int, float, np.generic, np.ndarray)):
    return np.asarray(value).dtype.kind in "biuf"
  return False


def as_array(value: Any) -> np.ndarray:
  """A numeric field as NumPy; Python scalars (TFDS's scalar features) as int32/float32/bool."""
  if isinstance(value, bool):
    return np.bool_(value)
  if isinstance(value, int):
    return np.int32(value)
  if isinstance(value, float):
    return np.float32(value)
  return np.asarray(value)


def source_repr(source: Sequence) -> str:
  """repr(source), but only type and length for in-memory data (as grain's DataLoader)."""
  if isinstance(source, (list, tuple, np.ndarray)):
    return f"<{type(source).__name__} of {len(source)} records>"
  return repr(source)


def check_source(source: Any) -> None:
  """A ValueError unless `source` is a random-access sequence (`len` and indexing) of records."""
  if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")) or isinstance(
      source, (str, bytes)
  ):
    raise ValueError(
        f"source must be a random-access sequence of records, got {type(source).__name__}."
    )


class EncodingSource:
  """The base of the random-access sources that encode a source's text with a vocabulary
  (`EncodedCaptions`, `regions.EncodedRegions`): holds and checks their arguments.

  Raises:
    ValueError: naming the argument: not a random-access source, not a Vocabulary,
      `max_len` < 1, `truncate` not a bool.
  """

  def __init__(self, source: Sequence, vocabulary: Vocabulary, *, max_len: int,
               truncate: bool = False):
    check_source(source)
    if not isinstance(vocabulary, Vocabulary):
      raise ValueError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}.")
    check_int("max_len", max_len, low=1)
    if not isinstance(truncate, bool):
      raise ValueError(f"truncate must be a bool, got {truncate!r}.")
    self.source = source
    self.vocabulary = vocabulary
    self.max_len = int(max_len)
    self.truncate = truncate
    words = json.dumps(vocabulary.to_json_dict(), sort_keys=True).encode("utf-8")
    self._vocabulary_digest = hashlib.sha256(words).hexdigest()[:16]

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:
    # Grain stores this in checkpoints and checks it on restore: it names every parameter
    # (the vocabulary by size and content digest) and no memory address.
    return (f"{type(self).__name__}(source={source_repr(self.source)}, "
            f"vocabulary=<Vocabulary of {len(self.vocabulary)} ids, sha256 "
            f"{self._vocabulary_digest}>, max_len={self.max_len}, truncate={self.truncate})")


class EncodedCaptions(EncodingSource):
  """Random-access source of `{"image", "tokens", "length", "index", ...}` (module doc).

  Args:
    source: random-access records with "image" uint8 `[H, W, C]` and "caption" (str or
      UTF-8 bytes); e.g. a split of `build_captioned_digits_dataset` or `load_coco_captions`.
    vocabulary: encodes the captions (build it from the training captions).
    max_len: T, the length of `tokens`, `<eos>` included.
    truncate: keep the first `max_len - 1` words of a longer caption instead of raising.

  Reading a record whose caption has more than `max_len - 1` words raises a ValueError
  naming `max_len` and the record (unless `truncate`).
  """

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    record = self.source[index]
    try:
      tokens, lengths = self.vocabulary.encode(
          [as_text(record["caption"])], max_len=self.max_len, truncate=self.truncate
      )
    except ValueError as error:
      raise ValueError(f"record {index} of {source_repr(self.source)}: {error}") from error
    encoded = {k: as_array(v) for k, v in record.items() if k not in _DERIVED and is_numeric(v)}
    encoded.update(
        image=np.asarray(record["image"]).astype(np.float32) / 255.0,
        tokens=tokens[0],
        length=lengths[0],
        index=np.int32(index),
    )
    return encoded


def references(source: Sequence) -> dict[int, list[str]]:
  """Every record's reference captions as text: `{index: [caption, ...]}`.

  Args:
    source: captioned records (an `EncodedCaptions` reads its wrapped source); a record's
      references are its "references" field when it has one (COCO: all the image's
      captions), else its one "caption".

  Returns:
    `{i: list of str}` for `i` in `range(len(source))`, the `references` argument of
    `metrics.captions.caption_metrics` (hypotheses keyed by the batches' "index").
    Reading COCO records decodes their images too (a few ms each).
  """
  if isinstance(source, EncodedCaptions):
    source = source.source
  check_source(source)
  result = {}
  for index in range(len(source)):
    record = source[index]
    texts = record["references"] if "references" in record else [record["caption"]]
    result[index] = [as_text(t) for t in texts]
  return result


def resize_square(image: np.ndarray, *, size: int, center_crop: bool = True) -> np.ndarray:
  """An image resized to `size x size` RGB with PIL's bicubic (antialiased) filter.

  Args:
    image: uint8 `[H, W, 3]`, `[H, W, 1]` or `[H, W]` (grey becomes RGB).
    size: S, the side of the result.
    center_crop: resize the central `min(H, W)` square, keeping the aspect ratio; False
      resizes the whole image, squeezing the longer side.

  Returns:
    uint8 `[S, S, 3]`.

  Raises:
    ValueError: for an image of another dtype or shape, or a size below 1.
  """
  image = np.asarray(image)
  if (
      image.dtype != np.uint8
      or image.ndim not in (2, 3)
      or (image.ndim == 3 and image.shape[-1] not in (1, 3))
  ):
    raise ValueError(
        f"image must be uint8 [H, W, 3], [H, W, 1] or [H, W], got {image.dtype} {image.shape}."
    )
  check_int("size", size, low=1)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  height, width = image.shape[:2]
  if center_crop:
    side = min(height, width)
    top, left = (height - side) / 2, (width - side) / 2
    box = (left, top, left + side, top + side)
  else:
    box = (0, 0, width, height)
  picture = Image.fromarray(image).convert("RGB")
  return np.asarray(picture.resize((size, size), resample=Image.Resampling.BICUBIC, box=box))


class CocoCaptions:
  """Random-access COCO records `{"image", "caption", "references", "image_id"}` (module doc).

  Args:
    source: records of TFDS `coco_captions`: "image" uint8 `[H, W, 3]`, "image/id",
      "captions" `{"text": [K] text, ...}`.
    image_size: S, the side of the square images.
    captions_per_image: k records per image: record `i` is image `i // k` with its caption
      number `(i % k) % K`. k = 5 pairs every COCO image with each of (at least) five
      captions, for training; k = 1 keeps the first caption, one record per image, for
      evaluation against all references.
    center_crop: see `resize_square`.
  """

  def __init__(
      self,
      source: Sequence,
      *,
      image_size: int,
      captions_per_image: int = 1,
      center_crop: bool = True,
  ):
    check_source(source)
    check_int("image_size", image_size, low=1)
    check_int("captions_per_image", captions_per_image, low=1)
    if not isinstance(center_crop, bool):
      raise ValueError(f"center_crop must be a bool, got {center_crop!r}.")
    self.source = source
    self.image_size = int(image_size)
    self.captions_per_image = int(captions_per_image)
    self.center_crop = center_crop

  def __len__(self) -> int:
    return len(self.source) * self.captions_per_image

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not 0 <= index < len(self):
      raise IndexError(f"index must be in [0, {len(self)}), got {index}.")
    image_index, choice = divmod(int(index), self.captions_per_image)
    example = self.source[image_index]
    texts = tuple(as_text(t).encode("utf-8") for t in example["captions"]["text"])
    if not texts:
      raise ValueError(
          f"source record {image_index} (image id {example['image/id']}) has no caption."
      )
    return {
        "image": resize_square(
            example["image"], size=self.image_size, center_crop=self.center_crop
        ),
        "caption": texts[choice % len(texts)],
        "references": texts,
        "image_id": np.int32(example["image/id"]),
    }

  def __repr__(self) -> str:
    return (
        f"CocoCaptions(source={source_repr(self.source)}, image_size={self.image_size}, "
        f"captions_per_image={self.captions_per_image}, center_crop={self.center_crop})"
    )


def _check_coco_split(split: str) -> None:
  """`split` is a TFDS split expression over COCO_SPLITS, e.g. "train+restval", "val[:500]"."""
  parts = split.split("+") if isinstance(split, str) else [None]
  names = [p.split("[")[0].strip() if p is not None else None for p in parts]
  if not all(name in COCO_SPLITS for name in names):
    raise ValueError(
        f"split must be one of {COCO_SPLITS}, or a TFDS split expression over them such as "
        f"'train+restval' or 'val[:500]', got {split!r}."
    )


def load_coco_captions(
    *,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    captions_per_image: int = 1,
    center_crop: bool = True,
    download: bool = False,
) -> CocoCaptions:
  """One split of TFDS `coco_captions` as `CocoCaptions` records.

  Args:
    split: "train", "val", "test", "restval", or a TFDS expression such as
      "train+restval" (Show, Attend and Tell's training set) or "val[:500]".
    data_dir: TFDS data dir holding (or to receive) `coco_captions/2014/<version>/`.
    image_size: S, the side of the square images.
    captions_per_image: records per image (see `CocoCaptions`).
    center_crop: see `resize_square`.
    download: download and prepare the dataset (37.6 GiB) when it is not in
      `data_dir`; False reads prepared data only.

  Returns:
    The random-access source; wrap it in `EncodedCaptions` for training.

  Raises:
    ValueError: naming the argument, for a bad split, image_size or captions_per_image.
    ImportError: when TensorFlow is missing (`pip install vislang_jax[coco]`).
  """
  _check_coco_split(split)
  check_int("image_size", image_size, low=1)
  check_int("captions_per_image", captions_per_image, low=1)
  try:
    source = tfds.data_source(
        "coco_captions", split=split, data_dir=os.fspath(data_dir), download=download
    )
  except ImportError as error:
    if "tensorflow" not in str(error):
      raise
    raise ImportError(
        "load_coco_captions needs TensorFlow: TFDS's coco_captions builder uses it to prepare the data "
        "and to describe its features. Install it with `pip install vislang_jax[coco]`."
    ) from error
  return CocoCaptions(
      source, image_size=image_size, captions_per_image=captions_per_image, center_crop=center_crop
  )


def build_encoded_captioned_digits(
    *,
    source: str,
    data_dir: str | os.PathLike | None,
    max_len: int,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    copies: int = 1,
    novel_size: int = 1000,
) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """Captioned digits ready to train on: every split encoded with the training captions' words.

  Args:
    source, data_dir, mnist_dir, seed, copies, novel_size: as
      `captioned_digits.build_captioned_digits_dataset`.
    max_len: caption ids per record, `<eos>` included.

  Returns:
    `({"train", "validation", "test", "novel"} -> EncodedCaptions, the Vocabulary built
    from the training captions)`.
  """
  raw = build_captioned_digits_dataset(
      source=source,
      data_dir=data_dir,
      mnist_dir=mnist_dir,
      seed=seed,
      copies=copies,
      novel_size=novel_size,
  )
  train = raw["train"]
  vocabulary = Vocabulary.build(as_text(train[i]["caption"]) for i in range(len(train)))
  return {
      split: EncodedCaptions(split_source, vocabulary, max_len=max_len)
      for split, split_source in raw.items()
  }, vocabulary
