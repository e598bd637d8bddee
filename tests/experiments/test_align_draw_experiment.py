"""`experiments/align_draw.py` end to end, its evaluators against independent values, variants."""

import functools
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import align_draw as ad
from experiments.configs import align_draw as ad_config
from vislang_jax.data import digit_scenes
from vislang_jax.data.captions import build_encoded_captioned_digits
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.metrics import judge as judges
from vislang_jax.metrics.retrieval import AllPairs
from vislang_jax.models import align_draw
from vislang_jax.train import evaluate, sharding
from vislang_jax.train.metrics import read_metrics
from vislang_jax.train.optimizers import make_optimizer, make_schedule

SCENE_FIELDS = ("labels", "boxes", "num_digits")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = ad_config.get_config()
  config.model.update(glimpses=4, z_size=4, read_n=3, write_n=3, enc_size=32, gen_size=32,
                      lang_size=16, embed_size=16, align_size=16)
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
  config.eval.sample_quality_count = 30
  config.judge.num_steps = 30
  config.judge.widths = (8, 8, 8)
  config.update(overrides)
  return config


def _datasets(config):
  data = config.data
  return build_encoded_captioned_digits(
      source=data.source, data_dir=data.dir, max_len=config.max_len, seed=config.seed,
      copies=data.copies, novel_size=data.novel_size)


def test_trains_scores_and_draws_every_split(tmp_path, data_dir):
  workdir = str(tmp_path / "align")
  config = tiny_config(data_dir)
  final = ad.train_and_evaluate(config, workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"]
  splits = {r["split"]: r for r in logs if r["split"] in ("validation", "test", "novel")}
  assert set(splits) == set(final) == {"validation", "test", "novel"}
  for split, record in splits.items():
    assert record["step"] == 40
    assert record["nll_bound_nats"] == pytest.approx(record["recon_nats"] + record["kl_nats"],
                                                     rel=1e-4)
    assert np.isfinite(record["nll_bound_nats"]) and record["kl_nats"] >= 0.0
    for name, value in final[split].items():
      assert record[name] == pytest.approx(value), (split, name)
  assert not {"consistency", "r_at_1", "frechet_distance"} & set(final["validation"])
  assert 0.0 <= final["test"]["recon_consistency"] <= 1.0
  # The judge was trained once, into the data dir's cache (none in the workdir).
  (cached,) = glob.glob(os.path.join(data_dir, "judges", "*.msgpack"))
  assert not glob.glob(os.path.join(workdir, "*.msgpack"))
  datasets, _ = _datasets(config)
  judge, judge_params = ad.build_judge(config, datasets["train"])  # read back from the cache
  assert glob.glob(os.path.join(data_dir, "judges", "*.msgpack")) == [cached]
  for split in ("test", "novel"):
    metrics = final[split]
    # Independently of the evaluator: the judge on the first 30 real images, in NumPy order.
    records = stack_records(datasets[split], ("image",) + SCENE_FIELDS, count=30)
    targets = digit_scenes.scene_classes(*(records[k] for k in SCENE_FIELDS))
    readings = judges.read_scenes(judge, judge_params, jnp.asarray(records["image"]))
    assert metrics["classifier_accuracy"] == pytest.approx(
        np.mean(np.all(np.asarray(readings) == targets, axis=1)))
    # Consistency counts whole images of 30: a multiple of 1/30.
    assert metrics["consistency"] * 30 == pytest.approx(round(metrics["consistency"] * 30))
    assert metrics["r_at_1"] <= metrics["r_at_5"] <= metrics["r_at_10"]
    assert metrics["r_at_50"] == 1.0  # the pool holds 20 images
    # the generator table's measures (experiments.sample_quality; its own tests check values)
    assert metrics["frechet_distance"] > 0.0
    assert 1.0 <= metrics["classifier_score"] <= 10.0 and 1.0 <= metrics["classifier_score_real"]
    # The median rank of 20 targets: an integer or a half; at most 10 when R@10 >= 0.55.
    assert (2 * metrics["median_rank"]).is_integer()
    if metrics["r_at_10"] >= 0.55:
      assert metrics["median_rank"] <= 10
  assert Vocabulary.load(os.path.join(workdir, "vocabulary.json")).token_id("digit") > 3
  for split in ("validation", "test", "novel"):
    for figure in ("captions", "alignment"):
      assert os.path.exists(os.path.join(workdir, "samples", f"{figure}_{split}_40.png"))


def test_consistency_of_the_real_images_is_the_judge_accuracy(data_dir):
  # The same path with the real images in place of the drawn ones: consistency must equal
  # classifier_accuracy (drawn and real readings meet the same targets in the same order),
  # and both the NumPy accuracy of the judge on those records.
  config = tiny_config(data_dir)
  datasets, _ = _datasets(config)
  judge, judge_params = ad.build_judge(config, datasets["train"])
  read = lambda images: judges.read_scenes(judge, judge_params, images)
  real = lambda params, batch, key: batch["image"]
  evaluator = ad.consistency_evaluator(real, read, batch_size=8, count=20, recon_fn=real)
  metrics = evaluator({}, datasets["test"], jax.random.PRNGKey(0), sharding.make_mesh())
  # (3 batches, the last padded.)
  assert metrics["consistency"] == metrics["recon_consistency"] == metrics["classifier_accuracy"]
  records = stack_records(datasets["test"], ("image",) + SCENE_FIELDS, count=20)
  targets = digit_scenes.scene_classes(*(records[k] for k in SCENE_FIELDS))
  assert metrics["classifier_accuracy"] == pytest.approx(
      judges.agreement(read(jnp.asarray(records["image"])), targets))


def _fake_records(num, max_len=12, vocab_size=12, seed=0):
  rng = np.random.default_rng(seed)
  return [{"image": rng.random((60, 60, 1)).astype(np.float32),
           "tokens": rng.integers(4, vocab_size, max_len).astype(np.int32),
           "length": np.int32(rng.integers(2, max_len + 1))} for _ in range(num)]


@pytest.mark.parametrize("variant", ["noalign", "unconditional"])
def test_every_variant_takes_a_step_and_draws(variant):
  # The full loop is exercised above with "align"; here the others' loss, gradient,
  # evaluation bound, sampler and retrieval scores, on captions padded differently.
  config = tiny_config("/nonexistent", model={"variant": variant})
  model = ad.make_model(config, 12)
  # (Jitted here and below: run op by op, the model took most of the test's time.)
  params = jax.jit(functools.partial(ad.init_params, model, max_len=config.max_len))(
      jax.random.PRNGKey(0))
  records = _fake_records(3)
  batch = {k: jnp.stack([r[k] for r in records]) for k in records[0]}
  batch["index"] = jnp.arange(3, dtype=jnp.int32)

  def mean_loss(params):
    values = ad.train_example(model, params, batch, jax.random.PRNGKey(1))
    return jnp.mean(values["loss"]), values

  (loss, parts), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
  assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(parts["loss"], parts["recon_nats"] + parts["kl_nats"], rtol=1e-5)
  key = jax.random.PRNGKey(2)
  bound_metrics = jax.jit(functools.partial(ad.bound_metrics, model))
  metrics = bound_metrics(params, batch, key)
  assert metrics["nll_bound_nats"].shape == (3,)
  canvases, aux = align_draw.generate(model, params, jax.random.PRNGKey(3), batch["tokens"],
                                      batch["length"])
  assert canvases.shape == (config.model.glimpses, 3, 60, 60)
  assert ("alignment" in aux) == (variant != "unconditional")
  drawn = jax.jit(functools.partial(ad.draw, model))(params, batch, key)
  assert drawn.shape == (3, 60, 60, 1) and bool(jnp.all((drawn >= 0) & (drawn <= 1)))
  # The reconstruction is the bound's: its Bernoulli NLL of the record's bits, in float64
  # NumPy, is the evaluation bound's recon_nats (same bits, same posterior noise). Random
  # parameters, so that the canvas depends on the bits and the noise (at initialisation
  # c_0 = -10 leaves it nearly blank).
  @jax.jit
  def add_noise(params):
    leaves, tree = jax.tree.flatten(params)
    return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(jax.random.PRNGKey(i), p.shape)
                                     for i, p in enumerate(leaves)])
  noisy = add_noise(params)
  recon = np.asarray(jax.jit(functools.partial(ad.reconstruct, model))(noisy, batch, key),
                     np.float64)
  bits = np.asarray(ad.record_inputs(model, batch, key, batch["index"])[0], np.float64)
  assert set(np.unique(bits)) <= {0.0, 1.0}
  nll = -np.sum(bits * np.log(recon) + (1 - bits) * np.log1p(-recon), axis=(1, 2, 3))
  # (Equal computations agree to ~1e-7 here; other bits and noise differ by ~3e-4.)
  np.testing.assert_allclose(nll, bound_metrics(noisy, batch, key)["recon_nats"], rtol=1e-6)
  # Pair scores: image n under caption q. The diagonal is each record's evaluation bound,
  # although the pairs are batched differently: bits and noise follow the image.
  pairs = AllPairs({"tokens": np.asarray(batch["tokens"]), "length": np.asarray(batch["length"])},
                   {"image": np.asarray(batch["image"])})
  score = jax.jit(lambda params, batch, key: {"score": ad.pair_score(model, params, batch, key)})
  scores = evaluate.predict(score, params, pairs, key, batch_size=4,
                            mesh=sharding.make_mesh())["score"].reshape(3, 3)
  # At initialisation the canvas logits are near 0, so other bits change the bound by only
  # ~1e-5 of it: hence tolerances of 1e-6 (equal computations agree to the last bit here).
  np.testing.assert_allclose(np.diag(scores), -metrics["nll_bound_nats"], rtol=1e-6)
  if variant == "unconditional":  # the caption is ignored: every row is the same
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-6)
  else:
    assert not np.allclose(scores[0], scores[1], rtol=1e-6)


def test_paper_preset_is_the_released_mnist_captions_model_and_training():
  # emansim/text2image: alignDraw.py and models/mnist-captions.json (experiments/configs).
  config = ad_config.get_config("paper")
  assert dict(config.model) == dict(
      variant="align", glimpses=32, read_n=8, write_n=8, z_size=150, enc_size=300,
      gen_size=300, lang_size=128, embed_size=32, align_size=512)
  vocab_size = 25  # the captioned digits' ids (4 specials, 21 words)
  model = ad.make_model(config, vocab_size)
  shapes = jax.eval_shape(functools.partial(ad.init_params, model, max_len=config.max_len),
                          jax.random.PRNGKey(0))
  kernel = lambda *path: functools.reduce(lambda d, k: d[k], path, shapes).shape
  # LSTM^infer reads [x 8x8, x^ 8x8, h^gen 300]; LSTM^gen reads [z 150, s_t 2 x 128].
  assert kernel("infer_lstm", "ii", "kernel") == (2 * 64 + 300, 300)
  assert kernel("gen_lstm", "ii", "kernel") == (150 + 2 * 128, 300)
  assert kernel("align_u", "kernel") == (2 * 128, 512)
  assert kernel("align_w", "kernel") == (300, 512)
  assert kernel("caption_encoder", "forward", "hi", "kernel") == (128, 128)
  assert kernel("q_mu", "kernel") == (300, 150) and kernel("c0") == (60, 60, 1)
  # RMSProp (decay 0.9, no momentum) after clipping at norm 10; x0.1 after epoch 110 of 150.
  train = config.train
  assert (train.batch_size, train.num_steps, train.learning_rate) == (100, 15_000, 1e-3)
  schedule = make_schedule(train)
  assert schedule(10_999) == pytest.approx(1e-3) and schedule(11_000) == pytest.approx(1e-4)
  grads = {"w": jnp.array([30.0, -40.0]), "b": jnp.array([0.1])}  # global norm ~50
  optimizer = make_optimizer(train)
  updates, _ = optimizer.update(grads, optimizer.init(grads), grads)
  g = np.array([30.0, -40.0, 0.1]) * 10.0 / np.sqrt(30.0**2 + 40.0**2 + 0.1**2)
  expected = -1e-3 * g / np.sqrt(0.1 * g**2 + 1e-8)
  np.testing.assert_allclose(np.concatenate([updates["w"], updates["b"]]), expected,
                             rtol=1e-5)


def test_digits_preset_is_the_quickstart_with_finer_grids_and_longer_training():
  quick, digits = ad_config.get_config(), ad_config.get_config("digits")
  assert (digits.model.read_n, digits.model.write_n) == (12, 12)
  assert dict(digits.model, read_n=5, write_n=5) == dict(quick.model)
  assert (digits.train.num_steps, digits.eval.consistency_every) == (4000, 1000)
  assert (quick.train.num_steps, quick.eval.consistency_every) == (1500, 0)


def test_bad_variant_and_preset_are_named():
  with pytest.raises(ValueError, match="variant must be one of"):
    ad.make_model(tiny_config("/nonexistent", model={"variant": "draw"}), 10)
  with pytest.raises(ValueError, match="preset must be"):
    ad_config.get_config("coco")
