"""MNIST addition with two spatial transformers in parallel (Jaderberg et al. 2015, A.1).

  python -m experiments.stn_addition --workdir=DIR
      [--config=experiments/configs/stn_addition.py[:paper]] [--config.model.name=cnn] ...

Each input holds two independently RTS-distorted digits, one per 42x42 channel
(`data.digit_addition`); the network outputs their sum (19 classes). With
`model.num_transformers=2` the two transformers (`models.stn.ParallelTransformers`) each read
both channels and warp both; their outputs are concatenated on channels (2 + 2) for the head.

Writes DIR/metrics.jsonl (`error_rate`, `loss` per split), DIR/tensorboard, DIR/checkpoints,
DIR/config.json and DIR/samples/transforms_<step>.png: per validation row, input channel 0
and 1, then each transformer's output channel 0 and 1 (inputs alone for FCN/CNN; outputs
smaller than 42x42 are centred on a black 42x42 square).
"""

import os

import jax
import ml_collections
import numpy as np

from experiments.classification import fit_classifier
from vislang_jax import viz
from vislang_jax.data.digit_addition import NUM_CLASSES, build_digit_addition_dataset
from vislang_jax.data.pipeline import stack_records
from vislang_jax.models.stn import make_classifier
from vislang_jax.train import cli, evaluate


def load_datasets(config: ml_collections.ConfigDict) -> dict:
  data = config.data
  return build_digit_addition_dataset(
      source=data.source, data_dir=data.dir or None, mnist_dir=data.mnist_dir or None,
      seed=config.seed, copies=data.copies)


def make_model(config: ml_collections.ConfigDict):
  """`make_classifier` with 19 classes and parallel transformers, from `config.model`."""
  return make_classifier(num_classes=NUM_CLASSES, arrangement="parallel", **config.model)


def channel_columns(images: np.ndarray, transformed: np.ndarray | None) -> np.ndarray:
  """`[N, 42, 42, 2]` inputs and `[N, Ho, Wo, 2K]` outputs -> `[N, 2 + 2K, 42, 42, 1]`.

  One column per channel: the inputs', then each transformer's in order. Outputs no larger
  than the input are centred on a black canvas of the input's size, larger ones resized.
  """
  channels = [images]
  if transformed is not None:
    (h, w), (ho, wo) = images.shape[1:3], transformed.shape[1:3]
    if ho <= h and wo <= w:
      top, left = (h - ho) // 2, (w - wo) // 2
      transformed = np.pad(transformed, ((0, 0), (top, h - ho - top), (left, w - wo - left),
                                         (0, 0)))
    else:
      transformed = np.asarray(jax.image.resize(
          transformed, (*images.shape[:3], transformed.shape[-1]), "linear"))
    channels.append(transformed)
  stacked = np.concatenate(channels, axis=-1)  # [N, H, W, 2 + 2K]
  return np.moveaxis(stacked, -1, 1)[..., None]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` on MNIST addition; returns the final metrics."""
  datasets = load_datasets(config)
  model = make_model(config)

  apply = jax.jit(lambda params, images: model.apply({"params": params}, images)[1])

  def transforms(params, source, key):
    del key  # deterministic model
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    images = images / np.float32(255)
    out = apply(params, images).get("transformed")
    return channel_columns(images, None if out is None else np.asarray(out))

  def write_transforms(grid, directory, split, step):
    del split  # validation only
    viz.save_image_grid(os.path.join(directory, f"transforms_{step}.png"), grid)

  figure = evaluate.Figure(name="transforms", splits=("validation",), arrays_fn=transforms,
                           write_fn=write_transforms)
  return fit_classifier(config, workdir, model, datasets, figure)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "stn_addition.py"))
