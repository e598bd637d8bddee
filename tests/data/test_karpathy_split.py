"""data/karpathy_split.py on a tiny fixture in the Karpathy JSON layout."""

import json

import numpy as np
import pytest
from PIL import Image

from vislang_jax.data.karpathy_split import load_karpathy_split, read_karpathy_json


def _fixture(tmp_path, coco=False):
  entries = []
  for i, split in enumerate(["train", "restval", "val", "test"]):
    folder = "val2014" if coco else ""
    (tmp_path / "images" / folder).mkdir(parents=True, exist_ok=True)
    pixels = np.full((6 + i, 8, 3), 40 * i, np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / folder / f"{i}.png")
    entry = {"filename": f"{i}.png", "split": split, "imgid": 10 + i,
             "sentences": [{"raw": f"image {i} caption {k}.", "tokens": []} for k in range(2)]}
    if coco:
      entry["filepath"] = folder
    entries.append(entry)
  path = tmp_path / "dataset_test.json"
  path.write_text(json.dumps({"dataset": "test", "images": entries}))
  return path, tmp_path / "images"


@pytest.mark.parametrize("coco", [False, True])
def test_reads_splits_as_coco_records(tmp_path, coco):
  path, image_dir = _fixture(tmp_path, coco=coco)
  records = load_karpathy_split(path, image_dir, split="train+restval", image_size=4,
                                captions_per_image=2)
  assert len(records) == 4
  first, second, third = records[0], records[1], records[2]
  assert first["image"].shape == (4, 4, 3) and first["image"].dtype == np.uint8
  assert int(first["image_id"]) == 10 and int(third["image_id"]) == 11
  assert first["caption"] == b"image 0 caption 0." and second["caption"] == b"image 0 caption 1."
  assert first["references"] == (b"image 0 caption 0.", b"image 0 caption 1.")
  np.testing.assert_array_equal(third["image"], 40)  # image 1's constant pixels, resized
  test = load_karpathy_split(path, image_dir, split="test", image_size=4)
  assert len(test) == 1 and int(test[0]["image_id"]) == 13


def test_named_errors(tmp_path):
  path, image_dir = _fixture(tmp_path)
  with pytest.raises(ValueError, match="is not a file"):
    read_karpathy_json(tmp_path / "missing.json")
  with pytest.raises(ValueError, match="split must be one of"):
    load_karpathy_split(path, image_dir, split="dev", image_size=4)
  with pytest.raises(ValueError, match="is not a folder"):
    load_karpathy_split(path, tmp_path / "nowhere", split="test", image_size=4)
  broken = tmp_path / "broken.json"
  broken.write_text(json.dumps({"images": [{"filename": "0.png", "split": "train"}]}))
  with pytest.raises(ValueError, match=r"entry 0 lacks \['sentences'\]"):
    read_karpathy_json(broken)
  broken.write_text(json.dumps({"annotations": []}))
  with pytest.raises(ValueError, match="'images' list"):
    read_karpathy_json(broken)
  (image_dir / "3.png").unlink()
  with pytest.raises(ValueError, match="has no image"):
    load_karpathy_split(path, image_dir, split="test", image_size=4)[0]
