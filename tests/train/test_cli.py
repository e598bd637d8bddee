"""The command line's errors for what a user mistypes: unknown config fields, a file as workdir."""

import os
import subprocess
import sys

import pytest

from vislang_jax.train import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STN_CONFIG = os.path.join(ROOT, "experiments", "configs", "stn.py")


def run_stn(*args):
  return subprocess.run([sys.executable, "-m", "experiments.stn", *args], capture_output=True,
                        text=True, timeout=300, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_unknown_override_names_the_field_and_the_closest_ones(tmp_path):
  proc = run_stn(f"--workdir={tmp_path}", "--config.nonexistent=3", "--config.train.num_step=5")
  assert proc.returncode != 0
  assert "--config.nonexistent: no such config field" in proc.stderr
  assert "--config.train.num_step: no such config field" in proc.stderr
  assert "closest valid fields: train.num_steps" in proc.stderr
  assert "AttributeError" not in proc.stderr and "Traceback" not in proc.stderr
  assert not os.listdir(tmp_path)  # nothing ran


def test_workdir_that_is_a_file_is_named(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("")
  proc = run_stn(f"--workdir={path}")
  assert proc.returncode != 0
  assert f"--workdir: workdir must be a directory (new or a run to resume), got '{path}'" in (
      proc.stderr)
  assert "FileExistsError" not in proc.stderr


def test_overrides_are_checked_against_the_preset_given():
  argv = ["prog", f"--config={STN_CONFIG}:paper", "--config.train.schedule=step",
          "--config.model.name=cnn", "--config.model.nme=cnn"]
  (message,) = cli.unknown_overrides(argv, "unused.py")
  assert message.startswith(f"--config.model.nme: no such config field in {STN_CONFIG}:paper")
  assert "model.name" in message
  assert cli.unknown_overrides(["prog", "--workdir=x"], "unused.py") == []


def test_field_paths_walk_nested_configs():
  from experiments.configs import stn  # pylint: disable=g-import-not-at-top
  paths = cli.field_paths(stn.get_config())
  assert {"seed", "model", "model.name", "train.num_steps", "data.source"} <= set(paths)
  with pytest.raises(ValueError, match="--config must name a config file"):
    cli.unknown_overrides(["prog", "--config=/nonexistent.py", "--config.seed=1"], "x")
