"""Captions generated from joint image-text embeddings on captioned digits: the SC-NLM (Kiros et
al. 2014) and the multimodal RNN (Karpathy & Fei-Fei 2015) for whole images and regions.

  python -m experiments.vse_caption --workdir=DIR [--config.model=mrnn] ...

One run trains an embedding and its generator together, the parameters
`{"embedding", "generator"}`, on the loss `ranking + caption_weight * NLL per token`:
- `scnlm`: `models.vse.VSE` under `experiments.retrieval`'s ranking loss and the
  structure-content LM `models.vse.SCNLM` on each caption, its content vector the image's
  joint-space vector `x` (held fixed for the LM: `stop_gradient`, the paper's two-stage
  training), its structure variables the caption's word classes
  (`data.captioned_digits.WORD_CLASSES`, the paper's part-of-speech tags). Generation: beam
  search from `x` under every structure sequence of the training captions (the templates),
  the likeliest caption kept (the paper conditions on a part-of-speech sequence from training).
- `mrnn`: `models.dvsa.DVSA` under the ranking loss and `models.dvsa.MultimodalRNN` on the
  whole image (resampled to `dvsa.crop_size`) with its caption, plus `region_weight` times the
  NLL of region snippets: each digit box's crop paired with the words the chain MRF aligns to
  it (`ops.chain_mrf`, `beta`; Sec. 3.1.4 - 3.2). Karpathy & Fei-Fei align with a trained DVSA
  and then train the generator; here the alignment is recomputed each step from the current
  DVSA (`stop_gradient`), which becomes that once DVSA has converged.

Evaluates `validation`, `test` and `novel`: teacher-forced `nll_per_token` of the generator;
beam-search captions scored with `bleu1`..`bleu4`, `rouge_l`, `cider` (`meteor` with
`eval.meteor`); `mrnn` adds `region_digit_accuracy` (a box's caption names its digit and no
other) and `region_caption_words`. Writes DIR/metrics.jsonl, DIR/vocabulary.json,
DIR/checkpoints and DIR/samples/captions_<split>_<step>.png (each image, its crops and the
captions generated for them).
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import retrieval
from vislang_jax import decoding
from vislang_jax.checks import check_choice
from vislang_jax.data.captioned_digits import (DIGIT_NAMES, EOS_CLASS, STRUCTURE_CLASSES,
                                               WORD_CLASSES)
from vislang_jax.data.captions import references
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models import dvsa, vse
from vislang_jax.objectives.ranking import ranking_loss
from vislang_jax.objectives.show_attend_tell import caption_nll
from vislang_jax.ops.boxes import crop_regions
from vislang_jax.ops.chain_mrf import align_words
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.captions import save_caption_rows

MODELS = ("scnlm", "mrnn")
STRUCTURES = ("classes", "none")


def word_class_ids(vocabulary: Vocabulary) -> np.ndarray:
  """[V] int: each word's structure class (`STRUCTURE_CLASSES` index); specials get <eos>'s.

  Raises:
    ValueError: naming a vocabulary word without a class in `WORD_CLASSES`.
  """
  eos_class = STRUCTURE_CLASSES.index(EOS_CLASS)
  classes = np.full(len(vocabulary), eos_class, np.int32)
  for token in vocabulary.tokens:
    if token.startswith("<"):
      continue
    if token not in WORD_CLASSES:
      raise ValueError(f"vocabulary word {token!r} has no structure class; WORD_CLASSES "
                       f"covers the captioned-digit templates ({sorted(WORD_CLASSES)}).")
    classes[vocabulary.token_id(token)] = STRUCTURE_CLASSES.index(WORD_CLASSES[token])
  return classes


def snippets(tokens: jax.Array, aligned: jax.Array, regions: jax.Array, *, eos_id: int
             ) -> tuple[jax.Array, jax.Array]:
  """The words each region is aligned to, in sentence order, then `<eos>`.

  Args:
    tokens: [B, T] int, the captions.
    aligned: [B, T] int, each word's region (-1 where none, e.g. `<eos>` and padding).
    regions: [R] int, the regions whose snippets to gather.

  Returns:
    `(snippet tokens [B, R, T] int, lengths [B, R] int)`: the snippet's ids then `<eos>`,
    padded with 0; length = words + 1 (1: the region has no word).
  """
  length = tokens.shape[1]
  chosen = aligned[:, None, :] == regions[None, :, None]  # [B, R, T]
  position = jnp.arange(length)
  order = jnp.argsort(jnp.where(chosen, position, length + position), axis=-1)
  gathered = jnp.take_along_axis(jnp.broadcast_to(tokens[:, None], chosen.shape), order, -1)
  count = jnp.sum(chosen, axis=-1)
  words = jnp.where(position < count[..., None], gathered, 0)
  words = jnp.where(position == count[..., None], eos_id, words)
  return words, count + 1


def decode_with_templates(generator: vse.SCNLM, params, content: jax.Array,
                          templates: jax.Array, *, max_len: int, beam_size: int
                          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The SC-NLM's likeliest caption over every structure template, by beam search.

  Args:
    generator: the SC-NLM (with structure variables); params its parameters.
    content: [B, K] float, the images' joint-space vectors.
    templates: [P, S] int, the structure sequences to try (e.g. the training captions').
    max_len, beam_size: of `decoding.beam_search`.

  Returns:
    `(tokens [B, max_len], lengths [B], scores [B])`: per image, the best beam of the
    template whose best beam has the highest log-probability, and that log-probability.
  """
  count, num = content.shape[0], templates.shape[0]
  state = generator.init_decode_state(params, jnp.repeat(content, num, axis=0),
                                      jnp.tile(templates, (count, 1)))
  out = decoding.beam_search(functools.partial(generator.decode_step, params), state,
                             bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len,
                             beam_size=beam_size)
  best = jnp.argmax(out.scores[:, 0].reshape(count, num), axis=1)
  rows = jnp.arange(count) * num + best
  return out.tokens[rows, 0], out.lengths[rows, 0], out.scores[rows, 0]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` (scnlm | mrnn) with its embedding; returns final metrics per split."""
  check_choice("model", config.model, MODELS)
  check_choice("structure", config.structure, STRUCTURES)
  workdir = check_workdir(workdir)
  datasets, vocabulary = retrieval.load_datasets(config)
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]
  image_hw = tuple(example["image"].shape[:2])
  grid = tuple(config.grid)
  digit_ids = np.array([vocabulary.token_id(n) for n in DIGIT_NAMES if n in vocabulary.tokens])
  digit_of = np.full(len(vocabulary), -1)
  digit_of[digit_ids] = [DIGIT_NAMES.index(vocabulary.tokens[i]) for i in digit_ids]
  margin = retrieval.DEFAULT_MARGINS["vse" if config.model == "scnlm" else "dvsa"]
  margin = margin if config.margin is None else config.margin
  is_scnlm = config.model == "scnlm"
  with_structure = is_scnlm and config.structure == "classes"
  if is_scnlm:
    embedding = vse.VSE(vocab_size=len(vocabulary), **config.vse)
    generator = vse.SCNLM(vocab_size=len(vocabulary),
                          num_structure=len(STRUCTURE_CLASSES) if with_structure else 0,
                          **config.scnlm)
  else:
    embedding = dvsa.DVSA(vocab_size=len(vocabulary), **config.dvsa)
    generator = dvsa.MultimodalRNN(vocab_size=len(vocabulary), **config.mrnn)
  classes = jnp.asarray(word_class_ids(vocabulary))
  train_tokens = stack_records(datasets["train"], ("tokens",))["tokens"]
  templates = jnp.asarray(np.unique(np.asarray(classes)[train_tokens], axis=0))  # [P, T]
  whole = retrieval.whole_box(image_hw)[None]  # [1, 4]

  def image_crops(batch):
    """[B, 3, h, w, C]: the whole image and the two digits' boxes at `dvsa.crop_size` (the
    m-RNN's inputs; a missing digit's crop is the whole image)."""
    digits, _ = retrieval.region_boxes(batch, image_hw, ())
    boxes = jnp.concatenate([jnp.broadcast_to(whole, (digits.shape[0], 1, 4)), digits], 1)
    return crop_regions(batch["image"], boxes, tuple(config.dvsa.crop_size))

  def whole_images(images):
    """The images resampled to the region crops' size (the m-RNN's input)."""
    boxes = jnp.broadcast_to(whole, (images.shape[0], 1, 4))
    return crop_regions(images, boxes, tuple(config.dvsa.crop_size))[:, 0]

  def flat(x):
    """[B, R, ...] -> [B R, ...]: every region as its own example."""
    return x.reshape((-1,) + x.shape[2:])

  def nll_per_token(logits, tokens, lengths):
    nll, count = caption_nll(logits, tokens, length_mask(lengths, tokens.shape[1]))
    return nll / jnp.maximum(count, 1)

  embed = functools.partial(retrieval.embed_pairs, embedding, image_hw=image_hw, grid=grid,
                            whole_image=config.whole_image)

  def generator_nll(gen, batch, content, key):
    """The generator's teacher-forced NLL per token of the captions [B] (`content`: the
    SC-NLM's joint-space vectors; the m-RNN reads the images)."""
    tokens, lengths = batch["tokens"], batch["length"]
    tokens_in = shift_right(tokens, bos_id=BOS_ID)
    if is_scnlm:
      structure = classes[tokens] if with_structure else None
      logits = generator.apply({"params": gen}, tokens_in, structure, content,
                               method=generator.sentence_logits)
    else:
      dropout = {"dropout": key} if key is not None and config.mrnn.dropout_rate else None
      logits, _ = generator.apply({"params": gen}, whole_images(batch["image"]), tokens_in,
                                  deterministic=dropout is None, rngs=dropout)
    return nll_per_token(logits, tokens, lengths)

  def region_nll(gen, batch, embedded, key):
    """The m-RNN's NLL per token of each digit box's MRF snippet, averaged over the boxes
    with a snippet [B]."""
    dots = jax.lax.stop_gradient(dvsa.word_region_scores(
        embedded["regions"], embedded["words"], region_mask=embedded["region_mask"]))
    aligned, _ = align_words(dots, embedded["word_mask"], beta=config.beta)
    digit_regions = jnp.arange(1, 3)  # region 0 is the whole image, then the digits' boxes
    words, word_lengths = snippets(batch["tokens"], aligned, digit_regions, eos_id=EOS_ID)
    crops = crop_regions(batch["image"], embedded["boxes"][:, 1:3],
                         tuple(config.dvsa.crop_size))
    dropout = {"dropout": key} if key is not None and config.mrnn.dropout_rate else None
    logits, _ = generator.apply({"params": gen}, flat(crops),
                                shift_right(flat(words), bos_id=BOS_ID),
                                deterministic=dropout is None, rngs=dropout)
    used = ((batch["labels"] >= 0) & (word_lengths > 1)).astype(jnp.float32)  # [B, 2]
    per_region = nll_per_token(logits, flat(words), flat(word_lengths)).reshape(used.shape)
    return jnp.sum(per_region * used, axis=1) / jnp.maximum(jnp.sum(used, axis=1), 1.0)

  def per_example(params, batch, key):
    emb, gen = params["embedding"], params["generator"]
    embedded = embed(emb, batch)
    same = retrieval.same_caption(batch["tokens"], batch["tokens"])
    rank = ranking_loss(retrieval.pair_scores(embedded), margin=margin, same=same,
                        hardest=config.hardest)
    content = jax.lax.stop_gradient(embedded["image"]) if is_scnlm else None
    caption = generator_nll(gen, batch, content, key)
    region = jnp.zeros_like(caption) if is_scnlm else region_nll(gen, batch, embedded, key)
    loss = rank + config.caption_weight * (caption + config.region_weight * region)
    return {"loss": loss, "ranking_loss": rank, "nll_per_token": caption,
            "region_nll_per_token": region}

  def teacher_forced(params, batch, key):
    del key  # no dropout
    emb, gen = params["embedding"], params["generator"]
    content = (embedding.apply({"params": emb}, batch["image"], method=embedding.embed_images)
               if is_scnlm else None)
    return {"nll_per_token": generator_nll(gen, batch, content, None)}

  def beam(gen_params, state):
    out = decoding.beam_search(functools.partial(generator.decode_step, gen_params), state,
                               bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len,
                               beam_size=config.eval.beam_size)
    return out.tokens[:, 0], out.lengths[:, 0]

  def captions(params, batch, key):
    del key  # beam search: deterministic
    emb, gen = params["embedding"], params["generator"]
    images = batch["image"]
    count = images.shape[0]
    if is_scnlm:
      content = embedding.apply({"params": emb}, images, method=embedding.embed_images)
      if not with_structure:
        tokens, lengths = beam(gen, generator.init_decode_state(gen, content))
        return {"tokens": tokens, "lengths": lengths}
      tokens, lengths, _ = decode_with_templates(generator, gen, content, templates,
                                                 max_len=config.max_len,
                                                 beam_size=config.eval.beam_size)
      return {"tokens": tokens, "lengths": lengths}
    crops = image_crops(batch)
    tokens, lengths = beam(gen, generator.init_decode_state(gen, crops[:, 0]))
    region_tokens, region_lengths = beam(gen, generator.init_decode_state(gen,
                                                                          flat(crops[:, 1:])))
    return {"tokens": tokens, "lengths": lengths, "labels": batch["labels"],
            "region_tokens": region_tokens.reshape(count, 2, -1),
            "region_lengths": region_lengths.reshape(count, 2)}

  split_references = functools.cache(references)  # each split's references read once

  def score_captions(predictions, source):
    hypotheses = dict(enumerate(vocabulary.decode(predictions["tokens"],
                                                  predictions["lengths"])))
    metrics = caption_metrics(split_references(source), hypotheses, meteor=config.eval.meteor)
    if not is_scnlm:
      named = digit_of[predictions["region_tokens"]]  # [N, 2, T]: the digit a word names
      valid = np.arange(named.shape[-1]) < predictions["region_lengths"][..., None] - 1
      named = np.where(valid, named, -1)
      present = predictions["labels"] >= 0
      labels = predictions["labels"][..., None]
      right = np.any(named == labels, axis=-1) & ~np.any((named >= 0) & (named != labels), -1)
      metrics["region_digit_accuracy"] = float(right[present].mean())
      metrics["region_caption_words"] = float(
          (predictions["region_lengths"][present] - 1).mean())
    return metrics

  @jax.jit
  def sample_captions(params, batch):
    return captions(params, batch, None)

  def caption_arrays(params, source, key):
    del key  # deterministic
    batch = stack_records(source, ("image", "tokens", "length", "labels", "boxes"),
                          count=config.num_samples)
    return dict(sample_captions(params, batch), crops=image_crops(batch))

  def write_captions(arrays, directory, split, step):
    texts = vocabulary.decode(arrays["tokens"], arrays["lengths"])
    if "region_tokens" in arrays:
      regions = [vocabulary.decode(t, n) for t, n in zip(arrays["region_tokens"],
                                                          arrays["region_lengths"])]
      texts = [f"{text} | box 1: {r[0]} | box 2: {r[1]}" if label[1] >= 0 else
               f"{text} | box 1: {r[0]}"
               for text, r, label in zip(texts, regions, arrays["labels"])]
    save_caption_rows(os.path.join(directory, f"captions_{split}_{step}.png"), texts,
                      arrays["crops"] if "region_tokens" in arrays else arrays["crops"][:, :1])

  def init_params(key):
    batch = jax.tree.map(lambda x: jnp.asarray(x)[None], example)
    embedding_key, generator_key = jax.random.split(key)
    tokens_in = shift_right(batch["tokens"], bos_id=BOS_ID)
    if is_scnlm:
      emb = embedding.init(embedding_key, batch["image"], batch["tokens"], batch["length"])
      content = jnp.zeros((1, config.vse.embed_dim))
      structure = classes[batch["tokens"]] if with_structure else None
      gen = generator.init(generator_key, tokens_in, structure, content,
                           method=generator.sentence_logits)
    else:
      boxes, box_mask = retrieval.region_boxes(batch, image_hw, grid)
      emb = embedding.init(embedding_key, batch["image"], boxes, box_mask, batch["tokens"],
                           batch["length"] - 1)
      gen = generator.init(generator_key, whole_images(batch["image"]), tokens_in)
    return {"embedding": emb["params"], "generator": gen["params"]}

  task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
              optimizer=make_optimizer(config.train))
  evaluators = [
      evaluate.MeanMetrics(name="teacher_forced", metric_fn=teacher_forced,
                           batch_size=config.eval.batch_size),
      evaluate.CorpusMetrics(name="captions", predict_fn=captions, score_fn=score_captions,
                             batch_size=config.eval.batch_size),
  ]
  figures = [evaluate.Figure(name="captions_figure", arrays_fn=caption_arrays,
                             write_fn=write_captions)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "vse_caption.py"))
