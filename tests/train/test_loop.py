"""The harness end to end, in subprocesses: resume after SIGKILL, multi-device,
bad batch sizes, and the non-finite-loss stop."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from vislang_jax.train import checkpoint

TOY = os.path.join(os.path.dirname(__file__), "toy_experiment.py")


@pytest.fixture(scope="module")
def run_toy(tmp_path_factory):
  """`run_toy(workdir, *args)`: runs the toy experiment. Its runs share JAX's persistent
  compilation cache, so that a restart (or a run like an earlier one) reads its executables
  from there instead of compiling them again."""
  cache = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  def run(workdir, *args):
    return subprocess.run([sys.executable, TOY, str(workdir), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=cache)
  return run


def final_metrics(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory, run_toy):
  workdir = tmp_path_factory.mktemp("single")
  return workdir, final_metrics(run_toy(workdir))


def test_training_learns_and_logs_every_split(single_device_run):
  workdir, test = single_device_run
  logs = records(workdir)
  assert {r["split"] for r in logs} == {"train", "validation", "test"}
  train = [r for r in logs if r["split"] == "train"]
  assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24]
  assert train[-1]["loss"] < 0.5 * train[0]["loss"]
  assert test["error_rate"] < 0.2
  assert [r for r in logs if r["split"] == "test"][-1]["step"] == 24
  assert os.listdir(os.path.join(workdir, "tensorboard"))


@pytest.mark.parametrize("devices", [1, 4])
def test_sigkill_and_restart_ends_like_an_uninterrupted_run(
    tmp_path, single_device_run, devices, run_toy):
  _, uninterrupted = single_device_run
  killed = run_toy(tmp_path, "--kill_at", 13, "--devices", devices)
  assert killed.returncode == -signal.SIGKILL
  steps = [r["step"] for r in records(tmp_path) if r["split"] == "train"]
  assert steps == [4, 8, 12]  # died before finishing
  resumed = final_metrics(run_toy(tmp_path, "--devices", devices))
  # Same devices: bit-for-bit the same computation. Four devices change only
  # the order of floating-point reductions.
  tol = 1e-6 if devices == 1 else 1e-4
  for name, value in uninterrupted.items():
    np.testing.assert_allclose(resumed[name], value, rtol=tol, atol=tol,
                               err_msg=name)


def test_batch_size_must_divide_over_devices(tmp_path, run_toy):
  proc = run_toy(tmp_path, "--devices", 4, "--batch_size", 6)
  assert proc.returncode != 0
  assert ("train.batch_size must be a positive multiple of the number of "
          "devices (4)") in proc.stderr
  assert "got 6" in proc.stderr


def test_non_finite_update_stops_and_keeps_last_good_checkpoint(tmp_path, run_toy):
  proc = run_toy(tmp_path, "--nan_at", 12)
  assert proc.returncode != 0
  assert "NonFiniteLossError" in proc.stderr
  assert "at step 13" in proc.stderr
  step, params = checkpoint.load_params(str(tmp_path))
  assert step == 10
  leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(params)]
  assert leaves and all(np.all(np.isfinite(x)) for x in leaves)
  with pytest.raises(ValueError, match="step must be one of the checkpoints"):
    checkpoint.load_params(str(tmp_path), step=11)
  with pytest.raises(ValueError, match="holds no checkpoint"):
    checkpoint.load_params(str(tmp_path / "elsewhere"))
  steps = [r["step"] for r in records(tmp_path) if r["split"] == "train"]
  assert steps == [4, 8, 12]  # the step-15 checkpoint check raised
