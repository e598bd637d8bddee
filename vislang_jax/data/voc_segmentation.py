"""PASCAL VOC 2012 semantic segmentation from a local VOCdevkit folder, as random-access records.

The data of FCN (Long, Shelhamer, Darrell, CVPR 2015, Sec. 4-5: trained on VOC 2011/2012
`train` (with SBD's extra labels in the paper), scored on `val` with
`metrics.segmentation`). TFDS 4.9's "voc" holds only the detection annotations, so this reads
the challenge's own files, which users download once (VOCtrainval_11-May-2012.tar, 2 GB;
nothing here downloads). `root` is the `VOCdevkit/VOC2012` folder:

  ImageSets/Segmentation/{train,val,trainval}.txt   one image name per line
  JPEGImages/<name>.jpg                              the RGB image
  SegmentationClass/<name>.png                       palette ("P" mode) PNG whose pixel values
                                                     are class ids: 0 background, 1..20 the
                                                     VOC_CLASSES, 255 object borders and
                                                     "void" (IGNORE_INDEX)

(2012: 1,464 train and 1,449 val images.) Records `{"image": uint8 [H, W, 3], "segmentation": uint8
[H, W], "name": str}` are read when accessed. With `size` S, every record is S x S (for
batching): the central square of the image (side min(H, W)) is resized to S x S, the image
with PIL's bicubic filter (`captions.resize_square`), the mask with nearest neighbours (so
it holds only class ids and 255). FCN scores full images (`size=None`).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data.captions import resize_square

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")
IGNORE_INDEX = 255
SPLITS = ("train", "val", "trainval")


class VocSegmentation:
  """Random-access records of one split (module docstring); build with `load_voc_segmentation`.

  Args:
    root: the VOC2012 folder.
    names: the split's image names.
    size: S, the side of every record, or None for the images' own sizes.
  """

  def __init__(self, root: str, names: list[str], size: int | None):
    self.root, self.names, self.size = root, names, size

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, index: int) -> dict[str, np.ndarray | str]:
    name = self.names[index]
    with Image.open(os.path.join(self.root, "JPEGImages", f"{name}.jpg")) as picture:
      image = np.asarray(picture.convert("RGB"))
    with Image.open(os.path.join(self.root, "SegmentationClass", f"{name}.png")) as labels:
      if labels.mode != "P":
        raise ValueError(f"SegmentationClass/{name}.png must be a palette ('P' mode) PNG of "
                         f"class ids, got mode {labels.mode!r}.")
      mask = labels if self.size is None else _resize_nearest(labels, self.size)
      mask = np.asarray(mask, np.uint8)
    if image.shape[:2] != (labels.height, labels.width):
      raise ValueError(f"{name}: JPEGImages and SegmentationClass must share one size, got "
                       f"{image.shape[:2]} and {(labels.height, labels.width)}.")
    if self.size is not None:
      image = resize_square(image, size=self.size)
    return {"image": image, "segmentation": mask, "name": name}

  def __repr__(self) -> str:
    return f"VocSegmentation({len(self)} images in {self.root!r}, size={self.size})"


def _resize_nearest(labels: Image.Image, size: int) -> Image.Image:
  """The central square of a palette image resized to `size` x `size`, nearest neighbours
  (the geometry of `captions.resize_square(center_crop=True)`)."""
  side = min(labels.width, labels.height)
  top, left = (labels.height - side) / 2, (labels.width - side) / 2
  return labels.resize((size, size), resample=Image.Resampling.NEAREST,
                       box=(left, top, left + side, top + side))


def load_voc_segmentation(root: str | os.PathLike, split: str, *,
                          size: int | None = None) -> VocSegmentation:
  """The records of one split of a local VOC 2012 folder (module docstring).

  Args:
    root: the `VOCdevkit/VOC2012` folder.
    split: "train", "val" or "trainval".
    size: S, to resize every record to S x S (central square), or None.

  Returns:
    A random-access source of `{"image": uint8 [H, W, 3], "segmentation": uint8 [H, W] (class ids,
    255 ignored), "name": str}` (H = W = S with `size`), in the order of the split's list.

  Raises:
    ValueError: for an unknown split, a size below 1, a missing split list, or a listed
      image whose JPEG or PNG is missing.
  """
  check_choice("split", split, SPLITS)
  if size is not None:
    size = check_int("size", size, low=1)
  root = os.fspath(root)
  listing = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
  if not os.path.isfile(listing):
    raise ValueError(f"root must be a VOC2012 folder holding ImageSets/Segmentation/{split}.txt,"
                     f" JPEGImages/ and SegmentationClass/, got {root!r} (no {listing!r}).")
  with open(listing, encoding="utf-8") as lines:
    names = [line.strip() for line in lines if line.strip()]
  for name in names:
    for path in (f"JPEGImages/{name}.jpg", f"SegmentationClass/{name}.png"):
      if not os.path.isfile(os.path.join(root, path)):
        raise ValueError(f"root {root!r} lists {name!r} in {split}.txt but has no {path}.")
  return VocSegmentation(root, names, size)
