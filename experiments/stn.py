"""Spatial Transformer Networks on distorted MNIST (Jaderberg et al. 2015, Sec. 4.1).

  python -m experiments.stn --workdir=DIR [--config=experiments/configs/stn.py]
      [--config.model=st_cnn] [--config.distortion=RTS] ...

Writes DIR/metrics.jsonl (`error_rate`, `loss` per split), DIR/tensorboard,
DIR/checkpoints, DIR/config.json and DIR/samples/transforms_<step>.png (inputs
next to what the transformer made of them; inputs alone for FCN/CNN).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax import viz
from vislang_jax.data.builders import build_digits_dataset
from vislang_jax.models.stn import make_classifier
from vislang_jax.objectives.classification import classification_loss
from vislang_jax.train import cli
from vislang_jax.train.loop import Task, train_and_evaluate as run_task

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam, or the paper's SGD with momentum and a /10 step every third of training."""
  name, lr = config.train.optimizer, config.train.learning_rate
  if name not in OPTIMIZERS:
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}; got {name!r}.")
  if name == "adam":
    return optax.adam(lr)
  third = max(config.train.num_steps // 3, 1)
  schedule = optax.piecewise_constant_schedule(lr, {third: 0.1, 2 * third: 0.1})
  return optax.sgd(schedule, momentum=0.9)


def load_datasets(config: ml_collections.ConfigDict) -> dict:
  data = config.data
  clutter = config.distortion == "cluttered"
  return build_digits_dataset(
      distortion=config.distortion, source=data.source,
      data_dir=data.dir or None,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      canvas_size=data.canvas_size if clutter else None,
      num_clutter=data.num_clutter if clutter else None,
      clutter_size=data.clutter_size if clutter else None)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, float]:
  """Trains `config.model` on `config.distortion` digits; returns test metrics."""
  datasets = load_datasets(config)
  image_shape = np.asarray(datasets["train"][0]["image"]).shape
  model = make_classifier(
      config.model, transform=config.transform,
      out_hw=(config.out_size,) * 2 if config.out_size else None,
      localisation=None if config.localisation == "paper" else config.localisation,
      tps_grid_size=config.tps_grid_size)

  def metric_fn(params, batch):
    logits, _ = model.apply(params, batch["image"])
    loss, metrics = classification_loss(logits, batch["label"])
    return {"loss": loss, **metrics}

  def loss_fn(params, batch, key):
    del key  # deterministic model
    metrics = metric_fn(params, batch)
    return metrics["loss"].mean(), {"error_rate": metrics["error_rate"].mean()}

  samples = np.stack([np.asarray(datasets["test"][i]["image"], np.float32) / 255.0
                      for i in range(config.num_samples)])
  apply = jax.jit(model.apply)

  def write_samples(state, split):
    del split  # the same samples after every evaluation
    _, aux = apply(state.params, samples)
    columns = [samples]
    if "transformed" in aux:
      out = np.asarray(aux["transformed"])[..., :samples.shape[-1]]
      columns.append(np.asarray(jax.image.resize(
          out, samples.shape, "nearest")) if out.shape != samples.shape else out)
    viz.save_image_grid(
        os.path.join(workdir, "samples", f"transforms_{int(state.step)}.png"),
        np.stack(columns, axis=1))

  task = Task(init_params=lambda k: model.init(k, jnp.zeros((1,) + image_shape)),
              loss_fn=loss_fn, metric_fn=metric_fn,
              optimizer=make_optimizer(config), on_eval=write_samples)
  return run_task(config, workdir, task, datasets)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "stn.py"))
