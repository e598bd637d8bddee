"""`experiments/stn_addition.py` (STN A.1) end to end on a tiny run, and its 2xST model."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from experiments import stn_addition
from experiments.configs import stn_addition as config_lib
from vislang_jax.models import stn
from vislang_jax.ops import sampling
from vislang_jax.train.metrics import read_metrics

KEY = jax.random.key(0, impl="rbg")


def tiny_config(tmp_path, **overrides):
  config = config_lib.get_config()
  config.data.dir = str(tmp_path / "tfds")
  config.data.copies = 1
  config.model.out_hw = (14, 14)
  config.train.num_steps = 30
  config.train.batch_size = 16
  config.train.log_every = 10
  config.train.eval_every = 30
  config.train.checkpoint_every = 30
  config.eval.batch_size = 150
  config.num_samples = 3
  config.update(overrides)
  return config


def _images(seed=0, b=4):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(b, 42, 42, 2)), jnp.float32)


def _regressor(params, i):
  return params["transformer"][f"transformers_{i}"]["localisation"]["regressor"]


def test_two_transformers_each_read_and_warp_both_channels(tmp_path):
  model = stn_addition.make_model(tiny_config(tmp_path))
  x = _images()
  params = model.init(KEY, x)["params"]
  assert set(params["transformer"]) == {"transformers_0", "transformers_1"}
  for i in range(2):  # each localisation net reads both channels
    assert params["transformer"][f"transformers_{i}"]["localisation"]["conv_0"][
        "kernel"].shape == (5, 5, 2, 20)
  # Different transforms (set through the regressor biases) give different outputs; each
  # output's channel c is channel c of the input under that transformer's own warp.
  params["transformer"]["transformers_1"]["localisation"]["regressor"]["bias"] = jnp.asarray(
      [0.5, 0.1, 0.2, -0.1, 0.6, -0.3])
  logits, aux = model.apply({"params": params}, x)
  assert logits.shape == (4, 19) and aux["transformed"].shape == (4, 14, 14, 4)
  first, second = aux["transformed"][..., :2], aux["transformed"][..., 2:]
  assert np.abs(np.asarray(first) - np.asarray(second)).max() > 0.1
  for branch, out in zip(aux["branches"], (first, second)):
    np.testing.assert_allclose(
        out, sampling.bilinear_sample(x, branch["grid"]), atol=1e-5)
  # Each transformer's theta depends on both channels: changing channel 1 alone moves
  # transformer 0's theta once its regressor reads its features.
  params["transformer"]["transformers_0"]["localisation"]["regressor"]["kernel"] = jnp.full(
      (20, 6), 0.05)
  theta = lambda images: model.apply({"params": params}, images)[1]["branches"][0]["theta"]
  assert np.abs(np.asarray(theta(x.at[..., 1].set(0.0)) - theta(x))).max() > 1e-4
  assert np.abs(np.asarray(theta(x.at[..., 0].set(0.0)) - theta(x))).max() > 1e-4


def test_gradient_reaches_both_localisation_nets(tmp_path):
  model = stn_addition.make_model(tiny_config(tmp_path))
  x, labels = _images(), jnp.array([0, 7, 12, 18])
  params = jax.jit(model.init)(KEY, x)["params"]

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": p}, x)[0], labels).mean()

  grads = jax.jit(jax.grad(loss))(params)  # (jitted: op by op it took most of the test)
  # At init both regressors have zero kernels and identity biases: non-zero gradients on
  # their kernels show the loss reaches each net through head, sampler and grid, and they
  # differ because the head weighs the two transformers' channels differently.
  g0, g1 = (np.asarray(_regressor(grads, i)["kernel"]) for i in range(2))
  assert np.abs(g0).max() > 1e-6 and np.abs(g1).max() > 1e-6
  assert np.abs(g0 - g1).max() > 1e-6


def test_learns_logs_test_error_and_writes_channel_grid(tmp_path):
  workdir = str(tmp_path / "run")
  test = stn_addition.train_and_evaluate(tiny_config(tmp_path), workdir)["test"]
  train = [r for r in read_metrics(workdir) if r["split"] == "train"]
  assert [r["step"] for r in train] == [10, 20, 30]
  # The logged test error, recomputed from the final checkpoint on all 297 test records at
  # once (no batching, padding or sharding), the labels recomputed as the digits' sum.
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  assert manager.latest_step() == 30
  params = manager.restore(30, args=ocp.args.Composite(state=ocp.args.StandardRestore())
                           ).state["params"]
  split = stn_addition.load_datasets(tiny_config(tmp_path))["test"]
  records = [split[i] for i in range(len(split))]
  images = np.stack([r["image"] for r in records]) / 255.0
  labels = np.array([r["digits"].sum() for r in records])
  logits, aux = stn_addition.make_model(tiny_config(tmp_path)).apply(
      {"params": params}, jnp.asarray(images, jnp.float32))
  errors = int(np.sum(np.argmax(logits, -1) != labels))
  assert len(labels) == 297 and test["error_rate"] == pytest.approx(errors / 297, abs=1e-6)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  assert test["loss"] == pytest.approx(float(loss), rel=1e-4)
  # Trained apart, the two transformers no longer apply the same warp.
  thetas = [np.asarray(b["theta"]) for b in aux["branches"]]
  assert np.abs(thetas[0] - thetas[1]).max() > 1e-3
  # 3 validation rows x (2 input + 2 x 2 output channels) of 42x42, 1-pixel pad, upscaled x2:
  # row r shows validation record r's channels, then each transformer's 14x14 output
  # channels centred on black, as the final parameters make them.
  png = Image.open(os.path.join(workdir, "samples", "transforms_30.png"))
  assert png.size == (2 * (6 * 43 + 1), 2 * (3 * 43 + 1))
  grid = np.asarray(png, np.float32)[::2, ::2] / 255.0  # undo the x2 upscaling
  validation = stn_addition.load_datasets(tiny_config(tmp_path))["validation"]
  shown = np.stack([validation[r]["image"] for r in range(3)]) / 255.0
  _, aux = stn_addition.make_model(tiny_config(tmp_path)).apply(
      {"params": params}, jnp.asarray(shown, jnp.float32))
  out = np.asarray(aux["transformed"])
  for r in range(3):
    cells = [grid[1 + 43 * r:43 + 43 * r, 1 + 43 * c:43 + 43 * c] for c in range(6)]
    for c in range(2):
      np.testing.assert_allclose(cells[c], shown[r, ..., c], atol=1 / 255)
    for c in range(4):
      np.testing.assert_allclose(cells[2 + c][14:28, 14:28], out[r, ..., c], atol=1.5 / 255)
      assert cells[2 + c][:14].max() == 0.0  # the black margin


def test_cnn_baseline_and_presets(tmp_path):
  model = stn_addition.make_model(tiny_config(tmp_path, model={"name": "cnn"}))
  assert isinstance(model, stn.CNN) and model.num_classes == 19
  paper = config_lib.get_config("paper")
  assert (paper.model.name, paper.model.num_transformers, paper.model.transform) == (
      "st_fcn", 2, "tps")
  assert (paper.train.optimizer, paper.train.momentum) == ("sgd", 0.0)
  with pytest.raises(ValueError, match="preset must be"):
    config_lib.get_config("huge")
