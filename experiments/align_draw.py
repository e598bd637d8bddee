"""alignDRAW on captioned digits (Mansimov et al. 2016, "Generating images from captions").

  python -m experiments.align_draw --workdir=DIR [--config.model.variant=noalign|unconditional]

Trains `models.align_draw.AlignDRAW` on captioned digits (`data.captioned_digits`: one or two
digits on a 60x60 canvas, captions naming each digit and its position) with the negative
variational bound of section 3.3 on dynamically binarized images. Writes DIR/metrics.jsonl,
DIR/vocabulary.json, DIR/checkpoints, DIR/tensorboard and DIR/samples/captions_<split>_<step>.png
(a row of generated images per caption, the paper's Fig. 2-4: the split's captions then
"flipped" ones with one digit or one position changed, or every held-out caption for `novel`)
and DIR/samples/alignment_<split>_<step>.png (alpha_t over the caption's words at each step t,
section 3.2; not for the unconditional variant).

Evaluators (`train.evaluate`, each with its own key):
  * `bound` on every split: `nll_bound_nats` (-L), `recon_nats`, `kl_nats`, with one
    binarization and one posterior sample per record (`evaluate.record_keys`).
  * `consistency` on test and novel at the end: one image drawn per caption of the split's
    first `eval.consistency_samples` records; a judge trained on real training images
    (`metrics.judge.SceneJudge`, cached in `<data dir>/judges/`) reads its layout and
    digits; the image counts when the whole scene matches. `classifier_accuracy`: the judge
    on the real images of those records; `recon_consistency`: on the posterior's
    reconstructions of them (can the model draw these digits at all?). Also on validation
    every `eval.consistency_every` steps when that is > 0.
  * `retrieval` on test and novel at the end: every (caption, image) pair of the split's
    first `eval.retrieval_pool` records scored by -L (an image keeps its bits and posterior
    noise under every caption), images ranked per caption: `r_at_1/5/10/50`, `median_rank`
    (ties pessimistic). Two images of the same scene share a caption, so R@1 < 1 even for a
    perfect model when the pool repeats a scene.
  * `sample_quality` on test and novel at the end (`experiments.sample_quality`, the measures of
    every generator's table): one image per caption of the split's first
    `eval.sample_quality_count` records, `frechet_distance` to the real ones in the judge's
    feature space, `classifier_score`, `classifier_score_real`.
"""

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from experiments import sample_quality
from vislang_jax.data import digit_scenes
from vislang_jax.data.captions import build_encoded_captioned_digits
from vislang_jax.data.pipeline import stack_records
from vislang_jax.metrics import judge as judges
from vislang_jax.models import align_draw
from vislang_jax.models import draw as draw_model
from vislang_jax.objectives.align_draw import align_draw_loss
from vislang_jax.ops.binarize import binarize, binarize_records
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz import alignment as alignment_figure
from vislang_jax.viz import captions as captions_figure

EXPENSIVE_SPLITS = ("test", "novel")  # consistency and retrieval, at the end only
RETRIEVAL_KS = (1, 5, 10, 50)
_SCENE_FIELDS = ("labels", "boxes", "num_digits")


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> align_draw.AlignDRAW:
  """`AlignDRAW(**config.model)` for 60x60 grey images and `vocab_size` word ids."""
  return align_draw.AlignDRAW(**config.model, height=60, width=60, vocab_size=vocab_size,
                              channels=1)


def record_noise(model: align_draw.AlignDRAW, key: jax.Array, index: jax.Array) -> jax.Array:
  """Standard normal eps [T, B, Z], record b's from `fold_in(key, index[b])`."""
  return draw_model.record_noise(evaluate.record_keys(key, index), glimpses=model.glimpses,
                                 z_size=model.z_size)


def bound(model: align_draw.AlignDRAW, params, x: jax.Array, batch: dict, *,
          noise: jax.Array | None = None, key: jax.Array | None = None):
  """(-L [B], {"recon_nats", "kl_nats"} [B]) of binary images x [B, H, W, 1] and captions."""
  logits, aux = model.apply({"params": params}, x, batch["tokens"], batch["length"],
                            noise=noise, rngs=None if key is None else {"sample": key})
  return align_draw_loss(logits, x, aux["q_mu"], aux["q_logsigma"], aux["p_mu"],
                         aux["p_logsigma"])


def record_inputs(model: align_draw.AlignDRAW, batch: dict, key: jax.Array,
                  image_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(binary images [B, 60, 60, 1], posterior noise [T, B, Z]), each image's drawn from its
  `image_index`."""
  bits_key, noise_key = jax.random.split(key)
  return (binarize_records(bits_key, image_index, batch["image"]),
          record_noise(model, noise_key, image_index))


def record_bound(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array,
                 image_index: jax.Array):
  """`bound` with the bits and posterior noise of each image drawn from its `image_index`."""
  x, noise = record_inputs(model, batch, key, image_index)
  return bound(model, params, x, batch, noise=noise)


def reconstruct(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array) -> jax.Array:
  """The posterior's reconstruction [B, 60, 60, 1] in [0, 1], `sigmoid(c_T)` with z ~ Q(Z | x,
  y), of each record's binary image (`record_inputs`: the bits and noise of `record_bound`)."""
  x, noise = record_inputs(model, batch, key, batch["index"])
  logits, _ = model.apply({"params": params}, x, batch["tokens"], batch["length"], noise=noise)
  return jax.nn.sigmoid(logits)


def init_params(model: align_draw.AlignDRAW, key: jax.Array, *, max_len: int):
  """The model's params, initialised on one blank image and a one-word caption of Ty = max_len."""
  params_key, sample_key = jax.random.split(key)
  return model.init({"params": params_key, "sample": sample_key},
                    jnp.zeros((1, model.height, model.width, model.channels)),
                    jnp.zeros((1, max_len), jnp.int32), jnp.ones((1,), jnp.int32))["params"]


def train_example(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array) -> dict:
  """-L per example on freshly binarized images (dynamic binarization, one sample of Q)."""
  bits_key, sample_key = jax.random.split(key)
  loss, parts = bound(model, params, binarize(bits_key, batch["image"]), batch, key=sample_key)
  return {"loss": loss, **parts}


def bound_metrics(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array) -> dict:
  """`nll_bound_nats`, `recon_nats`, `kl_nats` [B], each record's randomness its own."""
  loss, parts = record_bound(model, params, batch, key, batch["index"])
  return {"nll_bound_nats": loss, **parts}


def pair_score(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array) -> jax.Array:
  """-L of each (caption, image) pair [B], the image's randomness that of its `candidate`."""
  return -record_bound(model, params, batch, key, batch["candidate"])[0]


def draw(model: align_draw.AlignDRAW, params, batch: dict, key: jax.Array) -> jax.Array:
  """One image [B, 60, 60, 1] in [0, 1] per record's caption, its prior noise its own."""
  canvases, _ = model.apply(
      {"params": params}, batch["tokens"], batch["length"],
      noise=record_noise(model, key, batch["index"]),
      method=align_draw.AlignDRAW.generate)
  return jax.nn.sigmoid(canvases[-1])[..., None]


def consistency_evaluator(draw_fn: Callable, read_fn: Callable, *, batch_size: int,
                          count: int, every: int = 0,
                          recon_fn: Callable | None = None) -> evaluate.CorpusMetrics:
  """`consistency` (the judge reads `draw_fn(params, batch, key)`'s images [b, 60, 60, 1] as
  the records' scenes) and `classifier_accuracy` (reads the real images so); `read_fn`:
  images -> [b, 3] scene classes. With `recon_fn` (same signature, called with
  `fold_in(key, 1)`), also `recon_consistency`: the judge on the posterior's reconstructions,
  which tells a model that cannot draw the digits yet (low for both) from one whose prior does
  not follow the caption (low consistency only). At the end on test and novel; with `every`
  > 0 also on validation every `every` steps (the curve of consistency over training)."""

  def predict(params, batch, key):
    out = {"drawn": read_fn(draw_fn(params, batch, key)), "real": read_fn(batch["image"]),
           **{k: batch[k] for k in _SCENE_FIELDS}}
    if recon_fn is not None:
      out["recon"] = read_fn(recon_fn(params, batch, jax.random.fold_in(key, 1)))
    return out

  def score(predictions, source):
    del source  # the scenes came with the predictions
    targets = digit_scenes.scene_classes(*(predictions[k] for k in _SCENE_FIELDS))
    scores = {"consistency": judges.agreement(predictions["drawn"], targets),
              "classifier_accuracy": judges.agreement(predictions["real"], targets)}
    if recon_fn is not None:
      scores["recon_consistency"] = judges.agreement(predictions["recon"], targets)
    return scores

  splits = ("validation",) + EXPENSIVE_SPLITS if every else EXPENSIVE_SPLITS
  return evaluate.CorpusMetrics(name="consistency", predict_fn=predict, score_fn=score,
                                batch_size=batch_size, count=count, every=every,
                                splits=splits)


def build_judge(config: ml_collections.ConfigDict, train) -> tuple[judges.SceneJudge, Any]:
  """The scene judge and its params, trained on the real `train` records (or cached)."""
  # 10 digit classes; the judge reads an absent second digit as 10 = NO_DIGIT.
  judge = judges.SceneJudge(windows=digit_scenes.WINDOWS, window_size=digit_scenes.WINDOW,
                            num_classes=digit_scenes.NO_DIGIT, widths=tuple(config.judge.widths))
  records = stack_records(train, ("image",) + _SCENE_FIELDS)
  targets = digit_scenes.scene_classes(*(records[k] for k in _SCENE_FIELDS))
  params = judges.train_scene_judge(
      judge, records["image"], targets, num_steps=config.judge.num_steps,
      batch_size=config.judge.batch_size, learning_rate=config.judge.learning_rate,
      seed=config.seed, cache_dir=sample_quality.cache_dir(config, "judges"))
  return judge, params


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains alignDRAW (`config.model.variant`) on captioned digits; returns the final metrics."""
  data = config.data
  datasets, vocabulary = build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir or None, max_len=config.max_len,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      novel_size=data.novel_size)
  model = make_model(config, len(vocabulary))
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  judge, judge_params = build_judge(config, datasets["train"])

  def figure_captions(source):
    scenes = stack_records(source, _SCENE_FIELDS, count=config.eval.figure_captions)
    captions = digit_scenes.probe_captions(
        digit_scenes.scene_classes(*(scenes[k] for k in _SCENE_FIELDS)),
        count=config.eval.figure_captions)
    return vocabulary.encode(captions, max_len=config.max_len, strict=True)

  def caption_samples(params, source, key):
    ids, lengths = figure_captions(source)
    k = config.num_samples
    canvases, _ = align_draw.generate(model, params, key, jnp.repeat(ids, k, 0),
                                      jnp.repeat(lengths, k, 0))
    images = jax.nn.sigmoid(canvases[-1]).reshape((len(ids), k) + canvases.shape[2:])
    return {"images": images, "ids": ids, "lengths": lengths}

  def write_captions(arrays, directory, split, step):
    captions_figure.save_caption_rows(
        os.path.join(directory, f"captions_{split}_{step}.png"),
        vocabulary.decode(arrays["ids"], arrays["lengths"]), arrays["images"])

  def alignments(params, source, key):
    ids, lengths = figure_captions(source)
    _, aux = align_draw.generate(model, params, key, jnp.asarray(ids), jnp.asarray(lengths))
    return {"alignment": jnp.swapaxes(aux["alignment"], 0, 1), "ids": ids, "lengths": lengths}

  def write_alignments(arrays, directory, split, step):
    words = [[vocabulary.tokens[i] for i in row[:n]]
             for row, n in zip(arrays["ids"], arrays["lengths"])]
    alignment_figure.save_alignment_maps(
        os.path.join(directory, f"alignment_{split}_{step}.png"), words, arrays["alignment"])

  read = lambda images: judges.read_scenes(judge, judge_params, images)
  task = Task(init_params=functools.partial(init_params, model, max_len=config.max_len),
              loss_fn=mean_loss(functools.partial(train_example, model)),
              optimizer=make_optimizer(config.train))
  evaluators = [
      evaluate.MeanMetrics(name="bound", metric_fn=functools.partial(bound_metrics, model),
                           batch_size=config.eval.batch_size),
      consistency_evaluator(functools.partial(draw, model), read,
                            batch_size=config.eval.batch_size,
                            count=config.eval.consistency_samples,
                            every=config.eval.consistency_every,
                            recon_fn=functools.partial(reconstruct, model)),
      # the table of every generator (experiments.sample_quality); consistency is above
      sample_quality.generation_evaluator(
          functools.partial(draw, model), sample_quality.scene_featurizer(judge, judge_params),
          batch_size=config.eval.batch_size, count=config.eval.sample_quality_count, every=0,
          splits=EXPENSIVE_SPLITS),
      evaluate.PairRetrieval(
          score_fn=functools.partial(pair_score, model), query_fields=("tokens", "length"),
          candidate_fields=("image",), pool=config.eval.retrieval_pool,
          batch_size=config.eval.retrieval_chunk, ks=RETRIEVAL_KS, every=0,
          splits=EXPENSIVE_SPLITS),
  ]
  figures = [evaluate.Figure(name="captions", arrays_fn=caption_samples,
                             write_fn=write_captions)]
  if model.variant != "unconditional":
    figures.append(evaluate.Figure(name="alignment", arrays_fn=alignments,
                                   write_fn=write_alignments))
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "align_draw.py"))
