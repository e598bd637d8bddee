"""`experiments/segmentation.py` end to end: FCN-8s and DeconvNet on per-pixel labelled digits."""

import os

import jax
import numpy as np
import pytest

from experiments import segmentation
from experiments.configs import segmentation as segmentation_config
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = segmentation_config.get_config()
  config.fcn.widths = (4, 8, 8, 8, 8)
  config.deconvnet.widths = (4, 8)
  config.data.update(dir=data_dir, copies=1, canvas_size=32)
  config.train.update(num_steps=30, batch_size=8, learning_rate=3e-3, log_every=10,
                      eval_every=30, checkpoint_every=30)
  config.eval.batch_size = 100
  config.num_samples = 2
  config.update(overrides)
  return config


def test_fcn8s_trains_and_its_mean_iou_is_the_confusion_matrix_s(tmp_path, data_dir):
  workdir = str(tmp_path / "fcn8s")
  config = tiny_config(data_dir)
  final = segmentation.train_and_evaluate(config, workdir)
  train = [r for r in read_metrics(workdir) if r["split"] == "train"]
  assert train[-1]["loss"] < 0.7 * train[0]["loss"]
  assert set(final) == {"validation", "test"}
  # The test metrics from the final parameters, counted in NumPy over every test pixel.
  _, params = load_params(workdir)
  datasets, names = segmentation.load_datasets(config)
  test = datasets["test"]
  images = np.stack([test[i]["image"] for i in range(len(test))]).astype(np.float32) / 255
  truth = np.stack([test[i]["segmentation"] for i in range(len(test))]).astype(int)
  model = segmentation.make_model(config, len(names))
  logits, _ = jax.jit(model.apply)({"params": params}, images)
  predicted = np.asarray(logits).argmax(-1)
  ious = []
  for c in range(len(names)):
    union = np.sum((truth == c) | (predicted == c))
    if union:
      ious.append(np.sum((truth == c) & (predicted == c)) / union)
  assert final["test"]["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-5)
  assert final["test"]["pixel_accuracy"] == pytest.approx(np.mean(truth == predicted), abs=1e-6)
  background = np.sum((truth == 0) & (predicted == 0)) / np.sum((truth == 0) | (predicted == 0))
  assert final["test"]["iou_background"] == pytest.approx(background, abs=1e-5)
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert "segmentation_test_30.png" in samples


def test_deconvnet_trains(tmp_path, data_dir):
  workdir = str(tmp_path / "deconvnet")
  final = segmentation.train_and_evaluate(
      tiny_config(data_dir, model="deconvnet", train={"num_steps": 10, "eval_every": 10,
                                                      "checkpoint_every": 10}), workdir)
  assert 0 <= final["test"]["mean_iou"] <= 1 and "iou_9" in final["test"]


@pytest.mark.parametrize("field, value, message", [
    ("model", "fcn4s", "model must be one of"),
    ("data", {"dataset": "cityscapes"}, "data.dataset must be one of"),
    ("data", {"dataset": "voc"}, "data.voc_dir must name"),
])
def test_bad_config_values_are_named(tmp_path, data_dir, field, value, message):
  config = tiny_config(data_dir)
  if isinstance(value, dict):
    config[field].update(value)
  else:
    config[field] = value
  with pytest.raises(ValueError, match=message):
    segmentation.train_and_evaluate(config, str(tmp_path))
