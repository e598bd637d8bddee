"""experiments/draw end to end on a tiny config: learning, figures, evaluation keys, errors.

The run goes through the real command line in a subprocess (as tests/train/test_loop.py
does), with XLA's CPU backend optimisations off: compilation is nearly all its time.
"""

import contextlib
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments import draw as experiment
from experiments.configs import draw as configs
from vislang_jax.models import draw
from vislang_jax.objectives import draw as objectives
from vislang_jax.ops.binarize import binarize
from vislang_jax.train import evaluate, sharding
from vislang_jax.train.metrics import read_metrics
from vislang_jax.viz.grid import grid_shape

T, SAMPLES, SIDE = 3, 4, 28
MODEL = dict(glimpses=T, read_n=2, write_n=3, z_size=4, enc_size=16, dec_size=16)
OPTIONS = dict(iwae_samples=2, num_samples=SAMPLES)
TRAIN = dict(num_steps=60, batch_size=32, learning_rate=1e-2, log_every=1, eval_every=30,
             checkpoint_every=60, keep_checkpoints=1)
EVAL_BATCH = 150
# the generation metrics' classifier and sample count, small (experiments.sample_quality)
QUALITY = {"classifier.num_steps": 20, "classifier.widths": "(8,8)",
           "eval.sample_quality_count": EVAL_BATCH}


def tiny_config(data_dir, **train):
  config = configs.get_config()
  config.model.update(MODEL)
  config.update(OPTIONS)
  config.data.dir = str(data_dir)
  config.train.update({**TRAIN, **train})
  config.eval.batch_size = EVAL_BATCH
  config.eval.sample_quality_count = EVAL_BATCH
  config.classifier.update(num_steps=20, widths=(8, 8))
  return config


def run_cli(workdir, data_dir, **train):
  """`python -m experiments.draw` with the tiny config; returns the finished process."""
  flags = [f"--config.model.{k}={v}" for k, v in MODEL.items()]
  flags += [f"--config.{k}={v}" for k, v in OPTIONS.items()]
  flags += [f"--config.train.{k}={v}" for k, v in {**TRAIN, **train}.items()]
  flags += [f"--config.data.dir={data_dir}", f"--config.eval.batch_size={EVAL_BATCH}"]
  flags += [f"--config.{k}={v}" for k, v in QUALITY.items()]
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
  # the generator table's measures, on test only (experiments.sample_quality)
  assert test["frechet_distance"] > 0 and 1.0 <= test["classifier_score"] <= 10.0
  assert not any("frechet_distance" in r for r in records if r["split"] == "validation")
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
  params = jax.jit(model.init)({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)},
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
  # (One evaluator per batch size, each called again: one compilation per shape.)
  by_size = {size: evaluate.MeanMetrics(name="bound", metric_fn=metric_fn, batch_size=size)
             for size in (100, 297)}
  means = [by_size[size](params, test, key, mesh) for size in (100, 297, 100)]
  assert means[0] == means[2]  # the same parameters, the same numbers
  for name, value in means[0].items():
    assert value == pytest.approx(means[1][name], rel=1e-6), name
    assert value == pytest.approx(np.mean(per_record[1][name]), rel=1e-5), name
  # The key matters: another one draws other bits and samples.
  other = by_size[297](params, test, jax.random.PRNGKey(1), mesh)
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


def test_binarized_mnist_is_used_as_it_is(tmp_path):
  """data.source='binarized_mnist': the TFDS bits (mocked) reach the model unchanged, in
  training, evaluation and figures; grey images in their place are scored as they are
  (a fractional-target bound), where every other source is binarized."""
  config = tiny_config(tmp_path)
  config.data.source = "binarized_mnist"
  with tfds.testing.mock_data(num_examples=8, max_value=2):
    datasets = experiment.load_datasets(config)
  assert {split: len(source) for split, source in datasets.items()} == {
      "train": 8, "validation": 8, "test": 8}
  model = experiment.make_model(config, experiment.image_shape(config))
  params = jax.jit(model.init)({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)},
                               np.zeros((1, SIDE, SIDE, 1), np.float32))["params"]
  grey = jax.random.uniform(jax.random.PRNGKey(2), (5, SIDE, SIDE, 1))  # not bits
  batch = {"image": grey, "index": np.arange(5, dtype=np.int32)}
  key = jax.random.PRNGKey(3)
  # Training: the step key's second half draws eps; the first would binarize.
  binarize_key, sample_key = jax.random.split(key)

  def bound(x, **kwargs):  # L per example, eq. (12), of the model on x as given
    logits, aux = model.apply({"params": params}, x, **kwargs)
    return objectives.draw_loss(logits, x, aux["mu"], aux["logsigma"])[0]

  as_is = experiment.make_per_example(model, binarized=True)(params, batch, key)["loss"]
  np.testing.assert_allclose(as_is, bound(grey, rngs={"sample": sample_key}), rtol=1e-5)
  redrawn = experiment.make_per_example(model)(params, batch, key)["loss"]
  np.testing.assert_allclose(
      redrawn, bound(binarize(binarize_key, grey), rngs={"sample": sample_key}), rtol=1e-5)
  assert np.all(np.abs(as_is - redrawn) > 1e-3)
  # Evaluation: the second of three key parts draws each record's eps.
  _, eval_sample_key, _ = jax.random.split(key, 3)
  noise = draw.record_noise(evaluate.record_keys(eval_sample_key, batch["index"]),
                            glimpses=T, z_size=MODEL["z_size"])
  scored = experiment.make_metric_fn(model, iwae_samples=0, binarized=True)(
      params, batch, key)["nll_bound_nats"]
  np.testing.assert_allclose(scored, bound(grey, noise=noise), rtol=1e-5)
  np.testing.assert_array_equal(
      experiment.records_as_bits(key, batch, binarized=True), grey)
  assert set(np.unique(experiment.records_as_bits(key, batch, binarized=False))) == {0, 1}


@pytest.mark.parametrize("source,binarized", [("binarized_mnist", True),
                                               ("sklearn_digits", False)])
def test_the_source_decides_whether_the_experiment_binarizes(data_dir, monkeypatch, source,
                                                              binarized):
  """train_and_evaluate hands `binarized` to the loss, the evaluator and the figures."""
  seen = {}
  for name in ("make_per_example", "make_metric_fn", "make_figures"):
    def spy(*args, _name=name, _original=getattr(experiment, name), **kwargs):
      seen[_name] = kwargs.get("binarized", False)
      return _original(*args, **kwargs)
    monkeypatch.setattr(experiment, name, spy)
  monkeypatch.setattr(experiment, "fit", lambda *args, **kwargs: {})  # no training
  config = tiny_config(data_dir)
  config.data.source = source
  mock = tfds.testing.mock_data(num_examples=8, max_value=2)
  with mock if binarized else contextlib.nullcontext():  # the mock would catch all of TFDS
    experiment.train_and_evaluate(config, "unused")
  assert seen == dict.fromkeys(("make_per_example", "make_metric_fn", "make_figures"),
                               binarized)


@pytest.mark.parametrize("field,value", [("dataset", "multi_digit"), ("mnist_dir", "/x")])
def test_binarized_mnist_takes_single_digits_from_the_data_dir(tmp_path, field, value):
  config = tiny_config(tmp_path)
  config.data.source = "binarized_mnist"
  config.data[field] = value
  with pytest.raises(ValueError, match=r"config.data.source='binarized_mnist' .* needs "
                                       r"config.data.dataset='digits' and no config.data.mnist_dir"):
    experiment.load_datasets(config)


def test_presets_hold_the_settings_their_comments_state():
  paper = configs.get_config("paper")
  assert (paper.model.glimpses, paper.model.read_n, paper.model.write_n, paper.model.z_size,
          paper.model.enc_size, paper.model.dec_size) == (64, 2, 5, 100, 256, 256)
  assert (paper.train.optimizer, paper.train.learning_rate, paper.train.batch_size,
          paper.train.grad_clip_norm) == ("adam", 1e-3, 100, 10.0)
  assert paper.data.source == "binarized_mnist" and paper.iwae_samples == 0
  assert configs.get_config("two_digit").data.source == "mnist"
  mnist = configs.get_config("mnist")
  assert mnist.data.source == "mnist_test" and mnist.train.grad_clip_norm == 10.0
  with pytest.raises(ValueError, match="preset must be one of"):
    configs.get_config("papers")
