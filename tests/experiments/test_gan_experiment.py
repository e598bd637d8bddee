"""experiments/gan.py: short end-to-end runs of each generator family, the players' loss terms
(GAN-CLS's wrong text, GAN-INT's interpolation term), the sample-quality evaluators on real
images, GRAN's metric between two games (experiments/gam.py), and the named errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import gam, gan
from experiments import sample_quality
from experiments.configs import gan as configs
from vislang_jax.data.pipeline import ImageToFloat, stack_records
from vislang_jax.metrics import generation
from vislang_jax.train import sharding
from vislang_jax.train.optimizers import make_schedule
from vislang_jax.train.metrics import read_metrics

STEPS = 2


def tiny_config(data_dir, model, **gan_options):
  config = configs.get_config()
  config.model = model
  config.data.dir = str(data_dir)
  config.data.novel_size = 20
  config.train.update(num_steps=STEPS, batch_size=8, log_every=1, eval_every=100,
                      checkpoint_every=STEPS)
  config.eval.update(batch_size=16, count=32, two_sample_steps=5, figure_captions=2,
                     grid_samples=4)
  config.gan.update(gan_options)
  config.classifier.update(num_steps=10, widths=(8, 8))
  config.judge.update(num_steps=10, widths=(8, 8, 8))
  config.text_encoder.update(num_steps=10, embed_dim=8, word_dim=8,
                             encoder={"backbone": "convnet", "widths": (4,)})
  config.num_samples = 3
  config.dcgan.generator.update(features=8, z_size=8, cond_dim=8)
  config.dcgan.discriminator.update(features=8, cond_dim=8)
  config.gran.update(features=8, z_size=8, steps=2)
  config.lapgan.generator.update(features=8, coarse_features=16, z_size=8)
  config.lapgan.discriminator.update(features=8, coarse_features=16)
  config.lapgan.num_classes = 10  # CC-LAPGAN: the digits' labels condition every level
  return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("data")


FIGURES = {"dcgan": ("samples",), "gran": ("samples", "canvas"),
           "lapgan": ("samples", "pyramid"),
           "gan_int_cls": ("samples", "interpolation", "style")}


@pytest.mark.parametrize("model", sorted(FIGURES))
def test_each_family_trains_evaluates_and_draws(tmp_path, data_dir, model):
  workdir = str(tmp_path / model)
  final = gan.train_and_evaluate(tiny_config(data_dir, model), workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert [r["step"] for r in train] == list(range(1, STEPS + 1))
  players = {"discriminator", "generator"} | ({"style"} if model == "gan_int_cls" else set())
  assert {k.split("/")[0] for k in train[-1] if "/" in k} == players
  assert all(np.isfinite(v) for r in train for k, v in r.items() if "/" in k)
  if model == "gan_int_cls":  # the wrong-text term and the interpolation term were played
    assert {"discriminator/wrong_probability", "generator/interpolation_loss"} <= set(train[-1])
  splits = {"validation", "test"} | ({"novel"} if model in gan.TEXT_MODELS else set())
  assert set(final) == splits
  for split, metrics in final.items():
    assert metrics["frechet_distance"] > 0.0
    assert 1.0 <= metrics["classifier_score"] <= 10.0 + 1e-6
    assert 1.0 <= metrics["classifier_score_real"] <= 10.0 + 1e-6
    if model in gan.TEXT_MODELS:
      assert 0.0 <= metrics["consistency"] <= 1.0
    assert ("two_sample_accuracy" in metrics) == (split == "test")
  assert 0.0 <= final["test"]["two_sample_accuracy"] <= 1.0
  for figure in FIGURES[model]:
    for split in splits:
      assert os.path.exists(os.path.join(workdir, "samples", f"{figure}_{split}_{STEPS}.png"))
  if model in ("dcgan", "gran", "lapgan"):  # a 2x2 grid of 28x28 digits, padded 1, scaled 2x
    with Image.open(os.path.join(workdir, "samples", f"samples_test_{STEPS}.png")) as png:
      assert png.size == (2 * (2 * 29 + 1),) * 2


def players_on_one_batch(data_dir, model, **gan_options):
  """The model's players and variables after init, and one training batch."""
  config = tiny_config(data_dir, model, **gan_options)
  datasets, vocabulary = gan.load_datasets(config)
  phi = gan.train_text_encoder(config, datasets["train"], len(vocabulary))
  game = gan.make_game(config, phi)
  batch = {k: jnp.asarray(v) for k, v in ImageToFloat().map(stack_records(
      datasets["train"], ("image", "tokens", "length"), count=8)).items()}
  variables = gan.init_variables(game, batch, jax.random.PRNGKey(0))
  return {p.name: p for p in gan.make_players(game, config)}, variables, batch


def test_gan_cls_scores_the_real_image_with_the_rolled_wrong_text(data_dir):
  players, variables, batch = players_on_one_batch(data_dir, "gan_cls")
  key = jax.random.PRNGKey(1)
  loss, metrics, _ = players["discriminator"].loss_fn(variables, batch, key)
  assert float(metrics["wrong_probability"]) != pytest.approx(
      float(metrics["real_probability"]), abs=1e-6)
  # Reed et al.'s Alg. 1 with the wrong-text weight at 0 is the plain conditional GAN's loss
  # (gan_int's discriminator), with the same fakes and dropout keys.
  plain_players, _, _ = players_on_one_batch(data_dir, "gan_int")
  cls0_players, _, _ = players_on_one_batch(data_dir, "gan_cls", wrong_weight=0.0)
  plain, _, _ = plain_players["discriminator"].loss_fn(variables, batch, key)
  cls0, _, _ = cls0_players["discriminator"].loss_fn(variables, batch, key)
  assert float(cls0) == pytest.approx(float(plain), rel=1e-5)
  assert float(loss) != pytest.approx(float(plain), rel=1e-3)
  # one identical caption everywhere: the wrong text is the right one
  same = dict(batch, tokens=jnp.repeat(batch["tokens"][:1], 8, 0),
              length=jnp.repeat(batch["length"][:1], 8, 0))
  _, metrics, _ = players["discriminator"].loss_fn(variables, same, key)
  assert float(metrics["wrong_probability"]) == pytest.approx(
      float(metrics["real_probability"]), rel=1e-5)


def test_gan_int_adds_the_weighted_interpolation_term(data_dir):
  key = jax.random.PRNGKey(2)
  players, variables, batch = players_on_one_batch(data_dir, "gan_int")
  weighted, metrics, _ = players["generator"].loss_fn(variables, batch, key)
  zero_players, _, _ = players_on_one_batch(data_dir, "gan_int", interpolation_weight=0.0)
  plain, _, _ = zero_players["generator"].loss_fn(variables, batch, key)
  assert float(weighted) == pytest.approx(float(plain) + float(metrics["interpolation_loss"]),
                                          rel=1e-5)
  assert float(metrics["interpolation_loss"]) > 0.0


def test_the_style_encoder_trains_on_the_generator_held_fixed(data_dir):
  players, variables, batch = players_on_one_batch(data_dir, "gan_int_cls")
  style = players["style"]
  grads = jax.grad(lambda v: style.loss_fn(v, batch, jax.random.PRNGKey(3))[0])(variables)
  norm = lambda tree: float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(tree)))
  assert norm(grads["style"]["params"]) > 0.0
  assert norm(grads["generator"]["params"]) == 0.0  # G(z) enters as a stopped target


def test_sample_quality_of_the_real_images_themselves(data_dir):
  """Drawing the real images: the Frechet distance is 0 and both classifier scores agree
  with metrics.generation on the same features, computed outside the evaluator."""
  config = tiny_config(data_dir, "dcgan")
  datasets, _ = gan.load_datasets(config)
  featurize = sample_quality.digit_featurizer(config, datasets["train"])
  evaluator = sample_quality.generation_evaluator(
      lambda params, batch, key: batch["image"], featurize, batch_size=16, count=40)
  got = evaluator(None, datasets["test"], jax.random.PRNGKey(0), sharding.make_mesh())
  assert got["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
  images = ImageToFloat().map(stack_records(datasets["test"], ("image",), count=40))["image"]
  _, probs = jax.jit(featurize)(jnp.asarray(images))
  expected = generation.classifier_score(np.asarray(probs))
  assert got["classifier_score"] == pytest.approx(expected, rel=1e-5)
  assert got["classifier_score_real"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("model", "wgan", "config.model must be one of"),
    ("gan.loss", "hinge", "config.gan.loss must be one of"),
    ("gan.interpolation_beta", 1.5, r"config.gan.interpolation_beta must be in \[0, 1\]"),
    ("gan.discriminator_steps", 0, "config.gan.discriminator_steps"),
])
def test_bad_settings_are_named(data_dir, field, value, message):
  config = tiny_config(data_dir, "dcgan")
  section, _, name = field.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=message):
    game = gan.make_game(config)
    gan.make_players(game, config)


def test_gam_battle_of_a_run_with_itself_ties_and_swapping_inverts(data_dir):
  """GRAN's metric (experiments.gam.battle) between freshly initialised DCGAN and GRAN
  players: a model against itself gives ratios 1 and no winner; swapping the two runs
  inverts both ratios and the winner."""
  games, variables = [], []
  for i, model in enumerate(("dcgan", "gran")):
    config = tiny_config(data_dir, model)
    datasets, _ = gan.load_datasets(config)
    batch = {k: jnp.asarray(v) for k, v in ImageToFloat().map(
        stack_records(datasets["train"], ("image", "label"), count=4)).items()}
    games.append(gan.make_game(config))
    variables.append(gan.init_variables(games[-1], batch, jax.random.PRNGKey(i)))
  images = ImageToFloat().map(stack_records(datasets["test"], ("image",), count=24))["image"]
  key = jax.random.PRNGKey(0)
  itself = gam.battle(games[0], variables[0], games[0], variables[0], images, key=key,
                      batch_size=8)
  assert (itself["r_test"], itself["r_sample"], itself["winner"]) == (1.0, 1.0, 0)
  ab = gam.battle(games[0], variables[0], games[1], variables[1], images, key=key, batch_size=8)
  ba = gam.battle(games[1], variables[1], games[0], variables[0], images, key=key, batch_size=8)
  assert ab["d1_test_error"] == ba["d2_test_error"] and ab["d1_on_g2_error"] == ba["d2_on_g1_error"]
  if np.isfinite(ab["r_test"]) and ab["r_test"] > 0:
    assert ba["r_test"] == pytest.approx(1.0 / ab["r_test"])


def test_paper_preset_is_reeds_released_cub_run():
  """The values of reedscot/icml2016's main_cls_int.lua and scripts/train_cub.sh."""
  config = configs.get_config("paper")
  assert config.model == "gan_int_cls"
  assert (config.dcgan.generator.z_size, config.dcgan.generator.cond_dim,
          config.dcgan.generator.features, config.dcgan.discriminator.features) == (100, 128, 128, 64)
  assert (config.gan.wrong_weight, config.gan.interpolation_weight) == (0.5, 1.0)
  train = config.train
  assert (train.batch_size, train.learning_rate, train.b1) == (64, 2e-4, 0.5)
  rate = make_schedule(train)  # halved every 100 of 600 epochs
  epoch = train.num_steps / 600
  assert [float(rate(int(e * epoch) + 1)) for e in (0, 150, 350, 599)] == pytest.approx(
      [2e-4, 1e-4, 2.5e-5, 2e-4 / 32])
