"""DRAW's read attention classifying cluttered digits (Gregor et al. 2015, Sec. 4.1).

  python -m experiments.draw_classify --workdir=DIR
      [--config=experiments/configs/draw_classify.py[:paper]] [--config.model.glimpses=4] ...

Writes DIR/metrics.jsonl (`error_rate`, `loss` per split), DIR/tensorboard,
DIR/checkpoints, DIR/config.json and DIR/samples/glimpses_<step>.png: for each of the first
`num_samples` validation images two rows, glimpse t = 1..T from left to right; the upper
row is the image with glimpse t's extent drawn in red (centre (gx, gy), side N * delta),
the lower row the glimpse itself (r_t / gamma), enlarged to the image size
(`viz.glimpses.glimpse_grid`).
"""

import os

import jax
import ml_collections
import numpy as np

from experiments.classification import fit_classifier
from vislang_jax import viz
from vislang_jax.data.builders import build_digits_dataset
from vislang_jax.data.pipeline import stack_records
from vislang_jax.models.draw_classifier import RecurrentAttentionClassifier
from vislang_jax.train import cli, evaluate
from vislang_jax.viz import glimpses


def load_datasets(config: ml_collections.ConfigDict) -> dict:
  data = config.data
  return build_digits_dataset(
      distortion="cluttered", source=data.source, data_dir=data.dir or None,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      canvas_size=data.canvas_size, num_clutter=data.num_clutter,
      clutter_size=data.clutter_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains the recurrent attention classifier on cluttered digits; returns the final metrics."""
  datasets = load_datasets(config)
  model = RecurrentAttentionClassifier(**config.model)

  apply = jax.jit(lambda params, images: model.apply({"params": params}, images)[1])

  def glimpse_arrays(params, source, key):
    del key  # deterministic model
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    images = np.asarray(images, np.float32) / 255.0
    aux = apply(params, images)
    return {"images": images, "read": aux["read"], "glimpses": aux["glimpses"]}

  def write_glimpses(arrays, directory, split, step):
    del split  # validation only
    grid = glimpses.glimpse_grid(arrays["images"], arrays["read"], arrays["glimpses"],
                                 n=config.model.read_n)
    viz.save_image_grid(os.path.join(directory, f"glimpses_{step}.png"), grid)

  figure = evaluate.Figure(name="glimpses", splits=("validation",), arrays_fn=glimpse_arrays,
                           write_fn=write_glimpses)
  return fit_classifier(config, workdir, model, datasets, figure)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "draw_classify.py"))
