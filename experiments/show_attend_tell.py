"""Show, Attend and Tell (Xu et al. 2015, soft and hard attention) and semantic attention
(You et al. 2016) on captioned digits.

  python -m experiments.show_attend_tell --workdir=DIR [--config.attention=hard] ...
  python -m experiments.show_attend_tell --workdir=DIR --config.model=semantic_attention

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

`config.model=semantic_attention` (`models.semantic_attention.SemanticAttentionCaptioner`):
the same encoder, an attribute detector over the vocabulary's content words
(`data.attributes`; targets: the words of the image's caption) and the decoder attending to
the `semantic.top_k` detected attributes. Trained on the caption NLL plus
`semantic.detector_weight` times the detector's sigmoid cross-entropy plus
`semantic.regularizer_weight` times g(alpha) + g(beta) (Sec. 3.4). Logs the same caption
metrics (no spatial attention: no `attention_in_box`), `attention_regularizer`,
`detector_loss`, and `attribute_precision` / `attribute_recall` (the top-K attributes
against the caption's content words); the figures show alpha and beta over the attributes.
"""

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vislang_jax import decoding
from vislang_jax.checks import check_choice
from vislang_jax.data.attributes import attribute_ids, attribute_targets, content_words
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits, references
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from vislang_jax.metrics import grounding
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models.semantic_attention import (SemanticAttentionCaptioner,
                                                   SemanticAttentionDecoder,
                                                   attention_regularizer)
from vislang_jax.models.show_attend_tell import ATTENTIONS, Decoder, Encoder, ShowAttendTell
from vislang_jax.objectives.show_attend_tell import (caption_nll, hard_attention_loss,
                                                     soft_attention_loss)
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.attention import save_attention_figure, save_semantic_attention_figure

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


MODELS = ("show_attend_tell", "semantic_attention")


def make_captioner(*, encoder: ml_collections.ConfigDict, decoder: ml_collections.ConfigDict,
                   attention: str, vocab_size: int) -> ShowAttendTell:
  """The Show-Attend-Tell captioner over `vocab_size` words (`attention` checked here)."""
  check_choice("attention", attention, ATTENTIONS)
  return ShowAttendTell(encoder=Encoder(**encoder),
                        decoder=Decoder(vocab_size=vocab_size, **decoder))


def make_semantic_captioner(config: ml_collections.ConfigDict, vocabulary: Vocabulary
                            ) -> SemanticAttentionCaptioner:
  """The semantic-attention captioner; its attributes: `semantic.attributes`, or the
  vocabulary's content words when empty (a ValueError for words not in the vocabulary)."""
  semantic = config.semantic
  words = tuple(semantic.attributes) or content_words(vocabulary)
  return SemanticAttentionCaptioner(
      encoder=Encoder(**config.encoder),
      decoder=SemanticAttentionDecoder(vocab_size=len(vocabulary), pad_id=PAD_ID,
                                       **semantic.decoder),
      attribute_ids=tuple(int(i) for i in attribute_ids(vocabulary, words)),
      top_k=semantic.top_k, detector_hidden=semantic.detector_hidden,
      feature_dim=semantic.feature_dim)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains the captioner with `config.attention`; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  check_choice("model", config.model, MODELS)
  datasets, vocabulary = load_datasets(config)
  if config.model == "semantic_attention":
    return _semantic_attention(config, workdir, datasets, vocabulary)
  model = make_captioner(encoder=config.encoder, decoder=config.decoder,
                         attention=config.attention, vocab_size=len(vocabulary))
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

  beam_search = jax.jit(functools.partial(_best_beam, model, config))

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
  return fit(config, workdir, task, datasets, **_evaluation(
      config, teacher_forced=teacher_forced, captions=captions, score_captions=score_captions,
      attention_arrays=attention_arrays, write_attention=write_attention))


def _best_beam(model: Any, config: ml_collections.ConfigDict, params: Any, images: jax.Array
               ) -> dict[str, jax.Array]:
  """Beam search (`eval.beam_size`) of `model`'s captions of `images`: the best beam's tokens
  [B, T], lengths [B] and step extras (`alpha` [B, T, L]; semantic attention's `alpha`,
  `beta` [B, T, K])."""
  out = decoding.beam_search(
      functools.partial(model.decode_step, params), model.init_decode_state(params, images),
      bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len, beam_size=config.eval.beam_size)
  return {"tokens": out.tokens[:, 0], "lengths": out.lengths[:, 0],
          **{name: value[:, 0] for name, value in out.extras.items()}}


def _evaluation(config: ml_collections.ConfigDict, *, teacher_forced, captions, score_captions,
                attention_arrays, write_attention) -> dict[str, list]:
  """`fit`'s evaluators and figures, the same for both models: teacher-forced metrics, scored
  beam-search captions (every `eval.caption_every`) and the attention figure."""
  return {
      "evaluators": [
          evaluate.MeanMetrics(name="teacher_forced", metric_fn=teacher_forced,
                               batch_size=config.eval.batch_size),
          evaluate.CorpusMetrics(name="captions", predict_fn=captions,
                                 score_fn=score_captions, batch_size=config.eval.batch_size,
                                 every=config.eval.caption_every),
      ],
      "figures": [evaluate.Figure(name="attention", arrays_fn=attention_arrays,
                                  write_fn=write_attention)],
  }


def _semantic_attention(config: ml_collections.ConfigDict, workdir: str,
                        datasets: dict[str, EncodedCaptions], vocabulary: Vocabulary
                        ) -> dict[str, dict[str, float]]:
  """`train_and_evaluate` for `config.model=semantic_attention` (module docstring)."""
  model = make_semantic_captioner(config, vocabulary)
  semantic = config.semantic
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]
  attributes = jnp.asarray(model.attribute_ids)

  def terms(params, batch):
    logits, aux = model.apply({"params": params}, batch["image"],
                              shift_right(batch["tokens"], bos_id=BOS_ID))
    mask = length_mask(batch["length"], config.max_len)
    nll, count = caption_nll(logits, batch["tokens"], mask)
    targets = attribute_targets(batch["tokens"], batch["length"], attributes)
    return logits, aux, mask, nll, count, targets

  def per_example(params, batch, key):
    del key  # no dropout, no sampling
    _, aux, mask, nll, count, targets = terms(params, batch)
    regularizer = attention_regularizer(aux["alpha"], aux["beta"], p=semantic.p, q=semantic.q,
                                        mask=mask)
    detector = optax.sigmoid_binary_cross_entropy(aux["attribute_logits"], targets).sum(-1)
    loss = (nll + semantic.regularizer_weight * regularizer
            + semantic.detector_weight * detector)
    return {"loss": loss, "nll_per_token": nll / count, "attention_regularizer": regularizer,
            "detector_loss": detector}

  def teacher_forced(params, batch, key):
    del key  # deterministic
    logits, aux, mask, nll, count, targets = terms(params, batch)
    correct = (jnp.argmax(logits, -1) == batch["tokens"]) & mask
    # The detected attributes that the caption names, of the K detected / of those it names.
    named = jnp.any((aux["attribute_ids"][:, :, None] == attributes)
                    & (targets[:, None, :] > 0), axis=-1).sum(-1)
    return {"nll_per_token": nll / count,
            "token_accuracy": correct.astype(jnp.float32).sum(1) / count,
            "attribute_precision": named / model.top_k,
            "attribute_recall": named / jnp.maximum(targets.sum(-1), 1.0)}

  beam_search = jax.jit(functools.partial(_best_beam, model, config))

  def captions(params, batch, key):
    del key  # deterministic
    out = beam_search(params, batch["image"])
    return {"tokens": out["tokens"], "lengths": out["lengths"]}

  split_references = functools.cache(references)

  def score_captions(predictions, source):
    hypotheses = dict(enumerate(vocabulary.decode(predictions["tokens"],
                                                  predictions["lengths"])))
    return caption_metrics(split_references(source), hypotheses, meteor=config.eval.meteor)

  def attention_arrays(params, source, key):
    del key  # deterministic
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    found = model.apply({"params": params}, images, method=SemanticAttentionCaptioner.detect)
    return dict(beam_search(params, images), image=images, attribute_ids=found.ids)

  def write_attention(arrays, directory, split, step):
    words = [caption.split() + ["<eos>"]
             for caption in vocabulary.decode(arrays["tokens"], arrays["lengths"])]
    names = [[vocabulary.tokens[i] for i in row] for row in np.asarray(arrays["attribute_ids"])]
    save_semantic_attention_figure(
        os.path.join(directory, f"attention_{split}_{step}.png"), arrays["image"], words,
        names, arrays["alpha"], arrays["beta"])

  def init_params(key):
    images = jnp.zeros((1,) + example["image"].shape)
    return model.init(key, images, jnp.zeros((1, config.max_len), jnp.int32))["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
              optimizer=make_optimizer(config.train))
  return fit(config, workdir, task, datasets, **_evaluation(
      config, teacher_forced=teacher_forced, captions=captions, score_captions=score_captions,
      attention_arrays=attention_arrays, write_attention=write_attention))


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "show_attend_tell.py"))
