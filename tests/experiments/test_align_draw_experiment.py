"""`experiments/align_draw.py` end to end, its consistency judge's targets and its variants."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import align_draw as ad
from experiments.configs import align_draw as ad_config
from vislang_jax.data import captioned_digits
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = ad_config.get_config()
  config.glimpses, config.z_size = 4, 4
  config.read_n, config.write_n = 3, 3
  config.enc_size = config.gen_size = 32
  config.lang_size = config.embed_size = config.align_size = 16
  config.num_samples = 2
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 20
  config.train.num_steps = 40
  config.train.batch_size = 16
  config.train.learning_rate = 3e-3
  config.train.log_every = 10
  config.train.eval_every = 40
  config.train.checkpoint_every = 40
  config.eval.batch_size = 100
  config.eval.retrieval_pool = 20
  config.eval.retrieval_chunk = 200
  config.eval.consistency_samples = 30
  config.eval.figure_captions = 2
  config.classifier.num_steps = 30
  config.classifier.widths = (8, 8, 8)
  config.update(overrides)
  return config


def test_trains_scores_and_draws_every_split(tmp_path, data_dir):
  workdir = str(tmp_path / "align")
  test = ad.train_and_evaluate(tiny_config(data_dir), workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"]
  splits = {r["split"]: r for r in logs if r["split"] in ("eval", "test", "novel")}
  assert set(splits) == {"eval", "test", "novel"}
  for record in splits.values():
    assert np.isfinite(record["nll_bound_nats"]) and record["kl_nats"] >= 0.0
    assert record["nll_bound_nats"] == pytest.approx(record["recon_nats"] + record["kl_nats"],
                                                     rel=1e-4)
  for split in ("test", "novel"):
    record = splits[split]
    assert 0.0 <= record["consistency"] <= 1.0 and 0.0 <= record["classifier_accuracy"] <= 1.0
    assert 0.0 <= record["r_at_1"] <= record["r_at_5"] <= record["r_at_10"] <= 1.0
    assert record["r_at_50"] == 1.0  # the pool holds 20 images
    assert 1.0 <= record["median_rank"] <= 20.0
  assert "consistency" not in splits["eval"]
  assert test["nll_bound_nats"] == pytest.approx(splits["test"]["nll_bound_nats"])
  assert Vocabulary.load(os.path.join(workdir, "vocabulary.json")).token_id("digit") > 3
  for split in ("eval", "test", "novel"):
    for figure in ("captions", "alignment"):
      assert os.path.exists(os.path.join(workdir, "samples", f"{figure}_{split}_40.png"))
  # The judge is trained once and cached: a resumed run reads it back.
  assert os.path.exists(os.path.join(workdir, "classifier.msgpack"))


@pytest.mark.parametrize("variant", ["noalign", "unconditional"])
def test_other_variants_train_a_step(tmp_path, data_dir, variant):
  config = tiny_config(data_dir, variant=variant)
  config.train.num_steps = config.train.log_every = config.train.eval_every = 2
  config.train.checkpoint_every = 2
  config.eval.retrieval_pool, config.eval.consistency_samples = 5, 5
  workdir = str(tmp_path / variant)
  test = ad.train_and_evaluate(config, workdir)
  assert np.isfinite(test["nll_bound_nats"]) and 1.0 <= test["median_rank"] <= 5.0
  alignment = os.path.join(workdir, "samples", "alignment_test_2.png")
  assert os.path.exists(alignment) == (variant == "noalign")


def test_layout_from_boxes_matches_the_generator():
  # Records made by the dataset's own generator, for every layout: the geometry gives back
  # the layout, and the targets give back the caption.
  rng = np.random.default_rng(0)
  patches = rng.random((2, 28, 28))
  for layout in captioned_digits.LAYOUTS:
    digits = (3,) if layout in captioned_digits.POSITIONS else (3, 5)
    for _ in range(5):
      record = captioned_digits.make_example(layout, digits, patches[:len(digits)], rng)
      classes = ad.classes_of(record["labels"][None], record["boxes"][None],
                              np.array([record["num_digits"]]))[0]
      assert captioned_digits.LAYOUTS[classes[0]] == layout
      assert ad.caption_of(classes) == record["caption"]


def test_fixed_binarization_and_noise_follow_the_record_index():
  key = jax.random.PRNGKey(0)
  images = jnp.full((3, 4, 4, 1), 0.5)
  first = ad.fixed_binarization(key, jnp.array([7, 8, 9]), images)
  again = ad.fixed_binarization(key, jnp.array([9, 7]), images[:2])
  np.testing.assert_array_equal(again, first[jnp.array([2, 0])])
  noise = ad.fixed_noise(key, jnp.array([7, 8]), (5, 2))
  assert noise.shape == (5, 2, 2)
  np.testing.assert_array_equal(ad.fixed_noise(key, jnp.array([8]), (5, 2))[:, 0], noise[:, 1])


def test_flipped_captions_change_one_thing():
  classes = np.array([[captioned_digits.LAYOUTS.index("left"), 3, 5]])
  captions = ad.figure_captions("test", classes, 1)
  assert captions == ["the digit three is on the left of the digit five",
                      "the digit four is on the left of the digit five",
                      "the digit three is on the right of the digit five"]
  assert len(ad.figure_captions("novel", classes, 1)) == len(captioned_digits.HELD_OUT)


def test_bad_variant_and_preset_are_named():
  with pytest.raises(ValueError, match="variant must be one of"):
    ad.make_model(tiny_config("/nonexistent", variant="draw"), 10)
  with pytest.raises(ValueError, match="preset must be"):
    ad_config.get_config("coco")
