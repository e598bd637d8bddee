"""`experiments/vqa.py` end to end (digit QA and Sort-of-CLEVR), its accuracies recomputed
from the final checkpoint, one question at a time; the errors a user can cause."""

import os

import jax
import numpy as np
import pytest

from experiments import vqa
from experiments.configs import vqa as vqa_config
from vislang_jax.data import digit_qa, sort_of_clevr
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, model, dataset):
  config = vqa_config.get_config()
  config.model = model
  config.dataset = dataset
  encoder = {"widths": (4, 8, 8)}
  config.naive.update(encoder=encoder, embed_dim=8, hidden_size=16, mlp_sizes=(16,))
  config.san.update(encoder=encoder, embed_dim=8, hidden_size=16, attention_dim=8)
  config.memnet.update(encoder=encoder, embed_dim=16, hops=2)
  config.data.dir = data_dir
  config.data.num_train, config.data.num_validation, config.data.num_test = 30, 6, 8
  config.data.novel_size = 12
  config.train.num_steps = 20
  config.train.batch_size = 16
  config.train.learning_rate = 1e-2
  config.train.log_every = 10
  config.train.eval_every = 20
  config.train.checkpoint_every = 20
  config.eval.batch_size = 64
  config.num_samples = 3
  return config


def recomputed_accuracies(config, workdir, source, type_names):
  """Accuracy overall and per question type, from the checkpoint, one example at a time."""
  datasets, vocabulary, answers = vqa.load_datasets(config)
  model = vqa.make_model(config, vocab_size=len(vocabulary), num_answers=len(answers))
  _, params = load_params(workdir)
  answer_one = jax.jit(lambda image, question, length: model.apply(
      {"params": params}, image[None], question[None], length[None])[0][0])
  correct, types = [], []
  for i in range(len(source)):
    record = source[i]
    logits = answer_one(record["image"], record["question"], record["length"])
    correct.append(int(np.argmax(logits)) == int(record["answer"]))
    types.append(int(record["question_type"]))
  correct, types = np.array(correct), np.array(types)
  out = {"accuracy": correct.mean()}
  for t, name in enumerate(type_names):
    if (types == t).any():
      out[f"accuracy_{name}"] = correct[types == t].mean()
  return out


@pytest.mark.parametrize("model, dataset", [("san", "digit_qa"), ("memnet", "sort_of_clevr")])
def test_trains_and_every_accuracy_equals_one_question_at_a_time(tmp_path, data_dir, model,
                                                                 dataset):
  config = tiny_config(data_dir, model, dataset)
  workdir = str(tmp_path / model)
  final = vqa.train_and_evaluate(config, workdir)
  module = {"digit_qa": digit_qa, "sort_of_clevr": sort_of_clevr}[dataset]
  splits = {"validation", "test"} | ({"novel"} if dataset == "digit_qa" else set())
  assert set(final) == splits
  train = [r for r in read_metrics(workdir) if r["split"] == "train"]
  assert len(train) == 2 and all(np.isfinite(r["loss"]) for r in train)
  for split in splits:
    assert os.path.isfile(os.path.join(workdir, "samples", f"vqa_{split}_20.png"))
  datasets, _, _ = vqa.load_datasets(config)
  want = recomputed_accuracies(config, workdir, datasets["test"], module.QUESTION_TYPES)
  for name, value in want.items():
    assert final["test"][name] == pytest.approx(value, abs=1e-6), name
  assert {f"accuracy_{t}" for t in module.QUESTION_TYPES} <= set(final["test"])
  if dataset == "sort_of_clevr":
    assert {f"accuracy_{t}" for t in sort_of_clevr.QUESTION_SUBTYPES} <= set(final["test"])


def test_accuracies_per_type_and_subtype():
  predictions = {"prediction": np.array([0, 1, 2, 2]), "answer": np.array([0, 2, 2, 1]),
                 "nll": np.array([0.5, 1.5, 1.0, 1.0]),
                 "question_type": np.array([0, 0, 1, 1]),
                 "question_subtype": np.array([0, 2, 2, 2])}
  metrics = vqa.accuracies(predictions, {"question_type": ("a", "b"),
                                         "question_subtype": ("x", "y", "z")})
  assert metrics == {"accuracy": 0.5, "nll": 1.0, "accuracy_a": 0.5, "accuracy_b": 0.5,
                     "accuracy_x": 1.0, "accuracy_z": 1 / 3}


def test_user_errors_are_named(tmp_path, data_dir, monkeypatch):
  config = tiny_config(data_dir, "san", "digit_qa")
  with pytest.raises(ValueError, match=r"model must be one of .*'naive'.*got 'rn'"):
    vqa.train_and_evaluate(dict_update(config, model="rn"), str(tmp_path / "a"))
  with pytest.raises(ValueError, match=r"dataset must be one of .*'sort_of_clevr'.*got 'vqa2'"):
    vqa.train_and_evaluate(dict_update(config, dataset="vqa2"), str(tmp_path / "b"))
  datasets, _, _ = vqa.load_datasets(dict_update(config, max_len=4))
  with pytest.raises(ValueError, match="max_len"):
    datasets["train"][0]  # "which digit is left of the seven": 7 words
  # An answer set that misses an answer of a split.
  monkeypatch.setattr(digit_qa, "ANSWERS", tuple(a for a in digit_qa.ANSWERS if a != "yes"))
  with pytest.raises(ValueError, match=r"(?s)split.*'yes'"):
    vqa.load_datasets(config)


def dict_update(config, **fields):
  config = config.copy_and_resolve_references()
  config.update(fields)
  return config
