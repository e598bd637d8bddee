"""Spatial Transformer Networks on distorted MNIST (Jaderberg et al. 2015, Sec. 4.1).

  python -m experiments.stn --workdir=DIR [--config=experiments/configs/stn.py[:paper]]
      [--config.model.name=st_cnn] [--config.distortion=RTS] ...

Writes DIR/metrics.jsonl (`error_rate`, `loss` per split), DIR/tensorboard,
DIR/checkpoints, DIR/config.json and DIR/samples/transforms_<step>.png (validation
inputs next to what the transformer made of them; inputs alone for FCN/CNN).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.classification import fit_classifier
from vislang_jax import viz
from vislang_jax.data.builders import build_digits_dataset
from vislang_jax.data.pipeline import stack_records
from vislang_jax.models.stn import make_classifier
from vislang_jax.train import cli, evaluate


def load_datasets(config: ml_collections.ConfigDict) -> dict:
  data = config.data
  clutter = config.distortion == "cluttered"
  return build_digits_dataset(
      distortion=config.distortion, source=data.source, data_dir=data.dir or None,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      canvas_size=data.canvas_size if clutter else None,
      num_clutter=data.num_clutter if clutter else None,
      clutter_size=data.clutter_size if clutter else None)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` on `config.distortion` digits; returns the final metrics."""
  datasets = load_datasets(config)
  model = make_classifier(**config.model)

  apply = jax.jit(lambda params, images: model.apply({"params": params}, images)[1])

  def transforms(params, source, key):
    del key  # deterministic model
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    images = images / np.float32(255)
    columns = [images]
    out = apply(params, images).get("transformed")
    if out is not None:
      out = out[..., :images.shape[-1]]
      columns.append(out if out.shape == images.shape
                     else jax.image.resize(out, images.shape, "nearest"))
    return jnp.stack(columns, axis=1)

  def write_transforms(grid, directory, split, step):
    del split  # validation only
    viz.save_image_grid(os.path.join(directory, f"transforms_{step}.png"), grid)

  figure = evaluate.Figure(name="transforms", splits=("validation",), arrays_fn=transforms,
                           write_fn=write_transforms)
  return fit_classifier(config, workdir, model, datasets, figure)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "stn.py"))
