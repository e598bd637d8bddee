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
from vislang_jax.models import align_draw
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
def test_every_variant_takes_a_step_and_draws(variant):
  # The full loop is exercised above with "align"; here the others' loss, gradient,
  # evaluation bound, sampler and retrieval scores, on two captions padded differently.
  config = tiny_config("/nonexistent", variant=variant)
  model = ad.make_model(config, 12)
  params = ad.init_params(model, jax.random.PRNGKey(0), max_len=config.max_len)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((2, 60, 60, 1)), jnp.float32),
           "tokens": jnp.asarray(rng.integers(4, 12, (2, config.max_len)), jnp.int32),
           "length": jnp.array([3, config.max_len], jnp.int32),
           "index": jnp.array([0, 1], jnp.int32)}
  (loss, parts), grads = jax.value_and_grad(ad.make_loss_fn(model), has_aux=True)(
      params, batch, jax.random.PRNGKey(1))
  assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert float(loss) == pytest.approx(float(parts["recon_nats"] + parts["kl_nats"]), rel=1e-5)
  binarize_key, noise_key = ad.eval_keys(0)
  metrics = jax.jit(ad.make_metric_fn(model, binarize_key=binarize_key, noise_key=noise_key))(
      params, batch)
  assert metrics["nll_bound_nats"].shape == (2,)
  canvases, aux = align_draw.generate(model, params, jax.random.PRNGKey(2), batch["tokens"],
                                      batch["length"])
  assert canvases.shape == (config.glimpses, 2, 60, 60)
  assert ("alignment" in aux) == (variant != "unconditional")
  # Retrieval scores: image p under caption q. The diagonal is the evaluation bound of each
  # record although the pairs are batched differently: noise and bits follow the record.
  scores = ad.make_pair_scorer(model, chunk=3)(
      params, ad.fixed_binarization(binarize_key, batch["index"], batch["image"]),
      ad.fixed_noise(noise_key, batch["index"], (config.glimpses, config.z_size)),
      batch["tokens"], batch["length"])
  np.testing.assert_allclose(np.diag(scores), -metrics["nll_bound_nats"], rtol=1e-4)
  if variant == "unconditional":  # the caption is ignored: both rows are the same
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5)


def test_scene_classes_match_the_generator():
  # Records made by the dataset's own generator, for every layout: the boxes give back the
  # scene, whose canonical caption is the record's own for left/top/corners and its converse
  # for right/bottom.
  rng = np.random.default_rng(0)
  patches = rng.random((2, 28, 28))
  converse = {"the digit three is on the right of the digit five":
              "the digit five is on the left of the digit three",
              "the digit three is at the bottom of the digit five":
              "the digit five is at the top of the digit three"}
  for layout in captioned_digits.LAYOUTS:
    digits = (3,) if layout in captioned_digits.POSITIONS else (3, 5)
    for _ in range(5):
      record = captioned_digits.make_example(layout, digits, patches[:len(digits)], rng)
      classes = ad.scene_classes(record["labels"][None], record["boxes"][None],
                                 np.array([record["num_digits"]]))[0]
      assert ad.caption_of(classes) == converse.get(record["caption"], record["caption"])
      assert ad.scene_of(layout, digits) == (ad.SCENE_LAYOUTS[classes[0]],
                                             tuple(d for d in classes[1:] if d != ad.NO_DIGIT))
      # The judge reads each digit of the scene from a window that holds its whole patch.
      scene_digits = [d for d in classes[1:] if d != ad.NO_DIGIT]
      for slot, digit in enumerate(scene_digits):
        y0, x0, y1, x1 = record["boxes"][list(record["labels"]).index(digit)]
        row, col = ad._WINDOWS[classes[0], slot]
        assert row <= y0 and y1 <= row + ad.WINDOW and col <= x0 and x1 <= col + ad.WINDOW


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
  classes = np.array([[ad.SCENE_LAYOUTS.index("left"), 3, 5]])
  captions = ad.figure_captions("test", classes, 1)
  assert captions == ["the digit three is on the left of the digit five",
                      "the digit four is on the left of the digit five",
                      "the digit three is at the top of the digit five"]
  corner = np.array([[ad.SCENE_LAYOUTS.index("bottom right"), 7, ad.NO_DIGIT]])
  assert ad.figure_captions("eval", corner, 1)[1:] == [
      "the digit eight is at the bottom right of the image",
      "the digit seven is at the top left of the image"]
  assert len(ad.figure_captions("novel", classes, 1)) == len(captioned_digits.HELD_OUT)


def test_bad_variant_and_preset_are_named():
  with pytest.raises(ValueError, match="variant must be one of"):
    ad.make_model(tiny_config("/nonexistent", variant="draw"), 10)
  with pytest.raises(ValueError, match="preset must be"):
    ad_config.get_config("coco")
