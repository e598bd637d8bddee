"""End-to-end test of experiments/draw_classify.py on tiny cluttered scikit-learn digits."""

import json

import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from experiments import draw_classify
from experiments.configs import draw_classify as configs
from vislang_jax.models.draw_classifier import RecurrentAttentionClassifier


def _tiny_config(data_dir):
  config = configs.get_config()
  config.model.glimpses = 2
  config.model.read_n = 6
  config.model.hidden_size = 32
  config.num_samples = 2
  config.data.dir = str(data_dir)
  config.data.copies = 1
  config.data.canvas_size = 40
  config.data.num_clutter = 2
  config.train.num_steps = 120
  config.train.batch_size = 32
  config.train.learning_rate = 1e-2  # past the LSTM's initial plateau within the test
  config.train.log_every = 40
  config.train.eval_every = 120
  config.train.checkpoint_every = 120
  return config


def test_tiny_run_learns_logs_and_draws_glimpses(tmp_path):
  config = _tiny_config(tmp_path / "data")
  workdir = tmp_path / "work"
  result = draw_classify.train_and_evaluate(config, str(workdir))
  assert sorted(result) == ["test", "validation"]

  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  (validation,) = [r for r in records if r["split"] == "validation"]
  assert [r["step"] for r in train] == [40, 80, 120]
  assert len(test) == 1
  assert validation["step"] == 120  # the final evaluation only, not again at eval_every
  assert train[-1]["loss"] < 0.9 * train[0]["loss"], train
  # The logged test error and loss, recomputed independently: the final checkpoint's
  # parameters applied to all 297 test canvases at once (no batching, padding or sharding).
  manager = ocp.CheckpointManager(str(workdir / "checkpoints"))
  params = manager.restore(120, args=ocp.args.Composite(state=ocp.args.StandardRestore())
                           ).state["params"]
  split = draw_classify.load_datasets(config)["test"]
  images = np.stack([split[i]["image"] for i in range(len(split))]) / np.float32(255)
  labels = np.array([split[i]["label"] for i in range(len(split))])
  logits, _ = RecurrentAttentionClassifier(**config.model).apply({"params": params}, images)
  logits = np.asarray(logits, np.float64)
  errors = int(np.sum(logits.argmax(-1) != labels))
  log_softmax = logits - logits.max(1, keepdims=True)
  log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
  assert len(labels) == 297 and test[0]["error_rate"] == pytest.approx(errors / 297, abs=1e-6)
  assert test[0]["loss"] == pytest.approx(-log_softmax[np.arange(297), labels].mean(), rel=1e-4)
  assert errors < 0.8 * 297  # chance: 0.9 (measured: 0.56)

  # Rows: an image row and a glimpse row per sample; columns: glimpses; 40x40 tiles, pad 1,
  # upscaled twice.
  png = workdir / "samples" / "glimpses_120.png"
  image = np.asarray(Image.open(png))
  tiles = (2 * config.num_samples, config.model.glimpses)
  assert image.shape == (2 * (tiles[0] * 41 + 1), 2 * (tiles[1] * 41 + 1), 3)
  red = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
  assert red.any()  # the glimpse boxes


def test_bad_preset_is_named():
  with pytest.raises(ValueError, match=r"preset must be one of \('quickstart', 'paper'\), "
                                       r"got 'huge'"):
    configs.get_config("huge")
