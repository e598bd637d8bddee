"""A word-level RNN language model on captions or any text file (lecture notes: vanilla RNN, LSTM).

  python -m experiments.rnn_lm --workdir=DIR [--config.model.cell=vanilla]
      [--config.data.text_file=FILE | --config.data.train_file=... (and validation, test)]

Trains `models.rnn_lm.RNNLM` by teacher forcing (`objectives.sequence.xent_loss`, the summed
NLL of each sentence) on the captions of the captioned digits (`show_attend_tell.
load_datasets`: `data.source`, `data.mnist_dir`, `data.dir`, `seed`) or on text, one
sentence per line (`data.text_file`, cut into train / validation / test, or one file per
split; lines without a word, blank or punctuation only, are skipped). Evaluates every
split: `nll_per_token` (the split's summed NLL over its tokens, `<eos>` included),
`perplexity = exp(nll_per_token)` and `token_accuracy`. Writes
DIR/metrics.jsonl, DIR/vocabulary.json, DIR/checkpoints, DIR/tensorboard and
DIR/samples/generations_<split>_<step>.txt: the greedy sentence, the beam's sentences with
their log-probabilities, samples, and greedy completions of the split's first sentences.
"""

import functools
import hashlib
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import show_attend_tell
from vislang_jax import decoding
from vislang_jax.checks import check_float, check_int
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.text_corpus import read_lines
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary, tokenize
from vislang_jax.models.rnn_lm import RNNLM
from vislang_jax.objectives.sequence import xent_loss
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss

TEXT_SPLITS = ("train", "validation", "test")


class Sentences:
  """Encoded sentences as random-access records `{"tokens" [T], "length", "index"}`.

  Args:
    tokens: int32 [N, T], each sentence's ids then `<eos>`, padded with `<pad>`.
    lengths: int32 [N], the ids up to and including `<eos>`.
    name: names the sentences in `repr` (e.g. "corpus.txt/validation").
  """

  def __init__(self, tokens: np.ndarray, lengths: np.ndarray, *, name: str):
    self.tokens = np.asarray(tokens, np.int32)
    self.lengths = np.asarray(lengths, np.int32)
    self.name = name
    self._digest = hashlib.sha256(self.tokens.tobytes()).hexdigest()[:16]

  def __len__(self) -> int:
    return len(self.tokens)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < len(self):
      raise IndexError(f"index must be in [0, {len(self)}), got {index}.")
    return {"tokens": self.tokens[index], "length": self.lengths[index],
            "index": np.int32(index)}

  def __repr__(self) -> str:
    # Grain keeps this in checkpoints and compares it on restore: no memory address.
    return (f"Sentences({self.name}, {len(self)} sentences of {self.tokens.shape[1]} ids, "
            f"sha256 {self._digest})")


def _sentences(path: str) -> list[str]:
  """The lines of `path` that hold a word (blank and punctuation-only lines are skipped)."""
  lines = [line for line in read_lines(path, skip_blank=True) if tokenize(line)]
  if not lines:
    raise ValueError(f"path={path!r} must hold a line with a word, got none.")
  return lines


def _text_splits(data: ml_collections.ConfigDict) -> dict[str, tuple[str, list[str]]]:
  """`{split: (where, sentences)}` from `data.text_file` or the three per-split files."""
  files = {split: data[f"{split}_file"] for split in TEXT_SPLITS}
  if data.text_file:
    if any(files.values()):
      raise ValueError(f"data.text_file and the per-split files are alternatives, got "
                       f"text_file={data.text_file!r} and {files}.")
    fraction = check_float("data.heldout_fraction", data.heldout_fraction, low=0.0, below=0.5)
    lines = _sentences(data.text_file)
    heldout = max(1, round(fraction * len(lines)))
    if len(lines) < 2 * heldout + 1:
      raise ValueError(f"data.text_file={data.text_file!r} must hold at least {2 * heldout + 1}"
                       f" lines with words (train, then {heldout} validation and {heldout} "
                       f"test), got {len(lines)}.")
    cut = len(lines) - 2 * heldout
    return {"train": (data.text_file, lines[:cut]),
            "validation": (data.text_file, lines[cut:cut + heldout]),
            "test": (data.text_file, lines[cut + heldout:])}
  missing = [f"data.{split}_file" for split, path in files.items() if not path]
  if missing:
    raise ValueError(f"{', '.join(missing)} must be set with the other per-split files, got "
                     f"{files}.")
  return {split: (path, _sentences(path)) for split, path in files.items()}


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, Sentences], Vocabulary]:
  """The encoded sentences of every split and the vocabulary of the training sentences.

  Text (`data.text_file` or the per-split files) gives "train", "validation" and "test";
  otherwise the captioned digits' captions give those and "novel".
  """
  data = config.data
  if not (data.text_file or data.train_file or data.validation_file or data.test_file):
    captions, vocabulary = show_attend_tell.load_datasets(config)
    arrays = {split: stack_records(source, ("tokens", "length"))
              for split, source in captions.items()}
    return {split: Sentences(a["tokens"], a["length"], name=f"captions/{split}")
            for split, a in arrays.items()}, vocabulary
  splits = _text_splits(data)
  vocab_size = check_int("data.vocab_size", data.vocab_size, low=0)
  vocabulary = Vocabulary.build(splits["train"][1], min_count=data.min_count,
                                max_size=vocab_size or None)
  datasets = {}
  for split, (where, lines) in splits.items():
    words = [len(tokenize(line)) for line in lines]
    if not data.truncate and max(words) > config.max_len - 1:
      longest = int(np.argmax(words))
      line = lines[longest] if len(lines[longest]) <= 80 else lines[longest][:80] + "..."
      raise ValueError(
          f"max_len={config.max_len} is too short for {sum(w >= config.max_len for w in words)}"
          f" of the {len(lines)} {split} sentences of {where!r} (more than max_len - 1 = "
          f"{config.max_len - 1} words); the longest has {words[longest]} words + <eos>: "
          f"{line!r}. Raise max_len or set data.truncate=True.")
    tokens, lengths = vocabulary.encode(lines, max_len=config.max_len, truncate=True)
    datasets[split] = Sentences(tokens, lengths, name=f"{os.path.basename(where)}/{split}")
  return datasets, vocabulary


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> RNNLM:
  """`config.model`'s language model over `vocab_size` ids."""
  return RNNLM(vocab_size=vocab_size, **config.model)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains the language model; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  datasets, vocabulary = load_datasets(config)
  model = make_model(config, len(vocabulary))
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  max_len, settings = config.max_len, config.eval
  inputs = functools.partial(shift_right, bos_id=BOS_ID)  # <bos>, then the targets

  def sentence_nll(params, batch, key):
    """Per sentence: summed NLL [b], tokens [b] and correctly predicted tokens [b]."""
    rngs = None if key is None else {"dropout": key}
    logits, _ = model.apply({"params": params}, inputs(batch["tokens"]),
                            deterministic=key is None, rngs=rngs)
    mask = length_mask(batch["length"], max_len)
    correct = (jnp.argmax(logits, -1) == batch["tokens"]) & mask
    return {"nll": xent_loss(logits, batch["tokens"], mask),
            "tokens": batch["length"].astype(jnp.float32),
            "correct": jnp.sum(correct, axis=1).astype(jnp.float32)}

  def train_per_example(params, batch, key):
    measured = sentence_nll(params, batch, key)
    return {"loss": measured["nll"], "nll_per_token": measured["nll"] / measured["tokens"]}

  def evaluation_nll(params, batch, key):
    del key  # deterministic: no dropout
    return sentence_nll(params, batch, None)

  def corpus_perplexity(predictions, source):
    del source
    nll, tokens = np.sum(predictions["nll"], dtype=np.float64), np.sum(predictions["tokens"])
    return {"nll_per_token": nll / tokens, "perplexity": math.exp(nll / tokens),
            "token_accuracy": np.sum(predictions["correct"]) / tokens}

  @jax.jit
  def generate(params, prefix, prefix_lengths, key):
    step_fn = functools.partial(model.decode_step, params)
    options = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len)
    greedy = decoding.greedy(step_fn, model.init_decode_state(params, 1), **options)
    beams = decoding.beam_search(step_fn, model.init_decode_state(params, 1),
                                 beam_size=settings.beam_size, **options)
    samples = decoding.sample(key, step_fn, model.init_decode_state(params,
                                                                    settings.num_samples),
                              temperature=settings.temperature, **options)
    completions = decoding.greedy(step_fn, model.init_decode_state(
        params, prefix=prefix, prefix_lengths=prefix_lengths), **options)
    return {"greedy": greedy.tokens, "greedy_lengths": greedy.lengths,
            "beam": beams.tokens[0], "beam_lengths": beams.lengths[0],
            "beam_scores": beams.scores[0], "samples": samples.tokens,
            "sample_lengths": samples.lengths, "prefix": prefix,
            "prefix_lengths": prefix_lengths, "completions": completions.tokens,
            "completion_lengths": completions.lengths}

  def generation_arrays(params, source, key):
    first = stack_records(source, ("tokens", "length"), count=settings.num_prefixes)
    words = np.minimum(first["length"] - 1, settings.prefix_words)  # never <eos> itself
    prefix = inputs(first["tokens"])[:, :settings.prefix_words + 1]  # <bos>, first words
    return generate(params, prefix, (words + 1).astype(np.int32), key)

  def write_generations(arrays, directory, split, step):
    text = vocabulary.decode
    lines = [f"# greedy\n{text(arrays['greedy'], arrays['greedy_lengths'])[0]}",
             f"# beam search ({settings.beam_size} beams): log-probability, sentence"]
    lines += [f"{score:.3f}\t{sentence}" for score, sentence in zip(
        arrays["beam_scores"], text(arrays["beam"], arrays["beam_lengths"]))]
    lines.append(f"# samples (temperature {settings.temperature})")
    lines += text(arrays["samples"], arrays["sample_lengths"])
    lines.append(f"# greedy completions of the first {len(arrays['prefix'])} {split} "
                 "sentences: prefix | continuation")
    prefixes = text(arrays["prefix"], arrays["prefix_lengths"])
    completions = text(arrays["completions"], arrays["completion_lengths"])
    lines += [f"{p} | {c}" for p, c in zip(prefixes, completions)]
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"generations_{split}_{step}.txt"), "w",
              encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")

  def init_params(key):
    return model.init({"params": key}, jnp.zeros((1, max_len), jnp.int32))["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(train_per_example),
              optimizer=make_optimizer(config.train))
  evaluators = [evaluate.CorpusMetrics(name="perplexity", predict_fn=evaluation_nll,
                                       score_fn=corpus_perplexity,
                                       batch_size=settings.batch_size)]
  figures = [evaluate.Figure(name="generations", arrays_fn=generation_arrays,
                             write_fn=write_generations)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "rnn_lm.py"))
