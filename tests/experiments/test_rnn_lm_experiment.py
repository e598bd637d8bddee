"""`experiments/rnn_lm.py` end to end on a text file, and its data errors."""

import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import rnn_lm
from experiments.configs import rnn_lm as rnn_lm_config
from vislang_jax.data.vocabulary import BOS_ID, Vocabulary, tokenize
from vislang_jax.ops.sequence import shift_right
from vislang_jax.train.metrics import read_metrics

SUBJECTS = ("the cat", "a dog", "the old man", "my sister")
VERBS = ("sees", "likes", "chases")
OBJECTS = ("the ball", "a bird", "the red car")


def _corpus(path, count=240, seed=0):
  """count sentences 'subject verb object' drawn uniformly, one per line."""
  rng = np.random.default_rng(seed)
  lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
           for _ in range(count)]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return lines


def tiny_config(**overrides):
  config = rnn_lm_config.get_config()
  config.model.update(embed_dim=16, hidden_size=32, dropout_rate=0.0)
  config.max_len = 8
  config.train.update(num_steps=60, batch_size=16, learning_rate=2e-2, log_every=20,
                      eval_every=30, checkpoint_every=60)
  config.eval.update(batch_size=32, beam_size=2, num_samples=3, num_prefixes=2, prefix_words=2)
  config.update(overrides)
  return config


def test_trains_on_a_text_file_and_writes_generations(tmp_path):
  lines = _corpus(tmp_path / "corpus.txt")
  workdir = str(tmp_path / "run")
  config = tiny_config(data={"text_file": str(tmp_path / "corpus.txt")},
                       model={"cell": "vanilla"})
  final = rnn_lm.train_and_evaluate(config, workdir)
  assert set(final) == {"validation", "test"}
  # Perplexity of the language itself: the subject (4 ways), verb (3) and object (3) choices
  # spread over the 6 to 8 tokens of a sentence; the model starts at the vocabulary size.
  vocabulary = Vocabulary.load(os.path.join(workdir, "vocabulary.json"))
  lengths = np.array([len(tokenize(line)) + 1 for line in lines[-24:]])
  entropy = np.log(4 * 3 * 3) / lengths.mean()
  assert np.exp(entropy) < final["test"]["perplexity"] < 1.5 * np.exp(entropy)
  logs = read_metrics(workdir)
  (early,) = [r for r in logs if r["split"] == "validation" and r["step"] == 30]
  assert early["perplexity"] < len(vocabulary) / 2

  # The test metrics recomputed without the evaluator: the checkpoint's parameters on all
  # the test sentences at once, log-probabilities in float64.
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  params = manager.restore(60, args=ocp.args.Composite(state=ocp.args.StandardRestore())
                           ).state["params"]
  tokens, lengths = vocabulary.encode(lines[-24:], max_len=config.max_len)
  logits, _ = rnn_lm.make_model(config, len(vocabulary)).apply(
      {"params": params}, shift_right(tokens, bos_id=BOS_ID))
  logits = np.asarray(logits, np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  real = np.arange(config.max_len) < lengths[:, None]
  nll = -np.where(real, np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0], 0).sum()
  assert final["test"]["nll_per_token"] == pytest.approx(nll / lengths.sum(), rel=1e-5)
  assert final["test"]["perplexity"] == pytest.approx(np.exp(nll / lengths.sum()), rel=1e-5)
  correct = ((logits.argmax(-1) == tokens) & real).sum()
  assert final["test"]["token_accuracy"] == pytest.approx(correct / lengths.sum(), abs=1e-6)

  samples = sorted(os.listdir(os.path.join(workdir, "samples")))
  assert samples == ["generations_test_60.txt", "generations_validation_30.txt",
                     "generations_validation_60.txt"]
  text = (tmp_path / "run" / "samples" / "generations_test_60.txt").read_text().splitlines()
  sections = [i for i, line in enumerate(text) if line.startswith("# ")]
  assert [text[i].split()[1] for i in sections] == ["greedy", "beam", "samples", "greedy"]
  beams = [line.split("\t") for line in text[sections[1] + 1:sections[2]]]
  assert len(beams) == 2 and float(beams[0][0]) >= float(beams[1][0])
  generated = ([text[1]] + [sentence for _, sentence in beams]
               + text[sections[2] + 1:sections[3]])
  assert len(generated) == 6
  for sentence in generated:
    assert set(sentence.split()) <= set(vocabulary.words)
  # Completions continue the test split's first two sentences from their first two words.
  completions = text[sections[3] + 1:]
  for line, completion in zip(lines[-24:-22], completions):
    prefix, _ = completion.split(" | ")
    assert prefix == " ".join(tokenize(line)[:2])


def test_data_errors_are_named(tmp_path):
  _corpus(tmp_path / "corpus.txt", count=20)
  with pytest.raises(ValueError, match="cell must be one of \\('vanilla', 'lstm'\\), got 'gru'"):
    rnn_lm.make_model(tiny_config(model={"cell": "gru"}), 10)
  with pytest.raises(ValueError, match="max_len=4 is too short for .* train sentences"):
    rnn_lm.load_datasets(tiny_config(data={"text_file": str(tmp_path / "corpus.txt")},
                                     max_len=4))
  with pytest.raises(ValueError, match="does not exist"):
    rnn_lm.load_datasets(tiny_config(data={"text_file": str(tmp_path / "missing.txt")}))
  with pytest.raises(ValueError, match="data.validation_file, data.test_file must be set"):
    rnn_lm.load_datasets(tiny_config(data={"train_file": str(tmp_path / "corpus.txt")}))
  with pytest.raises(ValueError, match="text_file and the per-split files are alternatives"):
    rnn_lm.load_datasets(tiny_config(data={"text_file": str(tmp_path / "corpus.txt"),
                                           "test_file": str(tmp_path / "corpus.txt")}))
  (tmp_path / "two.txt").write_text("one line\n---\n\nanother\n")  # two lines with words
  with pytest.raises(ValueError, match=r"must hold at least 3 lines with words \(.*\), got 2"):
    rnn_lm.load_datasets(tiny_config(data={"text_file": str(tmp_path / "two.txt")}))
  (tmp_path / "rule.txt").write_text("---\n")
  with pytest.raises(ValueError, match="must hold a line with a word, got none"):
    rnn_lm.load_datasets(tiny_config(data={"text_file": str(tmp_path / "rule.txt")}))
  # Truncation instead of the error; per-split files.
  datasets, _ = rnn_lm.load_datasets(tiny_config(
      max_len=4, data={"truncate": True, **{f"{s}_file": str(tmp_path / "corpus.txt")
                                            for s in ("train", "validation", "test")}}))
  assert {len(d) for d in datasets.values()} == {20} and datasets["test"][0]["length"] == 4


def test_captions_are_the_captioned_digits_sentences(tmp_path):
  config = tiny_config(max_len=12)
  config.data.update(dir=str(tmp_path), copies=1, novel_size=20)
  datasets, vocabulary = rnn_lm.load_datasets(config)
  raw, _ = rnn_lm.show_attend_tell.load_datasets(config)
  assert {k: len(v) for k, v in datasets.items()} == {k: len(v) for k, v in raw.items()}
  assert set(datasets) == {"train", "validation", "test", "novel"}
  for split in ("train", "novel"):
    for i in (0, len(raw[split]) - 1):
      record = datasets[split][i]
      caption = raw[split].source[i]["caption"]
      words = tokenize(caption.decode() if isinstance(caption, bytes) else caption)
      assert vocabulary.decode(record["tokens"][None], record["length"][None]) == [
          " ".join(words)]
      assert record["length"] == len(words) + 1
