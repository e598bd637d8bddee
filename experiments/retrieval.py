"""Joint image-text embeddings: VSE (Kiros et al. 2014) or DVSA (Karpathy & Fei-Fei 2015),
evaluated by bidirectional retrieval, on captioned digits or on a Karpathy-split corpus.

  python -m experiments.retrieval --workdir=DIR [--config.model=dvsa] ...

Real images (Flickr8k / Flickr30k / COCO with Karpathy's split JSON and the image folder):

  python -m experiments.retrieval --workdir=runs/f30k --config.data.source=karpathy \
      --config.data.karpathy_json=DIR/dataset_flickr30k.json \
      --config.data.image_dir=DIR/flickr30k-images --config.data.image_size=224 \
      --config.max_len=32 --config.vse.encoder.backbone=vgg19 --config.vse.pool=mean

(`--config.model=dvsa --config.dvsa.encoder.backbone=vgg16 --config.dvsa.crop_size=(224,224)`
for DVSA; COCO: `dataset_coco.json` with `--config.data.image_dir` the folder holding
`train2014/` and `val2014/`). The VGG backbones (`models.show_attend_tell.Encoder`) start
from random weights here and train from scratch with the rest; ImageNet weights, for users
who have torchvision's, convert with `models.vgg.vgg_params_from_torch` into
`params["image_encoder"]["vgg19"]` (VSE) / `params["encoder"]["vgg16"]` (DVSA), but this
script has no option to load them, so its numbers are not the papers' pretrained-CNN numbers.
Images are RGB in [0, 1] (no ImageNet normalisation).

Data (`load_datasets`): `config.data.source` a digit source (`data.captioned_digits`:
"train", "validation", "test", "novel" = held-out digit/position combinations) or
"karpathy" (`data.karpathy_split`: "train" = Karpathy's train + restval (COCO's 113,287
images; restval is empty elsewhere), "validation" = val, "test" = test; no "novel"). A
Karpathy record is an image with one of its captions, `data.captions_per_image` (5, Kiros
et al.'s and Karpathy & Fei-Fei's protocol) consecutive records per image, captions longer
than `max_len - 1` words truncated, the vocabulary the `data.vocab_size` most frequent words
of the training captions.

Trains `config.model` with the bidirectional hinge of `objectives.ranking` over the batch,
pairs of the same scene (the same caption, or on Karpathy data the same image) masked out of
the negatives: `vse` on the unit-vector scores `x . v` (margin `config.margin`, default 0.2
as Kiros et al.'s released trainer), `dvsa` on the region-word scores `S_kl = sum_t max_i
v_i . s_t` (margin 1, eq. 9) over the whole image, each digit's box (digits only: the
corpora have no detector boxes here, where Karpathy & Fei-Fei used 19 R-CNN detections) and
a `config.grid` of boxes.

Evaluates every split but train: retrieval both ways over pools of `eval.pool` images
(`metrics.retrieval.fold_retrieval`: the papers' 1,000-image protocol, averaged over the
split's folds, e.g. COCO's 5,000 test images as 5 folds): `i2t_r1` ... `t2i_median_rank`,
`num_images`. The image side holds each image once (records sharing an `image_id`, in order
of first appearance; a digit record is its own image), the sentence side every record, and a
sentence is a hit for an image when it was written for it or has exactly the words of one of
its captions (`retrieval_pool`). On digits, `dvsa` adds `alignment_accuracy`, the fraction of
digit words ("three") whose best-scoring region is the box of the digit they name (a region
counts as that box when their IoU is at least 0.5: a grid cell can hold the same digit crop),
and `mrf_alignment_accuracy`, the same for the chain MRF's alignment (`ops.chain_mrf`,
smoothness `config.beta`); `vse` adds `arithmetic_r1` / `arithmetic_r5`: for each one-digit
image, `image - "d" + "d+1"` (Kiros et al. Sec. 4's arithmetic) must retrieve an image
captioned with the same position and digit d+1. Data without digit labels skips these three.

Writes DIR/metrics.jsonl, DIR/vocabulary.json, DIR/checkpoints and
DIR/samples/retrieval_<split>_<step>.png (a caption of each of the first images as a text
query and its top images among the first `eval.pool` records' images; hits framed green)
and, for `dvsa`, DIR/samples/alignment_<split>_<step>.png (boxes and the words the MRF gives
them, in the box's colour).
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
from vislang_jax.data.karpathy_split import load_karpathy_split
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.sources import SOURCES
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
# `config.data.source`: the digit sources of `data.sources`, or Karpathy's split JSON.
DATA_SOURCES = SOURCES + ("karpathy",)
# The hinge's margin when `config.margin` is None: Kiros et al.'s trainer (margin=0.2) and
# Karpathy & Fei-Fei's eq. (9) (+1).
DEFAULT_MARGINS = {"vse": 0.2, "dvsa": 1.0}
# `embed_pairs`'s fields of the image side and of the sentence side.
_IMAGE_FIELDS = ("image", "regions", "region_mask")
_SENTENCE_FIELDS = ("sentence", "words", "word_mask")


def check_data_config(data: ml_collections.ConfigDict) -> None:
  """A ValueError naming the field for an unknown `data.source` or, for "karpathy", a
  `karpathy_json` that is not a file or an `image_dir` that is not a folder (before loading)."""
  check_choice("data.source", data.source, DATA_SOURCES)
  if data.source != "karpathy":
    return
  if not data.karpathy_json or not os.path.isfile(data.karpathy_json):
    raise ValueError(f"data.karpathy_json must be the path of Karpathy's split JSON "
                     f"(dataset_flickr30k.json, dataset_coco.json or dataset_flickr8k.json) "
                     f"for data.source='karpathy', got {data.karpathy_json!r}.")
  if not data.image_dir or not os.path.isdir(data.image_dir):
    raise ValueError(f"data.image_dir must be the folder of the JSON's images (Flickr: the "
                     f"jpgs; COCO: the folder holding train2014/ and val2014/) for "
                     f"data.source='karpathy', got {data.image_dir!r}.")


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """The encoded splits and the vocabulary of the training captions.

  Digit sources: `data.captions.build_encoded_captioned_digits`'s "train", "validation",
  "test" and "novel". "karpathy": Karpathy's "train+restval", "val" and "test" as "train",
  "validation" and "test" (`data.karpathy_split.load_karpathy_split`, `data.image_size`
  square RGB images, `data.captions_per_image` consecutive records per image), captions
  truncated to `max_len - 1` words, the vocabulary the `data.vocab_size` most frequent words
  of the training records' captions.
  """
  data = config.data
  check_data_config(data)
  if data.source != "karpathy":
    return build_encoded_captioned_digits(
        source=data.source, data_dir=data.dir or None, max_len=config.max_len,
        mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
        novel_size=data.novel_size)
  splits = {"train": "train+restval", "validation": "val", "test": "test"}  # restval may be empty
  raw = {name: load_karpathy_split(data.karpathy_json, data.image_dir, split=split,
                                   image_size=data.image_size,
                                   captions_per_image=data.captions_per_image)
         for name, split in splits.items()}
  # The training records' captions from the JSON, without decoding the images: record k of
  # an image holds its caption k % (its captions), as `data.captions.CocoCaptions` reads it.
  captions = [entry["sentences"][k % len(entry["sentences"])]["raw"]
              for entry in raw["train"].source.entries if entry["sentences"]
              for k in range(data.captions_per_image)]
  vocabulary = Vocabulary.build(captions, max_size=data.vocab_size)
  return {name: EncodedCaptions(source, vocabulary, max_len=config.max_len, truncate=True)
          for name, source in raw.items()}, vocabulary


def retrieval_pool(tokens: np.ndarray, image_ids: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The retrieval pool of a split's records: each image once, every record a sentence.

  Args:
    tokens: [S, T] int, each record's caption ids.
    image_ids: [S] int, each record's image (Karpathy / COCO records: an image's captions
      share its id); None: every record is its own image (captioned digits).

  Returns:
    ``(first [I], owner [S], hits [I, S])``: ``first[i]`` the first record of image ``i``
    (images in order of first appearance), ``owner[s]`` the image of record ``s``, and
    ``hits[i, s]`` True when record ``s`` is image ``i``'s or its ids equal those of a caption
    of image ``i`` (for digits: the records with identical captions; real captions compare
    after truncation and `<unk>`), the arguments of `metrics.retrieval.fold_retrieval`.
  """
  tokens = np.asarray(tokens)
  ids = np.arange(len(tokens)) if image_ids is None else np.asarray(image_ids)
  _, first, owner = np.unique(ids, return_index=True, return_inverse=True)
  order = np.argsort(first)  # unique ids sorted by value -> by first appearance
  row = np.empty_like(order)
  row[order] = np.arange(len(order))
  first, owner = first[order], row[owner.reshape(-1)]
  _, caption = np.unique(tokens, axis=0, return_inverse=True)
  caption = caption.reshape(-1)
  has_caption = np.zeros((len(first), caption.max() + 1), bool)  # [I, distinct captions]
  has_caption[owner, caption] = True
  return first, owner, has_caption[:, caption]


def same_caption(tokens_a: jax.Array, tokens_b: jax.Array) -> jax.Array:
  """[A, B] bool: True where caption ``a`` and caption ``b`` have exactly the same ids."""
  return jnp.all(tokens_a[:, None, :] == tokens_b[None, :, :], axis=-1)


def same_scene(batch: dict) -> jax.Array:
  """[B, B] bool: the pairs of a batch that describe one scene, masked out of the hinge's
  negatives: the same caption (`same_caption`), or the same "image_id" where the records
  carry one (an image's other captions are not negatives)."""
  same = same_caption(batch["tokens"], batch["tokens"])
  if "image_id" in batch:
    same = same | (batch["image_id"][:, None] == batch["image_id"][None, :])
  return same


def whole_box(image_hw: tuple[int, int]) -> jax.Array:
  """[4] float32: the whole image as a box (x0, y0, x1, y1) = (0, 0, W, H)."""
  height, width = image_hw
  return jnp.array([0.0, 0.0, width, height], jnp.float32)


def region_boxes(batch: dict, image_hw: tuple[int, int], grid: tuple[int, ...]
                 ) -> tuple[jax.Array, jax.Array]:
  """The proposals of each image: its digits' boxes, then the grid; (x0, y0, x1, y1) pixels.

  Args:
    batch: "boxes" [B, 2, 4] int (y0, x0, y1, x1), -1 for no digit; "labels" [B, 2]. A batch
      without them (real images: "image" [B, H, W, C]) has the grid only.
    image_hw: (H, W).
    grid: (rows, cols) of fixed cells, or () for none.

  Returns:
    ``(boxes [B, D + rows * cols, 4] float32, box_mask [B, D + rows * cols] bool)``, D = 2
    digit boxes (0 without them); a missing digit's box is replaced by the whole image and
    masked out.
  """
  if "boxes" in batch and "labels" in batch:
    present = batch["labels"] >= 0
    digits = yxyx_to_xyxy(jnp.asarray(batch["boxes"], jnp.float32))
    digits = jnp.where(present[..., None], digits, whole_box(image_hw))
  else:
    present = jnp.zeros((len(batch["image"]), 0), bool)
    digits = jnp.zeros((len(batch["image"]), 0, 4), jnp.float32)
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


def pool_scores(embedded: dict[str, np.ndarray], *, images: np.ndarray | None = None,
                sentences: np.ndarray | None = None, block: int = 50) -> np.ndarray:
  """`pair_scores` of the images of a pool against its sentences, `block` images at a time
  (bounding DVSA's [block, S, R, T] intermediate); NumPy [I, S].

  `images` / `sentences`: the records (rows of `embed_pairs`'s output) whose image side /
  sentence side to score, e.g. `retrieval_pool`'s first record of each image; None: all.
  """
  images = {k: v if images is None else v[images]
            for k, v in embedded.items() if k in _IMAGE_FIELDS}
  sentences = {k: v if sentences is None else v[sentences]
               for k, v in embedded.items() if k in _SENTENCE_FIELDS}
  count = len(next(iter(images.values())))
  return np.concatenate([
      np.asarray(_pair_scores({**{k: v[i:i + block] for k, v in images.items()}, **sentences}))
      for i in range(0, count, block)])


def digit_words(vocabulary: Vocabulary, *, max_len: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The digit names as one-word sentences and their ids, for the digit-only metrics.

  Returns:
    ``(tokens [10, max_len], lengths [10], ids [10], successor [V])``: ``successor`` maps a
    word id to itself and a digit's id to the next digit's (VSE's arithmetic).

  Raises:
    ValueError: naming a digit name the training captions never used.
  """
  tokens, lengths = vocabulary.encode(DIGIT_NAMES, max_len=max_len, strict=True)
  ids = tokens[:, 0]
  successor = np.arange(len(vocabulary))
  successor[ids] = np.roll(ids, -1)
  return tokens, lengths, ids, successor


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` (vse | dvsa); returns the final metrics per split."""
  check_choice("model", config.model, MODELS)
  if (config.model == "dvsa" and config.data.source == "karpathy" and not config.grid
      and not config.whole_image):
    raise ValueError(f"grid must name cells or whole_image be True for dvsa on "
                     f"data.source='karpathy' (no digit boxes: no region would be left), got "
                     f"grid={tuple(config.grid)} and whole_image={config.whole_image}.")
  workdir = check_workdir(workdir)
  datasets, vocabulary = load_datasets(config)
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]
  image_hw = tuple(example["image"].shape[:2])
  grid = tuple(config.grid)
  # Digit labels and boxes: the digit-only metrics (alignment to the digits' boxes, the
  # arithmetic over digit names); real images have neither.
  has_digits = "labels" in example and "boxes" in example
  if has_digits:
    digit_tokens, digit_lengths, digit_ids, successor = digit_words(vocabulary,
                                                                   max_len=config.max_len)
  margin = DEFAULT_MARGINS[config.model] if config.margin is None else config.margin
  is_vse = config.model == "vse"
  model = (vse.VSE(vocab_size=len(vocabulary), **config.vse) if is_vse
           else dvsa.DVSA(vocab_size=len(vocabulary), **config.dvsa))

  embed = functools.partial(embed_pairs, model, image_hw=image_hw, grid=grid,
                            whole_image=config.whole_image)

  def per_example(params, batch, key):
    del key  # no randomness in either model
    scores = pair_scores(embed(params, batch))
    same = same_scene(batch)
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
    if "image_id" in batch:
      out["image_id"] = batch["image_id"]
    if is_vse:
      if has_digits:
        # Kiros et al.'s arithmetic on each image's first digit d: image - "d" + "d+1".
        first = jnp.maximum(batch["labels"][:, 0], 0)
        names = model.apply({"params": params}, digit_tokens, digit_lengths,
                            method=model.embed_sentences)  # [10, K]
        out["arithmetic"] = vse.arithmetic_query(out["image"], names[first],
                                                 names[(first + 1) % 10])
      return out
    dots = dvsa.word_region_scores(out["regions"], out["words"],
                                   region_mask=out["region_mask"])  # [b, T, R]
    mrf, _ = align_words(dots, out["word_mask"], beta=config.beta)
    out["aligned"] = mrf
    if has_digits:
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
    return out

  predict_jit = jax.jit(predict)

  def score(predictions, source):
    del source
    first, owner, hits = retrieval_pool(predictions["tokens"], predictions.get("image_id"))
    metrics = fold_retrieval(pool_scores(predictions, images=first), hits, owner,
                             fold_size=config.eval.pool)
    if has_digits and is_vse:
      metrics.update(arithmetic_retrieval(predictions))
    elif has_digits:
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
    """The figures' arrays over the first `eval.pool` records: a caption of each of the first
    `num_samples` images as a text query, its `top_k` images of the pool (each image once)."""
    del key  # deterministic
    fields = ("image", "tokens", "length") + tuple(
        k for k in ("labels", "boxes", "image_id") if k in example)
    records = stack_records(source, fields, count=config.eval.pool)
    # Batches of eval.batch_size, the last one padded with copies of the last record: one
    # compiled shape for every split.
    step, count = config.eval.batch_size, len(records["tokens"])
    padded = {k: np.concatenate([v, np.repeat(v[-1:], -count % step, axis=0)])
              for k, v in records.items()}
    out = [jax.tree.map(np.asarray, predict_jit(
        params, {k: v[i:i + step] for k, v in padded.items()}, None))
           for i in range(0, count, step)]
    out = {k: np.concatenate([o[k] for o in out])[:count] for k in out[0]}
    first, _, hits = retrieval_pool(records["tokens"], records.get("image_id"))
    queries = first[:config.num_samples]  # records
    scores = pool_scores(out, images=first, sentences=queries)  # [I, Q]
    top = np.argsort(-scores, axis=0, kind="stable")[:config.top_k].T  # [Q, k] images
    arrays = {"images": records["image"][first[top]], "hits": hits[top, queries[:, None]],
              "tokens": records["tokens"][queries], "length": records["length"][queries]}
    if not is_vse:
      arrays.update(image=records["image"][queries], boxes=out["boxes"][queries],
                    region_mask=out["region_mask"][queries], regions=out["aligned"][queries])
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
