"""DRAW generating binarized digits (Gregor et al. 2015, Sec. 4.2-4.3).

  python -m experiments.draw --workdir=DIR [--config=experiments/configs/draw.py[:paper]]
      [--config.attention=False] ...

Writes DIR/metrics.jsonl (per split: `nll_bound_nats`, the negative variational bound
L = L^x + L^z of eq. 12, and its parts `recon_nats`, `kl_nats`; with
`iwae_samples > 0` also `iwae_nll_bound_nats`; train adds `loss` and `grad_norm`),
DIR/tensorboard, DIR/checkpoints, DIR/config.json and, after every evaluation,
DIR/samples/generation_over_time.png (a row per sample, a column per glimpse: sigmoid of
the canvas c_t drawn from the prior), DIR/samples/generation.gif (the same canvases
animated) and DIR/samples/reconstruction_over_time.png (test digits redrawn glimpse by
glimpse; the last column is the binarized input).

Binarization: training images are Bernoulli-sampled from their grey levels afresh at every
step with the step's key ("dynamic" binarization); validation and test images are
binarized once, with a fixed seed per record (`FixedBinarization`), so every evaluation
scores the same binary data.
"""

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax import viz
from vislang_jax.data import builders
from vislang_jax.data.multi_digit import build_multi_digit_dataset
from vislang_jax.models import draw
from vislang_jax.objectives import draw as objectives
from vislang_jax.train import cli
from vislang_jax.train.loop import Task, train_and_evaluate as run_task

DATASETS = ("digits", "multi_digit")
# Evaluation has no key argument: every evaluation draws its posterior samples from this
# fixed key, so the bounds are comparable across evaluations (see `make_metric_fn`).
_EVAL_SEED = 0


class FixedBinarization:
  """A random-access source whose images are binarized once: pixel ~ Bernoulli(grey / 255).

  Record `i` is binarized with `np.random.default_rng([seed, i])`, so reading it again,
  in any order or process, gives the same bits. Images stay uint8 (0 or 255), so the
  loader's division by 255 gives {0, 1}.
  """

  def __init__(self, source: Any, *, seed: int):
    self._source = source
    self._seed = seed

  def __repr__(self) -> str:
    # grain validates a restored iterator against repr(source).
    return f"FixedBinarization({self._source!r}, seed={self._seed})"

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = dict(self._source[index])
    grey = np.asarray(record["image"], np.float32) / 255.0
    rng = np.random.default_rng([self._seed, int(index)])
    record["image"] = np.where(rng.random(grey.shape) < grey, 255, 0).astype(np.uint8)
    return record


def binarize(key: jax.Array, images: jax.Array) -> jax.Array:
  """Dynamic binarization: `images` [B, H, W, C] in [0, 1] -> {0., 1.} ~ Bernoulli(images)."""
  return jax.random.bernoulli(key, images).astype(jnp.float32)


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The [H, W, 1] images `config.data` describes, known before any data is built."""
  data = config.data
  if data.dataset not in DATASETS:
    raise ValueError(f"data.dataset must be one of {DATASETS}; got {data.dataset!r}.")
  if data.dataset == "multi_digit":
    return (data.canvas_size, data.canvas_size, 1)
  return builders.image_shape("none")


def make_model(config: ml_collections.ConfigDict, shape: tuple[int, int, int]) -> draw.DRAW:
  """The DRAW network of `config` for [H, W, C] = `shape` images.

  Raises:
    ValueError: naming the config field, e.g. `glimpses` < 1 or a `read_n` larger than
      the image.
  """
  for name in ("glimpses", "z_size", "lstm_size", "num_samples"):
    if not isinstance(config[name], int) or config[name] < 1:
      raise ValueError(f"config.{name} must be a positive int; got {config[name]!r}.")
  if not isinstance(config.iwae_samples, int) or config.iwae_samples < 0:
    raise ValueError(f"config.iwae_samples must be an int >= 0 (0 = off); got "
                     f"{config.iwae_samples!r}.")
  if config.attention:
    for name in ("read_n", "write_n"):
      if not isinstance(config[name], int) or not 1 <= config[name] <= min(shape[:2]):
        raise ValueError(
            f"config.{name} must be an int in [1, {min(shape[:2])}] (the image is "
            f"{shape[0]}x{shape[1]}); got {config[name]!r}.")
  height, width, channels = shape
  return draw.DRAW(
      height=height, width=width, channels=channels, glimpses=config.glimpses,
      read_n=config.read_n, write_n=config.write_n, z_size=config.z_size,
      enc_size=config.lstm_size, dec_size=config.lstm_size,
      read_attention=config.attention, write_attention=config.attention)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam, after global-norm clipping when `train.grad_clip > 0`."""
  adam = optax.adam(config.train.learning_rate)
  if config.train.grad_clip < 0:
    raise ValueError(f"train.grad_clip must be >= 0 (0 = off); got {config.train.grad_clip}.")
  if config.train.grad_clip:
    return optax.chain(optax.clip_by_global_norm(config.train.grad_clip), adam)
  return adam


def make_loss_fn(model: draw.DRAW):
  """`loss_fn(params, batch, key) -> (mean L, metrics)` on freshly binarized images.

  `key` is split in two: one half binarizes `batch["image"]` [B, H, W, C] in [0, 1], the
  other draws the reparameterised samples eps_t of eq. (6).
  """

  def loss_fn(params, batch, key):
    binarize_key, sample_key = jax.random.split(key)
    x = binarize(binarize_key, batch["image"])
    logits, aux = model.apply({"params": params}, x, rngs={"sample": sample_key})
    loss, parts = objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])
    return jnp.mean(loss), {name: jnp.mean(value) for name, value in parts.items()}

  return loss_fn


def make_metric_fn(model: draw.DRAW, *, iwae_samples: int):
  """`metric_fn(params, batch) -> {name: [B]}` on already binary `batch["image"]`.

  `nll_bound_nats` is L = L^x + L^z (eq. 12) with L^x from ONE posterior sample per
  example: a single-sample Monte Carlo estimate of the negative variational bound, drawn
  from a fixed key (the harness gives evaluation no key), so repeated evaluations of the
  same parameters agree exactly. Its mean over a split is an unbiased estimate of the
  split's mean bound. `iwae_nll_bound_nats` is minus the K-sample importance-weighted
  bound (Burda et al. 2016, eq. 8) with K = `iwae_samples` posterior samples per example,
  an upper bound on -log p(x) tighter (in expectation) than the variational one.
  """
  eval_key = jax.random.PRNGKey(_EVAL_SEED)
  elbo_key, iwae_key = jax.random.split(eval_key)

  def one_sample(params, x, key):
    return model.apply({"params": params}, x, rngs={"sample": key})

  def log_weights(params, x, key):
    logits, aux = one_sample(params, x, key)
    return (-objectives.bernoulli_nll_nats(logits, x),
            objectives.standard_normal_log_prob(aux["z"]),
            objectives.diag_gaussian_log_prob(aux["z"], aux["mu"], aux["logsigma"]))

  def metric_fn(params, batch):
    x = batch["image"]
    logits, aux = one_sample(params, x, elbo_key)
    loss, parts = objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])
    metrics = {"nll_bound_nats": loss, **parts}
    if iwae_samples:
      keys = jax.random.split(iwae_key, iwae_samples)
      log_px, log_pz, log_qz = jax.vmap(log_weights, in_axes=(None, None, 0))(
          params, x, keys)  # each [K, B]
      metrics["iwae_nll_bound_nats"] = -objectives.iwae_bound_nats(log_px, log_pz, log_qz)
    return metrics

  return metric_fn


def grid_shape(count: int) -> tuple[int, int]:
  """(rows, columns) with rows * columns = count and rows the largest divisor <= sqrt."""
  rows = max(d for d in range(1, math.isqrt(count) + 1) if count % d == 0)
  return rows, count // rows


def make_sample_writer(model: draw.DRAW, images: np.ndarray, workdir: str, *, seed: int):
  """`on_eval(state, split)` writing the generation and reconstruction figures.

  `images`: [S, H, W, C] binary test images to reconstruct; S rows of samples are drawn
  from the prior with the same key every time, so successive figures are comparable.
  """
  num_samples = len(images)
  generate_key, reconstruct_key = jax.random.split(jax.random.PRNGKey(seed))
  reconstruct = jax.jit(lambda params, x: model.apply(
      {"params": params}, x, rngs={"sample": reconstruct_key})[1]["canvases"])
  rows, cols = grid_shape(num_samples)
  samples_dir = os.path.join(workdir, "samples")

  def write_samples(state, split):
    del split  # the same figures after every evaluation
    canvases = np.asarray(jax.nn.sigmoid(draw.generate(
        model, state.params, generate_key, num_samples)))  # [T, S, H, W(, C)]
    viz.save_image_grid(os.path.join(samples_dir, "generation_over_time.png"),
                        np.swapaxes(canvases, 0, 1))
    viz.save_gif(os.path.join(samples_dir, "generation.gif"),
                 canvases.reshape((len(canvases), rows, cols) + canvases.shape[2:]))
    redrawn = np.asarray(jax.nn.sigmoid(reconstruct(state.params, images)))  # [T, S, H, W, C]
    viz.save_image_grid(os.path.join(samples_dir, "reconstruction_over_time.png"),
                        np.concatenate([np.swapaxes(redrawn, 0, 1), images[:, None]], 1))

  return write_samples


def load_datasets(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Train split as grey levels; validation and test binarized once (`FixedBinarization`)."""
  data = config.data
  common = dict(source=data.source,
                data_dir=data.dir or None,
                mnist_dir=data.mnist_dir or None, seed=config.seed)
  if data.dataset == "multi_digit":
    sources = build_multi_digit_dataset(num_digits=data.num_digits,
                                        canvas_size=data.canvas_size, **common)
  else:
    sources = builders.build_digits_dataset(distortion="none", **common)
  return {"train": sources["train"],
          "validation": FixedBinarization(sources["validation"], seed=config.seed),
          "test": FixedBinarization(sources["test"], seed=config.seed)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, float]:
  """Trains DRAW on `config.data` digits; returns the test metrics."""
  shape = image_shape(config)
  model = make_model(config, shape)
  optimizer = make_optimizer(config)
  datasets = load_datasets(config)
  test = datasets["test"]
  count = min(config.num_samples, len(test))
  images = np.stack([test[i]["image"] for i in range(count)]).astype(np.float32) / 255.0

  def init_params(key):
    params_key, sample_key = jax.random.split(key)
    return model.init({"params": params_key, "sample": sample_key},
                      jnp.zeros((1,) + shape))["params"]

  task = Task(init_params=init_params, loss_fn=make_loss_fn(model),
              metric_fn=make_metric_fn(model, iwae_samples=config.iwae_samples),
              optimizer=optimizer,
              on_eval=make_sample_writer(model, images, workdir, seed=config.seed))
  return run_task(config, workdir, task, datasets)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "draw.py"))
