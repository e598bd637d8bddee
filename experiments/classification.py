"""The wiring the image-classification experiments share (STN, MNIST addition, DRAW's read
attention): a deterministic model ``apply(images) -> (logits, aux)`` trained with the
cross-entropy of ``objectives.classification`` and evaluated per split (``loss``,
``error_rate``) on the harness."""

import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax.objectives.classification import classification_loss
from vislang_jax.train import evaluate
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss


def fit_classifier(config: ml_collections.ConfigDict, workdir: str, model, datasets: dict,
                   figure: evaluate.Figure) -> dict[str, dict[str, float]]:
  """Trains ``model`` on ``datasets`` (records with ``image`` [H, W, C] uint8 in [0, 255] as
  the loaders give them and ``label``) with ``make_optimizer(config.train)``; returns
  ``fit``'s final metrics per split. ``figure`` is drawn on its own cadence."""
  image_shape = np.asarray(datasets["train"][0]["image"]).shape

  def per_example(params, batch, key):
    del key  # deterministic model
    logits, _ = model.apply({"params": params}, batch["image"])
    loss, metrics = classification_loss(logits, batch["label"])
    return {"loss": loss, **metrics}

  task = Task(init_params=lambda key: model.init(key, jnp.zeros((1,) + image_shape))["params"],
              loss_fn=mean_loss(per_example), optimizer=make_optimizer(config.train))
  evaluators = [evaluate.MeanMetrics(metric_fn=per_example, batch_size=config.eval.batch_size)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=[figure])
