"""Show, Attend and Tell on captioned digits (Xu et al. 2015, soft and hard attention).

  python -m experiments.show_attend_tell --workdir=DIR [--config.attention=hard] ...

Trains on the captioned-digits dataset (`data.captioned_digits`, Mansimov et al. 2016:
one or two digits on a 60x60 canvas, captions naming each digit and its position) and
evaluates the `validation`, `test` and held-out `novel` splits: teacher-forced
`nll_per_token` and `token_accuracy`; for beam-search captions `bleu1`..`bleu4`, `rouge_l`,
`cider` (and `meteor` with `eval.meteor`), `attention_in_box` (at the digit word),
`phrase_attention_in_box` (over "the digit three") and `box_share` (`metrics.grounding`), on
validation every `eval.caption_every` steps. Writes
DIR/metrics.jsonl, DIR/vocabulary.json (the word ids the checkpoints were trained with),
DIR/checkpoints, DIR/tensorboard and DIR/samples/attention_<split>_<step>.png: each
image, then one attention heat map per generated word, the word above it.
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax import decoding
from vislang_jax.checks import check_choice
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits, references
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.metrics import grounding
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models.show_attend_tell import ATTENTIONS, Decoder, Encoder, ShowAttendTell
from vislang_jax.objectives.show_attend_tell import (caption_nll, hard_attention_loss,
                                                     soft_attention_loss)
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.attention import save_attention_figure

# The words before a digit word in the phrase that names the digit ("the digit three").
PHRASE_WORDS = ("the", "digit")


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """The encoded captioned-digit splits and the vocabulary of the training captions."""
  data = config.data
  return build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir or None,
      max_len=config.max_len, mnist_dir=data.mnist_dir or None, seed=config.seed,
      copies=data.copies, novel_size=data.novel_size)


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> ShowAttendTell:
  """`config.model`'s captioner over `vocab_size` words (`config.attention` checked here)."""
  check_choice("attention", config.attention, ATTENTIONS)
  return ShowAttendTell(encoder=Encoder(**config.model.encoder),
                        decoder=Decoder(vocab_size=vocab_size, **config.model.decoder))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains the captioner with `config.attention`; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  datasets, vocabulary = load_datasets(config)
  model = make_model(config, len(vocabulary))
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]
  image_hw = example["image"].shape[:2]
  digit_of = {vocabulary.token_id(name): d for d, name in enumerate(DIGIT_NAMES)
              if name in vocabulary.tokens}
  phrase_ids = [vocabulary.token_id(word) for word in PHRASE_WORDS if word in vocabulary.tokens]

  def apply(params, batch, *, attention, key=None):
    """Teacher-forced (logits, aux); `key` draws dropout and hard attention, None: neither."""
    rngs = None
    if key is not None:
      dropout_key, sample_key = jax.random.split(key)
      rngs = {"dropout": dropout_key, "sample": sample_key}
    return model.apply({"params": params}, batch["image"], shift_right(batch["tokens"], bos_id=BOS_ID),
                       deterministic=key is None, attention=attention, rngs=rngs)

  def caption_mask(batch):
    return length_mask(batch["length"], config.max_len)

  def soft_per_example(params, batch, key):
    logits, aux = apply(params, batch, attention="soft", key=key)
    loss, m = soft_attention_loss(logits, batch["tokens"], caption_mask(batch), aux["alpha"],
                                  penalty=config.penalty)
    return {"loss": loss, "nll_per_token": m["nll_per_token"],
            "attention_penalty": m["attention_penalty"]}

  def hard_loss(params, batch, key, baseline):
    logits, aux = apply(params, batch, attention="hard", key=key)
    loss, m, baseline = hard_attention_loss(
        logits, batch["tokens"], caption_mask(batch), aux["log_prob_locations"],
        aux["entropy"], baseline, entropy_weight=config.entropy_weight,
        reinforce_weight=config.reinforce_weight, sampled=aux["sampled"])
    return loss.mean(), {"nll_per_token": m["nll_per_token"].mean(),
                         "entropy": m["entropy"].mean(), "baseline": baseline}, baseline

  def teacher_forced(params, batch, key):
    del key  # deterministic: the soft context (a hard model's expected context), no dropout
    logits, _ = apply(params, batch, attention="soft")
    mask = caption_mask(batch)
    nll, count = caption_nll(logits, batch["tokens"], mask)  # count: 0 only on padding
    correct = (jnp.argmax(logits, -1) == batch["tokens"]) & mask
    return {"nll_per_token": nll / count,
            "token_accuracy": correct.astype(jnp.float32).sum(1) / count}

  @jax.jit
  def beam_search(params, images):
    """The best beam's tokens [B, T], lengths [B] and attention [B, T, L]."""
    out = decoding.beam_search(
        functools.partial(model.decode_step, params), model.init_decode_state(params, images),
        bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len, beam_size=config.eval.beam_size)
    return {"tokens": out.tokens[:, 0], "lengths": out.lengths[:, 0],
            "alpha": out.extras["alpha"][:, 0]}

  def captions(params, batch, key):
    del key  # beam search with the expected context: deterministic
    # The digits and their boxes travel with the captions to score_captions.
    return dict(beam_search(params, batch["image"]), labels=batch["labels"],
                boxes=batch["boxes"])

  split_references = functools.cache(references)  # each split's references read once

  def score_captions(predictions, source):
    hypotheses = dict(enumerate(vocabulary.decode(predictions["tokens"],
                                                  predictions["lengths"])))
    metrics = caption_metrics(split_references(source), hypotheses, meteor=config.eval.meteor)
    mass, share = grounding.attention_in_box(
        predictions["alpha"], predictions["tokens"], predictions["lengths"],
        predictions["labels"], predictions["boxes"], digit_of=digit_of, image_hw=image_hw)
    phrase_mass, _ = grounding.phrase_attention_in_box(
        predictions["alpha"], predictions["tokens"], predictions["lengths"],
        predictions["labels"], predictions["boxes"], digit_of=digit_of, phrase_ids=phrase_ids,
        image_hw=image_hw)
    for key, values in (("attention_in_box", mass), ("phrase_attention_in_box", phrase_mass),
                        ("box_share", share)):
      metrics[key] = float(np.mean(values)) if values.size else float("nan")
    return metrics

  def attention_arrays(params, source, key):
    del key  # deterministic
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    return dict(beam_search(params, images), image=images)

  def write_attention(arrays, directory, split, step):
    words = [caption.split() + ["<eos>"]
             for caption in vocabulary.decode(arrays["tokens"], arrays["lengths"])]
    save_attention_figure(os.path.join(directory, f"attention_{split}_{step}.png"),
                          arrays["image"], words, arrays["alpha"])

  def init_params(key):
    images = jnp.zeros((1,) + example["image"].shape)
    tokens = jnp.zeros((1, config.max_len), jnp.int32)
    return model.init({"params": key, "dropout": key, "sample": key}, images, tokens,
                      deterministic=True, attention=config.attention)["params"]

  hard = config.attention == "hard"
  task = Task(init_params=init_params,
              loss_fn=hard_loss if hard else mean_loss(soft_per_example),
              optimizer=make_optimizer(config.train),
              init_extra=(lambda: jnp.zeros((), jnp.float32)) if hard else None)
  evaluators = [
      evaluate.MeanMetrics(name="teacher_forced", metric_fn=teacher_forced,
                           batch_size=config.eval.batch_size),
      evaluate.CorpusMetrics(name="captions", predict_fn=captions, score_fn=score_captions,
                             batch_size=config.eval.batch_size,
                             every=config.eval.caption_every),
  ]
  figures = [evaluate.Figure(name="attention", arrays_fn=attention_arrays,
                             write_fn=write_attention)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "show_attend_tell.py"))
