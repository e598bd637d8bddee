"""Karpathy's splits of Flickr8k / Flickr30k / COCO captions: `dataset_*.json` and an image folder.

Karpathy & Fei-Fei (CVPR 2015) released `dataset_flickr8k.json`, `dataset_flickr30k.json` and
`dataset_coco.json`, the splits that the retrieval and captioning papers of 2015-16 report on
(Flickr30k: 29,000 / 1,014 / 1,000 images; COCO: 113,287 with `restval` / 5,000 / 5,000). Each
is `{"dataset": name, "images": [entry, ...]}` with per image

    {"filename": "1000092795.jpg", "filepath": "val2014" (COCO only), "split": "train" | "val" |
     "test" | "restval", "imgid": 0, "sentences": [{"raw": "Two young guys ...", "tokens": [...]}, ...]}

`load_karpathy_split` reads one split (or "train+restval") into `data.captions.CocoCaptions`
records (`{"image", "caption", "references", "image_id"}`, images resized to a square), so
the COCO captioning and retrieval code reads both alike. Images are read from
`image_dir/filepath/filename` when a record is accessed.
"""

import json
import os
from typing import Any

import numpy as np
from PIL import Image

from vislang_jax.data.captions import CocoCaptions

SPLITS = ("train", "val", "test", "restval")
_FIELDS = ("filename", "split", "sentences")


class KarpathyImages:
  """Random-access records `{"image", "image/id", "captions": {"text"}}` of some entries.

  The record layout of TFDS `coco_captions`, which `CocoCaptions` reads.

  Args:
    entries: the JSON's image entries of the split.
    image_dir: the folder the entries' `filepath/filename` are relative to.
  """

  def __init__(self, entries: list[dict[str, Any]], image_dir: str | os.PathLike):
    self.entries = entries
    self.image_dir = os.fspath(image_dir)

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> dict[str, Any]:
    entry = self.entries[index]
    path = os.path.join(self.image_dir, entry.get("filepath", ""), entry["filename"])
    if not os.path.isfile(path):
      raise ValueError(f"image_dir {self.image_dir!r} has no image {path!r} (entry imgid "
                       f"{entry.get('imgid', index)}).")
    with Image.open(path) as picture:
      image = np.asarray(picture.convert("RGB"))
    return {"image": image, "image/id": entry.get("imgid", index),
            "captions": {"text": [s["raw"] for s in entry["sentences"]]}}

  def __repr__(self) -> str:
    return f"KarpathyImages({len(self)} images in {self.image_dir!r})"


def read_karpathy_json(json_path: str | os.PathLike) -> list[dict[str, Any]]:
  """The image entries of a `dataset_*.json`, checked for the fields the readers use.

  Raises:
    ValueError: naming the path for a missing file, invalid JSON, no `images` list, or an entry
      without `filename`, `split` or `sentences` (each with a `raw` text), or an unknown split.
  """
  json_path = os.fspath(json_path)
  if not os.path.isfile(json_path):
    raise ValueError(f"json_path {json_path!r} is not a file (expected Karpathy's "
                     f"dataset_flickr30k.json or dataset_coco.json).")
  try:
    with open(json_path, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"json_path {json_path!r} is not valid JSON: {error}.") from error
  if not isinstance(data, dict) or not isinstance(data.get("images"), list):
    raise ValueError(f"json_path {json_path!r} must hold an object with an 'images' list (the "
                     f"Karpathy split layout), got keys "
                     f"{sorted(data) if isinstance(data, dict) else type(data).__name__}.")
  for i, entry in enumerate(data["images"]):
    missing = [f for f in _FIELDS if not isinstance(entry, dict) or f not in entry]
    if not missing and not all(isinstance(s, dict) and "raw" in s for s in entry["sentences"]):
      missing = ["sentences[*].raw"]
    if missing:
      raise ValueError(f"json_path {json_path!r}: image entry {i} lacks {missing} (expected "
                       f"the fields {list(_FIELDS)} and a 'raw' text per sentence).")
    if entry["split"] not in SPLITS:
      raise ValueError(f"json_path {json_path!r}: image entry {i} has split "
                       f"{entry['split']!r}, expected one of {SPLITS}.")
  return data["images"]


def load_karpathy_split(json_path: str | os.PathLike, image_dir: str | os.PathLike, *,
                        split: str, image_size: int, captions_per_image: int = 1,
                        center_crop: bool = True) -> CocoCaptions:
  """One Karpathy split as `CocoCaptions` records.

  Args:
    json_path: `dataset_flickr30k.json`, `dataset_coco.json` or `dataset_flickr8k.json`.
    image_dir: the images (Flickr: the folder of the jpgs; COCO: the folder holding
      `train2014/` and `val2014/`).
    split: one of `SPLITS` or several joined by "+", e.g. "train+restval".
    image_size, captions_per_image, center_crop: as `CocoCaptions`.

  Raises:
    ValueError: as `read_karpathy_json`, for an unknown split, a split without images or a
      missing `image_dir`.
  """
  names = split.split("+") if isinstance(split, str) else [split]
  if not all(name in SPLITS for name in names):
    raise ValueError(f"split must be one of {SPLITS} or several joined by '+', got {split!r}.")
  if not os.path.isdir(image_dir):
    raise ValueError(f"image_dir {os.fspath(image_dir)!r} is not a folder.")
  entries = [e for e in read_karpathy_json(json_path) if e["split"] in names]
  if not entries:
    raise ValueError(f"json_path {os.fspath(json_path)!r} has no image in split {split!r}.")
  return CocoCaptions(KarpathyImages(entries, image_dir), image_size=image_size,
                      captions_per_image=captions_per_image, center_crop=center_crop)
