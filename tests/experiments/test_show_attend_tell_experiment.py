"""`experiments/show_attend_tell.py` end to end (soft and hard attention) and its grounding metric."""

import os

import numpy as np
import pytest

from experiments import show_attend_tell as sat
from experiments.configs import show_attend_tell as sat_config
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = sat_config.get_config()
  config.encoder_widths = (8, 16, 16)
  config.embed_dim, config.hidden_size, config.attention_dim = 16, 32, 16
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 20
  config.train.num_steps = 40
  config.train.batch_size = 16
  config.train.learning_rate = 1e-2
  config.train.log_every = 10
  config.train.eval_every = 40
  config.train.checkpoint_every = 40
  config.eval.batch_size = 100
  config.eval.beam_size = 2
  config.num_samples = 2
  config.update(overrides)
  return config


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_trains_decodes_and_scores_every_split(tmp_path, data_dir, attention):
  workdir = str(tmp_path / attention)
  test = sat.train_and_evaluate(tiny_config(data_dir, attention=attention), workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["nll_per_token"] < 0.8 * train[0]["nll_per_token"]
  if attention == "hard":
    # The moving-average baseline lives in the train state: b_k = 0.9 b_{k-1} + 0.1 r_k
    # leaves 0 for the (negative) log-likelihood of the captions, then follows it.
    baselines = [r["baseline"] for r in train]
    assert max(baselines) < 0 and len(set(baselines)) == len(baselines)
  splits = {r["split"]: r for r in logs if r["split"] in ("eval", "test", "novel")}
  assert set(splits) == {"eval", "test", "novel"}
  for record in splits.values():
    for key in ("bleu1", "bleu4", "rouge_l", "attention_in_box", "token_accuracy"):
      assert 0.0 <= record[key] <= 1.0, (key, record)
    assert np.isfinite(record["nll_per_token"]) and record["cider"] >= 0.0
    assert 0.1 < record["box_share"] < 0.35  # a 28x28 box of a 60x60 canvas, on the grid
  assert test["bleu1"] == pytest.approx(splits["test"]["bleu1"])
  assert splits["eval"]["bleu1"] > 0.3  # "the digit ... is ..." is learnt in 40 steps
  assert Vocabulary.load(os.path.join(workdir, "vocabulary.json")).token_id("digit") > 3
  for split in ("eval", "test", "novel"):
    assert os.path.exists(os.path.join(workdir, "samples", f"attention_{split}_40.png"))


def test_attention_in_box_against_hand_placed_attention():
  vocabulary = Vocabulary.build(["the digit seven is at the top left of the image"])
  seven = vocabulary.token_id("seven")
  tokens = np.array([[seven, 2]])
  labels = np.array([[7, -1]])
  boxes = np.array([[[0, 0, 28, 28], [-1, -1, -1, -1]]])  # cells 0..2 and 3.5 of 7, stride 8
  alpha = np.zeros((1, 2, 49))
  alpha[0, 0, 0] = 0.5       # cell (0, 0): inside
  alpha[0, 0, 3] = 0.25      # cell (0, 3): half inside (pixels 24..32 vs box ..28)
  alpha[0, 0, 48] = 0.25     # cell (6, 6): outside
  mass, share = sat.attention_in_box(alpha, tokens, np.array([2]), labels, boxes,
                                     vocabulary=vocabulary, image_hw=(60, 60))
  assert mass == pytest.approx([0.5 + 0.125])
  assert share == pytest.approx([3.5 * 3.5 / 49])
  # A digit word that names no digit of the image is not scored.
  labels_other = np.array([[3, -1]])
  assert sat.attention_in_box(alpha, tokens, np.array([2]), labels_other, boxes,
                              vocabulary=vocabulary, image_hw=(60, 60)) == ([], [])


def test_bad_attention_and_preset_are_named():
  with pytest.raises(ValueError, match="attention must be one of"):
    sat.make_model(tiny_config("/nonexistent", attention="gumbel"), 10)
  with pytest.raises(ValueError, match="preset must be"):
    sat_config.get_config("coco")
