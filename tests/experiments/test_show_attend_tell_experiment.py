"""`experiments/show_attend_tell.py` end to end, with soft and with hard attention."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import show_attend_tell as sat
from experiments.configs import show_attend_tell as sat_config
from vislang_jax import decoding
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.data.captions import references
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.metrics import grounding
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.ops.sequence import shift_right
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  config = sat_config.get_config()
  config.encoder.widths = (8, 16, 16)
  config.decoder.update(embed_dim=16, hidden_size=32, attention_dim=16)
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 20
  config.train.num_steps = 40
  config.train.batch_size = 16
  config.train.learning_rate = 1e-2
  config.train.log_every = 10
  config.train.eval_every = 40
  config.train.checkpoint_every = 40
  config.eval.batch_size = 100
  config.eval.beam_size = 2
  config.num_samples = 2
  config.update(overrides)
  return config


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_trains_decodes_and_scores_every_split(tmp_path, data_dir, attention):
  workdir = str(tmp_path / attention)
  # Teacher-forced metrics on validation at step 20 and at the end; beam-search captions at
  # 20 too for soft (eval.caption_every: None = train.eval_every), only at the end for hard.
  caption_every = None if attention == "soft" else 0
  config = tiny_config(data_dir, attention=attention, train={"eval_every": 20},
                       eval={"caption_every": caption_every})
  final = sat.train_and_evaluate(config, workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["nll_per_token"] < 0.8 * train[0]["nll_per_token"]
  if attention == "hard":
    # The moving-average baseline lives in the train state: b_k = 0.9 b_{k-1} + 0.1 r_k
    # leaves 0 for the (negative) log-likelihood of the captions, then follows it.
    baselines = [r["baseline"] for r in train]
    assert max(baselines) < 0 and len(set(baselines)) == len(baselines)
  splits = {r["split"]: r for r in logs if r["split"] in ("validation", "test", "novel")}
  assert set(splits) == set(final) == {"validation", "test", "novel"}
  for record in splits.values():
    assert record["bleu1"] >= record["bleu4"] and record["cider"] > 0.0
    assert 0.1 < record["box_share"] < 0.35  # a 28x28 box of a 60x60 canvas, on the grid
  # The teacher-forced test metrics, recomputed independently: the final checkpoint's
  # parameters applied to all test records at once (no batching, padding or sharding), the
  # per-caption means over the real tokens in NumPy.
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  assert manager.latest_step() == 40
  params = manager.restore(40, args=ocp.args.Composite(state=ocp.args.StandardRestore())
                           ).state["params"]
  datasets, vocabulary = sat.load_datasets(config)
  records = [datasets["test"][i] for i in range(len(datasets["test"]))]
  tokens, lengths = (np.stack([r[k] for r in records]) for k in ("tokens", "length"))
  model = sat.make_captioner(encoder=config.encoder, decoder=config.decoder,
                             attention=config.attention, vocab_size=len(vocabulary))
  # (Jitted, one call: run op by op, the model took most of the test's time.)
  forward = jax.jit(lambda params, images, inputs: model.apply(
      {"params": params}, images, inputs, deterministic=True))
  logits, _ = forward(params, np.stack([r["image"] for r in records]),
                      shift_right(tokens, bos_id=BOS_ID))
  logits = np.asarray(logits, np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  real = np.arange(tokens.shape[1]) < lengths[:, None]
  nll = -np.where(real, np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0], 0.0)
  correct = (logits.argmax(-1) == tokens) & real
  assert final["test"]["nll_per_token"] == pytest.approx(np.mean(nll.sum(1) / lengths), rel=1e-5)
  assert final["test"]["token_accuracy"] == pytest.approx(np.mean(correct.sum(1) / lengths),
                                                          abs=1e-6)
  # The beam-search test metrics, recomputed without the evaluator: the test images decoded
  # in order in batches of eval.batch_size (the last one zero-padded, as the evaluator pads
  # it), each caption scored against its own record's references.
  images = np.stack([r["image"] for r in records])
  size = config.eval.batch_size
  padded = np.concatenate([images, np.zeros((-len(images) % size,) + images.shape[1:],
                                            images.dtype)])
  decode = jax.jit(lambda params, images: decoding.beam_search(  # one compilation, every batch
      functools.partial(model.decode_step, params), model.init_decode_state(params, images),
      bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len, beam_size=config.eval.beam_size))
  decoded = [decode(params, padded[i:i + size]) for i in range(0, len(padded), size)]
  best = {k: np.concatenate([np.asarray(getattr(d, k)[:, 0]) for d in decoded])[:len(images)]
          for k in ("tokens", "lengths")}
  alpha = np.concatenate([np.asarray(d.extras["alpha"][:, 0]) for d in decoded])[:len(images)]
  hypotheses = dict(enumerate(vocabulary.decode(best["tokens"], best["lengths"])))
  # (meteor=False, as the evaluator's eval.meteor: METEOR's Java start is ~11 s.)
  expected = caption_metrics(references(datasets["test"]), hypotheses, meteor=False)
  for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"):
    assert final["test"][key] == pytest.approx(expected[key], rel=1e-6), key
  digit_of = {vocabulary.token_id(name): d for d, name in enumerate(DIGIT_NAMES)}
  mass, share = grounding.attention_in_box(
      alpha, best["tokens"], best["lengths"], np.stack([r["labels"] for r in records]),
      np.stack([r["boxes"] for r in records]), digit_of=digit_of, image_hw=images.shape[1:3])
  assert final["test"]["attention_in_box"] == pytest.approx(np.mean(mass), rel=1e-5)
  phrase_mass, _ = grounding.phrase_attention_in_box(
      alpha, best["tokens"], best["lengths"], np.stack([r["labels"] for r in records]),
      np.stack([r["boxes"] for r in records]), digit_of=digit_of,
      phrase_ids=[vocabulary.token_id("the"), vocabulary.token_id("digit")],
      image_hw=images.shape[1:3])
  assert final["test"]["phrase_attention_in_box"] == pytest.approx(np.mean(phrase_mass),
                                                                   rel=1e-5)
  assert final["test"]["box_share"] == pytest.approx(np.mean(share), rel=1e-6)
  (early,) = [r for r in logs if r["split"] == "validation" and r["step"] == 20]
  assert "token_accuracy" in early and ("bleu1" in early) == (caption_every is None)
  assert splits["validation"]["bleu1"] > 0.3  # "the digit ... is ..." is learnt in 40 steps
  assert Vocabulary.load(os.path.join(workdir, "vocabulary.json")).token_id("digit") > 3
  samples = sorted(os.listdir(os.path.join(workdir, "samples")))
  assert samples == ["attention_novel_40.png", "attention_test_40.png",
                     "attention_validation_20.png", "attention_validation_40.png"]


def test_bad_attention_and_preset_are_named():
  with pytest.raises(ValueError, match="attention must be one of"):
    config = tiny_config("/nonexistent", attention="gumbel")
    sat.make_captioner(encoder=config.encoder, decoder=config.decoder,
                       attention=config.attention, vocab_size=10)
  with pytest.raises(ValueError, match="preset must be one of \\('quickstart', 'paper'\\)"):
    sat_config.get_config("coco")


def test_paper_preset_builds_the_released_coco_model():
  config = sat_config.get_config("paper")
  # arctic-captions evaluate_coco.py / capgen.py / optimizers.py values.
  assert config.encoder.to_dict() == {"backbone": "vgg19", "include_final_pool": False}
  decoder = config.decoder
  assert (decoder.embed_dim, decoder.hidden_size, decoder.attention_dim) == (512, 1800, 512)
  assert tuple(decoder.init_hidden) == (512,) and decoder.gating and decoder.dropout_rate == 0.5
  assert (config.train.batch_size, config.train.optimizer) == (64, "adam")
  assert config.train.learning_rate == 2e-4 and config.penalty == pytest.approx(64 / 196)
  assert config.reinforce_weight == pytest.approx(6.4)
  assert config.entropy_weight == pytest.approx(0.128)
  assert decoder.expectation_prob == 0.5
  assert config.paper.vocab_size == 10000 and config.paper.select_checkpoint_by == "bleu4"
  # The model initialises with VGG-19 (conv5_4 = features_34) at a tiny input: 32x32 -> 2x2.
  model = sat.make_captioner(encoder=config.encoder, decoder=config.decoder,
                             attention=config.attention, vocab_size=20)
  images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((1, config.max_len), jnp.int32)
  key = jax.random.key(0)
  variables = jax.eval_shape(functools.partial(
      model.init, deterministic=True), {"params": key, "dropout": key, "sample": key},
      images, tokens)
  params = variables["params"]
  assert sorted(params["encoder"]) == ["vgg19"]
  assert params["encoder"]["vgg19"]["features_34"]["kernel"].shape == (3, 3, 512, 512)
  assert params["decoder"]["init_h"]["Dense_0"]["kernel"].shape == (512, 512)
  assert params["decoder"]["out_logits"]["kernel"].shape == (512, 20)
  logits, aux = jax.eval_shape(functools.partial(model.apply, deterministic=True),
                               variables, images, tokens)
  assert logits.shape == (1, config.max_len, 20) and aux["alpha"].shape == (1, config.max_len, 4)


def test_semantic_attention_trains_decodes_and_scores(tmp_path, data_dir):
  workdir = str(tmp_path / "semantic")
  config = tiny_config(data_dir, model="semantic_attention")
  config.semantic.decoder.update(embed_dim=16, input_dim=16, hidden_size=32)
  config.semantic.update(top_k=3, feature_dim=16)
  final = sat.train_and_evaluate(config, workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["nll_per_token"] < 0.8 * train[0]["nll_per_token"]
  assert train[-1]["detector_loss"] < train[0]["detector_loss"]
  assert set(final) == {"validation", "test", "novel"}
  for metrics in final.values():
    assert metrics["bleu1"] >= metrics["bleu4"] and "attention_in_box" not in metrics
    assert 0 <= metrics["attribute_precision"] <= 1 and 0 <= metrics["attribute_recall"] <= 1
  # attribute_precision / recall recomputed from the final parameters: the top-K detected
  # words against the content words of each test caption, counted in Python.
  _, params = load_params(workdir)
  datasets, vocabulary = sat.load_datasets(config)
  model = sat.make_semantic_captioner(config, vocabulary)
  records = [datasets["test"][i] for i in range(len(datasets["test"]))]
  images = np.stack([r["image"] for r in records])
  _, aux = jax.jit(model.apply)({"params": params}, images,
                                np.zeros((len(images), 1), np.int32))
  words = set(vocabulary.tokens[i] for i in model.attribute_ids)
  precision, recall = [], []
  for record, detected in zip(records, np.asarray(aux["attribute_ids"])):
    named = set(vocabulary.decode(record["tokens"][None], record["length"][None])[0].split())
    named &= words
    hits = sum(vocabulary.tokens[i] in named for i in detected)
    precision.append(hits / config.semantic.top_k)
    recall.append(hits / max(len(named), 1))
  assert final["test"]["attribute_precision"] == pytest.approx(np.mean(precision), abs=1e-6)
  assert final["test"]["attribute_recall"] == pytest.approx(np.mean(recall), abs=1e-6)
  samples = sorted(os.listdir(os.path.join(workdir, "samples")))
  assert "attention_test_40.png" in samples


def test_semantic_attention_errors_are_named(data_dir):
  with pytest.raises(ValueError, match="model must be one of"):
    sat.train_and_evaluate(tiny_config(data_dir, model="semantic"), "/tmp/unused_sat")
  config = tiny_config(data_dir, model="semantic_attention")
  config.semantic.attributes = ("digit", "purple")
  _, vocabulary = sat.load_datasets(config)
  with pytest.raises(ValueError, match="purple"):
    sat.make_semantic_captioner(config, vocabulary)
