"""Show, Attend and Tell on captioned digits (Xu et al. 2015, soft and hard attention).

  python -m experiments.show_attend_tell --workdir=DIR [--config.attention=hard] ...

Trains on the captioned-digits dataset (`data.captioned_digits`, Mansimov et al. 2016:
one or two digits on a 60x60 canvas, captions naming each digit and its position) and
evaluates the validation (`eval`), `test` and held-out `novel` splits. Writes
DIR/metrics.jsonl, DIR/vocabulary.json (the word ids the checkpoints were trained with),
DIR/checkpoints, DIR/tensorboard and DIR/samples/attention_<split>_<step>.png: each
image, then one attention heat map per generated word, the word above it.
"""

import functools
import os

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vislang_jax import decoding
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.captions import EncodedCaptions, build_encoded_captioned_digits, references
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models.show_attend_tell import ATTENTIONS, Decoder, Encoder, ShowAttendTell
from vislang_jax.objectives.captioning import caption_nll, hard_attention_loss, soft_attention_loss
from vislang_jax.train import cli
from vislang_jax.train.loop import Task, train_and_evaluate as run_task


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, EncodedCaptions], Vocabulary]:
  """The encoded captioned-digit splits and the vocabulary of the training captions."""
  data = config.data
  return build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir or None,
      max_len=config.max_len, mnist_dir=data.mnist_dir or None, seed=config.seed,
      copies=data.copies, novel_size=data.novel_size)


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> ShowAttendTell:
  if config.attention not in ATTENTIONS:
    raise ValueError(f"attention must be one of {ATTENTIONS}; got {config.attention!r}.")
  return ShowAttendTell(
      encoder=Encoder(widths=tuple(config.encoder_widths)),
      decoder=Decoder(vocab_size=vocab_size, embed_dim=config.embed_dim,
                      hidden_size=config.hidden_size, attention_dim=config.attention_dim,
                      dropout_rate=config.dropout,
                      expectation_prob=config.expectation_prob))


def teacher_inputs(tokens: jax.Array) -> jax.Array:
  """Targets [B, T] -> decoder inputs [B, T]: `<bos>`, then the targets shifted right."""
  return jnp.concatenate([jnp.full_like(tokens[:, :1], BOS_ID), tokens[:, :-1]], axis=1)


def token_mask(tokens: jax.Array, length: jax.Array) -> jax.Array:
  """[B, T] float, 1 on the caption's ids up to and including `<eos>`."""
  return (jnp.arange(tokens.shape[1]) < length[:, None]).astype(jnp.float32)


def attention_in_box(alpha: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
                     labels: np.ndarray, boxes: np.ndarray, *, vocabulary: Vocabulary,
                     image_hw: tuple[int, int]) -> tuple[list[float], list[float]]:
  """Attention mass inside the named digit's box, for every generated digit word.

  Args:
    alpha: [N, T, L] attention of the step that emitted each token (L = h w, row-major).
    tokens: [N, T] generated ids; lengths: [N] ids up to and including `<eos>`.
    labels: [N, 2] digits of each image (-1 padded); boxes: [N, 2, 4] (y0, x0, y1, x1).
    vocabulary: maps digit names to ids.
    image_hw: the image size; annotation cell (r, c) covers the pixels
      [r s, (r+1) s) x [c s, (c+1) s), s = H // h, the encoder's total stride.

  Returns:
    (mass, share): per generated digit word that names a digit of the image, the attention
    mass in that digit's box, and the box's share of the covered image (uniform attention).
  """
  n_cells = alpha.shape[-1]
  grid = int(round(np.sqrt(n_cells)))
  stride = image_hw[0] // grid
  edges = np.arange(grid + 1) * stride

  def cover(lo, hi):  # [grid], the fraction of each cell row/column inside [lo, hi)
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) / stride

  digit_of = {vocabulary.token_id(name): d for d, name in enumerate(DIGIT_NAMES)
              if name in vocabulary.tokens}
  mass, share = [], []
  for n in range(len(tokens)):
    for t in range(int(lengths[n])):
      digit = digit_of.get(int(tokens[n, t]))
      if digit is None or digit not in labels[n]:
        continue
      y0, x0, y1, x1 = boxes[n, list(labels[n]).index(digit)]
      inside = np.outer(cover(y0, y1), cover(x0, x1))
      mass.append(float(np.sum(alpha[n, t].reshape(grid, grid) * inside)))
      share.append(float(inside.sum() / n_cells))
  return mass, share


def save_attention_figure(path: str, images: np.ndarray, words: list[list[str]],
                          alpha: np.ndarray) -> None:
  """A row per image: the image, then its attention [T, L] upsampled under each word.

  One colour scale per row (0 to the row's largest weight), so rows compare across words.
  """
  rows, cols = len(images), 1 + max(len(w) for w in words)
  hw = images.shape[1:3]
  grid = int(round(np.sqrt(alpha.shape[-1])))
  stride = hw[0] // grid
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows), squeeze=False)
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      ax.axis("off")
      if c > len(words[r]):
        continue
      ax.imshow(images[r, ..., 0], cmap="gray", vmin=0, vmax=1)
      if c == 0:
        continue
      heat = np.kron(alpha[r, c - 1].reshape(grid, grid), np.ones((stride, stride)))
      ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=alpha[r].max(),
                extent=(-0.5, grid * stride - 0.5, grid * stride - 0.5, -0.5))
      ax.set_xlim(-0.5, hw[1] - 0.5)
      ax.set_ylim(hw[0] - 0.5, -0.5)
      ax.set_title(words[r][c - 1], fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def make_evaluator(model: ShowAttendTell, datasets: dict[str, EncodedCaptions],
                   vocabulary: Vocabulary, config: ml_collections.ConfigDict, workdir: str):
  """`on_eval(state, split) -> {bleu1..4, rouge_l, cider, attention_in_box, box_share}`."""
  batch = config.eval.batch_size

  @jax.jit
  def decode(params, images):
    out = decoding.beam_search(
        functools.partial(model.decode_step, params), model.init_decode_state(params, images),
        bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len, beam_size=config.eval.beam_size)
    return out.tokens[:, 0], out.lengths[:, 0], out.extras["alpha"][:, 0]

  cache = {}

  def split_arrays(name):
    if name not in cache:
      source = datasets[name]
      cache[name] = (stack_records(source, ("image", "labels", "boxes")),
                     references(source))
    return cache[name]

  def on_eval(state, split):
    arrays, refs = split_arrays("validation" if split == "eval" else split)
    images = arrays["image"]
    size = len(images)
    padded = np.concatenate([images, np.zeros((-size % batch,) + images.shape[1:],
                                              images.dtype)])
    outs = [decode(state.params, padded[i:i + batch]) for i in range(0, len(padded), batch)]
    tokens, lengths, alpha = (np.concatenate([np.asarray(o[k]) for o in outs])[:size]
                              for k in range(3))
    hypotheses = dict(enumerate(vocabulary.decode(tokens, lengths)))
    metrics = caption_metrics(refs, hypotheses, meteor=config.eval.meteor)
    mass, share = attention_in_box(alpha, tokens, lengths, arrays["labels"], arrays["boxes"],
                                   vocabulary=vocabulary, image_hw=images.shape[1:3])
    metrics["attention_in_box"] = float(np.mean(mass)) if mass else float("nan")
    metrics["box_share"] = float(np.mean(share)) if share else float("nan")
    shown = range(config.num_samples)
    words = [hypotheses[i].split() + ["<eos>"] for i in shown]
    save_attention_figure(
        os.path.join(workdir, "samples", f"attention_{split}_{int(state.step)}.png"),
        images[:config.num_samples], words, alpha[:config.num_samples])
    return metrics

  return on_eval


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, float]:
  """Trains the captioner with `config.attention`; returns the test metrics."""
  datasets, vocabulary = load_datasets(config)
  model = make_model(config, len(vocabulary))
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  hard = config.attention == "hard"
  example = datasets["train"][0]

  def apply(params, batch, key, *, deterministic, attention):
    dropout_key, sample_key = jax.random.split(key)
    return model.apply({"params": params}, batch["image"], teacher_inputs(batch["tokens"]),
                       deterministic=deterministic, attention=attention,
                       rngs={"dropout": dropout_key, "sample": sample_key})

  def soft_loss(params, batch, key):
    logits, aux = apply(params, batch, key, deterministic=False, attention="soft")
    loss, m = soft_attention_loss(logits, batch["tokens"],
                                  token_mask(batch["tokens"], batch["length"]),
                                  aux["alpha"], penalty=config.penalty)
    return loss.mean(), {"nll_per_token": m["nll_per_token"].mean(),
                         "attention_penalty": m["attention_penalty"].mean()}

  def hard_loss(params, batch, key, baseline):
    logits, aux = apply(params, batch, key, deterministic=False, attention="hard")
    loss, m, baseline = hard_attention_loss(
        logits, batch["tokens"], token_mask(batch["tokens"], batch["length"]),
        aux["log_prob_locations"], aux["entropy"], baseline,
        entropy_weight=config.entropy_weight, sampled=aux["sampled"])
    return loss.mean(), ({"nll_per_token": m["nll_per_token"].mean(),
                          "entropy": m["entropy"].mean(), "baseline": baseline}, baseline)

  def metric_fn(params, batch):
    # Teacher-forced, soft context (the expectation of a hard model's context).
    logits, _ = apply(params, batch, jax.random.PRNGKey(0), deterministic=True,
                      attention="soft")
    mask = token_mask(batch["tokens"], batch["length"])
    nll, count = caption_nll(logits, batch["tokens"], mask)  # count: 0 only on eval padding
    correct = (jnp.argmax(logits, -1) == batch["tokens"]).astype(jnp.float32)
    return {"nll_per_token": nll / count, "token_accuracy": (correct * mask).sum(1) / count}

  def init_params(key):
    images = jnp.zeros((1,) + example["image"].shape)
    tokens = jnp.zeros((1, config.max_len), jnp.int32)
    return model.init({"params": key, "dropout": key, "sample": key}, images, tokens,
                      deterministic=True, attention=config.attention)["params"]

  task = Task(init_params=init_params, loss_fn=hard_loss if hard else soft_loss,
              metric_fn=metric_fn, optimizer=optax.adam(config.train.learning_rate),
              on_eval=make_evaluator(model, datasets, vocabulary, config, workdir),
              init_extra=(lambda: jnp.zeros((), jnp.float32)) if hard else None)
  return run_task(config, workdir, task, datasets)


if __name__ == "__main__":
  cli.run(train_and_evaluate,
          os.path.join(os.path.dirname(__file__), "configs", "show_attend_tell.py"))
