"""End-to-end test of experiments/draw_classify.py on tiny cluttered scikit-learn digits."""

import json

import numpy as np
import pytest
from PIL import Image

from experiments import draw_classify
from experiments.configs import draw_classify as configs


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
  assert len(test) == 1 and 0.0 <= test[0]["error_rate"] <= 1.0
  assert test[0]["error_rate"] == result["test"]["error_rate"]
  assert validation["step"] == 120  # the final evaluation only, not again at eval_every
  assert np.isfinite(test[0]["loss"])
  assert train[-1]["loss"] < 0.9 * train[0]["loss"], train
  assert test[0]["error_rate"] < 0.8  # chance: 0.9 (measured: 0.56)
  # 297 test digits: the error is a multiple of 1/297.
  assert test[0]["error_rate"] * 297 == pytest.approx(round(test[0]["error_rate"] * 297),
                                                      abs=1e-3)

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
