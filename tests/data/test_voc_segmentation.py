"""VOC 2012 segmentation records from a tiny VOC2012 folder written here (palette PNGs via PIL)."""

import numpy as np
import pytest
from PIL import Image

from vislang_jax.data.voc_segmentation import IGNORE_INDEX, VOC_CLASSES, load_voc_segmentation

# Two images: "a" 4x8 with classes 15 (person) left and the border label right; "b" 6x6.
MASKS = {
    "a": np.array([[15, 15, 15, 15, 255, 255, 0, 0]] * 4, np.uint8),
    "b": np.array([[0, 1, 2, 3, 4, 20]] * 6, np.uint8),
}
# Smooth colours, which JPEG keeps within a few levels.
COLORS = {"a": (200, 30, 90), "b": (10, 240, 120)}


def _palette_png(mask, path):
  picture = Image.fromarray(mask, mode="P")
  picture.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
  picture.save(path)


@pytest.fixture
def voc(tmp_path):
  for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (tmp_path / folder).mkdir(parents=True)
  for name, mask in MASKS.items():
    image = np.broadcast_to(np.array(COLORS[name], np.uint8), mask.shape + (3,))
    Image.fromarray(np.ascontiguousarray(image)).save(
        tmp_path / "JPEGImages" / f"{name}.jpg", quality=100)
    _palette_png(mask, tmp_path / "SegmentationClass" / f"{name}.png")
  sets = tmp_path / "ImageSets" / "Segmentation"
  (sets / "train.txt").write_text("a\n")
  (sets / "val.txt").write_text("b\n")
  (sets / "trainval.txt").write_text("a\nb\n\n")
  return tmp_path


def test_classes():
  assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
  assert VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor" and IGNORE_INDEX == 255


def test_records_hold_the_class_ids(voc):
  records = load_voc_segmentation(voc, "trainval")
  assert len(records) == 2 and len(load_voc_segmentation(voc, "train")) == 1
  for index, name in enumerate(("a", "b")):
    record = records[index]
    assert record["name"] == name
    assert record["image"].dtype == np.uint8 and record["image"].shape == MASKS[name].shape + (3,)
    color = np.broadcast_to(COLORS[name], record["image"].shape)
    np.testing.assert_allclose(record["image"], color, atol=3)
    # The palette indices themselves, not the palette's colours.
    assert record["segmentation"].dtype == np.uint8
    np.testing.assert_array_equal(record["segmentation"], MASKS[name])


def test_size_resizes_the_central_square_nearest(voc):
  a = load_voc_segmentation(voc, "train", size=2)[0]
  # The central 4x4 of "a" is columns 2..5: 15 15 255 255; halved by nearest neighbours.
  np.testing.assert_array_equal(a["segmentation"], [[15, 255], [15, 255]])
  assert a["image"].shape == (2, 2, 3)
  b = load_voc_segmentation(voc, "val", size=12)[0]
  np.testing.assert_array_equal(b["segmentation"],
                                np.repeat(MASKS["b"], 2, axis=1).repeat(2, axis=0))
  assert set(np.unique(b["segmentation"]).tolist()) <= set(MASKS["b"].ravel().tolist())


def test_errors(voc, tmp_path_factory):
  with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'trainval'\)"):
    load_voc_segmentation(voc, "test")
  with pytest.raises(ValueError, match="size must be a positive int, got 0"):
    load_voc_segmentation(voc, "val", size=0)
  with pytest.raises(ValueError, match="root must be a VOC2012 folder holding ImageSets"):
    load_voc_segmentation(tmp_path_factory.mktemp("empty"), "val")
  (voc / "JPEGImages" / "b.jpg").unlink()
  with pytest.raises(ValueError, match=r"lists 'b' in val.txt but has no JPEGImages/b.jpg"):
    load_voc_segmentation(voc, "val")
  Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(voc / "SegmentationClass" / "a.png")
  with pytest.raises(ValueError, match=r"must be a palette \('P' mode\) PNG of class ids, got "
                     r"mode 'RGB'"):
    load_voc_segmentation(voc, "train")[0]
