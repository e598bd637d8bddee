"""DRAW generating binarized digits (Gregor et al. 2015, Sec. 4.2-4.3).

  python -m experiments.draw --workdir=DIR [--config=experiments/configs/draw.py[:paper]]
      [--config.attention=False] [--config.model.glimpses=16] ...

Writes DIR/metrics.jsonl, DIR/tensorboard, DIR/checkpoints, DIR/config.json and DIR/samples/.
Metrics (evaluator `bound`, on `validation` every `train.eval_every` steps, and on
`validation` and `test` at the end): `nll_bound_nats`, the negative variational bound
L = L^x + L^z of eq. 12, and its parts `recon_nats`, `kl_nats`; with `iwae_samples > 0` also
`iwae_nll_bound_nats`; train logs `loss`, `recon_nats`, `kl_nats` and `grad_norm`.
Evaluator `sample_quality` (grey-level 28x28 digits only), on test at the end: the measures of the
README's table of every generator (`experiments.sample_quality`): `frechet_distance` between
`eval.sample_quality_count` prior samples (Bernoulli means sigmoid(c_T)) and as many test
digits, in the features of a digit classifier trained once on the training digits
(`config.classifier`, cached in `<data dir>/classifiers`), `classifier_score`,
`classifier_score_real`.
Figures, of the `validation` split after every evaluation and at the end (the test split is
only scored), each file rewritten in place:
  samples/generation_over_time.png: a row per sample, a column per glimpse: sigmoid of the
    canvas c_t drawn from the prior (`generation`);
  samples/generation.gif: the same canvases animated;
  samples/reconstruction_over_time.png: the first validation digits redrawn glimpse by
    glimpse; the last column is the binarized input (`reconstruction`).

Data (`config.data.source`): grey-level digits of `data.sources` ("sklearn_digits",
"mnist", "mnist_test"), binarized by the jitted code as below; or "binarized_mnist", TFDS's
fixed binarization of Salakhutdinov & Murray (2008) that the paper's Table 2 is measured on
(`data.binarized_mnist`: 50k train / 10k validation / 10k test, prepared beforehand in
`config.data.dir`), whose bits the model sees as they are, never re-binarized.

Randomness: grey training images are Bernoulli-sampled from their grey levels afresh at
every step with the step's key ("dynamic" binarization). Evaluation is keyed per record: the
evaluator's (or figure's) fixed key (`train.evaluate.named_key`) folded with a record's
index binarizes it and draws its posterior samples, so every evaluation scores the same
binary data with the same samples, whatever the batch size or number of processes.
"""

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import sample_quality
from vislang_jax.checks import check_choice, check_int, check_positive_int
from vislang_jax.data import binarized_mnist, builders, sources
from vislang_jax.data.multi_digit import build_multi_digit_dataset
from vislang_jax.models import draw
from vislang_jax.objectives import draw as objectives
from vislang_jax.ops.binarize import binarize, binarize_records
from vislang_jax.train import cli, evaluate, sharding
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.grid import grid_shape, save_gif, save_image_grid

DATASETS = ("digits", "multi_digit")
# The source whose images are already binary; every other one is binarized here.
BINARIZED_SOURCE = binarized_mnist.NAME


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The [H, W, 1] images `config.data` describes, known before any data is built."""
  data = config.data
  check_choice("config.data.dataset", data.dataset, DATASETS)
  if data.dataset == "multi_digit":
    side = check_positive_int("config.data.canvas_size", data.canvas_size)
    return (side, side, 1)
  return builders.image_shape("none")


def make_model(config: ml_collections.ConfigDict, shape: tuple[int, int, int]) -> draw.DRAW:
  """`draw.DRAW(**config.model)` for [H, W, C] = `shape` images, with `config.attention`
  as both its read and its write attention.

  Raises:
    ValueError: naming the config field, e.g. `config.model.glimpses` < 1 or a
      `config.model.read_n` larger than the image.
  """
  check_choice("config.attention", config.attention, (True, False))
  height, width, channels = shape
  try:
    return draw.DRAW(**config.model, height=height, width=width, channels=channels,
                     read_attention=config.attention, write_attention=config.attention)
  except ValueError as error:  # DRAW names its field; here it is one of config.model
    raise ValueError(f"config.model.{error}") from None


def make_per_example(model: draw.DRAW, *, binarized: bool = False):
  """Training's `per_example(params, batch, key) -> {name: [B]}` on binary images.

  `key` is split in two: one half binarizes `batch["image"]` [B, H, W, C] in [0, 1] afresh
  (unless `binarized`: the images are already bits and are used as they are), the other
  draws the reparameterised samples eps_t of eq. (6). `loss` is L (eq. 12).
  """

  def per_example(params, batch, key):
    binarize_key, sample_key = jax.random.split(key)
    x = batch["image"] if binarized else binarize(binarize_key, batch["image"])
    logits, aux = model.apply({"params": params}, x, rngs={"sample": sample_key})
    loss, parts = objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])
    return {"loss": loss, **parts}

  return per_example


def redraw(model: draw.DRAW, params: Any, x: jax.Array, keys: jax.Array):
  """`model` on binary `x` [B, H, W, C] with one posterior sample per record, eps drawn from
  its key of `keys` [B, 2] (`draw.record_noise`): (logits, aux) as `DRAW.__call__`."""
  noise = draw.record_noise(keys, glimpses=model.glimpses, z_size=model.z_size)
  return model.apply({"params": params}, x, noise=noise)


def records_as_bits(key: jax.Array, batch: dict[str, jax.Array], *, binarized: bool
                    ) -> jax.Array:
  """The binary x [B, H, W, C] of evaluation: `batch["image"]` itself when `binarized`,
  else each record's bits drawn from `key` and its `batch["index"]` (`binarize_records`)."""
  if binarized:
    return batch["image"]
  return binarize_records(key, batch["index"], batch["image"])


def make_metric_fn(model: draw.DRAW, *, iwae_samples: int, binarized: bool = False):
  """`metric_fn(params, batch, key) -> {name: [B]}` for `evaluate.MeanMetrics`.

  `key` is split in three, and each part folded with the records' `batch["index"]`
  (`evaluate.record_keys`): the first binarizes each record (`records_as_bits`; unused
  when `binarized`), the second draws its posterior sample, the third its importance
  samples. So a record's values depend on the key and the record only, and repeated
  evaluations of the same parameters agree exactly.

  `nll_bound_nats` is L = L^x + L^z (eq. 12) with L^x from ONE posterior sample per
  example: a single-sample Monte Carlo estimate of the negative variational bound; its mean
  over a split is an unbiased estimate of the split's mean bound. `iwae_nll_bound_nats` is
  minus the K-sample importance-weighted bound (Burda et al. 2016, eq. 8) with K =
  `iwae_samples` posterior samples per example, an upper bound on -log p(x) tighter (in
  expectation) than the variational one.
  """

  def log_weights(params, x, keys):
    logits, aux = redraw(model, params, x, keys)
    return (-objectives.bernoulli_nll_nats(logits, x),
            objectives.standard_normal_log_prob(aux["z"]),
            objectives.diag_gaussian_log_prob(aux["z"], aux["mu"], aux["logsigma"]))

  def metric_fn(params, batch, key):
    binarize_key, sample_key, iwae_key = jax.random.split(key, 3)
    index = batch["index"]
    x = records_as_bits(binarize_key, batch, binarized=binarized)
    logits, aux = redraw(model, params, x, evaluate.record_keys(sample_key, index))
    loss, parts = objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])
    metrics = {"nll_bound_nats": loss, **parts}
    if iwae_samples:
      keys = jax.vmap(lambda k: jax.random.split(k, iwae_samples), out_axes=1)(
          evaluate.record_keys(iwae_key, index))  # [K, B, 2]
      log_px, log_pz, log_qz = jax.vmap(log_weights, in_axes=(None, None, 0))(
          params, x, keys)  # each [K, B]
      metrics["iwae_nll_bound_nats"] = -objectives.iwae_bound_nats(log_px, log_pz, log_qz)
    return metrics

  return metric_fn


def make_figures(model: draw.DRAW, *, num_samples: int, binarized: bool = False
                 ) -> list[evaluate.Figure]:
  """The generation and reconstruction figures of `num_samples` rows, on `validation`
  (`binarized`: the validation images are already bits)."""
  mesh = sharding.make_mesh()
  # The smallest batch the mesh splits evenly that holds the reconstructed records.
  batch_size = math.ceil(num_samples / mesh.size) * mesh.size

  def generation(params, source, key):
    del source  # drawn from the prior
    return jax.nn.sigmoid(draw.generate(model, params, key, num_samples))  # [T, S, H, W(, C)]

  def write_generation(canvases, directory, split, step):
    del split, step  # one file, rewritten at every evaluation
    save_image_grid(os.path.join(directory, "generation_over_time.png"),
                    np.swapaxes(canvases, 0, 1))
    rows, cols = grid_shape(num_samples)
    save_gif(os.path.join(directory, "generation.gif"),
             canvases.reshape((len(canvases), rows, cols) + canvases.shape[2:]))

  @jax.jit
  def redraw_records(params, batch, key):
    binarize_key, sample_key = jax.random.split(key)
    x = records_as_bits(binarize_key, batch, binarized=binarized)
    _, aux = redraw(model, params, x, evaluate.record_keys(sample_key, batch["index"]))
    return {"canvases": jnp.swapaxes(jax.nn.sigmoid(aux["canvases"]), 0, 1), "inputs": x}

  def reconstruction(params, source, key):
    return evaluate.predict(redraw_records, params, evaluate.Head(source, num_samples), key,
                            batch_size=batch_size, mesh=mesh)

  def write_reconstruction(arrays, directory, split, step):
    del split, step  # one file, rewritten at every evaluation
    # [S, T + 1, H, W, C]: the canvases c_1..c_T, then the binarized input.
    save_image_grid(os.path.join(directory, "reconstruction_over_time.png"),
                    np.concatenate([arrays["canvases"], arrays["inputs"][:, None]], 1))

  return [evaluate.Figure(name="generation", splits=("validation",), arrays_fn=generation,
                          write_fn=write_generation),
          evaluate.Figure(name="reconstruction", splits=("validation",),
                          arrays_fn=reconstruction, write_fn=write_reconstruction)]


def draw_samples(model: draw.DRAW, params: Any, batch: dict, key: jax.Array) -> jax.Array:
  """As many images as `batch` holds, drawn from the prior: the Bernoulli means
  sigmoid(c_T) [B, H, W, 1] (the generator table's samples, `experiments.sample_quality`)."""
  canvas = jax.nn.sigmoid(draw.generate(model, params, key, batch["image"].shape[0])[-1])
  return canvas if canvas.ndim == 4 else canvas[..., None]


def load_datasets(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The train, validation and test splits: grey levels (binarized by the jitted code), or
  the bits of `binarized_mnist` (`BINARIZED_SOURCE`).

  Raises:
    ValueError: naming the field, for an unknown `config.data.source`, or
      "binarized_mnist" with `config.data.dataset` "multi_digit" or a `data.mnist_dir`.
  """
  data = config.data
  check_choice("config.data.source", data.source, sources.SOURCES + (BINARIZED_SOURCE,))
  if data.source == BINARIZED_SOURCE:
    if data.dataset != "digits" or data.mnist_dir:
      raise ValueError(
          f"config.data.source={BINARIZED_SOURCE!r} holds single 28x28 digits read from "
          f"config.data.dir: it needs config.data.dataset='digits' and no "
          f"config.data.mnist_dir, got dataset={data.dataset!r}, mnist_dir={data.mnist_dir!r}.")
    return binarized_mnist.load_binarized_mnist(data.dir or None)
  common = dict(source=data.source, data_dir=data.dir or None,
                mnist_dir=data.mnist_dir or None, seed=config.seed)
  if data.dataset == "multi_digit":
    return build_multi_digit_dataset(num_digits=data.num_digits,
                                     canvas_size=data.canvas_size, **common)
  return builders.build_digits_dataset(distortion="none", **common)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains DRAW on `config.data` digits; returns the final metrics of each split."""
  shape = image_shape(config)
  model = make_model(config, shape)
  iwae_samples = check_int("config.iwae_samples (0 = off)", config.iwae_samples, low=0)
  num_samples = check_positive_int("config.num_samples", config.num_samples)
  optimizer = make_optimizer(config.train)
  datasets = load_datasets(config)
  binarized = config.data.source == BINARIZED_SOURCE

  def init_params(key):
    params_key, sample_key = jax.random.split(key)
    return model.init({"params": params_key, "sample": sample_key},
                      jnp.zeros((1,) + shape))["params"]

  task = Task(init_params=init_params,
              loss_fn=mean_loss(make_per_example(model, binarized=binarized)),
              optimizer=optimizer)
  evaluators = [evaluate.MeanMetrics(
      name="bound",
      metric_fn=make_metric_fn(model, iwae_samples=iwae_samples, binarized=binarized),
      batch_size=config.eval.batch_size)]
  if not binarized and config.data.dataset == "digits":  # labelled 28x28 digits
    evaluators.append(sample_quality.generation_evaluator(
        functools.partial(draw_samples, model),
        sample_quality.digit_featurizer(config, datasets["train"]),
        batch_size=config.eval.batch_size, count=config.eval.sample_quality_count, every=0,
        splits=("test",)))
  return fit(config, workdir, task, datasets, evaluators=evaluators,
             figures=make_figures(model, num_samples=num_samples, binarized=binarized))


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "draw.py"))
