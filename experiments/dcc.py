"""Deep Compositional Captioning (Hendricks et al. 2016): captions that name held-out digits.

  python -m experiments.dcc --workdir=DIR [--config.held_out="(3, 7)"] [--config.transfer=delta]
  python -m experiments.dcc --workdir=DIR --config=experiments/configs/dcc.py:coco \
      --config.data.dir=TFDS_DIR    # COCO without DCC's eight objects in the paired data

`config.held_out` digits are removed from the paired data: the caption model's training split
is the captioned-digit training canvases whose caption names none of them
(`data.novel_objects.without_words`). What DCC may use of them (Sec. 3, the "in-domain"
setting, where both unpaired sources come from the same collection):

1. `lexical/`: the lexical classifier (`models.dcc.LexicalClassifier` over a convolutional
   encoder), one sigmoid per concept = the vocabulary's content words
   (`data.attributes.content_words`), trained on every training canvas with the concepts its
   caption names (unpaired labelled images: the labels, not the sentences); logs
   `concept_accuracy` and `held_out_accuracy` (sigmoid > 0.5 right, over the held-out words).
2. `lm/`: the language model (`models.dcc.MultimodalCaptioner` without image input) on every
   training caption (unpaired text).
3. DIR: the caption model, initialised from the LM, trained on the paired data with the
   frozen classifier's concept probabilities in the multimodal layer; then evaluated without
   transfer and after direct and delta transfer (Sec. 3.3) of each held-out word from its
   closest seen concept word (cosine of the LM's word embeddings).
4. `paired_only/`: with `config.paired_only`, the same classifier and caption model trained on
   the paired data alone (no LM pre-training): the baseline that never saw the words.

Logs per split (validation while training; validation, test and `novel` = the test canvases
holding a held-out digit at the end), for each variant `v` in `no_transfer`, `direct`,
`delta`, `paired_only`: `f1_held_out_v` (DCC's F1 of "the caption names the digit" against
"the image holds it", `metrics.novel_words`, averaged over the held-out digits), `f1_<word>_v`,
`bleu4_v`, `cider_v`, `meteor_v` (with `eval.meteor`); `f1_held_out`, `bleu4`, `cider`
(`meteor`) repeat `config.transfer`'s variant; `nll_per_token` of the untransferred model.
Writes DIR/metrics.jsonl, DIR/vocabulary.json, DIR/transfer.json (each held-out word's source
words) and DIR/samples/captions_<split>_<step>.png (every variant's caption per image).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax import decoding
from vislang_jax.checks import check_choice, check_int
from vislang_jax.data import novel_objects
from vislang_jax.data.attributes import attribute_ids, attribute_targets, content_words
from vislang_jax.data.captioned_digits import DIGIT_NAMES, build_captioned_digits_dataset
from vislang_jax.data.captions import EncodedCaptions, as_text, references
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.metrics.novel_words import mentions, novel_word_f1
from vislang_jax.models import dcc
from vislang_jax.models.show_attend_tell import Encoder
from vislang_jax.objectives.show_attend_tell import caption_nll
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train import cli, evaluate
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.captions import save_caption_rows

VARIANTS = ("no_transfer", "direct", "delta", "paired_only")
COCO = "coco"


def held_out_words(config: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]]:
  """`{word: (word, *variants)}` of `config.held_out`; a ValueError for a bad list.

  Digits: 1 to 9 distinct digits (their names). COCO: words, or () for DCC's eight objects
  with the released code's variants (`novel_objects.DCC_COCO_HELD_OUT`).
  """
  held_out = tuple(config.held_out)
  if config.data.source == COCO:
    if not held_out:
      return novel_objects.held_out_variants(novel_objects.DCC_COCO_HELD_OUT)
    if not all(isinstance(w, str) for w in held_out):
      raise ValueError(f"config.held_out must be words (or () for DCC's eight) with "
                       f"data.source='coco', got {config.held_out!r}.")
    return novel_objects.held_out_variants(held_out, name="config.held_out")
  if not held_out or len(set(held_out)) != len(held_out) or not all(
      isinstance(d, int) and 0 <= d <= 9 for d in held_out) or len(held_out) > 9:
    raise ValueError(f"config.held_out must be 1 to 9 distinct digits in 0..9 (at least one "
                     f"seen digit is a transfer source), got {config.held_out!r}.")
  return {DIGIT_NAMES[d]: (DIGIT_NAMES[d],) for d in held_out}


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """The paired, unpaired and evaluation splits, and the vocabulary of all training text.

  Returns `({"train": paired, "unpaired": every training image, "validation", "test",
  "novel": test images naming a held-out word}, vocabulary)`. Digits: captioned digits
  (`config.data.source`); COCO: `novel_objects.load_coco_held_out` from `config.data.dir`.
  """
  held = held_out_words(config)
  data = config.data
  if data.source == COCO:
    splits = novel_objects.load_coco_held_out(
        data_dir=data.dir, image_size=data.image_size, held_out=held,
        captions_per_image=data.captions_per_image)
    # The unpaired text: every caption of every training image (read without the images'
    # resizing, as load_coco_held_out reads them for the held-out mentions).
    references = novel_objects.CocoReferences(splits["unpaired"])
    vocabulary = Vocabulary.build(
        (as_text(t) for i in range(len(references)) for t in references[i]["references"]),
        min_count=data.min_count)
  else:
    raw = build_captioned_digits_dataset(
        source=data.source, data_dir=data.dir or None, mnist_dir=data.mnist_dir or None,
        seed=config.seed, copies=data.copies, novel_size=data.novel_size)
    train = raw["train"]
    # The unpaired text: every training caption, so the held-out words are in the vocabulary.
    vocabulary = Vocabulary.build(as_text(train[i]["caption"]) for i in range(len(train)))
    splits = {"train": novel_objects.without_words(train, held), "unpaired": train,
              "validation": raw["validation"], "test": raw["test"],
              "novel": novel_objects.with_words(raw["test"], held)}
  novel_objects.check_paired(splits["train"], held)
  return {name: EncodedCaptions(source, vocabulary, max_len=config.max_len,
                                truncate=data.source == COCO)
          for name, source in splits.items()}, vocabulary


def _stage_config(config: ml_collections.ConfigDict, num_steps: int | None
                  ) -> ml_collections.ConfigDict:
  """`config` with `train.num_steps = num_steps` (None: unchanged), for one stage's `fit`."""
  stage = ml_collections.ConfigDict(config.to_dict())
  if num_steps is not None:
    stage.train.num_steps = num_steps
  return stage


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains DCC's three parts and the paired-only baseline; returns the final metrics."""
  workdir = check_workdir(workdir)
  check_choice("transfer", config.transfer, ("direct", "delta"))
  held = held_out_words(config)
  words = tuple(held)
  datasets, vocabulary = load_datasets(config)
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  concepts = content_words(vocabulary)
  concept_ids = attribute_ids(vocabulary, concepts)
  novel_ids = attribute_ids(vocabulary, words)
  word_concept = np.full(len(vocabulary), -1, np.int32)
  word_concept[concept_ids] = np.arange(len(concept_ids))
  seen_ids = np.setdiff1d(concept_ids, novel_ids).astype(np.int32)  # transfer sources
  check_int("delta_sources", config.delta_sources, low=1, high=len(seen_ids))
  check_int("eval.beam_size", config.eval.beam_size, low=1)
  for name in ("lexical_steps", "lm_steps"):  # before any stage trains
    if config[name] is not None:
      check_int(name, config[name], low=1)
  example = datasets["train"][0]
  hidden_dim = config.model.hidden_dim
  classifier = dcc.ImageLexicalClassifier(
      encoder=Encoder(**config.model.encoder), feature_dim=config.model.feature_dim,
      classifier=dcc.LexicalClassifier(num_concepts=len(concepts),
                                       hidden_dim=config.model.classifier_hidden))
  model = dcc.MultimodalCaptioner(vocab_size=len(vocabulary), num_concepts=len(concepts),
                                  embed_dim=config.model.embed_dim, hidden_dim=hidden_dim)
  tokens_template = jnp.zeros((1, config.max_len), jnp.int32)
  evaluation = {k: datasets[k] for k in ("validation", "test")}

  def concept_targets(batch):
    return attribute_targets(batch["tokens"], batch["length"], concept_ids)

  def lexical_metrics(params, batch, key):
    del key
    _, aux = classifier.apply({"params": params}, batch["image"])
    targets = concept_targets(batch)
    correct = ((aux["logits"] > 0) == (targets > 0)).astype(jnp.float32)
    return {"loss": dcc.lexical_loss(aux["logits"], targets),
            "concept_accuracy": correct.mean(-1),
            "held_out_accuracy": correct[:, word_concept[novel_ids]].mean(-1)}

  def train_lexical(name, train_split):
    task = Task(init_params=lambda key: classifier.init(key, example["image"][None])["params"],
                loss_fn=mean_loss(lexical_metrics), optimizer=make_optimizer(config.train))
    stage_dir = os.path.join(workdir, name)
    fit(_stage_config(config, config.lexical_steps), stage_dir, task,
        {"train": datasets[train_split], **evaluation},
        evaluators=[evaluate.MeanMetrics(name="lexical", metric_fn=lexical_metrics,
                                         batch_size=config.eval.batch_size)])
    return load_params(stage_dir)[1]

  def caption_terms(params, batch, probs):
    logits, _ = model.apply({"params": params}, shift_right(batch["tokens"], bos_id=BOS_ID),
                            probs)
    nll, count = caption_nll(logits, batch["tokens"], length_mask(batch["length"],
                                                                  config.max_len))
    return {"loss": nll, "nll_per_token": nll / count}

  def init_captioner(key):
    return model.init(key, tokens_template)["params"]

  def concept_probs(lexical_params, images):
    """The frozen classifier's [B, C] concept probabilities (`f_I`)."""
    probs, _ = classifier.apply({"params": lexical_params}, images)
    return jax.lax.stop_gradient(probs)

  def train_captioner(stage_dir, steps, train_split, init_params, probs_fn, *,
                      evaluators=(), figures=()):
    """Fits a caption model (`probs_fn(batch)`: its image input, None for the LM)."""
    per_example = lambda params, batch, key: caption_terms(params, batch, probs_fn(batch))
    task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
                optimizer=make_optimizer(config.train))
    splits = {"train": datasets[train_split], **evaluation}
    if stage_dir == workdir:
      splits["novel"] = datasets["novel"]
    teacher_forced = evaluate.MeanMetrics(
        name="teacher_forced", batch_size=config.eval.batch_size,
        metric_fn=lambda params, batch, key: {
            "nll_per_token": per_example(params, batch, key)["nll_per_token"]})
    return fit(_stage_config(config, steps), stage_dir, task, splits,
               evaluators=[teacher_forced, *evaluators], figures=figures)

  # 1-2: the lexical classifier (unpaired labelled images) and the LM (unpaired text).
  lexical_params = train_lexical("lexical", "unpaired")
  lm_dir = os.path.join(workdir, "lm")
  train_captioner(lm_dir, config.lm_steps, "unpaired", init_captioner, lambda batch: None)
  lm_params = load_params(lm_dir)[1]

  # 4: the paired-only baseline: its own classifier, a caption model from scratch.
  baseline = None
  if config.paired_only:
    baseline_lexical = train_lexical(os.path.join("paired_only", "lexical"), "train")
    baseline_dir = os.path.join(workdir, "paired_only", "caption")
    train_captioner(baseline_dir, None, "train", init_captioner,
                    lambda batch: concept_probs(baseline_lexical, batch["image"]))
    baseline = (load_params(baseline_dir)[1], baseline_lexical)

  # Transfer sources: the closest seen concept words in the LM's embedding space.
  embeddings = lm_params["embed"]["embedding"]
  top_k = None if config.delta_sources == 1 else config.delta_sources
  delta_sources = np.asarray(dcc.closest_seen_words(embeddings, novel_ids, seen_ids,
                                                    top_k=top_k))
  direct_sources = delta_sources if top_k is None else delta_sources[:, 0]
  lm_weights, lm_bias = dcc.multimodal_layer(lm_params)
  lm_weights = lm_weights[:, :hidden_dim]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "transfer.json"), "w") as f:
      json.dump({w: [vocabulary.tokens[i] for i in row]
                 for w, row in zip(words, delta_sources.reshape(len(words), -1))}, f, indent=1)

  def transferred(params, how):
    weights, bias = dcc.multimodal_layer(params)
    common = dict(num_language=hidden_dim, word_concept=word_concept, novel_ids=novel_ids)
    if how == "direct":
      weights, bias = dcc.direct_transfer(weights, bias, source_ids=direct_sources, **common)
    else:
      weights, bias = dcc.delta_transfer(weights, bias, lm_weights, lm_bias,
                                         source_ids=delta_sources, **common)
    return dcc.with_multimodal_layer(params, weights, bias)

  def decode(params, probs):
    state = model.init_decode_state(params, probs)
    step_fn = functools.partial(model.decode_step, params)
    if config.eval.beam_size == 1:
      out = decoding.greedy(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID,
                            max_len=config.max_len)
      return out.tokens, out.lengths
    out = decoding.beam_search(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID,
                               max_len=config.max_len, beam_size=config.eval.beam_size)
    return out.tokens[:, 0], out.lengths[:, 0]

  def variant_captions(params, images):
    """{variant: (tokens [B, T], lengths [B])} for every variant."""
    probs = concept_probs(lexical_params, images)
    out = {"no_transfer": decode(params, probs),
           "direct": decode(transferred(params, "direct"), probs),
           "delta": decode(transferred(params, "delta"), probs)}
    if baseline is not None:
      out["paired_only"] = decode(baseline[0], concept_probs(baseline[1], images))
    return out

  def captions(params, batch, key):
    del key  # deterministic decoding
    return {f"{name}_{part}": value
            for name, pair in variant_captions(params, batch["image"]).items()
            for part, value in zip(("tokens", "lengths"), pair)}

  split_references = functools.cache(references)

  def score_captions(predictions, source):
    refs = split_references(source)
    contains = {w: np.array([mentions(refs[i], held[w]).any() for i in range(len(refs))])
                for w in words}
    metrics = {}
    for name in [v for v in VARIANTS if f"{v}_tokens" in predictions]:
      texts = vocabulary.decode(predictions[f"{name}_tokens"], predictions[f"{name}_lengths"])
      scores = caption_metrics(refs, dict(enumerate(texts)), meteor=config.eval.meteor)
      f1 = novel_word_f1(texts, contains, variants=held)
      metrics[f"f1_held_out_{name}"] = f1["mean_f1"]
      metrics.update({f"f1_{w}_{name}": r["f1"] for w, r in f1["per_word"].items()})
      for key in ("bleu4", "cider", "meteor"):
        if key in scores:
          metrics[f"{key}_{name}"] = scores[key]
    for key in ("f1_held_out", "bleu4", "cider", "meteor"):
      if f"{key}_{config.transfer}" in metrics:
        metrics[key] = metrics[f"{key}_{config.transfer}"]
    return metrics

  jit_captions = jax.jit(captions)

  def sample_arrays(params, source, key):
    images = stack_records(source, ("image",), count=config.num_samples)["image"]
    return dict(jit_captions(params, {"image": images}, key), image=images)

  def write_samples(arrays, directory, split, step):
    names = [v for v in VARIANTS if f"{v}_tokens" in arrays]
    texts = {v: vocabulary.decode(arrays[f"{v}_tokens"], arrays[f"{v}_lengths"])
             for v in names}
    rows = ["\n".join(f"{v.replace('_', ' ')}: {texts[v][i]}" for v in names)
            for i in range(len(arrays["image"]))]
    images = np.asarray(arrays["image"])[:, None]
    save_caption_rows(os.path.join(directory, f"captions_{split}_{step}.png"), rows,
                      images[..., 0] if images.shape[-1] == 1 else images)

  # 3: the caption model from the LM, on paired data, with every variant's captions.
  caption_evaluator = evaluate.CorpusMetrics(
      name="captions", predict_fn=captions, score_fn=score_captions,
      batch_size=config.eval.batch_size)
  figure = evaluate.Figure(name="samples", arrays_fn=sample_arrays, write_fn=write_samples)
  return train_captioner(workdir, None, "train", lambda key: lm_params,
                         lambda batch: concept_probs(lexical_params, batch["image"]),
                         evaluators=[caption_evaluator], figures=[figure])


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "dcc.py"))
