"""Translation with and without attention (Bahdanau et al. 2015; Sutskever / Cho et al. 2014).

  python -m experiments.seq2seq --workdir=DIR [--config.model=attention|no_attention] ...

Trains `models.seq2seq.Seq2Seq` (`config.model`: "attention", RNNsearch; "no_attention", the
final encoder state initialises the decoder) by teacher-forced cross-entropy on a
`data.translation` corpus (`config.data.corpus`: the offline synthetic SVO -> verb-final
corpus by default, "iwslt14" text files from `data.iwslt_dir`, or a TFDS dataset
`data.tfds_name`). Logs per split: teacher-forced `nll_per_token` and `token_accuracy`; the
corpus BLEU-4 (coco-caption scorer, `metrics.captions`, one reference) of greedy and of
beam-search decoding, `bleu4_greedy` and `bleu4_beam`, overall and per source-length bucket
(`bleu4_greedy_len_1_10`, ..., `bleu4_beam_len_51_up`: source words in the bucket's range,
edges `eval.length_buckets`; NaN for an empty bucket), on validation every
`eval.translate_every` steps and on every split at the end. Bahdanau et al.'s Fig. 2: without
attention, BLEU falls with the sentence length. Writes DIR/metrics.jsonl,
DIR/source_vocabulary.json, DIR/target_vocabulary.json, DIR/checkpoints, DIR/tensorboard and
(attention) DIR/samples/alignment_<split>_<step>.png: for the first `num_alignments`
sentences, the beam-search translation's alignment `a_ij` (rows: target step i, columns: the
source words).
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax import decoding
from vislang_jax.checks import check_choice, check_int
from vislang_jax.data import translation
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, tokenize
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models.seq2seq import Seq2Seq
from vislang_jax.objectives.sequence import xent_loss
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.alignment import save_alignment_maps

MODELS = ("attention", "no_attention")


def load_datasets(config: ml_collections.ConfigDict):
  """`config.data`'s corpus: ({split: EncodedPairs}, source vocabulary, target vocabulary)."""
  data = dict(config.data.to_dict(), dir=config.data.dir or None)
  return translation.build_from_config(data, seed=config.seed)


def make_model(config: ml_collections.ConfigDict, source_vocab_size: int,
               target_vocab_size: int) -> Seq2Seq:
  """`config.model`'s encoder-decoder with the sizes of `config.network`."""
  model = check_choice("model", config.model, MODELS)
  return Seq2Seq(source_vocab_size=source_vocab_size, target_vocab_size=target_vocab_size,
                 attention=model == "attention", **config.network)


def length_buckets(edges) -> list[tuple[int, int | None]]:
  """Source-word ranges ``[(1, e_1), (e_1 + 1, e_2), ..., (e_k + 1, None)]`` of the edges."""
  edges = [check_int("eval.length_buckets entries", e, low=1) for e in edges]
  if edges != sorted(set(edges)):
    raise ValueError(f"eval.length_buckets must be increasing, got {tuple(edges)}.")
  lows = [1] + [e + 1 for e in edges]
  return list(zip(lows, edges + [None]))


def bleu4_by_length(references: list[list[str]], hypotheses: list[str],
                    source_words: np.ndarray, buckets: list[tuple[int, int | None]]
                    ) -> dict[str, float]:
  """Corpus BLEU-4 (`metrics.captions`, tokenised text) overall and per source-length bucket.

  Args:
    references: N lists of reference texts (words separated by spaces).
    hypotheses: N texts.
    source_words: [N] int, each source sentence's word count.
    buckets: `length_buckets`' (low, high) ranges, high None: no upper bound.

  Returns:
    `{"": BLEU of all N, "_len_<low>_<high>": BLEU of the bucket's sentences, ...}` (the
    last bucket `_len_<low>_up`); NaN for a bucket without sentences.
  """
  subsets = {"": np.ones(len(hypotheses), bool)}
  for low, high in buckets:
    subsets[f"_len_{low}_{'up' if high is None else high}"] = (source_words >= low) & (
        source_words <= (np.inf if high is None else high))
  scores = {}
  for suffix, chosen in subsets.items():
    ids = np.flatnonzero(chosen)
    scores[suffix] = caption_metrics(
        {i: references[i] for i in ids}, {i: hypotheses[i] for i in ids}, meteor=False,
        tokenizer="none")["bleu4"] if ids.size else float("nan")
  return scores


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` on `config.data`'s corpus; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  check_choice("model", config.model, MODELS)
  buckets = length_buckets(config.eval.length_buckets)
  datasets, source_vocab, target_vocab = load_datasets(config)
  model = make_model(config, len(source_vocab), len(target_vocab))
  max_len = config.data.max_len
  if jax.process_index() == 0:
    source_vocab.save(os.path.join(workdir, "source_vocabulary.json"))
    target_vocab.save(os.path.join(workdir, "target_vocabulary.json"))

  def apply(params, batch, key=None):
    """Teacher-forced (logits, aux); `key` draws dropout, None: none."""
    return model.apply({"params": params}, batch["source"], batch["source_length"],
                       shift_right(batch["target"], bos_id=BOS_ID), deterministic=key is None,
                       rngs=None if key is None else {"dropout": key})

  def per_example(params, batch, key):
    logits, _ = apply(params, batch, key)
    mask = length_mask(batch["target_length"], max_len)
    nll = xent_loss(logits, batch["target"], mask)
    count = jnp.maximum(batch["target_length"], 1)  # 0 only on the evaluators' padding
    return {"loss": nll, "nll_per_token": nll / count}

  def teacher_forced(params, batch, key):
    del key  # deterministic
    logits, _ = apply(params, batch)
    mask = length_mask(batch["target_length"], max_len)
    count = jnp.maximum(batch["target_length"], 1)
    correct = (jnp.argmax(logits, -1) == batch["target"]) & mask
    return {"nll_per_token": xent_loss(logits, batch["target"], mask) / count,
            "token_accuracy": correct.sum(1) / count}

  @jax.jit
  def translate(params, source, source_length):
    """Greedy and best-beam tokens [B, T] and lengths [B]; the beam's extras [B, T, ...]."""
    state = model.init_decode_state(params, source, source_length)
    step_fn = functools.partial(model.decode_step, params)
    greedy = decoding.greedy(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len)
    beam = decoding.beam_search(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID,
                                max_len=max_len, beam_size=config.eval.beam_size,
                                length_penalty=config.eval.length_penalty)
    out = {"greedy": greedy.tokens, "greedy_length": greedy.lengths,
           "beam": beam.tokens[:, 0], "beam_length": beam.lengths[:, 0]}
    if model.attention:
      out["alignment"] = beam.extras["alignment"][:, 0]
    return out

  def translations(params, batch, key):
    del key  # greedy and beam search are deterministic
    out = translate(params, batch["source"], batch["source_length"])
    return {k: out[k] for k in ("greedy", "greedy_length", "beam", "beam_length")} | {
        "source_length": batch["source_length"]}

  @functools.cache
  def split_references(pairs):
    return [[" ".join(tokenize(text))] for text in pairs.target_texts]

  def score_translations(predictions, pairs):
    words = predictions["source_length"] - 1  # source words, <eos> not counted
    metrics = {}
    for name in ("greedy", "beam"):
      hypotheses = target_vocab.decode(predictions[name], predictions[f"{name}_length"])
      scores = bleu4_by_length(split_references(pairs), hypotheses, words, buckets)
      metrics.update({f"bleu4_{name}{suffix}": value for suffix, value in scores.items()})
    return metrics

  def alignment_arrays(params, pairs, key):
    del key  # deterministic
    records = stack_records(pairs, ("source", "source_length"), count=config.num_alignments)
    out = translate(params, records["source"], records["source_length"])
    return {"source": records["source"], "source_length": records["source_length"],
            "alignment": out["alignment"], "length": out["beam_length"]}

  def write_alignment(arrays, directory, split, step):
    words = [[source_vocab.tokens[i] for i in row[:length]]
             for row, length in zip(arrays["source"], arrays["source_length"])]
    steps = max(int(np.max(arrays["length"])), 1)  # rows past every translation are zeros
    save_alignment_maps(os.path.join(directory, f"alignment_{split}_{step}.png"), words,
                        arrays["alignment"][:, :steps])

  def init_params(key):
    ids = jnp.zeros((1, max_len), jnp.int32)
    return model.init(key, ids, jnp.ones((1,), jnp.int32), ids)["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
              optimizer=make_optimizer(config.train))
  evaluators = [
      evaluate.MeanMetrics(name="teacher_forced", metric_fn=teacher_forced,
                           batch_size=config.eval.batch_size),
      evaluate.CorpusMetrics(name="translations", predict_fn=translations,
                             score_fn=score_translations, batch_size=config.eval.batch_size,
                             every=config.eval.translate_every),
  ]
  figures = []
  if model.attention:
    figures.append(evaluate.Figure(name="alignment", arrays_fn=alignment_arrays,
                                   write_fn=write_alignment,
                                   every=config.eval.translate_every))
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "seq2seq.py"))
