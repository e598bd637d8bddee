"""Joint image-text embeddings on captioned digits: VSE (Kiros et al. 2014) or DVSA (Karpathy &
Fei-Fei 2015), evaluated by bidirectional retrieval.

  python -m experiments.retrieval --workdir=DIR [--config.model=dvsa] ...

Trains `config.model` on the captioned digits (`data.captioned_digits`) with the bidirectional
hinge of `objectives.ranking` over the batch, pairs with the same caption masked out of the
negatives: `vse` on the unit-vector scores `x . v` (margin `config.margin`, default 0.2 as
Kiros et al.'s released trainer), `dvsa` on the region-word scores `S_kl = sum_t max_i v_i .
s_t` (margin 1, eq. 9) over the whole image, each digit's box and a `config.grid` of boxes.

Evaluates `validation`, `test` and `novel` (held-out digit/position combinations): retrieval
both ways over pools of `eval.pool` images (`metrics.retrieval.fold_retrieval`: the papers'
1,000-image protocol, averaged over the split's folds), every caption with the query's exact
words a hit: `i2t_r1` ... `t2i_median_rank`. `dvsa` adds `alignment_accuracy`, the fraction
of digit words ("three") whose best-scoring region is the box of the digit they name (a
region counts as that box when their IoU is at least 0.5: a grid cell can hold the same digit
crop), and `mrf_alignment_accuracy`, the same for the chain MRF's alignment
(`ops.chain_mrf`, smoothness `config.beta`). `vse` adds `arithmetic_r1` / `arithmetic_r5`: for each one-digit image,
`image - "d" + "d+1"` (Kiros et al. Sec. 4's arithmetic) must retrieve an image captioned
with the same position and digit d+1.

Writes DIR/metrics.jsonl, DIR/vocabulary.json, DIR/checkpoints and
DIR/samples/retrieval_<split>_<step>.png (text queries and their top images; hits framed
green) and, for `dvsa`, DIR/samples/alignment_<split>_<step>.png (boxes and the words the MRF
gives them, in the box's colour).
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax.checks import check_choice
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.metrics.retrieval import fold_retrieval, hit_ranks
from vislang_jax.models import dvsa, vse
from vislang_jax.objectives.ranking import ranking_loss, region_word_scores
from vislang_jax.ops.boxes import box_iou, grid_boxes, yxyx_to_xyxy
from vislang_jax.ops.chain_mrf import align_words
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.alignment import save_region_alignment
from vislang_jax.viz.retrieval import save_retrieval_figure

MODELS = ("vse", "dvsa")
# The hinge's margin when `config.margin` is None: Kiros et al.'s trainer (margin=0.2) and
# Karpathy & Fei-Fei's eq. (9) (+1).
DEFAULT_MARGINS = {"vse": 0.2, "dvsa": 1.0}
# `embed_pairs`'s fields of the image side and of the sentence side.
_IMAGE_FIELDS = ("image", "regions", "region_mask")
_SENTENCE_FIELDS = ("sentence", "words", "word_mask")


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """The encoded captioned-digit splits and the vocabulary of the training captions."""
  data = config.data
  return build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir or None, max_len=config.max_len,
      mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
      novel_size=data.novel_size)


def same_caption(tokens_a: jax.Array, tokens_b: jax.Array) -> jax.Array:
  """[A, B] bool: True where caption ``a`` and caption ``b`` have exactly the same ids."""
  return jnp.all(tokens_a[:, None, :] == tokens_b[None, :, :], axis=-1)


def whole_box(image_hw: tuple[int, int]) -> jax.Array:
  """[4] float32: the whole image as a box (x0, y0, x1, y1) = (0, 0, W, H)."""
  height, width = image_hw
  return jnp.array([0.0, 0.0, width, height], jnp.float32)


def region_boxes(batch: dict, image_hw: tuple[int, int], grid: tuple[int, ...]
                 ) -> tuple[jax.Array, jax.Array]:
  """The proposals of each image: its digits' boxes, then the grid; (x0, y0, x1, y1) pixels.

  Args:
    batch: "boxes" [B, 2, 4] int (y0, x0, y1, x1), -1 for no digit; "labels" [B, 2].
    image_hw: (H, W).
    grid: (rows, cols) of fixed cells, or () for none.

  Returns:
    ``(boxes [B, 2 + rows * cols, 4] float32, box_mask [B, 2 + rows * cols] bool)``; a missing
    digit's box is replaced by the whole image and masked out.
  """
  present = batch["labels"] >= 0
  digits = yxyx_to_xyxy(jnp.asarray(batch["boxes"], jnp.float32))
  digits = jnp.where(present[..., None], digits, whole_box(image_hw))
  cells = grid_boxes(image_hw, grid) if grid else np.zeros((0, 4), np.float32)
  cells = jnp.broadcast_to(cells, (digits.shape[0],) + cells.shape)
  boxes = jnp.concatenate([digits, cells], axis=1)
  mask = jnp.concatenate([present, jnp.ones(cells.shape[:2], bool)], axis=1)
  return boxes, mask


def digit_word_index(tokens: jax.Array, digit_ids: np.ndarray) -> jax.Array:
  """[B, T] int: which of the record's digits (0, 1) each digit word names, -1 at other words.

  A caption names its digits in the order of the record's `labels` and `boxes`.
  """
  is_digit = jnp.isin(tokens, digit_ids)
  return jnp.where(is_digit, jnp.cumsum(is_digit, axis=1) - 1, -1)


def embed_pairs(model: vse.VSE | dvsa.DVSA, params, batch: dict, *, image_hw: tuple[int, int],
                grid: tuple[int, ...], whole_image: bool) -> dict[str, jax.Array]:
  """Both sides of a batch of captioned digits in the joint space.

  Returns:
    VSE: {"image" [B, K], "sentence" [B, K]}. DVSA: {"regions" [B, R, h], "region_mask"
    [B, R] (region 0, the whole image, masked out unless `whole_image`), "words" [B, T, h],
    "word_mask" [B, T], "boxes" [B, R, 4] (x0, y0, x1, y1): the whole image, the digits'
    boxes, the grid (`region_boxes`)}.
  """
  variables = {"params": params}
  if isinstance(model, vse.VSE):
    return {"image": model.apply(variables, batch["image"], method=model.embed_images),
            "sentence": model.apply(variables, batch["tokens"], batch["length"],
                                    method=model.embed_sentences)}
  boxes, box_mask = region_boxes(batch, image_hw, grid)
  regions, region_mask = model.apply(variables, batch["image"], boxes, box_mask,
                                     method=model.embed_regions)
  region_mask = region_mask.at[:, 0].set(region_mask[:, 0] & whole_image)
  # DVSA's words are the caption's words: <eos> is not one (`DVSA.embed_words`).
  words, word_mask = model.apply(variables, batch["tokens"], batch["length"] - 1,
                                 method=model.embed_words)
  whole = jnp.broadcast_to(whole_box(image_hw), (boxes.shape[0], 1, 4))
  return {"regions": regions, "region_mask": region_mask, "words": words,
          "word_mask": word_mask, "boxes": jnp.concatenate([whole, boxes], axis=1)}


def pair_scores(embedded: dict[str, jax.Array]) -> jax.Array:
  """[I, S] scores of `embed_pairs`'s images against its sentences: VSE's ``x . v``, DVSA's
  ``S_kl = sum_t max_i v_i . s_t``."""
  if "image" in embedded:
    return vse.scores(embedded["image"], embedded["sentence"])
  return region_word_scores(embedded["regions"], embedded["region_mask"], embedded["words"],
                            embedded["word_mask"])


_pair_scores = jax.jit(pair_scores)


def pool_scores(embedded: dict[str, np.ndarray], *, block: int = 50) -> np.ndarray:
  """`pair_scores` of every image of a pool against every sentence, `block` images at a time
  (bounding DVSA's [block, S, R, T] intermediate); NumPy [I, S]."""
  images = {k: v for k, v in embedded.items() if k in _IMAGE_FIELDS}
  sentences = {k: v for k, v in embedded.items() if k in _SENTENCE_FIELDS}
  count = len(next(iter(images.values())))
  return np.concatenate([
      np.asarray(_pair_scores({**{k: v[i:i + block] for k, v in images.items()}, **sentences}))
      for i in range(0, count, block)])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` (vse | dvsa); returns the final metrics per split."""
  check_choice("model", config.model, MODELS)
  workdir = check_workdir(workdir)
  datasets, vocabulary = load_datasets(config)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]
  image_hw = tuple(example["image"].shape[:2])
  grid = tuple(config.grid)
  # The digit names as one-word sentences (VSE's arithmetic; a name the training captions
  # never used is a ValueError naming it), and their ids with the next digit's.
  digit_tokens, digit_lengths = vocabulary.encode(DIGIT_NAMES, max_len=config.max_len,
                                                  strict=True)
  digit_ids = digit_tokens[:, 0]
  successor = np.arange(len(vocabulary))  # word id -> itself, a digit's -> the next digit's
  successor[digit_ids] = np.roll(digit_ids, -1)
  margin = DEFAULT_MARGINS[config.model] if config.margin is None else config.margin
  is_vse = config.model == "vse"
  model = (vse.VSE(vocab_size=len(vocabulary), **config.vse) if is_vse
           else dvsa.DVSA(vocab_size=len(vocabulary), **config.dvsa))

  embed = functools.partial(embed_pairs, model, image_hw=image_hw, grid=grid,
                            whole_image=config.whole_image)

  def per_example(params, batch, key):
    del key  # no randomness in either model
    scores = pair_scores(embed(params, batch))
    same = same_caption(batch["tokens"], batch["tokens"])
    loss = ranking_loss(scores, margin=margin, same=same, hardest=config.hardest)
    true = jnp.diagonal(scores)
    # The fraction of the batch's other captions scored below the true one (image side).
    negatives = jnp.sum(~same, axis=1)
    below = jnp.sum(~same & (scores < true[:, None]), axis=1)
    return {"loss": loss, "batch_i2t_accuracy": below / jnp.maximum(negatives, 1)}

  def predict(params, batch, key):
    del key  # deterministic
    out = embed(params, batch)
    out.update(tokens=batch["tokens"], length=batch["length"])
    if is_vse:
      # Kiros et al.'s arithmetic on each image's first digit d: image - "d" + "d+1".
      first = jnp.maximum(batch["labels"][:, 0], 0)
      names = model.apply({"params": params}, digit_tokens, digit_lengths,
                          method=model.embed_sentences)  # [10, K]
      out["arithmetic"] = vse.arithmetic_query(out["image"], names[first],
                                               names[(first + 1) % 10])
    else:
      dots = dvsa.word_region_scores(out["regions"], out["words"],
                                     region_mask=out["region_mask"])  # [b, T, R]
      mrf, _ = align_words(dots, out["word_mask"], beta=config.beta)
      named = digit_word_index(batch["tokens"], digit_ids)  # [b, T]
      digit_boxes = jnp.take_along_axis(out["boxes"][:, 1:3], jnp.maximum(named, 0)[..., None],
                                        axis=1)  # [b, T, 4]: the named digit's box

      def grounded(regions):  # [b, T] region per word -> its box has IoU >= 0.5 with the digit
        chosen = jnp.take_along_axis(out["boxes"], jnp.maximum(regions, 0)[..., None], axis=1)
        return box_iou(chosen, digit_boxes) >= 0.5

      named = (named >= 0) & out["word_mask"]
      out["digit_words"] = jnp.sum(named, axis=1)
      out["best_correct"] = jnp.sum(named & grounded(jnp.argmax(dots, -1)), axis=1)
      out["mrf_correct"] = jnp.sum(named & grounded(mrf), axis=1)
      out["aligned"] = mrf
    return out

  predict_jit = jax.jit(predict)

  def score(predictions, source):
    del source
    tokens = predictions["tokens"]
    hits = np.all(tokens[:, None] == tokens[None], axis=-1)
    metrics = fold_retrieval(pool_scores(predictions), hits, np.arange(len(tokens)),
                             fold_size=config.eval.pool)
    if is_vse:
      metrics.update(arithmetic_retrieval(predictions))
    else:
      count = max(int(predictions["digit_words"].sum()), 1)
      metrics["alignment_accuracy"] = float(predictions["best_correct"].sum() / count)
      metrics["mrf_alignment_accuracy"] = float(predictions["mrf_correct"].sum() / count)
    return metrics

  def arithmetic_retrieval(predictions):
    """Kiros et al.'s image - "d" + "d+1" queries over the split's one-digit images: a hit is
    an image whose caption is the query's with d+1 for d (the query image competes too)."""
    tokens = predictions["tokens"]
    swapped = successor[tokens]
    one_digit = np.sum(np.isin(tokens, digit_ids), axis=1) == 1
    hits = np.all(swapped[:, None] == tokens[None], axis=-1)
    queries = np.flatnonzero(one_digit & hits.any(axis=1))
    if not queries.size:
      return {}
    scores = np.asarray(vse.scores(jnp.asarray(predictions["arithmetic"][queries]),
                                   jnp.asarray(predictions["image"])))
    ranks = hit_ranks(scores, hits[queries])
    return {"arithmetic_r1": float(np.mean(ranks <= 1)),
            "arithmetic_r5": float(np.mean(ranks <= 5))}

  def retrieval_arrays(params, source, key):
    del key  # deterministic
    records = stack_records(source, ("image", "tokens", "length", "labels", "boxes"),
                            count=config.eval.pool)
    out = jax.tree.map(np.asarray, predict_jit(params, records, None))
    scores = pool_scores(out)[:, :config.num_samples]  # images x the first queries
    top = np.argsort(-scores, axis=0, kind="stable")[:config.top_k].T  # [Q, k]
    tokens = records["tokens"]
    hits = np.all(tokens[top] == tokens[:config.num_samples, None], axis=-1)
    arrays = {"images": records["image"][top], "hits": hits,
              "tokens": tokens[:config.num_samples], "length": records["length"][:config.num_samples]}
    if not is_vse:
      n = config.num_samples
      arrays.update(image=records["image"][:n], boxes=out["boxes"][:n],
                    region_mask=out["region_mask"][:n], regions=out["aligned"][:n])
    return arrays

  def write_retrieval(arrays, directory, split, step):
    queries = vocabulary.decode(arrays["tokens"], arrays["length"])
    save_retrieval_figure(os.path.join(directory, f"retrieval_{split}_{step}.png"), queries,
                          arrays["images"], arrays["hits"])
    if "regions" in arrays:
      words = [caption.split() for caption in queries]
      save_region_alignment(os.path.join(directory, f"alignment_{split}_{step}.png"),
                            arrays["image"], arrays["boxes"], arrays["region_mask"], words,
                            arrays["regions"])

  def init_params(key):
    batch = jax.tree.map(lambda x: jnp.asarray(x)[None], example)
    if is_vse:
      return model.init(key, batch["image"], batch["tokens"], batch["length"])["params"]
    boxes, box_mask = region_boxes(batch, image_hw, grid)
    return model.init(key, batch["image"], boxes, box_mask, batch["tokens"],
                      batch["length"])["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
              optimizer=make_optimizer(config.train))
  evaluators = [evaluate.CorpusMetrics(name="retrieval", predict_fn=predict, score_fn=score,
                          batch_size=config.eval.batch_size)]
  figures = [evaluate.Figure(name="retrieval_figure", arrays_fn=retrieval_arrays,
                             write_fn=write_retrieval)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "retrieval.py"))
