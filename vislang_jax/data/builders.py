"""A TFDS builder for distorted and cluttered digits, written as array_record (no TensorFlow).

One builder, `DistortedDigits`, whose config holds every parameter that changes the data;
the config name spells them all out, so different settings never share a folder in one
`data_dir`. Each example's randomness comes from
`np.random.default_rng([seed, split_id, index])`, so the records do not depend on the order
or parallelism in which they are written.

Splits: "train" (the source's train split less its last 10%, times `copies` distorted
versions), "validation" (the last 10% of the source's train split, one version each),
"test" (the source's test split, one version each).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.data import distortions
from vislang_jax.data.checks import check_choice, check_digit_source, check_int
from vislang_jax.data.sources import load_digit_splits

DISTORTIONS = ("none", "R", "RTS", "P", "E", "cluttered")
SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
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
class DigitsConfig(tfds.core.BuilderConfig):
  """Every parameter of `DistortedDigits`; build with `DigitsConfig.make`, which validates.

  Attributes:
    distortion: one of DISTORTIONS.
    source: one of `sources.SOURCES`.
    mnist_dir: folder of MNIST IDX files (source="mnist" only); where the data comes
      from, not what it is, so it is not part of the name.
    seed: base seed of every example's generator.
    copies: distorted versions of each training digit.
    canvas_size, num_clutter, clutter_size: the cluttered canvas (None otherwise).
  """

  distortion: str
  source: str
  mnist_dir: str | None = None
  seed: int = 0
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
    check_digit_source(source, mnist_dir)
    check_int("seed", seed, low=0)
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
    name = f"{distortion}-{source}-seed{seed}-copies{copies}{suffix}"
    return cls(
        name=name,
        description=f"{source} digits, distortion {distortion!r}, seed {seed}, {copies} train copies{suffix}.",
        distortion=distortion,
        source=source,
        mnist_dir=None if mnist_dir is None else os.fspath(mnist_dir),
        seed=int(seed),
        copies=int(copies),
        **clutter,
    )


class DistortedDigits(tfds.core.GeneratorBasedBuilder):
  """MNIST-style digits under one STN distortion (Jaderberg et al., 2015, Sec. 4.1) or clutter.

  Construct with a `DigitsConfig` instance: `DistortedDigits(config=DigitsConfig.make(...),
  data_dir=..., file_format="array_record")`. Records: `image` uint8 `[H, W, 1]`,
  `label` ClassLabel(10).
  """

  # Bump on any change to the generated data (distortions, split rule, sources).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    """None: this builder downloads nothing, so it has no checksums file beside its code.

    TFDS only uses `code_path` to find that file, and its default implementation needs
    `importlib_resources`, which TFDS 4.9.10 does not declare for Python >= 3.9
    (tensorflow/datasets#11212).
    """
    return None

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

  def _split_generators(self, dl_manager):
    del dl_manager  # The sources load themselves.
    config = self.builder_config
    parts = load_digit_splits(config.source, mnist_dir=config.mnist_dir)
    return {
        split: self._generate_examples(
            split, images, labels, config.copies if split == "train" else 1
        )
        for split, (images, labels) in parts.items()
    }

  def _generate_examples(self, split: str, images: np.ndarray, labels: np.ndarray, copies: int):
    config = self.builder_config
    split_id = _SPLIT_IDS[split]
    for copy in range(copies):
      for i in range(len(images)):
        index = copy * len(images) + i
        rng = np.random.default_rng([config.seed, split_id, index])
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
  return prepare_sources(DistortedDigits, config, data_dir=data_dir)


def prepare_sources(
    builder_class: type[tfds.core.GeneratorBasedBuilder],
    config: tfds.core.BuilderConfig,
    *,
    data_dir: str | os.PathLike | None,
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Writes `builder_class(config)` as array_record into `data_dir` once; returns every split's source."""
  data_dir = None if data_dir is None else os.fspath(data_dir)  # None: TFDS picks its default
  builder = builder_class(config=config, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return dict(builder.as_data_source())
