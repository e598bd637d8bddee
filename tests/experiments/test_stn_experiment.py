"""`experiments/stn.py` end to end on a tiny run over the bundled scikit-learn digits."""

import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from experiments import stn
from experiments.configs import stn as stn_config
from vislang_jax.models.stn import make_classifier
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
  # The evaluator's test error, recomputed independently: the final checkpoint's parameters
  # applied to all 297 test digits at once (no batching, padding or sharding).
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  assert manager.latest_step() == 40
  params = manager.restore(40, args=ocp.args.Composite(state=ocp.args.StandardRestore())
                           ).state["params"]
  test_split = stn.load_datasets(tiny_config(tmp_path))["test"]
  images = np.stack([test_split[i]["image"] for i in range(len(test_split))]) / 255.0
  labels = np.array([test_split[i]["label"] for i in range(len(test_split))])
  logits, _ = make_classifier(**tiny_config(tmp_path).model).apply(
      {"params": params}, jnp.asarray(images, jnp.float32))
  errors = int(np.sum(np.argmax(logits, -1) != labels))
  assert len(labels) == 297 and test["error_rate"] == pytest.approx(errors / 297, abs=1e-6)
  assert errors < 0.9 * 297  # below chance after 40 steps
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


def test_presets_optimizer_and_align_corners():
  quick, paper = stn_config.get_config(), stn_config.get_config("paper")
  assert quick.model.align_corners is False and paper.model.align_corners is False
  # Sec. 4.1 states plain SGD; the preset must not inherit common's sgd momentum of 0.9.
  assert (paper.train.optimizer, paper.train.momentum) == ("sgd", 0.0)
  assert (paper.train.batch_size, paper.train.num_steps, paper.train.learning_rate) == (
      256, 150_000, 0.01)
  model = make_classifier(**{**quick.model, "align_corners": True})
  assert model.transformer.align_corners
