"""`experiments/style.py` end to end on tiny images, with random weights and a weights file."""

import json
import os

import numpy as np
import pytest

from experiments import style
from experiments.configs import style as style_config
from vislang_jax.models.vgg import VGG_CONV_INDICES


def tiny_config(**overrides):
  config = style_config.get_config()
  config.update(image_size=32, ratios=(1e-3,), ratio=1e-3, optimizer="adam")
  config.train.update(num_steps=4, learning_rate=0.05)
  config.update(overrides)
  return config


def test_stylises_with_a_torch_weights_file(tmp_path):
  torch = pytest.importorskip("torch")
  # A torchvision-layout vgg19 state dict (random weights) saved as users save ImageNet's.
  rng = np.random.default_rng(0)
  state, channels = {}, 3
  for index, width in zip(VGG_CONV_INDICES[19], (64, 64, 128, 128) + (256,) * 4 + (512,) * 8):
    state[f"features.{index}.weight"] = torch.tensor(
        rng.normal(0, np.sqrt(2 / (9 * channels)), (width, channels, 3, 3)), dtype=torch.float32)
    state[f"features.{index}.bias"] = torch.zeros(width)
    channels = width
  path = str(tmp_path / "vgg19.pth")
  torch.save(state, path)
  workdir = str(tmp_path / "run")
  results = style.train_and_evaluate(tiny_config(weights_path=path), workdir)
  (metrics,) = results.values()
  # Four Adam steps from white noise lower the style loss; the result is an image.
  assert metrics["style_loss_relative"] < 1.0 and metrics["seconds"] > 0
  for name in ("result.png", "grid.png", "losses.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    (record,) = [json.loads(line) for line in f]
  assert record["split"] == "ratio_0" and record["ratio"] == pytest.approx(1e-3)


def test_random_weights_content_init_and_lbfgs(tmp_path):
  # From the content image, L-BFGS on shallow layers (the network stops at the deepest one
  # asked for: a small program to compile) lowers the style loss at both ratios.
  config = tiny_config(init="content", optimizer="lbfgs", ratios=(1e-1, 1e-4), ratio=1e-4,
                       content_layer="conv2_1", style_layers=("conv1_1", "conv2_1"))
  config.train.num_steps = 3
  results = style.train_and_evaluate(config, str(tmp_path))
  assert set(results) == {"ratio_0", "ratio_1"}
  for metrics in results.values():
    assert metrics["style_loss_relative"] < 1.0


def test_load_image_sizes_and_errors(tmp_path):
  image = style.load_image("", size=20, default="china.jpg")
  assert image.shape == (20, 30, 3) and 0 <= image.min() and image.max() <= 1
  assert style.load_image("", size=20, default="flower.jpg", shape=(20, 30)).shape == (20, 30, 3)
  with pytest.raises(ValueError, match="no such file"):
    style.load_image(str(tmp_path / "missing.jpg"), size=20, default="china.jpg")
  with pytest.raises(ValueError, match="optimizer must be one of"):
    style.train_and_evaluate(tiny_config(optimizer="sgd"), str(tmp_path))
