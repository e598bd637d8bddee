"""`experiments/seq2seq.py` end to end, with and without attention, on a tiny synthetic corpus."""

import json
import os

import numpy as np
import pytest

from experiments import seq2seq
from experiments.configs import seq2seq as seq2seq_config
from vislang_jax.train.metrics import read_metrics

BUCKETS = ("len_1_4", "len_5_6", "len_7_up")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = seq2seq_config.get_config()
  config.network.update(embed_dim=8, hidden_size=16, attention_dim=16, maxout_dim=8)
  config.data.update(dir=data_dir, train_size=200, validation_size=20, test_size=20,
                     max_clauses=1, max_words=8, max_len=9)
  config.train.update(num_steps=20, batch_size=16, learning_rate=1e-2, log_every=10,
                      eval_every=20, checkpoint_every=20)
  config.eval.update(batch_size=20, beam_size=2, length_buckets=(4, 6))
  config.num_alignments = 2
  config.update(overrides)
  return config


@pytest.mark.parametrize("model", ["attention", "no_attention"])
def test_trains_translates_and_scores_every_split(tmp_path, data_dir, model):
  workdir = str(tmp_path / model)
  final = seq2seq.train_and_evaluate(tiny_config(data_dir, model=model), workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert [r["step"] for r in train] == [10, 20]
  assert train[-1]["loss"] < train[0]["loss"]
  assert set(final) == {"validation", "test"}
  expected = {"nll_per_token", "token_accuracy"} | {
      f"bleu4_{name}{suffix}" for name in ("greedy", "beam")
      for suffix in ("", *(f"_{b}" for b in BUCKETS))}
  datasets, _, _ = seq2seq.load_datasets(tiny_config(data_dir))
  for split, metrics in final.items():
    assert set(metrics) == expected
    words = datasets[split].source_length - 1
    for name in ("greedy", "beam"):
      assert 0.0 <= metrics[f"bleu4_{name}"] <= 1.0
      # a bucket without sentences has no BLEU; the others do
      for bucket, chosen in zip(BUCKETS, ((words <= 4), (words >= 5) & (words <= 6),
                                          (words >= 7))):
        assert np.isnan(metrics[f"bleu4_{name}_{bucket}"]) == (not chosen.any())
  for name in ("source_vocabulary.json", "target_vocabulary.json"):
    with open(os.path.join(workdir, name)) as f:
      assert json.load(f)["words"]
  pictures = sorted(os.listdir(os.path.join(workdir, "samples"))) if os.path.isdir(
      os.path.join(workdir, "samples")) else []
  if model == "attention":
    assert pictures == ["alignment_test_20.png", "alignment_validation_20.png"]
  else:
    assert pictures == []


def test_config_errors(tmp_path, data_dir):
  with pytest.raises(ValueError, match="model must be one of .*'attention', 'no_attention'"):
    seq2seq.train_and_evaluate(tiny_config(data_dir, model="transformer"), str(tmp_path))
  with pytest.raises(ValueError, match="eval.length_buckets must be increasing"):
    seq2seq.length_buckets((10, 5))
  assert seq2seq.length_buckets((10, 20)) == [(1, 10), (11, 20), (21, None)]


def test_bleu4_by_length_against_closed_form():
  """Two 5-word sentences translated exactly, two 12-word ones with no word right."""
  short = ["a b c d e", "f g h i j"]
  long = [" ".join(f"r{k}{i}" for i in range(12)) for k in range(2)]
  wrong = [" ".join(f"h{k}{i}" for i in range(12)) for k in range(2)]
  scores = seq2seq.bleu4_by_length([[r] for r in short + long], short + wrong,
                                   np.array([5, 5, 12, 12]), seq2seq.length_buckets((6, 20)))
  # Corpus BLEU (Papineni et al. 2002): clipped n-gram matches over all four sentences, the
  # 5-word ones alone match: p_n = 2 (6 - n) / (2 (6 - n) + 2 (13 - n)); BP = 1.
  expected = np.prod([(6 - n) / ((6 - n) + (13 - n)) for n in range(1, 5)]) ** 0.25
  assert scores[""] == pytest.approx(expected, rel=1e-6)
  assert scores["_len_1_6"] == pytest.approx(1.0)
  assert scores["_len_7_20"] == pytest.approx(0.0, abs=1e-6)
  assert np.isnan(scores["_len_21_up"])
