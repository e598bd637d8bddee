"""Data: digit sources, the derived TFDS builders (distorted, two-digit, captioned digits),
caption encoding and COCO captions, grain loaders."""

from vislang_jax.data.builders import (
    DISTORTIONS,
    DigitsConfig,
    DistortedDigits,
    build_digits_dataset,
    image_shape,
)
from vislang_jax.data.captioned_digits import build_captioned_digits_dataset
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits, load_coco_captions, references
from vislang_jax.data.distortions import (
    cluttered,
    elastic,
    projective,
    rotate,
    rotate_translate_scale,
    to_uint8,
)
from vislang_jax.data.idx import read_idx, write_idx
from vislang_jax.data.multi_digit import build_multi_digit_dataset
from vislang_jax.data.pipeline import ImageToFloat, make_loader
from vislang_jax.data.sources import SOURCES, load_digit_splits, load_digits
from vislang_jax.data.vocabulary import Vocabulary

__all__ = [
    "DISTORTIONS",
    "SOURCES",
    "DigitsConfig",
    "DistortedDigits",
    "EncodedCaptions",
    "ImageToFloat",
    "Vocabulary",
    "build_captioned_digits_dataset",
    "build_digits_dataset",
    "build_encoded_captioned_digits",
    "build_multi_digit_dataset",
    "cluttered",
    "elastic",
    "image_shape",
    "load_coco_captions",
    "load_digit_splits",
    "load_digits",
    "make_loader",
    "projective",
    "read_idx",
    "references",
    "rotate",
    "rotate_translate_scale",
    "to_uint8",
    "write_idx",
]
