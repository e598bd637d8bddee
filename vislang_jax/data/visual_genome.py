"""Visual Genome region descriptions from a local copy, as records of dense-captioning scenes.

Krishna et al., "Visual Genome: Connecting Language and Vision Using Crowdsourced Dense Image
Annotations", IJCV 2017: the data of DenseCap (Johnson, Karpathy, Fei-Fei, CVPR 2016,
Sec. 4.1). Only the paper's abstract could be read when this was checked: the statements
credited to "the paper" and its section number are the implementers' reading, unverified;
those credited to preprocess.py were checked against jcjohnson/densecap. Nothing here
downloads; `data_dir` holds the official files:

  region_descriptions.json  [{"id": image id, "regions": [{"region_id", "image_id",
                            "phrase", "x", "y", "width", "height"}, ...]}, ...]
  image_data.json           [{"image_id" (v1.2; "id" in v1.0), "width", "height", "url",
                            ...}, ...]
  VG_100K/<image id>.jpg, VG_100K_2/<image id>.jpg   the images (either folder)

A region's `x, y` are the column and row of its top-left pixel and `width, height` its size,
in the original image's pixels; we read `x, y` as 0-based (the Visual Genome API's
convention). DenseCap's preprocess.py reads them as 1-based, a one-pixel difference before
resizing.

Splits ("train", "validation", "test"): DenseCap's `densecap_splits.json`
(`{"train": [image ids], "val": [...], "test": [...]}`, 77,398 / 5,000 / 5,000 images) when
`split_file` is given; images in no split are left out, as DenseCap's preprocess.py does
(and ids of the split file that region_descriptions.json lacks are ignored).
Otherwise a deterministic hash split (`hash_split`): an image's split is a function of its
id alone.

Per image, as DenseCap's preprocess.py prepares it (records: `VisualGenomeRegions`):
  * the image as RGB, resized (PIL, bilinear, antialiased) so its longer side is
    `image_size` (preprocess.py: --image_size 720), at the top-left corner of a black
    `image_size` square;
    `image_hw` is the resized image's size;
  * phrases (`phrase_tokens`): DenseCap's replacements of a few non-ASCII characters,
    lower case, ASCII punctuation deleted ("don't" -> "dont"), then split by
    `vocabulary.tokenize` into runs of letters and digits, and joined by single spaces, so
    `Vocabulary.encode` reads back the same words. A region whose phrase has more than
    `max_words` words (the paper, unverified: 10; preprocess.py's --max_token_length: 15)
    or none is dropped;
  * boxes: clipped to the original image, then scaled with the image (starts rounded
    down, ends up, so no box vanishes), `(y0, x0, y1, x1)` pixels of the resized image,
    exclusive ends; at most `max_regions` regions (the first ones in the JSON's order).
    The paper is read as dropping images with fewer than 20 or more than 50 regions
    (unverified; preprocess.py drops none); here every image is kept.
Errors (ValueError): a missing file names the path expected. An image whose regions all go
(no region, or only over-long phrases) is an empty scene, and a region whose box has no
positive size or lies wholly outside its image is a box outside the image: both raise,
naming the image, unless `skip_invalid=True`, which leaves them out (counted in
`VisualGenomeRegions.skipped`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from vislang_jax.checks import check_float, check_int
from vislang_jax.data.vocabulary import tokenize

SPLITS = ("train", "validation", "test")
DENSECAP_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # file -> ours
IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")
REGIONS_FILE = "region_descriptions.json"
IMAGES_FILE = "image_data.json"
IMAGE_SIZE = 720  # DenseCap preprocess.py: --image_size 720, the longer side
MAX_WORDS = 10  # the paper as read (unverified); preprocess.py: --max_token_length 15
MAX_REGIONS = 50  # the paper's 50-annotation cap as read (unverified); not in preprocess.py
# DenseCap's preprocess.py replaces these before deleting punctuation.
_REPLACEMENTS = {"\u00bd": "half", "\u2014": "-", "\u2122": "", "\u00a2": "cent",
                 "\u00e7": "c", "\u00fb": "u", "\u00e9": "e", "\u00b0": " degree",
                 "\u00e8": "e", "\u2026": ""}
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def phrase_tokens(phrase: str) -> list[str]:
  """A region phrase's words (module doc): "A man's RED hat." -> ["a", "mans", "red", "hat"]."""
  if not isinstance(phrase, str):
    raise ValueError(f"phrase must be a str, got {type(phrase).__name__}: {phrase!r}.")
  for old, new in _REPLACEMENTS.items():
    phrase = phrase.replace(old, new)
  return tokenize(phrase.lower().translate(_NO_PUNCTUATION))


def hash_split(image_id: int, *, validation_fraction: float, test_fraction: float) -> str:
  """The split of an image without a split file: a function of its id alone.

  `u` = the first 8 bytes of SHA-256 of the decimal id, as a fraction of 2^64; "test" when
  `u < test_fraction`, "validation" when `u < test_fraction + validation_fraction`, else
  "train".
  """
  digest = hashlib.sha256(str(int(image_id)).encode()).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  if u < test_fraction:
    return "test"
  return "validation" if u < test_fraction + validation_fraction else "train"


@dataclasses.dataclass(frozen=True)
class VisualGenomeImage:
  """One image of a split, its regions already filtered (`load_visual_genome`).

  Attributes:
    image_id: Visual Genome's id.
    path: the JPEG.
    regions: `(region id, phrase, (y0, x0, y1, x1) in original pixels, clipped)` each.
  """

  image_id: int
  path: str
  regions: tuple[tuple[int, str, tuple[int, int, int, int]], ...]


class VisualGenomeRegions:
  """Random-access dense-captioning records of one split (module doc).

  Records (S = image_size, R = max_regions; the format of `dense_digits.DenseDigits`'
  shared fields):
    image: uint8 `[S, S, 3]`, the resized image at the top-left, black elsewhere.
    image_hw: int32 `[2]`, the resized image's height and width (the longer one S).
    boxes: int32 `[R, 4]`, `(y0, x0, y1, x1)` pixels of the resized image, exclusive ends,
      non-empty, inside `image_hw`; -1 padded.
    phrases: R phrases as UTF-8 bytes, b"" padded.
    num_regions: int32 scalar, >= 1.
    labels: int32 `[R]`, all -1 (no classes; the dense digits' field).
    image_id: int64 scalar.
    region_ids: int64 `[R]`, -1 padded.

  Args:
    images: the split's images, each with 1..R regions.
    image_size, max_regions: S and R.
    name: what `repr` calls the split (grain compares reprs on restore).
    skipped: counts, over all splits, of what loading left out (`load_visual_genome`):
      "phrases_dropped" (no word or more than max_words), "boxes_outside" and
      "empty_scenes" (with skip_invalid=True).
  """

  def __init__(self, images: Sequence[VisualGenomeImage], *, image_size: int,
               max_regions: int, name: str, skipped: dict[str, int] | None = None):
    self.images = tuple(images)
    self.image_size = check_int("image_size", image_size, low=1)
    self.max_regions = check_int("max_regions", max_regions, low=1)
    for image in self.images:
      if not 1 <= len(image.regions) <= self.max_regions:
        raise ValueError(f"images must hold 1..max_regions={self.max_regions} regions each, "
                         f"got {len(image.regions)} for image {image.image_id}.")
    self.name = name
    self.skipped = dict(skipped or {})

  def __len__(self) -> int:
    return len(self.images)

  def phrases(self) -> list[str]:
    """Every kept phrase of the split, image after image (no image is read): for a
    `vocabulary.Vocabulary.build` over the training phrases."""
    return [phrase for image in self.images for _, phrase, _ in image.regions]

  def __getitem__(self, index: int) -> dict[str, Any]:
    entry = self.images[index]
    try:
      with Image.open(entry.path) as picture:
        picture = picture.convert("RGB")
        width, height = picture.size
        scale = self.image_size / max(height, width)
        new_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = np.asarray(picture.resize(new_hw[::-1], resample=Image.Resampling.BILINEAR))
    except OSError as error:
      raise ValueError(f"image {entry.image_id}: cannot read {entry.path!r}: {error}.") from error
    image = np.zeros((self.image_size, self.image_size, 3), np.uint8)
    image[:new_hw[0], :new_hw[1]] = resized
    count = len(entry.regions)
    boxes = np.full((self.max_regions, 4), -1, np.int32)
    region_ids = np.full((self.max_regions,), -1, np.int64)
    phrases = [b""] * self.max_regions
    for k, (region_id, phrase, box) in enumerate(entry.regions):
      boxes[k] = scale_box(box, scale=scale, image_hw=new_hw)
      region_ids[k] = region_id
      phrases[k] = phrase.encode()
    return {
        "image": image,
        "image_hw": np.array(new_hw, np.int32),
        "boxes": boxes,
        "phrases": phrases,
        "num_regions": np.int32(count),
        "labels": np.full((self.max_regions,), -1, np.int32),
        "image_id": np.int64(entry.image_id),
        "region_ids": region_ids,
    }

  def __repr__(self) -> str:
    return (f"VisualGenomeRegions({self.name}, {len(self)} images, image_size={self.image_size}, "
            f"max_regions={self.max_regions})")


def scale_box(box: Sequence[int], *, scale: float, image_hw: tuple[int, int]) -> np.ndarray:
  """An original-pixel `(y0, x0, y1, x1)` box in the pixels of the image resized by `scale`.

  Starts are rounded down and ends up, then clipped to `image_hw`, keeping at least one
  pixel: int32 `[4]`, non-empty, inside the resized image.
  """
  height, width = image_hw
  y0, x0, y1, x1 = box
  y0 = min(math.floor(y0 * scale), height - 1)
  x0 = min(math.floor(x0 * scale), width - 1)
  y1 = min(max(math.ceil(y1 * scale), y0 + 1), height)
  x1 = min(max(math.ceil(x1 * scale), x0 + 1), width)
  return np.array([y0, x0, y1, x1], np.int32)


def _read_json(path: str, what: str) -> Any:
  if not os.path.isfile(path):
    raise ValueError(f"data_dir: expected {what} at {path!r}; it is not there.")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"{path!r} is not valid JSON ({what}): {error}.") from error


def _image_sizes(path: str) -> dict[int, tuple[int, int]]:
  """image id -> (height, width) from image_data.json."""
  entries = _read_json(path, "Visual Genome's image_data.json")
  if not isinstance(entries, list):
    raise ValueError(f"{path!r} must hold a list of images, got {type(entries).__name__}.")
  sizes = {}
  for i, entry in enumerate(entries):
    image_id = entry.get("image_id", entry.get("id")) if isinstance(entry, dict) else None
    if image_id is None or "width" not in entry or "height" not in entry:
      raise ValueError(f"{path!r}: entry {i} lacks 'image_id' (or 'id'), 'width' or 'height': "
                       f"{entry!r}.")
    sizes[int(image_id)] = (int(entry["height"]), int(entry["width"]))
  return sizes


def _image_splits(split_file: str | None, image_ids: Sequence[int], *,
                  validation_fraction: float, test_fraction: float) -> dict[int, str]:
  """image id -> one of SPLITS, for the images in some split."""
  if split_file is None:
    return {i: hash_split(i, validation_fraction=validation_fraction,
                          test_fraction=test_fraction) for i in image_ids}
  data = _read_json(split_file, "DenseCap's densecap_splits.json")
  if not isinstance(data, dict) or set(data) - set(DENSECAP_SPLITS) or not data:
    raise ValueError(f"split_file {split_file!r} must map some of {tuple(DENSECAP_SPLITS)} to "
                     f"image ids, got keys "
                     f"{sorted(data) if isinstance(data, dict) else type(data).__name__}.")
  splits = {}
  for name, ids in data.items():
    for image_id in ids:
      if splits.setdefault(int(image_id), DENSECAP_SPLITS[name]) != DENSECAP_SPLITS[name]:
        raise ValueError(f"split_file {split_file!r} puts image {image_id} in two splits.")
  return splits


def _clip_box(region: dict, image_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
  """A region's `(y0, x0, y1, x1)` clipped to the image, or None when nothing is left."""
  height, width = image_hw
  x, y, w, h = (int(round(float(region[k]))) for k in ("x", "y", "width", "height"))
  y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, height), min(x + w, width)
  if w <= 0 or h <= 0 or y1 <= y0 or x1 <= x0:
    return None
  return y0, x0, y1, x1


def load_visual_genome(
    data_dir: str | os.PathLike,
    *,
    image_size: int = IMAGE_SIZE,
    max_regions: int = MAX_REGIONS,
    max_words: int = MAX_WORDS,
    split_file: str | os.PathLike | None = None,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    skip_invalid: bool = False,
) -> dict[str, VisualGenomeRegions]:
  """Visual Genome's region descriptions as dense-captioning records (module doc).

  Reads the JSON files and checks every image of every split (its file, its regions) now;
  the images themselves are read when a record is.

  Args:
    data_dir: the folder of region_descriptions.json, image_data.json, VG_100K/ and
      VG_100K_2/.
    image_size: S, the side of the records' square images (the resized longer side).
    max_regions: R, the region slots of a record; an image keeps its first R regions.
    max_words: regions whose phrase has more words are dropped.
    split_file: DenseCap's densecap_splits.json; None: `hash_split`.
    validation_fraction, test_fraction: of the hash split (no `split_file`).
    skip_invalid: leave out boxes outside their image and empty scenes instead of raising.

  Returns:
    `{"train", "validation", "test"}` -> `VisualGenomeRegions` (a split may be empty).

  Raises:
    ValueError: naming the argument or the path, for bad arguments, missing or malformed
      files, an image without a file or a size, or (unless `skip_invalid`) a box outside its
      image or an empty scene.
  """
  check_int("image_size", image_size, low=1)
  check_int("max_regions", max_regions, low=1)
  check_int("max_words", max_words, low=1)
  check_float("validation_fraction", validation_fraction, low=0.0)
  check_float("test_fraction", test_fraction, low=0.0)
  if validation_fraction + test_fraction > 1:
    raise ValueError(f"validation_fraction + test_fraction must be <= 1, got "
                     f"{validation_fraction} + {test_fraction}.")
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise ValueError(f"data_dir must be a folder holding Visual Genome ({REGIONS_FILE}, "
                     f"{IMAGES_FILE}, {IMAGE_FOLDERS[0]}/), got {data_dir!r}.")
  regions_path = os.path.join(data_dir, REGIONS_FILE)
  described = _read_json(regions_path, f"Visual Genome's {REGIONS_FILE}")
  if not isinstance(described, list):
    raise ValueError(f"{regions_path!r} must hold a list of images, got "
                     f"{type(described).__name__}.")
  sizes = _image_sizes(os.path.join(data_dir, IMAGES_FILE))
  files = {}
  for folder in reversed(IMAGE_FOLDERS):
    path = os.path.join(data_dir, folder)
    if os.path.isdir(path):
      files.update({name: os.path.join(path, name) for name in os.listdir(path)})
  ids = []
  for i, entry in enumerate(described):
    image_id = entry.get("id", entry.get("image_id")) if isinstance(entry, dict) else None
    if image_id is None or not isinstance(entry.get("regions"), list):
      raise ValueError(f"{regions_path!r}: entry {i} must hold 'id' and a 'regions' list, got "
                       f"keys {sorted(entry) if isinstance(entry, dict) else entry!r}.")
    ids.append(int(image_id))
  splits_of = _image_splits(None if split_file is None else os.fspath(split_file), ids,
                            validation_fraction=validation_fraction,
                            test_fraction=test_fraction)
  images = {split: [] for split in SPLITS}
  skipped = {"phrases_dropped": 0, "boxes_outside": 0, "empty_scenes": 0}
  for image_id, entry in zip(ids, described):
    split = splits_of.get(image_id)
    if split is None:
      continue
    if image_id not in sizes:
      raise ValueError(f"image {image_id} of {regions_path!r} has no entry (width, height) in "
                       f"{os.path.join(data_dir, IMAGES_FILE)!r}.")
    name = f"{image_id}.jpg"
    if name not in files:
      expected = " or ".join(repr(os.path.join(data_dir, f, name)) for f in IMAGE_FOLDERS)
      raise ValueError(f"image {image_id}: expected its file at {expected}; neither is there.")
    kept = []
    for region in entry["regions"]:
      missing = [k for k in ("phrase", "x", "y", "width", "height") if k not in region]
      if missing:
        raise ValueError(f"{regions_path!r}: a region of image {image_id} lacks {missing}: "
                         f"{region!r}.")
      words = phrase_tokens(region["phrase"])
      if not 0 < len(words) <= max_words:
        skipped["phrases_dropped"] += 1
        continue
      box = _clip_box(region, sizes[image_id])
      if box is None:
        if not skip_invalid:
          height, width = sizes[image_id]
          raise ValueError(
              f"image {image_id}: region {region.get('region_id')} (x={region['x']}, "
              f"y={region['y']}, width={region['width']}, height={region['height']}) has a box "
              f"outside the image (height {height}, width {width}); pass skip_invalid=True to "
              "leave such regions out.")
        skipped["boxes_outside"] += 1
        continue
      kept.append((int(region.get("region_id", -1)), " ".join(words), box))
    if not kept:
      if not skip_invalid:
        raise ValueError(
            f"image {image_id} is an empty scene: none of its {len(entry['regions'])} regions "
            f"has a phrase of 1..{max_words} words and a box inside the image; pass "
            "skip_invalid=True to leave such images out.")
      skipped["empty_scenes"] += 1
      continue
    images[split].append(VisualGenomeImage(image_id, files[name], tuple(kept[:max_regions])))
  how = "densecap split" if split_file is not None else "hash split"
  return {split: VisualGenomeRegions(images[split], image_size=image_size,
                                     max_regions=max_regions,
                                     name=f"visual_genome/{split} ({how}) in {data_dir!r}",
                                     skipped=skipped)
          for split in SPLITS}
