"""DenseCap: dense captioning with the fully convolutional localisation network.

  python -m experiments.densecap --workdir=DIR [--config.dataset=dense_digits|visual_genome] ...

Trains `models.densecap.DenseCap` (keyword arguments `config.model`) with the five-term loss
(`objectives.densecap.densecap_loss`, weights `config.loss`) on dense digit scenes
(`data.dense_digits`, any digit source) or Visual Genome (`data.visual_genome`, a local copy),
their phrases encoded by `data.regions.EncodedRegions` with a vocabulary of the training
phrases. Evaluates each split (validation, test, and dense digits' `novel`):
* `dense_captioning`: `detect` (proposals, NMS, recognition, final NMS, `config.max_regions`
  kept) and a greedy phrase per region (`decoding.greedy`), scored by
  `metrics.dense_captioning`: `map`, `detection_ap50`, `similarity_meteor`; and per
  ground-truth region localised by some prediction at IoU >= 0.5 (`recall50`), the phrase of
  its best-overlapping prediction against its own: `phrase_exact`, `phrase_bleu4`,
  `phrase_cider` (`metrics.captions`);
* `retrieval`: open-world region retrieval by phrase (Johnson et al. 2016, Sec. 4.3): each
  of the split's `config.retrieval.num_queries` most frequent phrases scores every detected
  region of the first `pool` images by the language model's log-likelihood of the phrase
  given the region code; each image's best region stands for it and images are ranked by its
  score. A retrieved (image, box) is right when the image has a region with that phrase
  overlapping the box at IoU >= 0.5: `retrieval_map` (mean over queries of the average
  precision), `retrieval_p_at_1`, `retrieval_p_at_5`;
* `losses`: the five loss terms on the split (validation while training).
Writes DIR/metrics.jsonl, DIR/vocabulary.json, DIR/checkpoints, DIR/tensorboard, and
DIR/samples/densecap_<split>_<step>.png (the first scenes' detections with their phrases and
scores over the ground-truth boxes) and DIR/samples/retrieval_<split>_<step>.png.
"""

import collections
import dataclasses
import functools
import inspect
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax import decoding
from vislang_jax.checks import check_choice
from vislang_jax.data import dense_digits, visual_genome
from vislang_jax.data.regions import EncodedRegions, phrase_texts, region_references
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary, tokenize
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.metrics.dense_captioning import RegionPredictions, dense_captioning_map
from vislang_jax.models.densecap import DenseCap
from vislang_jax.objectives.densecap import densecap_loss
from vislang_jax.ops.boxes import box_iou
from vislang_jax.train import cli, evaluate, sharding
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.densecap import save_dense_caption_figure, save_region_retrieval_figure

DATASETS = ("dense_digits", "visual_genome")
LOCALISED_IOU = 0.5  # a region counts as found / retrieved at this IoU


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedRegions], Vocabulary]:
  """Every split as `EncodedRegions` and the vocabulary of the training phrases.

  Raises:
    ValueError: for an unknown `dataset`, a missing Visual Genome folder, or a phrase longer
      than `max_len - 1` words.
  """
  check_choice("dataset", config.dataset, DATASETS)
  data = config.data
  if config.dataset == "dense_digits":
    sources = dense_digits.build_dense_digits_dataset(
        source=data.source, data_dir=data.dir or None, mnist_dir=data.mnist_dir or None,
        seed=config.seed, canvas_size=data.canvas_size, max_digits=data.max_digits,
        max_pairs=data.max_pairs, copies=data.copies, novel_size=data.novel_size)
  else:
    if not data.vg_dir:
      raise ValueError("data.vg_dir must name the folder of Visual Genome's "
                       "region_descriptions.json, image_data.json and images, got ''.")
    sources = visual_genome.load_visual_genome(
        data.vg_dir, image_size=data.image_size, max_regions=data.vg_max_regions,
        max_words=config.max_len - 1, split_file=data.vg_split_file or None)
  vocabulary = Vocabulary.build(phrase_texts(sources["train"]), min_count=config.min_count)
  datasets = {split: EncodedRegions(source, vocabulary, max_len=config.max_len)
              for split, source in sources.items()}
  return datasets, vocabulary


@functools.lru_cache(maxsize=None)
def _references(source, count: int) -> list[tuple[np.ndarray, list[str]]]:
  return region_references(source, count=count)


def references_of(source) -> list[tuple[np.ndarray, list[str]]]:
  """`region_references` of an evaluation source: a split, or its `evaluate.Head`; read once
  per (split, count), not at every evaluation (reading decodes the images)."""
  if isinstance(source, evaluate.Head):
    return _references(source.source, len(source))
  return _references(source, len(source))


def phrase_metrics(predictions: list[RegionPredictions],
                   references: list[tuple[np.ndarray, list[str]]]) -> dict[str, float]:
  """`recall50` and, over the ground-truth regions it counts, the phrase of each one's
  best-overlapping prediction against its own: `phrase_exact`, `phrase_bleu4`,
  `phrase_cider`."""
  hypotheses, truths = {}, {}
  total = 0
  for (boxes, phrases), predicted in zip(references, predictions):
    total += len(boxes)
    if not len(predicted.boxes):
      continue
    iou = np.asarray(box_iou(boxes[:, None], np.asarray(predicted.boxes)[None]))
    best = iou.argmax(1)
    for g in np.flatnonzero(iou.max(1) >= LOCALISED_IOU):
      key = len(truths)
      truths[key] = [phrases[g]]
      hypotheses[key] = predicted.captions[best[g]]
  metrics = {"recall50": len(truths) / max(total, 1)}
  if truths:
    exact = [tokenize(hypotheses[k]) == tokenize(truths[k][0]) for k in truths]
    scores = caption_metrics(truths, hypotheses, meteor=False)
    metrics.update(phrase_exact=float(np.mean(exact)), phrase_bleu4=scores["bleu4"],
                   phrase_cider=scores["cider"])
  return metrics


def average_precision(hits: np.ndarray, num_relevant: int) -> float:
  """Average precision of one ranked list: the mean over its hits of the precision at each
  hit, divided over `num_relevant` (missed relevant items count 0)."""
  hits = np.asarray(hits, bool)
  if num_relevant < 1:
    return 0.0
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].sum() / num_relevant)


def retrieval_queries(references: list[tuple[np.ndarray, list[str]]], count: int) -> list[str]:
  """The `count` most frequent phrases (ties alphabetical), each counted once per image."""
  counts = collections.Counter(p for _, phrases in references for p in set(phrases))
  return [p for p, _ in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0]))[:count]]


def region_hits(boxes: np.ndarray, references: list[tuple[np.ndarray, list[str]]],
                query: str) -> np.ndarray:
  """[N] bool: image n's retrieved box [N, 4] overlaps one of its regions described by
  `query` at IoU >= 0.5."""
  hits = np.zeros(len(boxes), bool)
  for n, (truth, phrases) in enumerate(references):
    chosen = [g for g, p in enumerate(phrases) if p == query]
    if chosen:
      hits[n] = float(np.max(np.asarray(box_iou(truth[chosen], boxes[n][None])))) >= LOCALISED_IOU
  return hits


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegionRetrieval(evaluate.Evaluator):
  """Open-world region retrieval by phrase (module docstring); metrics `retrieval_*`.

  Attributes:
    detect_fn: (params, batch, key) -> {"boxes" [b, M, 4], "codes" [b, M, D], "mask" [b, M]}.
    score_fn: (params, codes [N, M, D], tokens [T], length []) -> [N, M] log-likelihoods.
    vocabulary: encodes the queries.
    max_len: their token length.
    pool, num_queries, batch_size: images searched, queries, the detection batch.
  """

  detect_fn: evaluate.PredictFn
  score_fn: object
  vocabulary: Vocabulary
  max_len: int
  pool: int
  num_queries: int
  batch_size: int
  name: str = "retrieval"

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "_detect", jax.jit(self.detect_fn))
    object.__setattr__(self, "_score", jax.jit(self.score_fn))

  def rank(self, params, source, key, mesh):
    """`(queries, detections, references, scores [Q, N], best [Q, N] box index)`."""
    source = evaluate.Head(source, min(self.pool, len(source)))
    references = references_of(source)
    detections = evaluate.predict(self._detect, params, source, key,
                                  batch_size=self.batch_size, mesh=mesh)
    queries = retrieval_queries(references, self.num_queries)
    tokens, lengths = self.vocabulary.encode(queries, max_len=self.max_len, truncate=True)
    codes = jax.device_put(detections["codes"], sharding.replicated(mesh))
    scores, best = [], []
    for q in range(len(queries)):
      region_scores = np.asarray(self._score(params, codes, tokens[q], lengths[q]))
      region_scores = np.where(detections["mask"], region_scores, -np.inf)
      best.append(region_scores.argmax(1))
      scores.append(region_scores.max(1))
    return queries, detections, references, np.array(scores), np.array(best, np.int64)

  def __call__(self, params, source, key, mesh):
    queries, detections, references, scores, best = self.rank(params, source, key, mesh)
    if not queries:
      return {}
    aps, p1, p5 = [], [], []
    for q, query in enumerate(queries):
      boxes = detections["boxes"][np.arange(len(best[q])), best[q]]
      hits = region_hits(boxes, references, query)
      order = np.argsort(-scores[q], kind="stable")
      relevant = sum(query in phrases for _, phrases in references)
      aps.append(average_precision(hits[order], relevant))
      p1.append(hits[order[:1]].mean())
      p5.append(hits[order[:5]].mean())
    return {"retrieval_map": float(np.mean(aps)), "retrieval_p_at_1": float(np.mean(p1)),
            "retrieval_p_at_5": float(np.mean(p5))}


def check_keys(name: str, values: ml_collections.ConfigDict, known) -> None:
  """A ValueError naming the keys of `values` outside `known`."""
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"{name} has unknown keys {unknown}; the known ones are {sorted(known)}.")


def make_model(config: ml_collections.ConfigDict, *, vocab_size: int) -> DenseCap:
  """`DenseCap(vocab_size, **config.model)`."""
  check_keys("model", config.model, {f.name for f in dataclasses.fields(DenseCap)}
             - {"vocab_size", "bos_id", "parent", "name"})
  return DenseCap(vocab_size=vocab_size, bos_id=BOS_ID, **config.model)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains DenseCap on `config.dataset`; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  check_choice("dataset", config.dataset, DATASETS)
  check_choice("eval.similarity", config.eval.similarity, ("auto", "meteor", "exact"))
  check_keys("loss", config.loss, inspect.signature(densecap_loss).parameters.keys() - {"outputs"})
  datasets, vocabulary = load_datasets(config)
  model = make_model(config, vocab_size=len(vocabulary))
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]

  def losses(params, batch, key, *, deterministic):
    dropout_key, sample_key = jax.random.split(key)
    outputs, _ = model.apply({"params": params}, batch["image"], batch["boxes"],
                             batch["region_mask"], batch["tokens"], batch["lengths"],
                             deterministic=deterministic,
                             rngs={"dropout": dropout_key, "sample": sample_key})
    loss, metrics = densecap_loss(outputs, **config.loss)
    return {"loss": loss, **metrics}

  def detect(params, batch, key):
    del key  # detection is deterministic
    found = model.detections(params, batch["image"], max_regions=config.max_regions)
    return {"boxes": found.boxes, "scores": found.scores, "codes": found.codes,
            "mask": found.mask}

  def caption(params, batch, key):
    found = detect(params, batch, key)
    codes = found.pop("codes")
    batch_size, slots, dim = codes.shape
    decoded = decoding.greedy(functools.partial(model.decode_step, params),
                              model.init_decode_state(params, codes.reshape(-1, dim)),
                              bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len)
    return dict(found, tokens=decoded.tokens.reshape(batch_size, slots, -1),
                lengths=decoded.lengths.reshape(batch_size, slots))

  def as_predictions(arrays) -> list[RegionPredictions]:
    out = []
    for n in range(len(arrays["boxes"])):
      kept = np.flatnonzero(arrays["mask"][n])
      phrases = vocabulary.decode(arrays["tokens"][n, kept], arrays["lengths"][n, kept])
      out.append(RegionPredictions(arrays["boxes"][n, kept], arrays["scores"][n, kept],
                                   phrases))
    return out

  def score(arrays, source):
    predictions = as_predictions(arrays)
    references = references_of(source)
    result = dense_captioning_map(predictions, references, similarity=config.eval.similarity)
    return {"map": result["map"], "detection_ap50": result["detection_ap50"],
            "similarity_meteor": float(result["similarity"] == "meteor"),
            **phrase_metrics(predictions, references)}

  retrieval = RegionRetrieval(
      detect_fn=detect, vocabulary=vocabulary, max_len=config.max_len,
      score_fn=model.phrase_log_likelihood, pool=config.retrieval.pool,
      num_queries=config.retrieval.num_queries, batch_size=config.eval.batch_size)
  caption_jit = jax.jit(caption)
  mesh = sharding.make_mesh()

  def figure_arrays(params, source, key):
    head = evaluate.Head(source, min(config.num_samples, len(source)))
    arrays = evaluate.predict(caption_jit, params, head, key, batch_size=config.eval.batch_size,
                              mesh=mesh)
    arrays["image"] = np.stack([head[i]["image"] for i in range(len(head))])
    return arrays

  def write_figure(arrays, directory, split, step):
    predictions = as_predictions(arrays)
    head = evaluate.Head(datasets[split], len(arrays["image"]))
    save_dense_caption_figure(
        os.path.join(directory, f"densecap_{split}_{step}.png"), arrays["image"],
        [p.boxes for p in predictions], [p.captions for p in predictions],
        scores=[p.scores for p in predictions],
        truth_boxes=[boxes for boxes, _ in references_of(head)])

  def retrieval_arrays(params, source, key):
    queries, detections, references, scores, best = retrieval.rank(params, source, key, mesh)
    k = config.retrieval.top_k
    queries = queries[:config.retrieval.figure_queries]
    images, boxes, top, hits = [], [], [], []
    for q, query in enumerate(queries):
      order = np.argsort(-scores[q], kind="stable")[:k]
      chosen = detections["boxes"][order, best[q][order]]
      images.append(np.stack([source[int(n)]["image"] for n in order]))
      boxes.append(chosen)
      top.append(scores[q][order])
      hits.append(region_hits(chosen, [references[n] for n in order], query))
    return {"images": np.array(images), "boxes": np.array(boxes), "scores": np.array(top),
            "hits": np.array(hits), "queries": np.array(queries)}

  def write_retrieval(arrays, directory, split, step):
    if len(arrays["queries"]):
      save_region_retrieval_figure(
          os.path.join(directory, f"retrieval_{split}_{step}.png"),
          [str(q) for q in arrays["queries"]], arrays["images"], arrays["boxes"],
          arrays["scores"], arrays["hits"])

  def init_params(key):
    params_key, sample_key = jax.random.split(key)
    batch = {k: jnp.asarray(v)[None] for k, v in example.items()}
    return model.init({"params": params_key, "dropout": sample_key, "sample": sample_key},
                      batch["image"], batch["boxes"], batch["region_mask"], batch["tokens"],
                      batch["lengths"], deterministic=True)["params"]

  task = Task(init_params=init_params,
              loss_fn=mean_loss(functools.partial(losses, deterministic=False)),
              optimizer=make_optimizer(config.train))
  evaluators = [
      evaluate.MeanMetrics(name="losses", metric_fn=functools.partial(losses,
                                                                      deterministic=True),
                           batch_size=config.eval.batch_size),
      evaluate.CorpusMetrics(name="dense_captioning", predict_fn=caption, score_fn=score,
                             batch_size=config.eval.batch_size, count=config.eval.count),
      retrieval,
  ]
  figures = [evaluate.Figure(name="densecap", arrays_fn=figure_arrays, write_fn=write_figure),
             evaluate.Figure(name="retrieval_figure", arrays_fn=retrieval_arrays,
                             write_fn=write_retrieval)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "densecap.py"))
