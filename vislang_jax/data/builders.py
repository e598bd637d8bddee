"""A TFDS builder for distorted and cluttered digits (`digit_builder.DigitBuilder`).

One builder, `DistortedDigits`, whose config holds every parameter that changes the data.
Splits (`digit_builder.SPLITS`): "train" with `copies` distorted versions of each digit,
"validation" and "test" with one version each.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data import distortions
from vislang_jax.data.digit_builder import DigitBuilder, DigitConfig, prepare

DISTORTIONS = ("none", "R", "RTS", "P", "E", "cluttered")
# Defaults of the cluttered canvas: RAM's 60x60 with 4 pieces of 8x8 clutter.
CLUTTER_DEFAULTS = {"canvas_size": 60, "num_clutter": 4, "clutter_size": 8}
_DISTORT = {
    "none": lambda digit, rng: digit,
    "R": distortions.rotate,
    "RTS": distortions.rotate_translate_scale,
    "P": distortions.projective,
    "E": distortions.elastic,
}


def image_shape(distortion: str, canvas_size: int | None = None) -> tuple[int, int, int]:
  """The `[H, W, 1]` shape of the images a distortion produces.

  Args:
    distortion: one of DISTORTIONS.
    canvas_size: the side for "cluttered" (default 60); must be None otherwise.
  """
  check_choice("distortion", distortion, DISTORTIONS)
  if distortion == "cluttered":
    side = CLUTTER_DEFAULTS["canvas_size"] if canvas_size is None else canvas_size
  elif canvas_size is not None:
    raise ValueError(
        f"canvas_size is only for distortion='cluttered', got canvas_size={canvas_size!r} with {distortion!r}."
    )
  else:
    side = 42 if distortion == "RTS" else 28
  return (side, side, 1)


@dataclasses.dataclass(kw_only=True)
class DigitsConfig(DigitConfig):
  """Every parameter of `DistortedDigits`; build with `DigitsConfig.make`, which validates.

  Attributes (beyond `DigitConfig`'s source, mnist_dir, seed):
    distortion: one of DISTORTIONS.
    copies: distorted versions of each training digit.
    canvas_size, num_clutter, clutter_size: the cluttered canvas (None otherwise).
  """

  distortion: str
  copies: int = 1
  canvas_size: int | None = None
  num_clutter: int | None = None
  clutter_size: int | None = None

  @classmethod
  def make(
      cls,
      *,
      distortion: str,
      source: str,
      mnist_dir: str | os.PathLike | None = None,
      seed: int = 0,
      copies: int = 1,
      canvas_size: int | None = None,
      num_clutter: int | None = None,
      clutter_size: int | None = None,
  ) -> DigitsConfig:
    """Validates the parameters, fills the cluttered defaults and names the config.

    Raises:
      ValueError: naming the argument, for any value out of range.
    """
    check_choice("distortion", distortion, DISTORTIONS)
    check_int("copies", copies, low=1)
    if distortion == "none" and copies != 1:
      raise ValueError(
          f"copies must be 1 with distortion='none' (copies would be identical), got {copies!r}."
      )
    clutter = {"canvas_size": canvas_size, "num_clutter": num_clutter, "clutter_size": clutter_size}
    if distortion == "cluttered":
      clutter = {k: CLUTTER_DEFAULTS[k] if v is None else v for k, v in clutter.items()}
      distortions.validate_clutter(**clutter)
      suffix = "-canvas{canvas_size}-clutter{num_clutter}x{clutter_size}".format(**clutter)
    else:
      given = {k: v for k, v in clutter.items() if v is not None}
      if given:
        raise ValueError(
            f"{', '.join(given)} only apply to distortion='cluttered', got {given} with {distortion!r}."
        )
      suffix = ""
    return cls.create(
        name=f"{distortion}-{source}-seed{seed}-copies{copies}{suffix}",
        description=f"{source} digits, distortion {distortion!r}, seed {seed}, {copies} train copies{suffix}.",
        source=source,
        mnist_dir=mnist_dir,
        seed=seed,
        distortion=distortion,
        copies=int(copies),
        **clutter,
    )


class DistortedDigits(DigitBuilder):
  """MNIST-style digits under one STN distortion (Jaderberg et al., 2015, Sec. 4.1) or clutter.

  Construct with a `DigitsConfig` instance: `DistortedDigits(config=DigitsConfig.make(...),
  data_dir=..., file_format="array_record")`. Records: `image` uint8 `[H, W, 1]`,
  `label` ClassLabel(10).
  """

  # Bump on any change to the generated data (distortions, split rule, sources).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description="Digits distorted as in Spatial Transformer Networks (Jaderberg et al., 2015).",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(
                    shape=image_shape(config.distortion, config.canvas_size), dtype=np.uint8
                ),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        ),
        supervised_keys=("image", "label"),
    )

  def _split_examples(self, digits):
    copies = self.builder_config.copies
    return {
        split: self._generate_examples(split, images, labels, copies if split == "train" else 1)
        for split, (images, labels) in digits.items()
    }

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray, copies: int):
    config = self.builder_config
    for copy in range(copies):
      for i in range(len(images)):
        index = copy * len(images) + i
        rng = self.example_rng(split, index)
        # Clutter is cropped from the same split, so test clutter stays in test.
        if config.distortion == "cluttered":
          image = distortions.cluttered(
              images[i],
              images,
              rng,
              canvas_size=config.canvas_size,
              num_clutter=config.num_clutter,
              clutter_size=config.clutter_size,
          )
        else:
          image = _DISTORT[config.distortion](images[i], rng)
        yield index, {"image": distortions.to_uint8(image)[..., None], "label": int(labels[i])}


def build_digits_dataset(
    *,
    distortion: str,
    source: str,
    data_dir: str | os.PathLike | None,
    mnist_dir: str | os.PathLike | None = None,
    seed: int = 0,
    copies: int = 1,
    canvas_size: int | None = None,
    num_clutter: int | None = None,
    clutter_size: int | None = None,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares a distorted-digits dataset in `data_dir` (once) and returns its data sources.

  A dataset already prepared in `data_dir` with the same parameters is reused. Image shape:
  `image_shape(distortion, canvas_size)`, or `sources["train"].dataset_info.features`.

  Args:
    distortion: "none", "R", "RTS", "P", "E" or "cluttered".
    source: "mnist" or "sklearn_digits" (see `sources.load_digits`).
    data_dir: TFDS data dir (None: TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets);
      the dataset lands in
      `data_dir/distorted_digits/<config name>/<version>/`.
    mnist_dir: MNIST IDX folder, for source="mnist" (else TFDS downloads MNIST).
    seed: base seed of the distortions.
    copies: distorted versions of each training digit (train split only).
    canvas_size, num_clutter, clutter_size: for "cluttered" only; default 60, 4, 8.

  Returns:
    `{"train", "validation", "test"}` -> random-access source of
    `{"image": uint8 [H, W, 1], "label": int}` records.

  Raises:
    ValueError: naming the argument, for bad parameters or unavailable source data.
  """
  config = DigitsConfig.make(
      distortion=distortion,
      source=source,
      mnist_dir=mnist_dir,
      seed=seed,
      copies=copies,
      canvas_size=canvas_size,
      num_clutter=num_clutter,
      clutter_size=clutter_size,
  )
  return prepare(DistortedDigits, config, data_dir=data_dir)
