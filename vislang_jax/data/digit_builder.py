"""The base of the TFDS builders derived from a digit source (distorted, multi-digit, captioned).

Each derived dataset is written once as array_record (no TensorFlow) into a TFDS data dir and
read back as random-access sources. What they share lives here:
  * the config fields every one has (`source`, `mnist_dir`, `seed`) and their checks; a
    config's name spells out every parameter that changes the data, so different settings
    never share a folder in one data dir (`mnist_dir` says where the digits come from, not
    what they are, so it is not part of the name);
  * splits: "train" (the source's train split less its last 10%), "validation" (that last
    10%), "test" (the source's test split), and a builder's own (captioned digits' "novel");
  * each example's randomness: example `index` of a split draws from
    `np.random.default_rng([seed, split_id, index])`, so records do not depend on the order
    or parallelism in which they are written;
  * preparing once, on process 0 first (`prepare`).
`OfflineBuilder` holds what any generated dataset shares (no download, so no checksums file;
the examples' seeds) and `prepare` takes any such builder; `DigitBuilder` adds the digit sources.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data.sources import SOURCES, load_digit_splits

SPLITS = ("train", "validation", "test")
# Stable ids of every split a digit builder writes, for the examples' seeds.
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2, "novel": 3}


def check_digit_source(source: str, mnist_dir: str | os.PathLike | None) -> None:
  """`source` is one of `sources.SOURCES`; `mnist_dir` is given only with an MNIST source."""
  check_choice("source", source, SOURCES)
  if mnist_dir is not None and source not in ("mnist", "mnist_test"):
    raise ValueError(
        f"mnist_dir is only for source='mnist' or 'mnist_test', got mnist_dir={mnist_dir!r} "
        f"with source={source!r}.")


@dataclasses.dataclass(kw_only=True)
class DigitConfig(tfds.core.BuilderConfig):
  """The fields of every digit builder's config; subclasses add their own.

  Attributes:
    source: one of `sources.SOURCES`.
    mnist_dir: folder of MNIST IDX files (source="mnist" only); not part of the name.
    seed: base seed of every example's generator.
  """

  source: str
  mnist_dir: str | None = None
  seed: int = 0

  @classmethod
  def create(cls, *, name: str, description: str, source: str,
             mnist_dir: str | os.PathLike | None, seed: int, **fields: Any) -> DigitConfig:
    """Checks the shared fields and builds the config (subclasses check their own fields).

    Raises:
      ValueError: naming the argument, for an unknown source, a `mnist_dir` without
        source="mnist", or a negative seed.
    """
    check_digit_source(source, mnist_dir)
    check_int("seed", seed, low=0)
    return cls(name=name, description=description, source=source,
               mnist_dir=None if mnist_dir is None else os.fspath(mnist_dir), seed=int(seed),
               **fields)


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder that downloads nothing and seeds its examples (digit and generated datasets).

  Its config has a `seed` field; example `index` of a split (a key of SPLIT_IDS) draws from
  `example_rng(split, index)`.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    """None: these builders download nothing, so there is no checksums file beside the code.

    TFDS only uses `code_path` to find that file, and its default implementation needs
    `importlib_resources`, which TFDS 4.9.10 does not declare for Python >= 3.9
    (tensorflow/datasets#11212).
    """
    return None

  def example_rng(self, split: str, index: int) -> np.random.Generator:
    """The generator of example `index` of `split`: `default_rng([seed, split_id, index])`."""
    return np.random.default_rng([self.builder_config.seed, SPLIT_IDS[split], index])


class DigitBuilder(OfflineBuilder, skip_registration=True):
  """A dataset derived from a digit source; subclasses write `_split_examples`.

  Subclasses set `VERSION` (bump it on any change to the generated data), `RELEASE_NOTES`,
  `_info` and `_split_examples`, and are constructed with their config:
  `Builder(config=Config.make(...), data_dir=..., file_format="array_record")`.
  """

  def _split_generators(self, dl_manager):
    del dl_manager  # The sources load themselves.
    config = self.builder_config
    return self._split_examples(load_digit_splits(config.source, mnist_dir=config.mnist_dir))

  def _split_examples(self, digits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """`{"train", "validation", "test"} -> (images, labels)` -> `{split: example generator}`."""
    raise NotImplementedError

  def _seen_and_novel_splits(self, digits: dict[str, tuple[np.ndarray, np.ndarray]],
                             novel_classes: set[int]) -> dict[str, Any]:
    """The layout of builders with a held-out "novel" split: "train" (`config.copies`
    examples per digit), "validation" and "test" from `_generate_examples(split, images,
    labels, copies)`, "novel" from `_generate_novel(images, labels)` over the test digits.

    Raises:
      ValueError: when the test split has no digit of some class in `novel_classes`.
    """
    config = self.builder_config
    test_images, test_labels = digits["test"]
    missing = sorted(set(novel_classes) - set(test_labels.tolist()))
    if missing:
      raise ValueError(f"source={config.source!r}: its test split has no digit of classes "
                       f"{missing}, which the 'novel' split needs.")
    return {
        "train": self._generate_examples("train", *digits["train"], config.copies),
        "validation": self._generate_examples("validation", *digits["validation"], 1),
        "test": self._generate_examples("test", test_images, test_labels, 1),
        "novel": self._generate_novel(test_images, test_labels),
    }


def prepare(builder_class: type[OfflineBuilder], config: tfds.core.BuilderConfig, *,
            data_dir: str | os.PathLike | None
            ) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Writes `builder_class(config)` into `data_dir` once; returns every split's source.

  `data_dir` None is TFDS's default ($TFDS_DATA_DIR, else ~/tensorflow_datasets). On several
  processes, process 0 prepares first and the others wait for it: on a shared filesystem they
  then find the dataset prepared; on their own disks they prepare a copy.
  """
  data_dir = None if data_dir is None else os.fspath(data_dir)

  def prepared():
    builder = builder_class(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return builder

  if jax.process_index() == 0:
    builder = prepared()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepared {builder_class.__name__}/{config.name}")
  if jax.process_index() != 0:
    builder = prepared()
  return dict(builder.as_data_source())
