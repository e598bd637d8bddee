"""alignDRAW on captioned digits (Mansimov et al. 2016, "Generating images from captions").

  python -m experiments.align_draw --workdir=DIR [--config.variant=noalign|unconditional] ...

Trains `models.align_draw.AlignDRAW` on the captioned-digits dataset (`data.captioned_digits`:
one or two digits on a 60x60 canvas, captions naming each digit and its position) with the
negative variational bound of section 3.3 on dynamically binarized images, and evaluates the
validation (`eval`), `test` and held-out `novel` splits. Writes DIR/metrics.jsonl,
DIR/vocabulary.json, DIR/checkpoints, DIR/tensorboard, DIR/classifier.msgpack (the consistency
judge, trained once) and, after each evaluation, DIR/samples/captions_<split>_<step>.png (a
row of generated images per caption, the paper's Fig. 2-4: captions of the split, or the
held-out ones for `novel`, then "flipped" captions with one digit or one position changed)
and DIR/samples/alignment_<split>_<step>.png (the alignment alpha_t over the caption's words at
each step t, one heat map per caption, section 3.2).

Metrics beyond the bound, for the splits in `EXPENSIVE_SPLITS`:
  * `consistency`: one image is drawn per caption for the split's first
    `eval.consistency_samples` records; a small CNN trained on real training images reads its
    layout, first and second digit; the image counts when all three match the caption.
    `classifier_accuracy` is the same CNN on the split's real images of those records.
  * retrieval (the paper ranks images by the bound given a caption): for the split's first
    `eval.retrieval_pool` images and their captions, every (caption, image) pair is scored by
    -L (one posterior sample, the same noise for an image under every caption, images
    binarized once), images are ranked per caption: `r_at_1/5/10/50`, `median_rank`
    (`metrics.retrieval`, ties pessimistic). Two images of the same digits and layout share a
    caption, so R@1 < 1 even for a perfect model when the pool repeats a caption.
"""

import functools
import os

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vislang_jax import viz
from vislang_jax.data.captioned_digits import HELD_OUT, POSITIONS, caption
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import Vocabulary, tokenize
from vislang_jax.metrics.retrieval import median_rank, recall_at_k
from vislang_jax.models import align_draw
from vislang_jax.objectives.align_draw import align_draw_loss
from vislang_jax.train import cli
from vislang_jax.train.loop import Task, train_and_evaluate as run_task

EXPENSIVE_SPLITS = ("test", "novel")  # consistency and retrieval; figures for every split
RETRIEVAL_KS = (1, 5, 10, 50)
NO_DIGIT = 10  # the second-digit class of a one-digit image
_HALF = 16     # canvas rows/columns below this are "top"/"left" (patches start at 0..4 or 28..32)


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> align_draw.AlignDRAW:
  """The AlignDRAW of `config` for 60x60 grey images; ValueError for an unknown variant."""
  if config.variant not in align_draw.VARIANTS:
    raise ValueError(f"variant must be one of {align_draw.VARIANTS}; got {config.variant!r}.")
  return align_draw.AlignDRAW(
      height=60, width=60, vocab_size=vocab_size, channels=1, glimpses=config.glimpses,
      read_n=config.read_n, write_n=config.write_n, z_size=config.z_size,
      enc_size=config.enc_size, gen_size=config.gen_size, lang_size=config.lang_size,
      embed_size=config.embed_size, align_size=config.align_size, variant=config.variant)


def fixed_binarization(key: jax.Array, index: jax.Array, image: jax.Array) -> jax.Array:
  """Evaluation's binary image: Bernoulli(image) drawn from `fold_in(key, index)`.

  `index` [B] int record ids, `image` [B, H, W, C] in [0, 1] -> [B, H, W, C] {0., 1.}. A
  record gets the same bits in every batch, evaluation and process.
  """
  return jax.vmap(lambda i, x: jax.random.bernoulli(jax.random.fold_in(key, i), x))(
      index, image).astype(jnp.float32)


def fixed_noise(key: jax.Array, index: jax.Array, shape: tuple[int, int]) -> jax.Array:
  """Evaluation's posterior noise eps: [B] record ids -> [T, B, Z] from `fold_in(key, index)`."""
  eps = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(index)
  return jnp.swapaxes(eps, 0, 1)


SCENE_LAYOUTS = POSITIONS + ("left", "top")  # the judge's layout classes


def scene_of(layout: str, digits: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
  """The canonical caption of an image: "right" / "bottom" captions become "left" / "top".

  "the digit a is on the right of the digit b" and "the digit b is on the left of the digit
  a" describe the same image (the dataset draws both), so the judge reads scenes, not
  captions: `scene_of("right", (3, 5)) == ("left", (5, 3))`.
  """
  if layout in ("right", "bottom"):
    return {"right": "left", "bottom": "top"}[layout], (digits[1], digits[0])
  return layout, tuple(digits)


def scene_classes(labels: np.ndarray, boxes: np.ndarray, num_digits: np.ndarray) -> np.ndarray:
  """The judge's targets from the digits' boxes (not the caption's words).

  Args:
    labels: [N, 2] int digits (-1 padded); boxes: [N, 2, 4] (y0, x0, y1, x1) of the
      28x28 patches; num_digits: [N] int, 1 or 2.

  Returns:
    [N, 3] int: the SCENE_LAYOUTS id; the digit of the single digit, or of the left / upper
    one; the right / lower one's digit, or NO_DIGIT.
  """
  out = np.zeros((len(labels), 3), np.int32)
  for n in range(len(labels)):
    (ya, xa), (yb, xb) = boxes[n, 0, :2], boxes[n, 1, :2]
    a, b = int(labels[n, 0]), int(labels[n, 1])
    if num_digits[n] == 1:
      layout = f"{'top' if ya < _HALF else 'bottom'} {'left' if xa < _HALF else 'right'}"
      out[n] = (SCENE_LAYOUTS.index(layout), a, NO_DIGIT)
    elif abs(int(xa) - int(xb)) > abs(int(ya) - int(yb)):  # side by side
      out[n] = (SCENE_LAYOUTS.index("left"),) + ((a, b) if xa < xb else (b, a))
    else:  # one above the other
      out[n] = (SCENE_LAYOUTS.index("top"),) + ((a, b) if ya < yb else (b, a))
  return out


def caption_of(classes: np.ndarray) -> str:
  """[3] targets of `scene_classes` -> the canonical caption of that scene."""
  layout = SCENE_LAYOUTS[int(classes[0])]
  digits = (int(classes[1]),) if layout in POSITIONS else (int(classes[1]), int(classes[2]))
  return caption(layout, digits)


WINDOW = 32  # a 28x28 digit patch of a scene always lies in its 32x32 window below
# (row, column) of each digit's window, per SCENE_LAYOUTS entry and caption slot (the patch
# offsets of `data.captioned_digits`: 0..4 or 28..32 near the edges, 16..18 in the middle).
_WINDOWS = np.array([[[0, 0]] * 2, [[0, 28]] * 2, [[28, 0]] * 2, [[28, 28]] * 2,
                     [[14, 0], [14, 28]], [[0, 14], [28, 14]]], np.int32)  # [6, 2, 2]


class SmallCNN(nn.Module):
  """Stride-2 3x3 convolutions, a hidden layer and `num_classes` logits."""

  widths: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, num_classes]."""
    h = images
    for width in self.widths:
      h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(h))
    h = nn.relu(nn.Dense(128)(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.num_classes)(h)


class SceneJudge(nn.Module):
  """The consistency judge: the scene's layout from the whole image, then each digit from
  its window (`_WINDOWS`) of that layout, with one digit classifier for every window.

  Reading digits from crops makes the digit classifier blind to where the digit is, so a
  held-out (digit, position) combination is no harder for it than a seen one.
  """

  widths: tuple[int, ...] = (16, 32, 32)

  def setup(self):
    self.layout_net = SmallCNN(self.widths, len(SCENE_LAYOUTS))
    self.digit_net = SmallCNN(self.widths, 10)

  def __call__(self, images: jax.Array, layouts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images [B, 60, 60, 1], layouts [B] SCENE_LAYOUTS ids whose windows to read ->
    (layout logits [B, 6], digit logits [B, 2, 10] of the two caption slots)."""
    return self.layout_logits(images), self.digit_logits(images, layouts)

  def layout_logits(self, images: jax.Array) -> jax.Array:
    return self.layout_net(images)

  def digit_logits(self, images: jax.Array, layouts: jax.Array) -> jax.Array:
    windows = jnp.asarray(_WINDOWS)[layouts]  # [B, 2, 2]
    crop = lambda image, rc: jax.lax.dynamic_slice(
        image, (rc[0], rc[1], 0), (WINDOW, WINDOW, image.shape[-1]))
    crops = jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(images, windows)  # [B, 2, 32, 32, C]
    logits = self.digit_net(crops.reshape((-1,) + crops.shape[2:]))
    return logits.reshape(crops.shape[:2] + (10,))


def classifier_predict(judge: SceneJudge, params, images: jax.Array) -> jax.Array:
  """[B, 60, 60, 1] -> [B, 3] predicted `scene_classes` (layout, first, second digit)."""
  variables = {"params": params}
  layouts = jnp.argmax(judge.apply(variables, images, method=SceneJudge.layout_logits), -1)
  digits = jnp.argmax(judge.apply(variables, images, layouts, method=SceneJudge.digit_logits),
                      -1)
  second = jnp.where(layouts < len(POSITIONS), NO_DIGIT, digits[:, 1])
  return jnp.stack([layouts, digits[:, 0], second], axis=-1)


def train_classifier(judge: SceneJudge, images: np.ndarray, classes: np.ndarray, *,
                     config: ml_collections.ConfigDict, seed: int):
  """Trains the judge with Adam on real images [N, 60, 60, 1] and `scene_classes` [N, 3].

  The loss is the layout's cross-entropy plus the mean cross-entropy of the digits in their
  true layout's windows (a one-digit scene's second slot is not scored). Returns params.
  """
  tx = optax.adam(config.learning_rate)
  key = jax.random.PRNGKey(seed)
  params = judge.init(key, jnp.zeros((1,) + images.shape[1:]), jnp.zeros((1,), jnp.int32)
                      )["params"]
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      layout_logits, digit_logits = judge.apply({"params": p}, x, y[:, 0])
      digits = jnp.where(y[:, 1:] == NO_DIGIT, 0, y[:, 1:])
      scored = (y[:, 1:] != NO_DIGIT).astype(jnp.float32)
      digit_ce = optax.softmax_cross_entropy_with_integer_labels(digit_logits, digits)
      return (optax.softmax_cross_entropy_with_integer_labels(layout_logits, y[:, 0]).mean()
              + jnp.sum(digit_ce * scored) / jnp.sum(scored))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for _ in range(config.num_steps):
    idx = rng.integers(0, len(images), config.batch_size)
    params, opt_state, _ = step(params, opt_state, images[idx], classes[idx])
  return params


_RECORD_KEYS = ("image", "tokens", "length", "index", "labels", "boxes", "num_digits")


def load_or_train_classifier(classifier: SceneJudge, train: EncodedCaptions,
                             config: ml_collections.ConfigDict, workdir: str):
  """The judge's params from DIR/classifier.msgpack, or trained on `train` and saved there."""
  template = classifier.init(jax.random.PRNGKey(0), jnp.zeros((1, 60, 60, 1)),
                             jnp.zeros((1,), jnp.int32))["params"]
  path = os.path.join(workdir, "classifier.msgpack")
  if os.path.exists(path):
    with open(path, "rb") as f:
      return flax.serialization.from_bytes(template, f.read())
  arrays = stack_records(train, ("image", "labels", "boxes", "num_digits"))
  params = train_classifier(classifier, arrays["image"],
                            scene_classes(arrays["labels"], arrays["boxes"], arrays["num_digits"]),
                            config=config.classifier, seed=config.seed)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "wb") as f:
      f.write(flax.serialization.to_bytes(params))
  return params


def figure_captions(split: str, classes: np.ndarray, count: int) -> list[str]:
  """The captions drawn in the figures of `split`.

  `novel`: every held-out combination. Otherwise the first `count` records' captions, then
  the paper's flips of the first: its first digit changed (d -> d + 1 mod 10), and its
  position changed (the next corner, or "left" <-> "top").
  """
  if split == "novel":
    return [caption(layout, digits) for layout, digits in sorted(HELD_OUT)]
  shown = [caption_of(c) for c in classes[:count]]
  base = classes[0]
  digit_flip = base.copy()
  digit_flip[1] = (base[1] + 1) % 10
  layout = SCENE_LAYOUTS[int(base[0])]
  group = POSITIONS if layout in POSITIONS else SCENE_LAYOUTS[len(POSITIONS):]
  layout_flip = base.copy()
  layout_flip[0] = SCENE_LAYOUTS.index(group[(group.index(layout) + 1) % len(group)])
  return shown + [caption_of(digit_flip), caption_of(layout_flip)]


def save_captions_figure(path: str, captions: list[str], images: np.ndarray) -> None:
  """A row per caption: the caption above its generated images [S, K, H, W] in [0, 1]."""
  rows = len(captions)
  fig, axes = plt.subplots(rows, 1, figsize=(1.0 * images.shape[1] + 0.5, 1.25 * rows),
                           squeeze=False)
  for r, text in enumerate(captions):
    ax = axes[r, 0]
    ax.imshow(viz.image_grid(images[r][None]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(text, fontsize=7)
    ax.axis("off")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def save_alignment_figure(path: str, captions: list[str], alignment: np.ndarray) -> None:
  """One heat map per caption: alignment [S, T, Ty] over its words (with <eos>) x steps."""
  fig, axes = plt.subplots(1, len(captions), figsize=(2.6 * len(captions), 3.0), squeeze=False)
  for s, text in enumerate(captions):
    words = tokenize(text) + ["<eos>"]
    ax = axes[0, s]
    ax.imshow(alignment[s, :, :len(words)], cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=7)
    ax.set_ylabel("step t", fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def make_pair_scorer(model: align_draw.AlignDRAW, *, chunk: int):
  """`scores(params, x [P,H,W,1], noise [T,P,Z], tokens [Q,Ty], lengths [Q]) -> [Q, P]`.

  Entry (q, p) is -L of image p under caption q (higher is better), with image p's noise for
  every caption. The Q P pairs go through one jitted function `chunk` pairs at a time.
  """

  @jax.jit
  def pair_bounds(params, x, noise, tokens, lengths, query, image):
    captions = {"tokens": tokens[query], "length": lengths[query]}
    return -_bound(model, params, x[image], captions, noise=noise[:, image])[0]

  def scores(params, x, noise, tokens, lengths):
    num_queries, pool = len(tokens), len(x)
    pairs = np.arange(num_queries * pool)
    pairs = np.concatenate([pairs, np.zeros(-len(pairs) % chunk, pairs.dtype)])
    out = [pair_bounds(params, x, noise, tokens, lengths, pairs[i:i + chunk] // pool,
                       pairs[i:i + chunk] % pool) for i in range(0, len(pairs), chunk)]
    return np.concatenate([np.asarray(o) for o in out])[:num_queries * pool].reshape(
        num_queries, pool)

  return scores


def make_evaluator(model: align_draw.AlignDRAW, datasets: dict[str, EncodedCaptions],
                   vocabulary: Vocabulary, config: ml_collections.ConfigDict, workdir: str,
                   *, binarize_key: jax.Array, noise_key: jax.Array):
  """`on_eval(state, split)`: figures for every split; consistency and retrieval metrics."""
  classifier = SceneJudge(widths=tuple(config.classifier.widths))
  classifier_params = load_or_train_classifier(classifier, datasets["train"], config, workdir)
  predict = jax.jit(functools.partial(classifier_predict, classifier))
  score_pairs = make_pair_scorer(model, chunk=config.eval.retrieval_chunk)
  sample_key = jax.random.PRNGKey(config.seed + 1)
  latent = (config.glimpses, config.z_size)
  eval_cfg = config.eval
  cache = {}

  def split_arrays(name):
    if name not in cache:
      count = max(eval_cfg.consistency_samples, eval_cfg.retrieval_pool,
                  eval_cfg.figure_captions)
      arrays = stack_records(datasets[name], _RECORD_KEYS, count=count)
      arrays["classes"] = scene_classes(arrays["labels"], arrays["boxes"], arrays["num_digits"])
      cache[name] = arrays
    return cache[name]

  def figures(params, split, arrays, step):
    captions = figure_captions(split, arrays["classes"], eval_cfg.figure_captions)
    k = config.num_samples
    repeated = [c for c in captions for _ in range(k)]
    canvases, aux = align_draw.generate_from_captions(
        model, params, sample_key, repeated, vocabulary, max_len=config.max_len)
    images = np.asarray(jax.nn.sigmoid(canvases[-1])).reshape(
        (len(captions), k) + canvases.shape[2:])
    samples = os.path.join(workdir, "samples")
    save_captions_figure(os.path.join(samples, f"captions_{split}_{step}.png"), captions,
                         images)
    if "alignment" in aux:  # not for the unconditional variant
      alignment = np.swapaxes(np.asarray(aux["alignment"]), 0, 1)[::k]  # [S, T, Ty]
      save_alignment_figure(os.path.join(samples, f"alignment_{split}_{step}.png"),
                            captions, alignment)

  def consistency(params, arrays):
    n = min(eval_cfg.consistency_samples, len(arrays["tokens"]))
    canvases, _ = align_draw.generate(model, params, sample_key, jnp.asarray(arrays["tokens"][:n]),
                                      jnp.asarray(arrays["length"][:n]))
    generated = jax.nn.sigmoid(canvases[-1])[..., None]  # [n, H, W, 1]
    targets = arrays["classes"][:n]
    drawn = np.asarray(predict(classifier_params, generated))
    real = np.asarray(predict(classifier_params, jnp.asarray(arrays["image"][:n])))
    return {"consistency": float(np.mean(np.all(drawn == targets, axis=1))),
            "classifier_accuracy": float(np.mean(np.all(real == targets, axis=1)))}

  def retrieval(params, arrays):
    n = min(eval_cfg.retrieval_pool, len(arrays["tokens"]))
    index = jnp.asarray(arrays["index"][:n])
    x = fixed_binarization(binarize_key, index, jnp.asarray(arrays["image"][:n]))
    noise = fixed_noise(noise_key, index, latent)
    scores = score_pairs(params, x, noise, jnp.asarray(arrays["tokens"][:n]),
                         jnp.asarray(arrays["length"][:n]))
    targets = np.arange(n)
    return {**recall_at_k(scores, targets, ks=RETRIEVAL_KS),
            "median_rank": median_rank(scores, targets)}

  def on_eval(state, split):
    arrays = split_arrays("validation" if split == "eval" else split)
    figures(state.params, split, arrays, int(state.step))
    if split not in EXPENSIVE_SPLITS:
      return {}
    return {**consistency(state.params, arrays), **retrieval(state.params, arrays)}

  return on_eval


def init_params(model: align_draw.AlignDRAW, key: jax.Array, *, max_len: int):
  """The model's params, initialised on one blank image and a one-word caption of Ty = max_len."""
  params_key, sample_key = jax.random.split(key)
  x = jnp.zeros((1, model.height, model.width, model.channels))
  tokens = jnp.zeros((1, max_len), jnp.int32)
  return model.init({"params": params_key, "sample": sample_key}, x, tokens,
                    jnp.ones((1,), jnp.int32))["params"]


def eval_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(binarize_key, noise_key) of every evaluation: fixed, so evaluations are comparable."""
  return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1)))


def _bound(model: align_draw.AlignDRAW, params, x: jax.Array, batch: dict, *,
           noise: jax.Array | None = None, key: jax.Array | None = None):
  """(-L [B], {"recon_nats", "kl_nats"} [B]) of binary images x [B, H, W, 1] and captions."""
  logits, aux = model.apply({"params": params}, x, batch["tokens"], batch["length"],
                            noise=noise, rngs=None if key is None else {"sample": key})
  return align_draw_loss(logits, x, aux["q_mu"], aux["q_logsigma"], aux["p_mu"],
                         aux["p_logsigma"])


def make_loss_fn(model: align_draw.AlignDRAW):
  """`loss_fn(params, batch, key) -> (mean L, metrics)` on freshly binarized images.

  `key` is split in two: one half binarizes `batch["image"]` [B, H, W, 1] in [0, 1]
  (dynamic binarization), the other draws the posterior samples.
  """

  def loss_fn(params, batch, key):
    binarize_key, sample_key = jax.random.split(key)
    x = jax.random.bernoulli(binarize_key, batch["image"]).astype(jnp.float32)
    loss, parts = _bound(model, params, x, batch, key=sample_key)
    return jnp.mean(loss), {name: jnp.mean(value) for name, value in parts.items()}

  return loss_fn


def make_metric_fn(model: align_draw.AlignDRAW, *, binarize_key: jax.Array,
                   noise_key: jax.Array):
  """`metric_fn(params, batch) -> {nll_bound_nats, recon_nats, kl_nats}`, each [B].

  One posterior sample and one binarization per record, both keyed by its `index`: the
  same numbers in every evaluation of the same params, whatever the batching.
  """
  latent = (model.glimpses, model.z_size)

  def metric_fn(params, batch):
    x = fixed_binarization(binarize_key, batch["index"], batch["image"])
    loss, parts = _bound(model, params, x, batch,
                         noise=fixed_noise(noise_key, batch["index"], latent))
    return {"nll_bound_nats": loss, **parts}

  return metric_fn


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, float]:
  """Trains alignDRAW (`config.variant`) on captioned digits; returns the test metrics."""
  data = config.data
  datasets, vocabulary = build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir or None,
      max_len=config.max_len, mnist_dir=data.mnist_dir or None, seed=config.seed,
      copies=data.copies, novel_size=data.novel_size)
  model = make_model(config, len(vocabulary))
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  binarize_key, noise_key = eval_keys(config.seed)
  task = Task(init_params=functools.partial(init_params, model, max_len=config.max_len),
              loss_fn=make_loss_fn(model),
              metric_fn=make_metric_fn(model, binarize_key=binarize_key, noise_key=noise_key),
              optimizer=optax.adam(config.train.learning_rate),
              on_eval=make_evaluator(model, datasets, vocabulary, config, workdir,
                                     binarize_key=binarize_key, noise_key=noise_key))
  return run_task(config, workdir, task, datasets)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "align_draw.py"))
