"""`experiments/dcc.py` end to end: held-out digits, the three DCC stages, transfer, baseline."""

import importlib.util
import json
import os
import re

import numpy as np
import pytest

from experiments import dcc
from experiments.configs import dcc as dcc_config
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.attributes import content_words
from vislang_jax.data.captions import as_text
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.train.metrics import read_metrics

HELD_OUT = (3, 7)
HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = dcc_config.get_config()
  config.held_out = HELD_OUT
  config.model.encoder.widths = (8, 8, 8)
  config.model.update(feature_dim=16, classifier_hidden=0, embed_dim=8, hidden_dim=16)
  config.data.dir = data_dir
  config.data.copies = 1
  config.train.update(num_steps=30, batch_size=16, learning_rate=1e-2, log_every=10,
                      eval_every=30, checkpoint_every=30)
  config.eval.batch_size = 200
  config.num_samples = 2
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("dcc"))
  config = tiny_config(data_dir)
  return workdir, config, dcc.train_and_evaluate(config, workdir)


def test_paired_data_never_shows_a_held_out_digit(data_dir):
  datasets, vocabulary = dcc.load_datasets(tiny_config(data_dir))
  names = {DIGIT_NAMES[d] for d in HELD_OUT}
  # The digit labels (not the captions the split was filtered by) say which digits it holds.
  paired = datasets["train"]
  labels = np.stack([paired.source[i]["labels"] for i in range(len(paired))])
  assert not np.isin(labels, HELD_OUT).any()
  unpaired = datasets["unpaired"]
  all_labels = np.stack([unpaired.source[i]["labels"] for i in range(len(unpaired))])
  assert len(paired) == int((~np.isin(all_labels, HELD_OUT).any(-1)).sum())
  # Every novel record holds a held-out digit; the words are in the vocabulary (unpaired text).
  novel = datasets["novel"]
  assert len(novel) > 0 and all(
      np.isin(novel.source[i]["labels"], HELD_OUT).any() for i in range(len(novel)))
  assert names <= set(vocabulary.tokens)
  assert not any(names & set(as_text(paired.source[i]["caption"]).split())
                 for i in range(len(paired)))


def test_stages_transfer_and_metrics(finished):
  workdir, config, final = finished
  for stage in ("lexical", "lm", "paired_only/lexical", "paired_only/caption"):
    assert os.path.isdir(os.path.join(workdir, stage, "checkpoints")), stage
  with open(os.path.join(workdir, "transfer.json")) as f:
    sources = json.load(f)
  names = [DIGIT_NAMES[d] for d in HELD_OUT]
  assert sorted(sources) == sorted(names)
  # Each source: one seen concept word (config.delta_sources = 1), not held out.
  vocabulary = Vocabulary.load(os.path.join(workdir, "vocabulary.json"))
  concepts = set(content_words(vocabulary))
  assert all(len(s) == 1 and s[0] in concepts and s[0] not in names
             for s in sources.values())
  assert set(final) == {"validation", "test", "novel"}
  for split, metrics in final.items():
    for variant in dcc.VARIANTS:
      for key in ("f1_held_out", "bleu4", "cider", *(f"f1_{w}" for w in names)):
        value = metrics[f"{key}_{variant}"]
        assert np.isfinite(value) and value >= 0, (split, key, variant)
      assert 0 <= metrics[f"f1_held_out_{variant}"] <= 1
    assert metrics["f1_held_out"] == metrics["f1_held_out_direct"]
    assert metrics["bleu4"] == metrics["bleu4_direct"]
    for variant in dcc.VARIANTS:  # the mean over the held-out words
      assert metrics[f"f1_held_out_{variant}"] == pytest.approx(
          np.mean([metrics[f"f1_{w}_{variant}"] for w in names]))
  logs = read_metrics(workdir)
  assert {r["split"] for r in logs} >= {"train", "validation", "test", "novel"}
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert f"captions_novel_{config.train.num_steps}.png" in samples


@pytest.mark.parametrize("field, value, message", [
    ("held_out", (), "config.held_out must be"),
    ("held_out", (3, 3), "config.held_out must be"),
    ("held_out", (10,), "config.held_out must be"),
    ("held_out", tuple(range(10)), "config.held_out must be"),
    ("transfer", "swap", "transfer must be one of"),
    ("delta_sources", 0, "delta_sources must be"),
    ("lm_steps", 0, "lm_steps must be"),
])
def test_bad_config_values_are_named(tmp_path, data_dir, field, value, message):
  config = tiny_config(data_dir)
  config[field] = value
  with pytest.raises(ValueError, match=message):
    dcc.train_and_evaluate(config, str(tmp_path))


@pytest.mark.skipif(not HAS_TF, reason="the TFDS coco_captions builder needs TensorFlow")
def test_coco_split_from_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  def words(texts):
    return {w for t in texts for w in re.findall(r"[a-z0-9]+", as_text(t).lower())}

  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    train = tfds.data_source("coco_captions", split="train", data_dir=str(tmp_path))
    # Mock captions are random letters: hold out a word of the second image.
    held = sorted(words(train[1]["captions"]["text"]))[0]
    config = dcc_config.get_config("coco")
    config.data.update(dir=str(tmp_path), image_size=8, captions_per_image=2, min_count=1)
    config.held_out = (held,)
    datasets, vocabulary = dcc.load_datasets(config)
  assert held in vocabulary.tokens
  paired = datasets["train"]
  kept = [i for i in range(len(train)) if held not in words(train[i]["captions"]["text"])]
  assert 0 < len(kept) < len(train) and len(paired) == 2 * len(kept)
  record = paired[0]
  assert record["image"].shape == (8, 8, 3) and record["tokens"].shape == (config.max_len,)
  assert all(held not in words(paired.source[n]["references"]) for n in range(len(paired)))
  novel = datasets["novel"]
  assert all(held in words(novel.source[n]["references"]) for n in range(len(novel)))
  config.held_out = (3, 7)
  with pytest.raises(ValueError, match="config.held_out must be words"):
    dcc.held_out_words(config)
