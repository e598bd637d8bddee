"""`experiments/densecap.py` end to end on dense digit scenes, its mAP recomputed from the final
checkpoint one image at a time; the retrieval and phrase metrics on hand-worked cases; errors."""

import functools
import os

import jax
import numpy as np
import pytest

from experiments import densecap
from experiments.configs import densecap as densecap_config
from vislang_jax import decoding
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID
from vislang_jax.metrics.dense_captioning import RegionPredictions, dense_captioning_map
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics


def tiny_config(data_dir):
  config = densecap_config.get_config()
  config.model.update(widths=(4, 8, 8), rpn_filters=8, region_dim=16, embed_dim=8,
                      hidden_size=16, sampler_batch_size=16, max_proposals=12)
  config.data.dir = data_dir
  config.data.max_digits = 3
  config.data.novel_size = 6
  config.max_regions = 4
  config.num_samples = 2
  config.eval.batch_size = 8
  config.eval.count = 6
  config.eval.similarity = "exact"
  config.retrieval.update(pool=6, num_queries=3, top_k=2, figure_queries=2)
  config.train.num_steps = 4
  config.train.batch_size = 4
  config.train.learning_rate = 1e-2
  config.train.log_every = 2
  config.train.eval_every = 4
  config.train.checkpoint_every = 4
  return config


def recomputed_map(config, workdir, source):
  """The dense-captioning mAP of the first `eval.count` records, one image at a time."""
  datasets, vocabulary = densecap.load_datasets(config)
  model = densecap.make_model(config, vocab_size=len(vocabulary))
  _, params = load_params(workdir)
  detect = jax.jit(lambda image: model.detections(params, image[None],
                                                  max_regions=config.max_regions))
  step = functools.partial(model.decode_step, params)
  predictions, references = [], []
  for index in range(config.eval.count):
    record = source[index]
    found = detect(record["image"])
    kept = np.flatnonzero(np.asarray(found.mask[0]))
    decoded = decoding.greedy(step, model.init_decode_state(params, found.codes[0, kept]),
                              bos_id=BOS_ID, eos_id=EOS_ID, max_len=config.max_len)
    phrases = vocabulary.decode(np.asarray(decoded.tokens), np.asarray(decoded.lengths))
    predictions.append(RegionPredictions(np.asarray(found.boxes[0, kept]),
                                         np.asarray(found.scores[0, kept]), phrases))
    real = record["region_mask"]
    references.append((record["boxes"][real],
                       vocabulary.decode(record["tokens"][real], record["lengths"][real])))
  return dense_captioning_map(predictions, references, similarity="exact")


def test_trains_evaluates_and_the_map_equals_one_image_at_a_time(tmp_path):
  config = tiny_config(str(tmp_path / "tfds"))
  workdir = str(tmp_path / "run")
  final = densecap.train_and_evaluate(config, workdir)
  assert set(final) == {"validation", "test", "novel"}
  for split, metrics in final.items():
    for name in ("map", "detection_ap50", "recall50", "retrieval_map", "retrieval_p_at_1",
                 "captioning", "mid_objectness", "end_box_reg"):
      assert np.isfinite(metrics[name]), (split, name)
    assert metrics["similarity_meteor"] == 0.0
    for figure in ("densecap", "retrieval"):
      assert os.path.isfile(os.path.join(workdir, "samples", f"{figure}_{split}_4.png"))
  train = [r for r in read_metrics(workdir) if r["split"] == "train"]
  assert len(train) == 2 and all(np.isfinite(r["loss"]) for r in train)
  datasets, _ = densecap.load_datasets(config)
  want = recomputed_map(config, workdir, datasets["test"])
  assert final["test"]["map"] == pytest.approx(want["map"], abs=1e-6)
  assert final["test"]["detection_ap50"] == pytest.approx(want["detection_ap50"], abs=1e-6)


def test_average_precision_by_hand():
  # Ranked hits 1 0 1 0 of 3 relevant: precisions at the hits 1/1 and 2/3 -> (1 + 2/3) / 3.
  assert densecap.average_precision(np.array([1, 0, 1, 0], bool), 3) == pytest.approx(5 / 9)
  assert densecap.average_precision(np.array([0, 0], bool), 2) == 0.0
  assert densecap.average_precision(np.array([0], bool), 0) == 0.0


def test_retrieval_queries_and_hits_by_hand():
  references = [
      (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), ["a seven", "a three"]),
      (np.array([[0, 0, 10, 10], [0, 0, 10, 12]], np.float32), ["a three", "a three"]),
      (np.array([[5, 5, 15, 15]], np.float32), ["a two"]),
  ]
  # "a three" is in two images (counted once per image), then ties alphabetically.
  assert densecap.retrieval_queries(references, 2) == ["a three", "a seven"]
  boxes = np.array([[20, 20, 30, 31], [0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
  # Image 0: IoU 100/110 with its "a three"; image 1: 1.0; image 2 has no "a three".
  np.testing.assert_array_equal(densecap.region_hits(boxes, references, "a three"),
                                [True, True, False])
  np.testing.assert_array_equal(densecap.region_hits(boxes, references, "a seven"),
                                [False, False, False])


def test_phrase_metrics_by_hand():
  references = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
                 ["a large seven left of a three", "a three"])]
  # The first region is found (IoU 1) and named right; the second is missed (IoU 0.25).
  predictions = [RegionPredictions(np.array([[0, 0, 10, 10], [20, 20, 25, 25]], np.float32),
                                   np.array([0.9, 0.8]),
                                   ["a large seven left of a three", "a two"])]
  metrics = densecap.phrase_metrics(predictions, references)
  assert metrics["recall50"] == 0.5
  assert metrics["phrase_exact"] == 1.0
  assert metrics["phrase_bleu4"] == pytest.approx(1.0, abs=1e-6)


def test_errors(tmp_path):
  config = tiny_config(str(tmp_path / "tfds"))
  config.dataset = "coco"
  with pytest.raises(ValueError, match="dataset must be one of"):
    densecap.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config(str(tmp_path / "tfds"))
  config.dataset = "visual_genome"
  with pytest.raises(ValueError, match="data.vg_dir must name the folder"):
    densecap.load_datasets(config)
  config = tiny_config(str(tmp_path / "tfds"))
  config.eval.similarity = "bleu"
  with pytest.raises(ValueError, match="eval.similarity must be one of"):
    densecap.train_and_evaluate(config, str(tmp_path / "b"))
  config = tiny_config(str(tmp_path / "tfds"))
  config.model.anchors = 9
  with pytest.raises(ValueError, match=r"model has unknown keys \['anchors'\]"):
    densecap.make_model(config, vocab_size=20)
  config = tiny_config(str(tmp_path / "tfds"))
  config.loss.box_weight = 1.0
  with pytest.raises(ValueError, match=r"loss has unknown keys \['box_weight'\]"):
    densecap.train_and_evaluate(config, str(tmp_path / "c"))
  with pytest.raises(ValueError, match="preset must be one of"):
    densecap_config.get_config("huge")
