"""The thin absl entry point shared by every `python -m experiments.<name>`.

  python -m experiments.<name> --workdir=DIR [--config=FILE[:preset]] [--config.a.b=value]
      [--distributed [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]]
"""

import difflib
import importlib.util
import json
import logging as std_logging
import os
import re
import sys
from typing import Callable

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from vislang_jax.train.loop import check_workdir


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


def _load_config(spec: str) -> ml_collections.ConfigDict:
  """`FILE[:preset]` -> `get_config(preset)` of that file (as `config_flags` loads it)."""
  path, _, preset = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_vislang_config", path)
  if module_spec is None or not os.path.isfile(path):
    raise ValueError(f"--config must name a config file, got {path!r}.")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


def field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every field of `config` as a dotted path, nested dicts included ("train.num_steps")."""
  paths = []
  for name, value in config.items():
    path = f"{prefix}{name}"
    paths.append(path)
    if isinstance(value, ml_collections.ConfigDict):
      paths.extend(field_paths(value, f"{path}."))
  return paths


def unknown_overrides(argv: list[str], default_config: str) -> list[str]:
  """One message per `--config.<path>=...` of `argv` that names no field of the config.

  `config_flags` fails on such an override with a bare `AttributeError` naming only the
  last key; this names the whole path and the closest valid ones.
  """
  spec = default_config
  overrides = []
  for arg in argv[1:]:
    match = re.match(r"--config(?:=(.*)|\.([^=\[]+))", arg)
    if match and match.group(1) is not None:
      spec = match.group(1)
    elif match:
      overrides.append(match.group(2))
  if not overrides:
    return []
  valid = field_paths(_load_config(spec))
  messages = []
  for path in overrides:
    if path not in valid:
      close = difflib.get_close_matches(path, valid, n=3, cutoff=0.5)
      hint = (f"closest valid fields: {', '.join(close)}" if close
              else f"valid top-level fields: {', '.join(p for p in valid if '.' not in p)}")
      messages.append(f"--config.{path}: no such config field in {spec}; {hint}.")
  return messages


def run(train_and_evaluate: Callable[[ml_collections.ConfigDict, str], object],
        default_config: str) -> None:
  """Parses `--workdir`, `--config[.field=value]`, `--distributed`; runs.

  Args:
    train_and_evaluate: `(config, workdir) -> final metrics`.
    default_config: path of the config file used when `--config` is omitted.
  """
  try:
    problems = unknown_overrides(sys.argv, default_config)
  except ValueError as error:
    problems = [str(error)]
  if problems:
    sys.exit("FATAL Flags parsing error:\n  " + "\n  ".join(problems))
  flags.DEFINE_string("workdir", None, "Checkpoints, metrics and samples go here; "
                      "an existing workdir is resumed.", required=True)
  config_flags.DEFINE_config_file("config", default_config,
                                  "Experiment config file.", lock_config=True)
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first "
                    "(multi-host GPU/TPU; every host runs the same command).")
  flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of "
                      "process 0 (None: detected on TPU pods, SLURM, Open MPI...).")
  flags.DEFINE_integer("num_processes", None, "With --distributed: the number of processes.")
  flags.DEFINE_integer("process_id", None, "With --distributed: this process's index.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_libraries)
    try:
      workdir = check_workdir(flags.FLAGS.workdir)
    except ValueError as error:
      raise app.UsageError(f"--workdir: {error}") from None
    if flags.FLAGS.distributed:
      jax.distributed.initialize(coordinator_address=flags.FLAGS.coordinator_address,
                                 num_processes=flags.FLAGS.num_processes,
                                 process_id=flags.FLAGS.process_id)
    logging.info("JAX devices: %s (process %d of %d)", jax.devices(),
                 jax.process_index(), jax.process_count())
    config = flags.FLAGS.config
    write_config(config, workdir)
    train_and_evaluate(config, workdir)

  app.run(main)
