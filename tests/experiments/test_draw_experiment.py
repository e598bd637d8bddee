"""experiments/draw end to end on a tiny config: learning, figures, binarization, errors.

The runs go through the real command line in subprocesses (as tests/train/test_loop.py
does), with XLA's CPU backend optimisations off: compilation is nearly all their time.
"""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import draw as experiment
from experiments.configs import draw as configs
from vislang_jax.data import builders
from vislang_jax.train.metrics import read_metrics

T, SAMPLES, SIDE = 3, 4, 28
MODEL = dict(glimpses=T, read_n=2, write_n=3, z_size=4, lstm_size=16, iwae_samples=2,
             num_samples=SAMPLES)
TRAIN = dict(num_steps=60, batch_size=32, learning_rate=1e-2, log_every=1, eval_every=60,
             checkpoint_every=60, keep_checkpoints=1)


def tiny_config(data_dir, **train):
  config = configs.get_config()
  config.update(MODEL)
  config.data.dir = str(data_dir)
  config.train.update({**TRAIN, **train})
  config.eval.batch_size = 150
  return config


def run_cli(workdir, data_dir, **train):
  """`python -m experiments.draw` with the tiny config; returns the finished process."""
  flags = [f"--config.{k}={v}" for k, v in MODEL.items()]
  flags += [f"--config.train.{k}={v}" for k, v in {**TRAIN, **train}.items()]
  flags += [f"--config.data.dir={data_dir}", "--config.eval.batch_size=150"]
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0",
             JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "experiments.draw", f"--workdir={workdir}", *flags],
      capture_output=True, text=True, timeout=300, env=env,
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
    assert json.load(f)["glimpses"] == T
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
  rows, cols = experiment.grid_shape(SAMPLES)
  assert (rows, cols) == (2, 2)
  with Image.open(workdir / "samples" / "generation.gif") as gif:
    assert gif.n_frames == T and gif.size == (side(cols), side(rows))


def test_evaluation_data_is_binarized_once(data_dir):
  config = tiny_config(data_dir)
  grey_test = builders.build_digits_dataset(distortion="none", source="sklearn_digits",
                                            data_dir=str(data_dir))["test"]
  read = lambda source, order: np.stack([source[i]["image"] for i in order])
  order = range(100)
  first = read(experiment.load_datasets(config)["test"], order)
  again = read(experiment.load_datasets(config)["test"], reversed(order))[::-1]
  assert np.array_equal(first, again)
  assert np.array_equal(first, read(experiment.FixedBinarization(grey_test, seed=0), order))
  other_seed = experiment.FixedBinarization(grey_test, seed=1)
  assert not np.array_equal(first, read(other_seed, order))
  assert repr(other_seed) == f"FixedBinarization({grey_test!r}, seed=1)"
  # Bernoulli(grey): only 0 or 255; black stays black, white stays white, the mean is kept.
  grey = read(grey_test, order).astype(np.float32) / 255
  assert set(np.unique(first)) == {0, 255}
  assert not first[grey == 0].any() and (first[grey == 1] == 255).all()
  assert (first / 255).mean() == pytest.approx(grey.mean(), abs=0.01)


def test_training_binarization_changes_with_the_key():
  grey = jnp.full((64, SIDE, SIDE, 1), 0.3)
  a, b = (experiment.binarize(jax.random.PRNGKey(k), grey) for k in (1, 2))
  assert set(np.unique(a)) == {0.0, 1.0}
  assert not np.array_equal(a, b)
  assert np.array_equal(a, experiment.binarize(jax.random.PRNGKey(1), grey))
  assert float(a.mean()) == pytest.approx(0.3, abs=0.01)


def test_non_finite_loss_stops_training(run, data_dir, tmp_path):
  proc = run_cli(tmp_path, data_dir, learning_rate="nan", num_steps=3)
  assert proc.returncode != 0
  assert "NonFiniteLossError: Non-finite loss or update at step 1" in proc.stderr


@pytest.mark.parametrize("field,value,match", [
    ("read_n", 40, r"config.read_n must be an int in \[1, 28\].*got 40"),
    ("write_n", 0, r"config.write_n"),
    ("glimpses", 0, r"config.glimpses must be a positive int; got 0"),
    ("iwae_samples", -1, r"config.iwae_samples"),
])
def test_bad_config_values_raise(tmp_path, field, value, match):
  config = tiny_config(tmp_path)
  config[field] = value
  with pytest.raises(ValueError, match=match):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))


def test_bad_dataset_and_grad_clip_raise(tmp_path):
  config = tiny_config(tmp_path)
  config.data.dataset = "cifar"
  with pytest.raises(ValueError, match="data.dataset must be one of"):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))
  config = tiny_config(tmp_path, grad_clip=-1.0)
  with pytest.raises(ValueError, match="train.grad_clip"):
    experiment.train_and_evaluate(config, str(tmp_path / "work"))
