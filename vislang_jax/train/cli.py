"""The thin absl entry point shared by every `python -m experiments.<name>`."""

import json
import logging as std_logging
import os
from typing import Callable

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `workdir/config.json` (process 0 only)."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config.to_dict(), f, indent=2, sort_keys=True)


def _quiet_libraries(record: std_logging.LogRecord) -> bool:
  """Keeps the console to this package's progress: drops orbax/TFDS INFO lines."""
  noisy = any(f"{os.sep}{name}{os.sep}" in record.pathname
              for name in ("orbax", "tensorflow_datasets", "etils"))
  return record.levelno >= std_logging.WARNING or not noisy


def run(train_and_evaluate: Callable[[ml_collections.ConfigDict, str], object],
        default_config: str) -> None:
  """Parses `--workdir`, `--config[.field=value]`, `--distributed`; runs.

  Args:
    train_and_evaluate: `(config, workdir) -> test metrics`.
    default_config: path of the config file used when `--config` is omitted.
  """
  flags.DEFINE_string("workdir", None, "Checkpoints, metrics and samples go here; "
                      "an existing workdir is resumed.", required=True)
  config_flags.DEFINE_config_file("config", default_config,
                                  "Experiment config file.", lock_config=True)
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                    "first (multi-host GPU/TPU).")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_libraries)
    if flags.FLAGS.distributed:
      jax.distributed.initialize()
    logging.info("JAX devices: %s (process %d of %d)", jax.devices(),
                 jax.process_index(), jax.process_count())
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    write_config(config, workdir)
    train_and_evaluate(config, workdir)

  app.run(main)
