"""Semantic segmentation: FCN-32s / 16s / 8s (Long et al. 2015) and the deconvolution network
(Noh et al. 2015) on per-pixel labelled digit scenes or Pascal VOC 2012.

  python -m experiments.segmentation --workdir=DIR [--config.model=fcn32s|fcn16s|fcn8s|deconvnet]

`config.data.dataset`: "digits" (`data.segmentation_digits`, any digit source: 1-3 digits or
one digit among clutter, 0 background and d + 1 for digit d) or "voc" (`data.voc_segmentation`
from a local VOCdevkit/VOC2012 folder, 21 classes, 255 ignored). The loss: per-pixel softmax
cross-entropy averaged over the labelled pixels of each image. Logs per split the teacher-free
`loss`, and from the split's confusion matrix (`metrics.segmentation`) `mean_iou`,
`pixel_accuracy`, `mean_accuracy`, `frequency_weighted_iou` and `iou_<class>`; writes
samples/segmentation_<split>_<step>.png (image, truth, prediction).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax.checks import check_choice
from vislang_jax.data import segmentation_digits, voc_segmentation
from vislang_jax.data.pipeline import stack_records
from vislang_jax.metrics.segmentation import confusion_matrix, segmentation_metrics
from vislang_jax.models.fcn import FCN, DeconvNet
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.segmentation import save_segmentation_figure

MODELS = ("fcn32s", "fcn16s", "fcn8s", "deconvnet")
DATASETS = ("digits", "voc")
DIGIT_CLASSES = ("background",) + tuple(str(d) for d in range(10))
IGNORE = voc_segmentation.IGNORE_INDEX


def load_datasets(config: ml_collections.ConfigDict) -> tuple[dict, tuple[str, ...]]:
  """`({"train", "validation", "test"} -> records, class names)` of `config.data`."""
  data = config.data
  check_choice("data.dataset", data.dataset, DATASETS)
  if data.dataset == "voc":
    if not data.voc_dir:
      raise ValueError("data.voc_dir must name the VOCdevkit/VOC2012 folder with "
                       "data.dataset='voc', got ''.")
    load = lambda split: voc_segmentation.load_voc_segmentation(data.voc_dir, split,
                                                                size=data.image_size)
    # VOC 2012's test labels are not public: val is both the validation and the test split.
    return ({"train": load("train"), "validation": load("val"), "test": load("val")},
            voc_segmentation.VOC_CLASSES)
  splits = segmentation_digits.build_segmentation_digits_dataset(
      source=data.source, data_dir=data.dir or None, mnist_dir=data.mnist_dir or None,
      seed=config.seed, layout=data.layout, canvas_size=data.canvas_size, copies=data.copies)
  return splits, DIGIT_CLASSES


def make_model(config: ml_collections.ConfigDict, num_classes: int):
  """`config.model`'s network over `num_classes` classes."""
  check_choice("model", config.model, MODELS)
  if config.model == "deconvnet":
    return DeconvNet(num_classes=num_classes, **config.deconvnet)
  return FCN(num_classes=num_classes, variant=config.model[3:], **config.fcn)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` per pixel; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  check_choice("model", config.model, MODELS)
  datasets, class_names = load_datasets(config)
  num_classes = len(class_names)
  model = make_model(config, num_classes)
  example = datasets["train"][0]

  def logits_of(params, batch, key=None):
    images = jnp.asarray(batch["image"], jnp.float32)  # [0, 1] (pipeline.ImageToFloat)
    rngs = None if key is None else {"dropout": key}
    logits, _ = model.apply({"params": params}, images, train=key is not None, rngs=rngs)
    return logits

  def pixel_loss(params, batch, key):
    logits = logits_of(params, batch, key)
    labels = jnp.asarray(batch["segmentation"], jnp.int32)
    valid = labels != IGNORE
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
    counted = valid.sum((1, 2))
    return {"loss": jnp.where(valid, losses, 0.0).sum((1, 2)) / jnp.maximum(counted, 1)}

  def per_example_confusion(params, batch, key):
    del key  # deterministic
    predictions = jnp.argmax(logits_of(params, batch), -1)
    labels = jnp.asarray(batch["segmentation"], jnp.int32)
    confusion = jax.vmap(lambda p, l: confusion_matrix(p, l, num_classes=num_classes,
                                                       ignore_index=IGNORE))
    return {"confusion": confusion(predictions, labels)}

  def score(predictions, source):
    del source
    found = segmentation_metrics(predictions["confusion"].sum(0))
    per_class = np.asarray(found.pop("iou_per_class"))
    metrics = {k: float(v) for k, v in found.items()}
    metrics.update({f"iou_{name}": float(v) for name, v in zip(class_names, per_class)})
    return metrics

  predict = jax.jit(lambda params, images: jnp.argmax(
      logits_of(params, {"image": images}), -1))

  def sample_arrays(params, source, key):
    del key  # deterministic
    records = stack_records(source, ("image", "segmentation"), count=config.num_samples)
    images = np.asarray(records["image"], np.float32) / 255.0  # the records' uint8
    return {"image": images, "segmentation": records["segmentation"],
            "prediction": predict(params, images)}

  def write_samples(arrays, directory, split, step):
    save_segmentation_figure(os.path.join(directory, f"segmentation_{split}_{step}.png"),
                             arrays["image"], arrays["segmentation"], arrays["prediction"],
                             class_names=class_names)

  def init_params(key):
    params_key, dropout_key = jax.random.split(key)
    images = jnp.zeros((1,) + np.shape(example["image"]), jnp.float32)
    return model.init({"params": params_key, "dropout": dropout_key}, images)["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(pixel_loss),
              optimizer=make_optimizer(config.train))
  evaluators = [
      evaluate.MeanMetrics(name="loss", metric_fn=lambda p, b, k: pixel_loss(p, b, None),
                           batch_size=config.eval.batch_size),
      evaluate.CorpusMetrics(name="segmentation", predict_fn=per_example_confusion,
                             score_fn=score, batch_size=config.eval.batch_size),
  ]
  figures = [evaluate.Figure(name="samples", arrays_fn=sample_arrays, write_fn=write_samples)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs",
                                           "segmentation.py"))
