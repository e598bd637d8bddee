"""DRAW's read attention classifying cluttered digits (Gregor et al. 2015, Sec. 4.1).

  python -m experiments.draw_classify --workdir=DIR
      [--config=experiments/configs/draw_classify.py[:paper]] [--config.glimpses=4] ...

Writes DIR/metrics.jsonl (`error_rate`, `loss` per split), DIR/tensorboard,
DIR/checkpoints, DIR/config.json and DIR/samples/glimpses_<step>.png: for each of
`num_samples` test images two rows, glimpse t = 1..T from left to right; the upper row
is the image with glimpse t's extent drawn in red (centre (gx, gy), side N * delta),
the lower row the glimpse itself (r_t / gamma), enlarged to the image size.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax import viz
from vislang_jax.data.builders import build_digits_dataset
from vislang_jax.models.draw_classifier import RecurrentAttentionClassifier
from vislang_jax.objectives.classification import classification_loss
from vislang_jax.ops.filterbank import AttentionParams
from vislang_jax.train import cli
from vislang_jax.train.loop import Task, train_and_evaluate as run_task

_BOX_COLOUR = np.array([1.0, 0.0, 0.0], np.float32)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam, after clipping the gradient's global norm to `train.grad_clip_norm` (0: no clip)."""
  clip = config.train.grad_clip_norm
  if clip < 0:
    raise ValueError(f"train.grad_clip_norm must be >= 0 (0: off); got {clip}.")
  adam = optax.adam(config.train.learning_rate)
  return optax.chain(optax.clip_by_global_norm(clip), adam) if clip else adam


def load_datasets(config: ml_collections.ConfigDict) -> dict:
  data = config.data
  return build_digits_dataset(
      distortion="cluttered", source=data.source,
      data_dir=data.dir or None,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      canvas_size=data.canvas_size, num_clutter=data.num_clutter,
      clutter_size=data.clutter_size)


def draw_glimpse_boxes(images: np.ndarray, read: AttentionParams, *, n: int) -> np.ndarray:
  """Outlines each glimpse's extent on its image.

  Args:
    images: [S, H, W, 1] or [S, H, W, 3] in [0, 1].
    read: attention parameters with each field [T, S] (1-based pixel coordinates).
    n: ``N``; a glimpse spans ``N * delta`` pixels around ``(gx, gy)`` (the outer filter
      centres sit ``delta / 2`` inside that square). Edges outside the image are drawn on
      its border.

  Returns:
    [S, T, H, W, 3]: RGB copies of each image, copy t with glimpse t's square in red.
  """
  images = np.asarray(images, np.float32)
  rgb = np.broadcast_to(images, images.shape[:3] + (3,))
  gx, gy, delta = (np.asarray(v, np.float64) for v in (read.gx, read.gy, read.delta))
  steps, height, width = gx.shape[0], images.shape[1], images.shape[2]
  out = np.repeat(rgb[:, None], steps, axis=1).copy()
  half = n * delta / 2
  for s in range(images.shape[0]):
    for t in range(steps):
      # 1-based centres -> 0-based pixel indices.
      top, bottom = (np.clip(np.rint(gy[t, s] - 1 + sign * half[t, s]), 0, height - 1).astype(int)
                     for sign in (-1, 1))
      left, right = (np.clip(np.rint(gx[t, s] - 1 + sign * half[t, s]), 0, width - 1).astype(int)
                     for sign in (-1, 1))
      frame = out[s, t]
      frame[[top, bottom], left:right + 1] = _BOX_COLOUR
      frame[top:bottom + 1, [left, right]] = _BOX_COLOUR
  return out


def enlarge(patches: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of [..., N, N, C] patches to [..., height, width, C]."""
  rows = np.arange(height) * patches.shape[-3] // height
  cols = np.arange(width) * patches.shape[-2] // width
  return patches[..., rows, :, :][..., cols, :]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, float]:
  """Trains the recurrent attention classifier on cluttered digits; returns test metrics."""
  datasets = load_datasets(config)
  image_shape = np.asarray(datasets["train"][0]["image"]).shape
  model = RecurrentAttentionClassifier(
      num_classes=10, glimpses=config.glimpses, read_n=config.read_n,
      hidden_size=config.hidden_size, glimpse_features=config.glimpse_features)

  def per_example(params, batch):
    logits, _ = model.apply(params, batch["image"])
    loss, metrics = classification_loss(logits, batch["label"])
    return {"loss": loss, **metrics}

  def loss_fn(params, batch, key):
    del key  # deterministic model
    metrics = per_example(params, batch)
    return metrics["loss"].mean(), {"error_rate": metrics["error_rate"].mean()}

  samples = np.stack([np.asarray(datasets["test"][i]["image"], np.float32) / 255.0
                      for i in range(config.num_samples)])
  apply = jax.jit(model.apply)

  def write_samples(state, split):
    del split  # the same samples after every evaluation
    _, aux = jax.device_get(apply(state.params, samples))
    read = aux["read"]
    boxes = draw_glimpse_boxes(samples, read, n=config.read_n)  # [S, T, H, W, 3]
    patches = np.clip(aux["glimpses"] / read.gamma[..., None, None, None], 0.0, 1.0)
    patches = enlarge(np.swapaxes(patches, 0, 1), *samples.shape[1:3])  # [S, T, H, W, C]
    patches = np.broadcast_to(patches, boxes.shape)
    rows = np.stack([boxes, patches], axis=1).reshape((-1,) + boxes.shape[1:])
    viz.save_image_grid(
        os.path.join(workdir, "samples", f"glimpses_{int(state.step)}.png"), rows)

  task = Task(init_params=lambda k: model.init(k, jnp.zeros((1,) + image_shape)),
              loss_fn=loss_fn, metric_fn=per_example,
              optimizer=make_optimizer(config), on_eval=write_samples)
  return run_task(config, workdir, task, datasets)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "draw_classify.py"))
