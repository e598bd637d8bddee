"""Data: digit sources, STN distortions, the distorted-digits TFDS builder, grain loaders."""

from vislang_jax.data.builders import (
    DISTORTIONS,
    DigitsConfig,
    DistortedDigits,
    build_digits_dataset,
    image_shape,
)
from vislang_jax.data.distortions import (
    cluttered,
    elastic,
    projective,
    rotate,
    rotate_translate_scale,
    to_uint8,
)
from vislang_jax.data.idx import read_idx, write_idx
from vislang_jax.data.pipeline import ImageToFloat, make_loader
from vislang_jax.data.sources import SOURCES, load_digits

__all__ = [
    "DISTORTIONS",
    "SOURCES",
    "DigitsConfig",
    "DistortedDigits",
    "ImageToFloat",
    "build_digits_dataset",
    "cluttered",
    "elastic",
    "image_shape",
    "load_digits",
    "make_loader",
    "projective",
    "read_idx",
    "rotate",
    "rotate_translate_scale",
    "to_uint8",
    "write_idx",
]
