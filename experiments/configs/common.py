"""The config blocks every experiment shares, and its preset parsing.

Each experiment's `get_config(preset)` starts from `base_config()` and keeps only what is its
own: `config.model` (keyword arguments of its model, `Model(**config.model)` where the model
allows it), its experiment fields, and the values where it departs from these defaults.
"""

import ml_collections


def check_preset(preset: str, presets: tuple[str, ...]) -> str:
  """`preset`, or a ValueError naming the presets the config has."""
  if preset not in presets:
    raise ValueError(f"preset must be one of {presets}, got {preset!r}.")
  return preset


def data_config() -> ml_collections.ConfigDict:
  """Where the digits come from (`vislang_jax.data.sources`)."""
  return ml_collections.ConfigDict({
      # sklearn_digits (bundled, offline) | mnist | mnist_test (MNIST's 10,000 test digits
      # alone: 8,000 train (7,200 + 800 validation) / 2,000 test, e.g. ../shared/data/mnist)
      "source": "sklearn_digits",
      "mnist_dir": "",  # folder of the MNIST *-idx?-ubyte.gz files ("" = tfds download)
      "dir": "",  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  })


def train_config() -> ml_collections.ConfigDict:
  """The harness's schedule and the optimizer (`vislang_jax.train.optimizers`)."""
  return ml_collections.ConfigDict({
      "num_steps": 1000,
      "batch_size": 64,
      "optimizer": "adam",  # adam | adamw | sgd | rmsprop
      "learning_rate": 1e-3,
      "schedule": "constant",  # constant | step | cosine
      "decay_at": (),  # schedule=step: fractions of num_steps where the rate is scaled
      "decay_factor": 0.1,  # schedule=step: the scale at each of decay_at
      "warmup_steps": 0,  # linear warm-up from 0 before the schedule
      "b1": 0.9,  # adam and adamw: the first moment's decay (DCGAN: 0.5)
      "momentum": 0.9,  # sgd and rmsprop; 0 = none
      "rmsprop_decay": 0.9,  # rmsprop's moving average of squared gradients
      "grad_clip_norm": 0.0,  # clip the gradient's global norm; 0 = off
      "weight_decay": 0.0,  # adamw: decoupled; others: L2 added to the gradient; 0 = off
      # float32 | bfloat16: the train step's matmuls and convolutions (vislang_jax.train.
      # precision); parameters, optimizer state, softmaxes and losses stay float32
      "compute_dtype": "float32",
      "log_every": 100,
      "eval_every": 500,  # the default cadence of evaluators and figures
      "checkpoint_every": 500,
      "keep_checkpoints": 2,
  })


def eval_config() -> ml_collections.ConfigDict:
  """Evaluation settings shared by every evaluator."""
  return ml_collections.ConfigDict({"batch_size": 256})


def classifier_config() -> ml_collections.ConfigDict:
  """The digit classifier whose features the generators' Frechet distance and classifier
  score use (`experiments.sample_quality.digit_featurizer`); one setting for every
  experiment, so their numbers compare (and share the cached classifier)."""
  return ml_collections.ConfigDict({
      "widths": (32, 64), "num_steps": 1500, "batch_size": 64, "learning_rate": 2e-3})


def base_config() -> ml_collections.ConfigDict:
  """`seed`, `model` (empty), `data`, `train` and `eval` blocks with their defaults."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = ml_collections.ConfigDict()
  config.data = data_config()
  config.train = train_config()
  config.eval = eval_config()
  return config
