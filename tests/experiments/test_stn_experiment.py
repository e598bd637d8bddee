"""`experiments/stn.py` end to end on a tiny run over the bundled scikit-learn digits."""

import os

import numpy as np
import pytest
from PIL import Image

from experiments import stn
from experiments.configs import stn as stn_config
from vislang_jax.train.metrics import read_metrics


def tiny_config(tmp_path, **overrides):
  config = stn_config.get_config()
  config.data.dir = str(tmp_path / "tfds")
  config.data.copies = 1
  config.distortion = "none"  # 28x28: the cheapest variant that exercises everything
  config.train.learning_rate = 3e-3
  config.train.num_steps = 40
  config.train.batch_size = 16
  config.train.log_every = 10
  config.train.eval_every = 40
  config.train.checkpoint_every = 40
  config.eval.batch_size = 100
  config.num_samples = 3
  config.update(overrides)
  return config


def test_st_cnn_learns_logs_test_error_and_writes_transform_grid(tmp_path):
  workdir = str(tmp_path / "run")
  test = stn.train_and_evaluate(tiny_config(tmp_path), workdir)["test"]
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert [r["step"] for r in train] == [10, 20, 30, 40]
  assert train[-1]["loss"] < 0.8 * train[0]["loss"]
  (logged,) = [r for r in logs if r["split"] == "test"]
  assert logged["error_rate"] == pytest.approx(test["error_rate"])
  # 297 test digits: the error is a multiple of 1/297 below chance.
  assert test["error_rate"] * 297 == pytest.approx(round(test["error_rate"] * 297), abs=1e-3)
  assert test["error_rate"] < 0.9
  # 3 validation rows x (input, transformed) of 28x28 images, 1-pixel padding, upscaled x2.
  png = Image.open(os.path.join(workdir, "samples", "transforms_40.png"))
  assert png.size == (2 * (2 * 29 + 1), 2 * (3 * 29 + 1))
  grid = np.asarray(png, np.float32) / 255.0
  first_input = grid[2:58, 2:58]
  first_output = grid[2:58, 60:116]
  assert first_input.max() > 0.5 and first_output.max() > 0.1


def test_bad_optimizer_and_preset_are_named(tmp_path):
  with pytest.raises(ValueError, match="train.optimizer must be one of"):
    stn.train_and_evaluate(tiny_config(tmp_path, train={"optimizer": "lbfgs"}),
                           str(tmp_path / "run"))
  with pytest.raises(ValueError, match="preset must be"):
    stn_config.get_config("huge")
