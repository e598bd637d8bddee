"""The multi-host path, run: two processes on this machine (`jax.distributed` with the
coordinator on 127.0.0.1, one CPU device each) train STN through the real command line with
`--distributed`, and match one process with two devices and the same global batch."""

import functools
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = dict(distortion="none", num_samples=3, **{
    "model.name": "st_cnn", "data.copies": 1, "train.num_steps": 30, "train.batch_size": 16,
    "train.learning_rate": 3e-3, "train.log_every": 5, "train.eval_every": 15,
    "train.checkpoint_every": 15, "eval.batch_size": 100})


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, data_dir, *, processes, devices, num_steps, cache_dir):
  """Runs `python -m experiments.stn` as `processes` processes of `devices` CPU devices,
  with JAX's persistent compilation cache in `cache_dir`."""
  flags = [f"--config.{k}={v}" for k, v in {**FLAGS, "train.num_steps": num_steps}.items()]
  flags += [f"--workdir={workdir}", f"--config.data.dir={data_dir}"]
  # (The XLA flags tests/conftest.py sets, e.g. its optimisation level, are kept.)
  flags_xla = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags_xla.strip(),
             JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  port = free_port()
  procs = []
  for index in range(processes):
    distributed = [] if processes == 1 else [
        "--distributed", f"--coordinator_address=127.0.0.1:{port}",
        f"--num_processes={processes}", f"--process_id={index}"]
    procs.append(subprocess.Popen([sys.executable, "-m", "experiments.stn", *flags, *distributed],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outputs = []
  for proc in procs:
    try:
      _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    outputs.append(stderr)
    assert proc.returncode == 0, stderr[-4000:]
  return outputs


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("data")
  # The resumed processes compile what the first two did: they read it from the cache.
  run = functools.partial(launch, data_dir=data_dir, cache_dir=tmp_path_factory.mktemp("xla"))
  single = tmp_path_factory.mktemp("single")
  run(single, processes=1, devices=2, num_steps=30)
  multi = tmp_path_factory.mktemp("multi")
  # Two processes stop at step 15 (a checkpoint); two fresh processes resume to 30.
  first = run(multi, processes=2, devices=1, num_steps=15)
  second = run(multi, processes=2, devices=1, num_steps=30)
  return records(single), records(multi), multi, first + second


def test_two_processes_match_one_and_resume_from_their_checkpoint(runs):
  single, multi, _, _ = runs
  by_key = lambda logs: {(r["step"], r["split"]): r for r in logs}
  one, two = by_key(single), by_key(multi)
  for key in [(20, "train"), (25, "train"), (30, "train"), (30, "validation"), (30, "test")]:
    for name, value in one[key].items():
      if name in ("step", "split"):
        continue
      np.testing.assert_allclose(two[key][name], value, rtol=1e-5, err_msg=f"{key} {name}")
  assert one[(30, "test")]["error_rate"] * 297 == pytest.approx(
      round(one[(30, "test")]["error_rate"] * 297), abs=1e-3)  # every test digit counted once


def test_only_process_0_writes(runs):
  _, multi, workdir, stderrs = runs
  keys = [(r["step"], r["split"]) for r in multi]
  assert len(keys) == len(set(keys))  # no record written twice
  assert {k for k in keys if k[1] != "train"} == {(15, "validation"), (15, "test"),
                                                 (30, "validation"), (30, "test")}
  events = os.listdir(os.path.join(workdir, "tensorboard"))
  assert len(events) == 2, events  # one writer per run, process 0's
  assert os.path.exists(os.path.join(workdir, "samples", "transforms_30.png"))
  first_0, first_1, second_0, second_1 = stderrs
  for main, other in ((first_0, first_1), (second_0, second_1)):
    assert "figure transforms of split validation" in main
    assert "figure transforms" not in other
    assert "(process 1 of 2)" in other  # the second process ran, and every evaluation with it
