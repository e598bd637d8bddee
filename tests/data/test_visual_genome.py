"""Visual Genome region descriptions on a tiny fixture in the official layout.

Box and size expectations are worked out by hand in the comments from the module
docstring's rules (clip, scale, round starts down and ends up).
"""

import json

import numpy as np
import pytest
from PIL import Image

from vislang_jax.data.dense_digits import make_scene, pad_scene
from vislang_jax.data.sources import load_digits
from vislang_jax.data.visual_genome import hash_split, load_visual_genome, phrase_tokens

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def _region(region_id, image_id, phrase, x, y, width, height):
  return {"region_id": region_id, "image_id": image_id, "phrase": phrase, "x": x, "y": y,
          "width": width, "height": height}


def _write(root, *, regions=None, images=None, split=None, drop_file=None):
  """Three images: 1 (60 wide, 40 high: red left half, blue right) in VG_100K, 2 (40 x 40
  green) in VG_100K_2, 3 (20 wide, 30 high, blue) in VG_100K."""
  (root / "VG_100K").mkdir(exist_ok=True)
  (root / "VG_100K_2").mkdir(exist_ok=True)
  one = np.zeros((40, 60, 3), np.uint8)
  one[:, :30], one[:, 30:] = RED, BLUE
  pictures = {1: ("VG_100K", one), 2: ("VG_100K_2", np.full((40, 40, 3), GREEN, np.uint8)),
              3: ("VG_100K", np.full((30, 20, 3), BLUE, np.uint8))}
  for image_id, (folder, pixels) in pictures.items():
    if drop_file != image_id:
      Image.fromarray(pixels).save(root / folder / f"{image_id}.jpg", quality=95)
  if regions is None:
    regions = [
        {"id": 1, "regions": [
            _region(11, 1, "The RED car's door.", 6, 4, 30, 20),
            _region(12, 1, "one two three four five six seven eight nine ten eleven", 0, 0, 5, 5),
            _region(13, 1, "a sign, partly outside", 50, 30, 20, 20),
        ]},
        {"id": 2, "regions": [_region(21, 2, "green wall", 0, 0, 40, 40),
                              _region(22, 2, "grass", 10, 21, 5, 5)]},
        {"id": 3, "regions": [_region(31, 3, "Blue sky", 2, 3, 10, 10)]},
    ]
  if images is None:
    images = [{"image_id": 1, "width": 60, "height": 40, "url": "u1"},
              {"image_id": 2, "width": 40, "height": 40, "url": "u2"},
              {"image_id": 3, "width": 20, "height": 30, "url": "u3"}]
  (root / "region_descriptions.json").write_text(json.dumps(regions))
  (root / "image_data.json").write_text(json.dumps(images))
  if split is not None:
    (root / "densecap_splits.json").write_text(json.dumps(split))
  return root


SPLIT = {"train": [1, 2], "val": [3], "test": []}


def test_records_on_the_fixture(tmp_path):
  _write(tmp_path, split=SPLIT)
  data = load_visual_genome(tmp_path, image_size=32, max_regions=4,
                            split_file=tmp_path / "densecap_splits.json")
  assert {k: len(v) for k, v in data.items()} == {"train": 2, "validation": 1, "test": 0}
  first = data["train"][0]
  assert first["image"].shape == (32, 32, 3) and first["image"].dtype == np.uint8
  # 40 x 60 -> scale 32 / 60: 21.33 rows -> 21, 32 columns; black below.
  assert first["image_hw"].tolist() == [21, 32]
  assert not first["image"][21:].any()
  assert np.abs(first["image"][10, 5].astype(int) - RED).max() < 30
  assert np.abs(first["image"][10, 28].astype(int) - BLUE).max() < 30
  assert int(first["num_regions"]) == 2 and int(first["image_id"]) == 1
  # The 11-word phrase is dropped; punctuation deleted, lower case.
  assert first["phrases"][:3] == [b"the red cars door", b"a sign partly outside", b""]
  assert first["region_ids"].tolist() == [11, 13, -1, -1]
  # Region 11: rows 4..24, columns 6..36 -> [4 s, 6 s, 24 s, 36 s] = [2.13, 3.2, 12.8, 19.2]
  # -> [2, 3, 13, 20]. Region 13: x 50..70, y 30..50, clipped to 30..40, 50..60 ->
  # [16, 26.67, 21.33, 32] -> [16, 26, 22 -> 21 (image_hw), 32].
  assert first["boxes"].tolist() == [[2, 3, 13, 20], [16, 26, 21, 32], [-1] * 4, [-1] * 4]
  assert first["labels"].tolist() == [-1] * 4
  second = data["train"][1]
  assert second["image_hw"].tolist() == [32, 32]
  # 40 x 40 -> scale 0.8: [0, 0, 40, 40] -> [0, 0, 32, 32]; [21, 10, 26, 15] ->
  # [16.8, 8, 20.8, 12] -> [16, 8, 21, 12] (rounded to nearest, 16.8 would give 17).
  assert second["boxes"][:2].tolist() == [[0, 0, 32, 32], [16, 8, 21, 12]]
  third = data["validation"][0]  # 30 high x 20 wide -> 32 x 21.33 -> 21 columns
  assert third["image_hw"].tolist() == [32, 21] and not third["image"][:, 21:].any()
  assert third["phrases"][0] == b"blue sky"
  assert data["train"].phrases() == ["the red cars door", "a sign partly outside",
                                     "green wall", "grass"]
  assert data["train"].skipped["phrases_dropped"] == 1
  assert "densecap split" in repr(data["train"])


def test_max_regions_and_max_words(tmp_path):
  _write(tmp_path)
  data = load_visual_genome(tmp_path, image_size=16, max_regions=1, max_words=11,
                            validation_fraction=0.0, test_fraction=0.0)
  records = {int(data["train"][i]["image_id"]): data["train"][i] for i in range(3)}
  assert records[1]["boxes"].shape == (1, 4) and int(records[1]["num_regions"]) == 1
  assert records[1]["phrases"] == [b"the red cars door"]
  words = load_visual_genome(tmp_path, image_size=16, max_regions=5, max_words=11,
                             validation_fraction=0.0, test_fraction=0.0)["train"].phrases()
  assert "one two three four five six seven eight nine ten eleven" in words


def test_hash_split_is_a_function_of_the_id(tmp_path):
  splits = [hash_split(i, validation_fraction=0.1, test_fraction=0.2) for i in range(5000)]
  assert splits == [hash_split(i, validation_fraction=0.1, test_fraction=0.2)
                    for i in range(5000)]
  counts = {s: splits.count(s) / 5000 for s in ("train", "validation", "test")}
  assert abs(counts["test"] - 0.2) < 0.03 and abs(counts["validation"] - 0.1) < 0.03
  _write(tmp_path)
  data = load_visual_genome(tmp_path, image_size=16, test_fraction=0.5, validation_fraction=0.2)
  ids = {split: {int(source[i]["image_id"]) for i in range(len(source))}
         for split, source in data.items()}
  assert set().union(*ids.values()) == {1, 2, 3} and sum(map(len, ids.values())) == 3
  for split, members in ids.items():
    assert all(hash_split(i, validation_fraction=0.2, test_fraction=0.5) == split
               for i in members)


def test_phrase_tokens():
  assert phrase_tokens("A man's RED hat.") == ["a", "mans", "red", "hat"]
  assert phrase_tokens("\u00bd cup of caf\u00e9") == ["half", "cup", "of", "cafe"]
  assert phrase_tokens("  two-tone   car ") == ["twotone", "car"]
  assert phrase_tokens("...") == []


def test_missing_files_name_the_expected_path(tmp_path):
  _write(tmp_path)
  (tmp_path / "region_descriptions.json").unlink()
  with pytest.raises(ValueError, match="region_descriptions.json"):
    load_visual_genome(tmp_path)
  _write(tmp_path, drop_file=2)
  (tmp_path / "VG_100K_2" / "2.jpg").unlink()
  with pytest.raises(ValueError, match=r"VG_100K_2/2\.jpg"):
    load_visual_genome(tmp_path)
  with pytest.raises(ValueError, match="data_dir"):
    load_visual_genome(tmp_path / "nowhere")
  _write(tmp_path, split=SPLIT)
  with pytest.raises(ValueError, match="densecap_splits_v2.json"):
    load_visual_genome(tmp_path, split_file=tmp_path / "densecap_splits_v2.json")
  _write(tmp_path, images=[{"image_id": 1, "width": 60, "height": 40}])
  with pytest.raises(ValueError, match="image 2 .*image_data.json"):
    load_visual_genome(tmp_path)


def test_empty_scene_and_box_outside_the_image(tmp_path):
  regions = [{"id": 1, "regions": [_region(11, 1, "car", 6, 4, 30, 20)]},
             {"id": 2, "regions": []},
             {"id": 3, "regions": [_region(31, 3, "sky", 2, 3, 10, 10)]}]
  _write(tmp_path, regions=regions)
  with pytest.raises(ValueError, match="image 2 is an empty scene"):
    load_visual_genome(tmp_path)
  data = load_visual_genome(tmp_path, skip_invalid=True, validation_fraction=0.0,
                            test_fraction=0.0)
  assert len(data["train"]) == 2 and data["train"].skipped["empty_scenes"] == 1
  regions[1]["regions"] = [_region(21, 2, "far away", 45, 0, 10, 10),  # x 45 >= width 40
                           _region(22, 2, "wall", 0, 0, 40, 40)]
  _write(tmp_path, regions=regions)
  with pytest.raises(ValueError, match="image 2: region 21 .*outside the image"):
    load_visual_genome(tmp_path)
  data = load_visual_genome(tmp_path, skip_invalid=True, validation_fraction=0.0,
                            test_fraction=0.0)
  assert data["train"].skipped["boxes_outside"] == 1
  kept = [data["train"][i] for i in range(3) if int(data["train"][i]["image_id"]) == 2]
  assert kept[0]["region_ids"][:1].tolist() == [22] and int(kept[0]["num_regions"]) == 1
  regions[1]["regions"] = [_region(21, 2, "flat", 5, 5, 10, 0)]  # no height
  _write(tmp_path, regions=regions)
  with pytest.raises(ValueError, match="outside the image"):
    load_visual_genome(tmp_path)


@pytest.mark.parametrize("kwargs, name", [
    (dict(image_size=0), "image_size"),
    (dict(max_regions=0), "max_regions"),
    (dict(max_words=0), "max_words"),
    (dict(test_fraction=-0.1), "test_fraction"),
    (dict(test_fraction=0.6, validation_fraction=0.6), "validation_fraction"),
])
def test_argument_errors(tmp_path, kwargs, name):
  _write(tmp_path)
  with pytest.raises(ValueError, match=name):
    load_visual_genome(tmp_path, **kwargs)


def test_bad_split_file(tmp_path):
  _write(tmp_path, split={"training": [1]})
  with pytest.raises(ValueError, match="split_file"):
    load_visual_genome(tmp_path, split_file=tmp_path / "densecap_splits.json")
  _write(tmp_path, split={"train": [1], "val": [1]})
  with pytest.raises(ValueError, match="two splits"):
    load_visual_genome(tmp_path, split_file=tmp_path / "densecap_splits.json")


def test_records_share_the_dense_digits_format(tmp_path):
  _write(tmp_path)
  record = load_visual_genome(tmp_path, image_size=64, max_regions=7)["train"][0]
  images, labels = load_digits("sklearn_digits", "test")
  scene = make_scene([(images[0], int(labels[0]), {"size": 0, "tilt": 0, "stroke": 1})],
                     np.random.default_rng(0), canvas_size=64, max_overlap=0.3, max_pairs=2)
  digits = pad_scene(scene, max_regions=7)
  for key in ("image_hw", "boxes", "num_regions", "labels"):
    assert np.asarray(record[key]).dtype == np.asarray(digits[key]).dtype, key
    assert np.shape(record[key]) == np.shape(digits[key]), key
  assert record["image"].shape[:2] == digits["image"].shape[:2] == (64, 64)
  assert len(record["phrases"]) == len(digits["phrases"]) == 7
