"""experiments/draw end to end on a tiny config: learning, figures, evaluation keys, errors.

The run goes through the real command line in a subprocess (as tests/train/test_loop.py
does), with XLA's CPU backend optimisations off: compilation is nearly all its time.
"""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import draw as experiment
from experiments.configs import draw as configs
from vislang_jax.train import evaluate, sharding
from vislang_jax.train.metrics import read_metrics
from vislang_jax.viz.grid import grid_shape

T, SAMPLES, SIDE = 3, 4, 28
MODEL = dict(glimpses=T, read_n=2, write_n=3, z_size=4, enc_size=16, dec_size=16)
OPTIONS = dict(iwae_samples=2, num_samples=SAMPLES)
TRAIN = dict(num_steps=60, batch_size=32, learning_rate=1e-2, log_every=1, eval_every=30,
             checkpoint_every=60, keep_checkpoints=1)
EVAL_BATCH = 150


def tiny_config(data_dir, **train):
  config = configs.get_config()
  config.model.update(MODEL)
  config.update(OPTIONS)
  config.data.dir = str(data_dir)
  config.train.update({**TRAIN, **train})
  config.eval.batch_size = EVAL_BATCH
  return config


def run_cli(workdir, data_dir, **train):
  """`python -m experiments.draw` with the tiny config; returns the finished process."""
  flags = [f"--config.model.{k}={v}" for k, v in MODEL.items()]
  flags += [f"--config.{k}={v}" for k, v in OPTIONS.items()]
  flags += [f"--config.train.{k}={v}" for k, v in {**TRAIN, **train}.items()]
  flags += [f"--config.data.dir={data_dir}", f"--config.eval.batch_size={EVAL_BATCH}"]
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0",
             JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "experiments.draw", f"--workdir={workdir}", *flags],
      capture_output=True, text=True, timeout=600, env=env,
      cwd=os.path.dirname(os.path.dirname(experiment.__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("draw")
  proc = run_cli(workdir, data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, read_metrics(str(workdir))


def test_training_lowers_the_test_bound(run):
  workdir, records = run
  with open(workdir / "config.json") as f:
    assert json.load(f)["model"]["glimpses"] == T
  # validation while training (step 30) and at the end; test only at the end.
  evaluated = [(r["step"], r["split"]) for r in records if r["split"] != "train"]
  assert evaluated == [(30, "validation"), (60, "validation"), (60, "test")]
  (test,) = [r for r in records if r["split"] == "test"]
  for name in ("nll_bound_nats", "recon_nats", "kl_nats", "iwae_nll_bound_nats"):
    assert math.isfinite(test[name]), name
  # L = L^x + L^z (eq. 12), and the KL term of a Gaussian posterior is >= 0.
  assert test["nll_bound_nats"] == pytest.approx(test["recon_nats"] + test["kl_nats"],
                                                 rel=1e-5)
  assert test["kl_nats"] >= 0
  # Step 1's loss is the bound of the initial parameters (on one training batch). An
  # untrained DRAW's canvas is near 0, i.e. p = 1/2 per pixel: about 784 log 2 nats.
  at_init = next(r for r in records if r["split"] == "train" and r["step"] == 1)["loss"]
  assert at_init == pytest.approx(SIDE * SIDE * math.log(2), rel=0.1)
  assert test["nll_bound_nats"] < 0.5 * at_init


def test_figures_have_one_cell_per_sample_and_glimpse(run):
  workdir, _ = run
  cell = SIDE + 1  # viz.image_grid pads 1 pixel; save_* upscale 2x
  side = lambda n: 2 * (n * cell + 1)
  with Image.open(workdir / "samples" / "generation_over_time.png") as png:
    assert png.size == (side(T), side(SAMPLES))  # (width, height): glimpses x samples
    assert np.asarray(png).std() > 0
  with Image.open(workdir / "samples" / "reconstruction_over_time.png") as png:
    assert png.size == (side(T + 1), side(SAMPLES))  # the input is the last column
    grid = np.asarray(png)
  # The last column holds the binarized validation digits: only black and white pixels.
  for row in range(SAMPLES):
    top, left = 2 * (row * cell + 1), 2 * (T * cell + 1)
    digit = grid[top:top + 2 * SIDE, left:left + 2 * SIDE]
    assert set(np.unique(digit)) == {0, 255}, row
  rows, cols = grid_shape(SAMPLES)
  with Image.open(workdir / "samples" / "generation.gif") as gif:
    assert gif.n_frames == T and gif.size == (side(cols), side(rows))


def test_the_bound_is_per_record_independent_of_batching(data_dir):
  """Each record's bits and samples come from its own key: the per-record values, and so
  the split's means, do not depend on the batch size; repeated evaluations agree exactly."""
  config = tiny_config(data_dir)
  shape = experiment.image_shape(config)
  model = experiment.make_model(config, shape)
  params = model.init({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)},
                      np.zeros((1,) + shape, np.float32))["params"]
  test = experiment.load_datasets(config)["test"]
  mesh = sharding.make_mesh()
  metric_fn = experiment.make_metric_fn(model, iwae_samples=2)
  key = evaluate.named_key(0, "bound")
  per_record = [evaluate.predict(jax.jit(metric_fn), params, test, key, batch_size=size,
                                 mesh=mesh) for size in (100, 297)]  # 3 padded batches, 1
  assert per_record[0]["nll_bound_nats"].shape == (len(test),) == (297,)
  for name, values in per_record[0].items():
    np.testing.assert_allclose(values, per_record[1][name], rtol=1e-5, err_msg=name)
  means = [evaluate.MeanMetrics(name="bound", metric_fn=metric_fn, batch_size=size)(
      params, test, key, mesh) for size in (100, 297, 100)]
  assert means[0] == means[2]  # the same parameters, the same numbers
  for name, value in means[0].items():
    assert value == pytest.approx(means[1][name], rel=1e-6), name
    assert value == pytest.approx(np.mean(per_record[1][name]), rel=1e-5), name
  # The key matters: another one draws other bits and samples.
  other = evaluate.MeanMetrics(name="bound", metric_fn=metric_fn, batch_size=297)(
      params, test, jax.random.PRNGKey(1), mesh)
  assert other["nll_bound_nats"] != means[1]["nll_bound_nats"]


def test_non_finite_loss_stops_training(run, data_dir, tmp_path):
  # Adam's first update moves every weight by about the rate: step 2's bound overflows.
  proc = run_cli(tmp_path, data_dir, learning_rate=1e30, num_steps=3)
  assert proc.returncode != 0
  assert "NonFiniteLossError: Non-finite loss or update at step 2" in proc.stderr


@pytest.mark.parametrize("field,value,match", [
    ("model.read_n", 40, r"config.model.read_n \(the N of an N x N grid on a 28x28 image\) "
                         r"must be an int in \[1, 28\], got 40"),
    ("model.write_n", 0, r"config.model.write_n .*got 0"),
    ("model.glimpses", 0, r"config.model.glimpses must be a positive int, got 0"),
    ("attention", "yes", r"config.attention must be one of \(True, False\), got 'yes'"),
    ("iwae_samples", -1, r"config.iwae_samples \(0 = off\) must be an int >= 0, got -1"),
    ("num_samples", 0, r"config.num_samples must be a positive int, got 0"),
])
def test_bad_config_values_raise(tmp_path, field, value, match):
  config = tiny_config(tmp_path)
  *parents, name = field.split(".")
  target = config
  for parent in parents:
    target = target[parent]
  with target.ignore_type():  # e.g. a str where a bool belongs, as a typo would give
    target[name] = value
  with pytest.raises(ValueError, match=match):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))


def test_bad_dataset_and_grad_clip_raise(tmp_path):
  config = tiny_config(tmp_path)
  config.data.dataset = "cifar"
  with pytest.raises(ValueError, match="config.data.dataset must be one of"):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))
  config = tiny_config(tmp_path, grad_clip_norm=-1.0)
  with pytest.raises(ValueError, match="train.grad_clip_norm must be a finite float >= 0"):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))
