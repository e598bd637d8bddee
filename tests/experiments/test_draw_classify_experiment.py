"""End-to-end test of experiments/draw_classify.py on tiny cluttered scikit-learn digits."""

import json

import numpy as np
from PIL import Image

from experiments import draw_classify
from experiments.configs import draw_classify as configs
from vislang_jax.ops.filterbank import AttentionParams


def _tiny_config(data_dir):
  config = configs.get_config()
  config.glimpses = 2
  config.read_n = 6
  config.hidden_size = 32
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
  test_metrics = draw_classify.train_and_evaluate(config, str(workdir))

  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  assert [r["step"] for r in train] == [40, 80, 120]
  assert len(test) == 1 and 0.0 <= test[0]["error_rate"] <= 1.0
  assert test[0]["error_rate"] == test_metrics["error_rate"]
  assert np.isfinite(test[0]["loss"])
  assert train[-1]["loss"] < 0.9 * train[0]["loss"], train
  assert test[0]["error_rate"] < 0.8  # chance: 0.9 (measured: 0.56)

  # Rows: an image row and a glimpse row per sample; columns: glimpses; 40x40 tiles, pad 1,
  # upscaled twice.
  png = workdir / "samples" / "glimpses_120.png"
  image = np.asarray(Image.open(png))
  tiles = (2 * config.num_samples, config.glimpses)
  assert image.shape == (2 * (tiles[0] * 41 + 1), 2 * (tiles[1] * 41 + 1), 3)
  red = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
  assert red.any()  # the glimpse boxes


def test_boxes_are_drawn_n_delta_wide_around_the_centre():
  images = np.zeros((1, 21, 21, 1), np.float32)
  # Glimpse 1 centred at pixel (11, 11) (1-based), N * delta = 4 * 2.5 = 10 pixels wide;
  # glimpse 2 at (6, 16) and larger than the image on its left.
  read = AttentionParams(gx=np.array([[11.0], [6.0]]), gy=np.array([[11.0], [16.0]]),
                         sigma2=np.ones((2, 1)), delta=np.array([[2.5], [5.0]]),
                         gamma=np.ones((2, 1)))
  boxes = draw_classify.draw_glimpse_boxes(images, read, n=4)
  assert boxes.shape == (1, 2, 21, 21, 3)
  red = boxes[0, ..., 0] == 1.0
  expected = np.zeros((2, 21, 21), bool)
  expected[0, [5, 15], 5:16] = expected[0, 5:16, [5, 15]] = True  # 0-based 10 -+ 5
  expected[1, [5, 20], 0:16] = expected[1, 5:21, [0, 15]] = True  # clipped at 0 and 20
  np.testing.assert_array_equal(red, expected)
  np.testing.assert_array_equal(boxes[0, ..., 1], 0.0)


def test_enlarge_repeats_each_glimpse_pixel():
  patches = np.arange(4.0).reshape(1, 2, 2, 1)
  np.testing.assert_array_equal(
      draw_classify.enlarge(patches, 4, 6)[0, ..., 0],
      [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 2, 3, 3, 3], [2, 2, 2, 3, 3, 3]])
