"""Sample-quality evaluators shared by every generator experiment (GANs, DRAW, alignDRAW), so
one table compares them on the same measures (`metrics.generation`).

* `digit_featurizer` / `scene_featurizer`: images -> (features, class probabilities) of a
  classifier trained once on the real training images and cached: a `judge.ConvNet` on 28x28
  digits (`config.classifier`), the scene judge on 60x60 captioned canvases (its `features`;
  class probabilities of the first digit it reads).
* `generation_evaluator`: `frechet_distance`, `classifier_score`, `classifier_score_real` and,
  given the judge's reader, `consistency` / `classifier_accuracy`.
* `two_sample_evaluator`: `two_sample_accuracy` on test at the end.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import tensorflow_datasets as tfds

from vislang_jax.data import digit_scenes
from vislang_jax.data.pipeline import ImageToFloat, stack_records
from vislang_jax.metrics import generation
from vislang_jax.metrics import judge as judges
from vislang_jax.train import evaluate

SCENE_FIELDS = ("labels", "boxes", "num_digits")
Featurize = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def cache_dir(config: ml_collections.ConfigDict, name: str) -> str:
  """`<data dir>/<name>`: networks trained on the data are facts of it, shared by runs."""
  return os.path.join(config.data.dir or tfds.core.constants.get_default_data_dir(), name)


def digit_featurizer(config: ml_collections.ConfigDict, train: Any) -> Featurize:
  """The digit classifier of `config.classifier` (widths, num_steps, batch_size,
  learning_rate), trained on `train`'s images and labels or read from
  `<data dir>/classifiers`: images [B, 28, 28, 1] -> (penultimate features [B, F],
  class probabilities [B, 10])."""
  records = ImageToFloat().map(stack_records(train, ("image", "label")))
  cfg = config.classifier
  net, params = generation.train_digit_classifier(
      records["image"], records["label"], widths=tuple(cfg.widths), num_steps=cfg.num_steps,
      batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=config.seed,
      cache_dir=cache_dir(config, "classifiers"))

  def featurize(images):
    features = net.apply({"params": params}, images, method=judges.ConvNet.features)
    return features, jax.nn.softmax(net.apply({"params": params}, images))

  return featurize


def scene_featurizer(judge: judges.SceneJudge, params: Any) -> Featurize:
  """images [B, 60, 60, 1] -> (the judge's scene features [B, F], the probabilities of the
  first digit it reads, in the windows of the layout it reads [B, 10])."""

  def featurize(images):
    features = judge.apply({"params": params}, images, method=judges.SceneJudge.features)
    layouts = jnp.argmax(judge.apply({"params": params}, images,
                                     method=judges.SceneJudge.layout_logits), -1)
    objects = judge.apply({"params": params}, images, layouts,
                          method=judges.SceneJudge.object_logits)
    return features, jax.nn.softmax(objects[:, 0])

  return featurize


def generation_evaluator(draw_fn: Callable, featurize: Featurize,
                         read: Callable | None = None, *, batch_size: int,
                         count: int | None, every: int | None = None,
                         splits: tuple[str, ...] | None = None) -> evaluate.CorpusMetrics:
  """`draw_fn(params, batch, key)`'s images [b, H, W, C] in [0, 1], one per record of the
  split's first `count`, against the records' real images: `frechet_distance` between the
  two sets' features, `classifier_score` of the drawn ones and `classifier_score_real` of the
  real ones (the ceiling); with `read` (images -> the judge's scene classes [b, 3]) also
  `consistency` (drawn scenes read as the records') and `classifier_accuracy` (real ones).
  `every` and `splits` as `evaluate.Scheduled`'s."""

  def predict(params, batch, key):
    drawn = draw_fn(params, batch, key)
    fake_features, fake_probs = featurize(drawn)
    real_features, real_probs = featurize(batch["image"])
    out = {"fake_features": fake_features, "fake_probs": fake_probs,
           "real_features": real_features, "real_probs": real_probs}
    if read is not None:
      out.update(drawn=read(drawn), real=read(batch["image"]),
                 **{k: batch[k] for k in SCENE_FIELDS})
    return out

  def score(predictions, source):
    del source
    scores = {
        "frechet_distance": generation.frechet_distance_of(predictions["real_features"],
                                                           predictions["fake_features"]),
        "classifier_score": generation.classifier_score(predictions["fake_probs"]),
        "classifier_score_real": generation.classifier_score(predictions["real_probs"])}
    if read is not None:
      targets = digit_scenes.scene_classes(*(predictions[k] for k in SCENE_FIELDS))
      scores["consistency"] = judges.agreement(predictions["drawn"], targets)
      scores["classifier_accuracy"] = judges.agreement(predictions["real"], targets)
    return scores

  return evaluate.CorpusMetrics(name="sample_quality", predict_fn=predict, score_fn=score,
                                batch_size=batch_size, count=count, every=every,
                                splits=splits)


def two_sample_evaluator(draw_fn: Callable, *, batch_size: int, count: int | None,
                         num_steps: int, seed: int) -> evaluate.CorpusMetrics:
  """`two_sample_accuracy` (`metrics.generation`) of `draw_fn`'s images against the real
  ones of the test split's first `count` records, at the end of training."""

  def predict(params, batch, key):
    return {"fake": draw_fn(params, batch, key), "real": batch["image"]}

  def score(predictions, source):
    del source
    return {"two_sample_accuracy": generation.two_sample_accuracy(
        predictions["real"], predictions["fake"], seed=seed, num_steps=num_steps)}

  return evaluate.CorpusMetrics(name="two_sample", predict_fn=predict, score_fn=score,
                                batch_size=batch_size, count=count, every=0,
                                splits=("test",))
