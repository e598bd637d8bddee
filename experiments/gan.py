"""Adversarial image generation: DCGAN, the text-to-image GAN-CLS / GAN-INT / GAN-INT-CLS of
Reed et al. 2016 with the style encoder, LAPGAN (Denton et al. 2015) and GRAN (Im et al.
2016), on one two-player harness (`train.adversarial`).

  python -m experiments.gan --workdir=DIR [--config.model=dcgan|gan_cls|gan_int|gan_int_cls|lapgan|gran]

Data: `dcgan`, `lapgan` and `gran` learn the 28x28 digits of `config.data.source` (splits
train / validation / test); the text-conditional models learn the 60x60 captioned digits
(`data.captioned_digits`, splits train / validation / test / novel = held-out digit/layout
combinations), conditioned on `phi(t)`, a sentence encoder trained first on the same
captions (`models.vse.VSE`'s sentence side, with the bidirectional ranking loss; cached in
`<data dir>/text_encoders/`) and frozen while the GAN trains.

Players (`train.adversarial.Player`; `TrainState.params` holds each one's Flax variables, batch
statistics included): "discriminator" (`gan.discriminator_steps` = k updates per step, each
on its own chunk of the batch), "generator", and for the text models with `gan.style_encoder`
the style encoder "style" (Reed et al. Sec. 4.4, `|| z - S(G(z, phi(t))) ||^2` on the
generator's samples, the generator held fixed).

  * `dcgan`, `gran`: D(x) against D(G(z)); `gran`'s D is DCGAN's (Im et al. Sec. 4).
  * `gan_cls`: the matching-aware D (Alg. 1): real image + right text, real image + wrong text
    (the batch's texts rolled by one; a rolled caption equal to the right one is rare here
    and not masked), fake image + right text.
  * `gan_int`: D(x, t) against D(G(z, t), t); G's loss adds the term of interpolated
    embeddings `t_int = beta t + (1 - beta) t'` (t' the rolled texts), D(G(z', t_int), t_int),
    weighted `gan.interpolation_weight`; D never sees `t_int` (as reedscot/icml2016).
  * `gan_int_cls`: both.
  * `lapgan`: every level's G_k and D_k on the real Laplacian pyramid (Sec. 3.2), the
    levels' losses summed (their players share no parameters, so this trains each level
    independently, as the paper), class-conditional with `lapgan.num_classes`.
The generator minimises the non-saturating loss (`gan.loss`, "minimax" for the saturating
one).

Evaluators (`metrics.generation`, the same for every generator of the library):
  * `sample_quality` on every split but train: one sample per record of the split's first
    `eval.count` records (conditioned on its caption or label), the generator in evaluation
    mode: `frechet_distance` between the real and generated records in the feature space of
    a classifier trained once on the real training images and cached (digits: a
    `judge.ConvNet`'s penultimate layer; canvases: the scene judge's `features`),
    `classifier_score` (the inception score's analogue with that classifier; canvases: the
    judge's first digit) and `classifier_score_real`, the same on the real records (the
    ceiling); text models also `consistency`: the fraction of generated canvases whose layout
    and digits the judge reads as the caption's, `classifier_accuracy` its reading of the
    real ones.
  * `two_sample` on test at the end: `two_sample_accuracy`, a fresh classifier's held-out
    accuracy at telling the split's real images from generated ones (0.5: it cannot;
    LAPGAN's human "fooled" rate's analogue).
Figures (samples/): `samples_<split>_<step>.png` (a grid of `eval.grid_samples` from fixed
noise; text models: a row of `num_samples` per caption), text models `interpolation_*` (rows between two captions with one noise)
and `style_*` (a real image's style from S onto the captions' content), `pyramid_*` (LAPGAN's
coarse-to-fine levels), `canvas_*` (GRAN's canvas at every step).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import align_draw, sample_quality
from experiments.retrieval import same_caption
from vislang_jax.checks import check_choice, check_float, check_int
from vislang_jax.data import builders, digit_scenes
from vislang_jax.data.captions import build_encoded_captioned_digits
from vislang_jax.data.pipeline import ImageToFloat, stack_records
from vislang_jax.metrics import judge as judges
from vislang_jax.models import dcgan, gran, lapgan, vse
from vislang_jax.objectives import gan as losses
from vislang_jax.objectives.ranking import ranking_loss
from vislang_jax.train import cli, evaluate
from vislang_jax.train.adversarial import Player, alternating_update, apply_player
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.viz import captions as captions_figure
from vislang_jax.viz import gan as gan_figures
from vislang_jax.viz import grid

MODELS = ("dcgan", "gan_cls", "gan_int", "gan_int_cls", "lapgan", "gran")
TEXT_MODELS = ("gan_cls", "gan_int", "gan_int_cls")
LOSSES = ("non_saturating", "minimax")
DIGIT_SHAPE = (28, 28, 1)
CANVAS_SHAPE = (60, 60, 1)


@dataclasses.dataclass(frozen=True)
class Game:
  """The experiment's networks and how its generator draws.

  Attributes:
    model: `config.model`.
    generator, discriminator: the two players' modules; `style`: S or None.
    z_shape: the noise of one record (`[Z]`, or `[T, Z]` for GRAN's fresh noise); None for
      LAPGAN, which draws its own from the "noise" rng.
    phi: tokens [B, T], lengths [B] -> [B, K] frozen text embeddings (text models), else None.
  """

  model: str
  generator: nn.Module
  discriminator: nn.Module
  style: nn.Module | None
  z_shape: tuple[int, ...] | None
  phi: Callable[[jax.Array, jax.Array], jax.Array] | None

  @property
  def text(self) -> bool:
    return self.model in TEXT_MODELS

  def noise(self, key: jax.Array, batch: int) -> jax.Array | None:
    """z [B, Z] (GRAN fresh: [T, B, Z]), standard normal."""
    if self.z_shape is None:
      return None
    z = jax.random.normal(key, (batch,) + self.z_shape)
    return jnp.moveaxis(z, 1, 0) if len(self.z_shape) == 2 else z

  def cond(self, batch: dict) -> jax.Array | None:
    """The generator's conditioning of a batch: phi(t) [B, K], LAPGAN's labels, or None."""
    if self.text:
      return self.phi(batch["tokens"], batch["length"])
    if self.model == "lapgan" and self.generator.num_classes is not None:
      return batch["label"]
    return None

  def generate(self, variables: dict, key: jax.Array, batch: int, cond: Any, *,
               train: bool, z: jax.Array | None = None) -> tuple[jax.Array, dict, dict]:
    """`(images [B, H, W, C] in [0, 1], aux, generator variables)` of `batch` samples."""
    z_key, noise_key = jax.random.split(key)
    if self.model == "lapgan":
      (images, aux), new = apply_player(
          self.generator, variables, batch if cond is None else cond, train=train,
          rngs={"noise": noise_key}, method=lapgan.LAPGANGenerator.sample)
      return images, aux, new
    z = self.noise(z_key, batch) if z is None else z
    args = (z, cond) if self.text else (z,)
    (images, aux), new = apply_player(self.generator, variables, *args, train=train)
    return images, aux, new

  def discriminate(self, variables: dict, images: jax.Array, cond: Any, key: jax.Array, *,
                   train: bool) -> tuple[jax.Array, dict]:
    """`(logits [B], discriminator variables)`."""
    args = (images, cond) if self.text else (images,)
    (logits, _), new = apply_player(self.discriminator, variables, *args, train=train,
                                    rngs={"dropout": key})
    return logits, new


def check_model(config: ml_collections.ConfigDict) -> str:
  return check_choice("config.model", config.model, MODELS)


# --------------------------------------------------------------------------- data


def load_datasets(config: ml_collections.ConfigDict) -> tuple[dict[str, Any], Any]:
  """`(splits, vocabulary)`: captioned digits and their vocabulary for the text models,
  else the source's digits (`{"image": [28, 28, 1], "label"}`) and None."""
  data = config.data
  if check_model(config) in TEXT_MODELS:
    return build_encoded_captioned_digits(
        source=data.source, data_dir=data.dir or None, max_len=config.max_len,
        mnist_dir=data.mnist_dir or None, seed=config.seed, copies=data.copies,
        novel_size=data.novel_size)
  return builders.build_digits_dataset(
      distortion="none", source=data.source, data_dir=data.dir or None,
      mnist_dir=data.mnist_dir or None, seed=config.seed), None


def train_text_encoder(config: ml_collections.ConfigDict, train, vocab_size: int
                       ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """phi: the sentence side of a VSE trained on the training captions and canvases with the
  bidirectional hinge (pairs with the same caption masked), frozen; cached by content."""
  cfg = config.text_encoder
  encoder = vse.VSE(vocab_size=vocab_size, embed_dim=cfg.embed_dim, word_dim=cfg.word_dim,
                    encoder=dict(cfg.encoder))
  arrays = stack_records(train, ("image", "tokens", "length"))
  init = encoder.init(jax.random.PRNGKey(config.seed), arrays["image"][:1],
                      arrays["tokens"][:1], arrays["length"][:1])["params"]

  def loss_fn(params, batch):
    scores, _ = encoder.apply({"params": params}, batch["image"], batch["tokens"],
                              batch["length"])
    same = same_caption(batch["tokens"], batch["tokens"])
    return jnp.mean(ranking_loss(scores, margin=cfg.margin, same=same))

  fit_fn = lambda: judges.fit(loss_fn, init, arrays, num_steps=cfg.num_steps,
                              batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                              seed=config.seed)
  params = judges.load_or_fit(fit_fn, template=init, cache_dir=sample_quality.cache_dir(config, "text_encoders"),
                              config=dict(cfg.to_dict(), vocab_size=vocab_size), seed=config.seed,
                              arrays=arrays)
  return lambda tokens, lengths: encoder.apply({"params": params}, tokens, lengths,
                                               method=vse.VSE.embed_sentences)


# --------------------------------------------------------------------------- models


def make_game(config: ml_collections.ConfigDict, phi=None) -> Game:
  """The model's players (`config.dcgan` / `config.gran` / `config.lapgan`)."""
  model = check_model(config)
  text = model in TEXT_MODELS
  height, width, channels = CANVAS_SHAPE if text else DIGIT_SHAPE
  cond_size = config.text_encoder.embed_dim if text else None
  if model == "lapgan":
    shared = dict(height=height, width=width, channels=channels,
                  levels=config.lapgan.levels, num_classes=config.lapgan.num_classes)
    return Game(model, lapgan.LAPGANGenerator(**shared, **config.lapgan.generator),
                lapgan.LAPGANDiscriminator(**shared, **config.lapgan.discriminator),
                None, None, None)
  scale = config.dcgan.canvas_upsamples if text else config.dcgan.digit_upsamples
  discriminator = dcgan.Discriminator(num_downsamples=scale, cond_size=cond_size,
                                      **config.dcgan.discriminator)
  if model == "gran":
    generator = gran.GRAN(height=height, width=width, channels=channels, **config.gran)
    z_shape = ((generator.steps, generator.z_size) if generator.noise == "fresh"
               else (generator.z_size,))
    return Game(model, generator, discriminator, None, z_shape, None)
  generator = dcgan.Generator(height=height, width=width, channels=channels,
                              num_upsamples=scale, cond_size=cond_size,
                              **config.dcgan.generator)
  style = None
  if text and config.gan.style_encoder:
    style = dcgan.StyleEncoder(z_size=generator.z_size, num_downsamples=scale,
                               features=config.dcgan.discriminator.features)
  return Game(model, generator, discriminator, style, (generator.z_size,), phi)


def init_variables(game: Game, batch: dict, key: jax.Array) -> dict:
  """Every player's variables, initialised on one example batch."""
  keys = jax.random.split(key, 4)
  rngs = lambda k: {"params": k, "noise": k, "dropout": k}
  cond = game.cond(batch)
  images = batch["image"]
  b = images.shape[0]
  if game.model == "lapgan":
    bands, lows = lapgan.training_targets(images, levels=game.generator.levels)
    return {"generator": game.generator.init(rngs(keys[0]), lows, cond, train=False),
            "discriminator": game.discriminator.init(rngs(keys[1]), bands, lows, cond,
                                                     train=False)}
  z = game.noise(keys[3], b)
  g_args = (z, cond) if game.text else (z,)
  d_args = (images, cond) if game.text else (images,)
  variables = {"generator": game.generator.init(rngs(keys[0]), *g_args, train=False),
               "discriminator": game.discriminator.init(rngs(keys[1]), *d_args, train=False)}
  if game.style is not None:
    variables["style"] = game.style.init(rngs(keys[2]), images, train=False)
  return variables


# --------------------------------------------------------------------------- losses


def make_players(game: Game, config: ml_collections.ConfigDict) -> list[Player]:
  """The discriminator, the generator and (text models) the style encoder."""
  cfg = config.gan
  saturating = check_choice("config.gan.loss", cfg.loss, LOSSES) == "minimax"
  steps = check_int("config.gan.discriminator_steps", cfg.discriminator_steps, low=1)
  beta = check_float("config.gan.interpolation_beta", cfg.interpolation_beta, low=0.0)
  if beta > 1.0:
    raise ValueError(f"config.gan.interpolation_beta must be in [0, 1], got {beta}.")
  int_weight = check_float("config.gan.interpolation_weight", cfg.interpolation_weight,
                           low=0.0)
  cls = game.model in ("gan_cls", "gan_int_cls")
  interpolate = game.model in ("gan_int", "gan_int_cls")

  def lapgan_losses(variables, batch, key, *, generator_step):
    cond = game.cond(batch)
    bands, lows = lapgan.training_targets(batch["image"], levels=game.generator.levels)
    noise_key, d_key = jax.random.split(key)
    fakes, g_vars = apply_player(game.generator, variables["generator"], lows, cond,
                                 train=True, rngs={"noise": noise_key})
    if not generator_step:
      fakes = jax.lax.stop_gradient(fakes)
    real, d_vars = apply_player(game.discriminator, variables["discriminator"], bands, lows,
                                cond, train=True, rngs={"dropout": d_key})
    fake, _ = apply_player(game.discriminator, d_vars, fakes, lows, cond, train=True,
                           rngs={"dropout": jax.random.fold_in(d_key, 1)})
    if generator_step:
      per_level = [jnp.mean(losses.generator_loss(f, saturating=saturating)) for f in fake]
      return sum(per_level), {f"level_{k}": v for k, v in enumerate(per_level)}, {
          **variables, "generator": g_vars}
    per_level = [jnp.mean(losses.discriminator_loss(r, f)) for r, f in zip(real, fake)]
    return sum(per_level), {f"level_{k}": v for k, v in enumerate(per_level)}, {
        **variables, "discriminator": d_vars}

  def discriminator_loss(variables, batch, key):
    if game.model == "lapgan":
      return lapgan_losses(variables, batch, key, generator_step=False)
    g_key, d_key = jax.random.split(key)
    images = batch["image"]
    cond = game.cond(batch)
    fake, _, g_vars = game.generate(variables["generator"], g_key, images.shape[0], cond,
                                    train=True)
    fake = jax.lax.stop_gradient(fake)
    d_vars = variables["discriminator"]
    real_logits, d_vars = game.discriminate(d_vars, images, cond, jax.random.fold_in(d_key, 0),
                                            train=True)
    fake_logits, d_vars = game.discriminate(d_vars, fake, cond, jax.random.fold_in(d_key, 1),
                                            train=True)
    metrics = {"real_probability": jnp.mean(jax.nn.sigmoid(real_logits)),
               "fake_probability": jnp.mean(jax.nn.sigmoid(fake_logits))}
    if cls:
      wrong_logits, d_vars = game.discriminate(d_vars, images, jnp.roll(cond, 1, axis=0),
                                               jax.random.fold_in(d_key, 2), train=True)
      per_example = losses.matching_aware_discriminator_loss(
          real_logits, wrong_logits, fake_logits, wrong_weight=cfg.wrong_weight)
      metrics["wrong_probability"] = jnp.mean(jax.nn.sigmoid(wrong_logits))
    else:
      per_example = losses.discriminator_loss(real_logits, fake_logits)
    return jnp.mean(per_example), metrics, {**variables, "discriminator": d_vars,
                                            "generator": g_vars}

  def generator_loss(variables, batch, key):
    if game.model == "lapgan":
      return lapgan_losses(variables, batch, key, generator_step=True)
    g_key, d_key, int_key = jax.random.split(key, 3)
    cond = game.cond(batch)
    b = batch["image"].shape[0]
    fake, _, g_vars = game.generate(variables["generator"], g_key, b, cond, train=True)
    logits, _ = game.discriminate(variables["discriminator"], fake, cond, d_key, train=True)
    loss = jnp.mean(losses.generator_loss(logits, saturating=saturating))
    metrics = {}
    if interpolate:
      t_int = losses.interpolate_embeddings(cond, jnp.roll(cond, 1, axis=0), beta=beta)
      fake_int, _, g_vars = game.generate(g_vars, int_key, b, t_int, train=True)
      int_logits, _ = game.discriminate(variables["discriminator"], fake_int, t_int,
                                        jax.random.fold_in(d_key, 1), train=True)
      metrics["interpolation_loss"] = jnp.mean(
          losses.generator_loss(int_logits, saturating=saturating))
      loss = loss + int_weight * metrics["interpolation_loss"]
    return loss, metrics, {**variables, "generator": g_vars}

  def style_loss(variables, batch, key):
    cond = game.cond(batch)
    b = batch["image"].shape[0]
    z = game.noise(key, b)
    fake, _, _ = game.generate(variables["generator"], key, b, cond, train=True, z=z)
    z_hat, s_vars = apply_player(game.style, variables["style"],
                                 jax.lax.stop_gradient(fake), train=True)
    return jnp.mean(losses.style_loss(z, z_hat)), {}, {**variables, "style": s_vars}

  optimizer = lambda: make_optimizer(config.train)
  players = [Player(name="discriminator", loss_fn=discriminator_loss, optimizer=optimizer(),
                    steps=steps),
             Player(name="generator", loss_fn=generator_loss, optimizer=optimizer())]
  if game.style is not None:
    players.append(Player(name="style", loss_fn=style_loss, optimizer=optimizer()))
  return players


# --------------------------------------------------------------------------- evaluation


def draw_records(game: Game, variables: dict, batch: dict, key: jax.Array) -> jax.Array:
  """One image per record [B, H, W, C], conditioned on it, record b's noise from
  `fold_in(key, index[b])` (the same records draw the same images at every evaluation)."""
  keys = evaluate.record_keys(key, batch["index"])
  cond = game.cond(batch)
  if game.model == "lapgan":
    one = lambda k, c: game.generate(variables["generator"], k, 1,
                                     None if c is None else c[None], train=False)[0][0]
    return jax.vmap(one)(keys, cond)  # cond None (unconditional) is an empty pytree
  z = jax.vmap(lambda k: game.noise(k, 1))(keys)  # [B, 1, Z] or [B, T, 1, Z]
  z = z[:, 0] if z.ndim == 3 else jnp.moveaxis(z[:, :, 0], 0, 1)
  return game.generate(variables["generator"], key, batch["image"].shape[0], cond,
                       train=False, z=z)[0]


# --------------------------------------------------------------------------- figures


def make_figures(game: Game, config: ml_collections.ConfigDict, vocabulary) -> list:
  """The samples grid (or caption rows) and the model's own figures (module docstring)."""
  n = config.num_samples
  fixed = jax.random.PRNGKey(config.seed)
  figures = []

  if game.text:
    def first_captions(source, count):
      scenes = stack_records(source, sample_quality.SCENE_FIELDS, count=count)
      captions = digit_scenes.probe_captions(
          digit_scenes.scene_classes(*(scenes[k] for k in sample_quality.SCENE_FIELDS)), count=count)
      return captions, vocabulary.encode(captions, max_len=config.max_len, strict=True)

    def caption_rows(params, source, key):
      captions, (ids, lengths) = first_captions(source, config.eval.figure_captions)
      cond = game.phi(jnp.repeat(ids, n, 0), jnp.repeat(lengths, n, 0))
      images, _, _ = game.generate(params["generator"], fixed, len(cond), cond, train=False)
      return {"images": images.reshape((len(ids), n) + images.shape[1:]), "ids": ids,
              "lengths": lengths}

    def write_rows(arrays, directory, split, step):
      captions_figure.save_caption_rows(
          os.path.join(directory, f"samples_{split}_{step}.png"),
          vocabulary.decode(arrays["ids"], arrays["lengths"]), arrays["images"])

    def interpolation(params, source, key):
      _, (ids, lengths) = first_captions(source, 2 * config.eval.figure_captions)
      t = game.phi(jnp.asarray(ids), jnp.asarray(lengths))
      rows = len(t) // 2
      left, right = t[:rows], t[rows:2 * rows]
      betas = jnp.linspace(1.0, 0.0, n)
      cond = (betas[None, :, None] * left[:, None] + (1 - betas[None, :, None]) * right[:, None])
      z = jnp.repeat(game.noise(fixed, rows), n, axis=0)  # one noise per row
      images, _, _ = game.generate(params["generator"], fixed, rows * n,
                                   cond.reshape(rows * n, -1), train=False, z=z)
      return {"images": images.reshape((rows, n) + images.shape[1:]),
              "ids": ids[:2 * rows], "lengths": lengths[:2 * rows]}

    def write_interpolation(arrays, directory, split, step):
      captions = vocabulary.decode(arrays["ids"], arrays["lengths"])
      rows = len(captions) // 2
      gan_figures.save_interpolation_rows(
          os.path.join(directory, f"interpolation_{split}_{step}.png"), captions[:rows],
          captions[rows:], arrays["images"])

    figures += [evaluate.Figure(name="samples", arrays_fn=caption_rows, write_fn=write_rows),
                evaluate.Figure(name="interpolation", arrays_fn=interpolation,
                                write_fn=write_interpolation)]
    if game.style is not None:
      def style(params, source, key):
        queries = stack_records(source, ("image",), count=config.eval.figure_captions)["image"]
        _, (ids, lengths) = first_captions(source, config.eval.figure_captions)
        z = game.style.apply(params["style"], jnp.asarray(queries), train=False)
        t = game.phi(jnp.asarray(ids), jnp.asarray(lengths))
        r, s = len(z), len(t)
        images, _, _ = game.generate(params["generator"], fixed, r * s,
                                     jnp.tile(t, (r, 1)), train=False,
                                     z=jnp.repeat(z, s, axis=0))
        return {"queries": queries, "images": images.reshape((r, s) + images.shape[1:]),
                "ids": ids, "lengths": lengths}

      def write_style(arrays, directory, split, step):
        gan_figures.save_style_transfer(
            os.path.join(directory, f"style_{split}_{step}.png"), arrays["queries"],
            vocabulary.decode(arrays["ids"], arrays["lengths"]), arrays["images"])

      figures.append(evaluate.Figure(name="style", arrays_fn=style, write_fn=write_style))
    return figures

  count = config.eval.grid_samples

  def samples(params, source, key):
    del source
    cond = jnp.arange(count) % game.generator.num_classes if (
        game.model == "lapgan" and game.generator.num_classes) else None
    images, aux, _ = game.generate(params["generator"], fixed, count, cond, train=False)
    # the first n samples' pyramid levels / canvases over time
    return {"images": images,
            **({"levels": [x[:n] for x in aux["levels"]]} if game.model == "lapgan" else {}),
            **({"canvases": aux["canvases"][:, :n]} if game.model == "gran" else {})}

  def write_samples(arrays, directory, split, step):
    images = arrays["images"]
    grid.save_image_grid(os.path.join(directory, f"samples_{split}_{step}.png"),
                         images.reshape(grid.grid_shape(len(images)) + images.shape[1:]))
    if "levels" in arrays:
      gan_figures.save_pyramid_levels(os.path.join(directory, f"pyramid_{split}_{step}.png"),
                                      [np.clip(level, 0, 1) for level in arrays["levels"]])
    if "canvases" in arrays:
      gan_figures.save_canvas_sequence(os.path.join(directory, f"canvas_{split}_{step}.png"),
                                       arrays["canvases"])

  return [evaluate.Figure(name="samples", arrays_fn=samples, write_fn=write_samples)]


# --------------------------------------------------------------------------- wiring


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` adversarially; returns the final metrics of each split."""
  model = check_model(config)
  datasets, vocabulary = load_datasets(config)
  text = model in TEXT_MODELS
  phi = None
  if text:
    if jax.process_index() == 0:
      vocabulary.save(os.path.join(workdir, "vocabulary.json"))
    phi = train_text_encoder(config, datasets["train"], len(vocabulary))
  game = make_game(config, phi)
  example = {k: jnp.asarray(v) for k, v in ImageToFloat().map(stack_records(
      datasets["train"], ("image", "tokens", "length") if text else ("image", "label"),
      count=2)).items()}
  update_fn, init_opt_state = alternating_update(make_players(game, config))
  task = Task(init_params=functools.partial(init_variables, game, example),
              update_fn=update_fn, init_opt_state=init_opt_state)
  if text:
    judge, judge_params = align_draw.build_judge(config, datasets["train"])
    featurize = sample_quality.scene_featurizer(judge, judge_params)
    read = lambda images: judges.read_scenes(judge, judge_params, images)
  else:
    featurize, read = sample_quality.digit_featurizer(config, datasets["train"]), None
  draw_fn = functools.partial(draw_records, game)
  evaluators = [
      sample_quality.generation_evaluator(draw_fn, featurize, read,
                                          batch_size=config.eval.batch_size,
                                          count=config.eval.count),
      sample_quality.two_sample_evaluator(draw_fn, batch_size=config.eval.batch_size,
                                          count=config.eval.count,
                                          num_steps=config.eval.two_sample_steps,
                                          seed=config.seed)]
  return fit(config, workdir, task, datasets, evaluators=evaluators,
             figures=make_figures(game, config, vocabulary))


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "gan.py"))
