"""`experiments/retrieval.py` end to end (VSE and DVSA), its metrics recomputed by brute force."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import retrieval
from experiments.configs import retrieval as retrieval_config
from vislang_jax.data.captioned_digits import DIGIT_NAMES
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, model):
  config = retrieval_config.get_config()
  config.model = model
  config.vse.update(embed_dim=16, word_dim=8, encoder={"widths": (4, 8, 8)})
  config.dvsa.update(embed_dim=16, word_dim=8, hidden_size=16, crop_size=(14, 14),
                     encoder={"widths": (4, 8)})
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 20
  config.train.num_steps = 30
  config.train.batch_size = 32
  config.train.learning_rate = 1e-2
  config.train.log_every = 10
  config.train.eval_every = 30
  config.train.checkpoint_every = 30
  config.eval.batch_size = 100
  config.eval.pool = 1000
  config.num_samples = 2
  return config


def brute_force_ranks(scores, tokens):
  """Per query, 1 + the non-hits scoring at least the best hit; hits: identical captions."""
  ranks = []
  for q in range(len(scores)):
    hit = [bool(np.array_equal(tokens[q], tokens[c])) for c in range(scores.shape[1])]
    best = max(scores[q, c] for c in range(scores.shape[1]) if hit[c])
    ranks.append(1 + sum(1 for c in range(scores.shape[1]) if not hit[c]
                         and scores[q, c] >= best))
  return np.array(ranks)


def test_helpers_against_hand_written_cases():
  tokens = jnp.array([[3, 4, 2], [3, 4, 2], [3, 5, 2]])
  np.testing.assert_array_equal(retrieval.same_caption(tokens, tokens),
                                [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
  # Digit words (ids 7 and 9) name the record's digits in caption order: 0, 1; others -1.
  words = jnp.array([[1, 7, 4, 9, 2], [1, 9, 4, 2, 0]])
  np.testing.assert_array_equal(retrieval.digit_word_index(words, np.array([7, 9])),
                                [[-1, 0, -1, 1, -1], [-1, 0, -1, -1, -1]])
  batch = {"boxes": jnp.array([[[2, 1, 30, 29], [-1, -1, -1, -1]]]),  # (y0, x0, y1, x1)
           "labels": jnp.array([[5, -1]])}
  boxes, mask = retrieval.region_boxes(batch, (60, 40), (1, 2))
  np.testing.assert_array_equal(boxes[0], [[1, 2, 29, 30], [0, 0, 40, 60], [0, 0, 20, 60],
                                           [20, 0, 40, 60]])
  np.testing.assert_array_equal(mask[0], [True, False, True, True])


def test_vse_metrics_equal_brute_force(tmp_path, data_dir):
  workdir = str(tmp_path / "vse")
  config = tiny_config(data_dir, "vse")
  final = retrieval.train_and_evaluate(config, workdir)
  logs = read_metrics(workdir)
  train = [r for r in logs if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"]
  assert set(final) == {"validation", "test", "novel"}
  assert os.path.isfile(os.path.join(workdir, "samples", "retrieval_test_30.png"))
  # Recompute the test split's retrieval from the final checkpoint, unbatched, in NumPy.
  step, params = load_params(workdir)
  assert step == 30
  datasets, vocabulary = retrieval.load_datasets(config)
  test = datasets["test"]
  assert len(test) <= config.eval.pool  # one pool: the whole split
  records = [test[i] for i in range(len(test))]
  images, tokens, lengths = (np.stack([r[k] for r in records])
                             for k in ("image", "tokens", "length"))
  model = retrieval.vse.VSE(vocab_size=len(vocabulary), **config.vse)
  x = np.asarray(model.apply({"params": params}, images, method=model.embed_images), np.float64)
  v = np.asarray(model.apply({"params": params}, tokens, lengths, method=model.embed_sentences),
                 np.float64)
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
  scores = x @ v.T
  i2t, t2i = brute_force_ranks(scores, tokens), brute_force_ranks(scores.T, tokens)
  for name, ranks in (("i2t", i2t), ("t2i", t2i)):
    for k in (1, 5, 10):
      assert final["test"][f"{name}_r{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-3)
    assert final["test"][f"{name}_median_rank"] == pytest.approx(np.median(ranks))
  # The arithmetic queries: image - "d" + "d+1" over the one-digit images with a target.
  names = {vocabulary.token_id(n): d for d, n in enumerate(DIGIT_NAMES)}
  word_tokens, word_lengths = vocabulary.encode(DIGIT_NAMES, max_len=config.max_len)
  words = np.asarray(model.apply({"params": params}, word_tokens, word_lengths,
                                 method=model.embed_sentences), np.float64)
  ranks = []
  for q in range(len(records)):
    digits = [t for t in tokens[q] if int(t) in names]
    if len(digits) != 1:
      continue
    d = names[int(digits[0])]
    wanted = np.where(tokens[q] == digits[0], vocabulary.token_id(DIGIT_NAMES[(d + 1) % 10]),
                      tokens[q])
    hit = np.all(tokens == wanted, axis=1)
    if not hit.any():
      continue
    query = x[q] - words[d] + words[(d + 1) % 10]
    query /= np.linalg.norm(query)
    s = x @ query
    ranks.append(1 + np.sum(~hit & (s >= s[hit].max())))
  assert ranks
  assert final["test"]["arithmetic_r5"] == pytest.approx(np.mean(np.array(ranks) <= 5),
                                                         abs=1e-3)


def test_dvsa_metrics_and_alignment(tmp_path, data_dir):
  workdir = str(tmp_path / "dvsa")
  config = tiny_config(data_dir, "dvsa")
  final = retrieval.train_and_evaluate(config, workdir)
  assert set(final) == {"validation", "test", "novel"}
  for split in final.values():
    assert 0.0 <= split["alignment_accuracy"] <= 1.0
    assert 0.0 <= split["mrf_alignment_accuracy"] <= 1.0
    assert split["i2t_r1"] <= split["i2t_r5"] <= split["i2t_r10"]
  for name in ("retrieval", "alignment"):
    assert os.path.isfile(os.path.join(workdir, "samples", f"{name}_novel_30.png"))
  # alignment_accuracy on novel, recomputed word by word with Python loops.
  step, params = load_params(workdir)
  assert step == 30
  datasets, vocabulary = retrieval.load_datasets(config)
  novel = datasets["novel"]
  records = {k: np.stack([novel[i][k] for i in range(len(novel))])
             for k in ("image", "tokens", "length", "labels", "boxes")}
  model = retrieval.dvsa.DVSA(vocab_size=len(vocabulary), **config.dvsa)
  boxes, box_mask = retrieval.region_boxes(records, (60, 60), tuple(config.grid))
  regions, region_mask = model.apply({"params": params}, records["image"], boxes, box_mask,
                                     method=model.embed_regions)
  words, word_mask = model.apply({"params": params}, records["tokens"], records["length"] - 1,
                                 method=model.embed_words)
  regions, words = np.asarray(regions, np.float64), np.asarray(words, np.float64)
  digit_ids = {vocabulary.token_id(n) for n in DIGIT_NAMES}
  correct = total = 0
  for b in range(len(novel)):
    y0, x0, y1, x1 = records["boxes"][b].T
    digit_boxes = np.stack([x0, y0, x1, y1], 1)
    all_boxes = np.concatenate([[[0, 0, 60, 60]], np.asarray(boxes[b])])  # region 0: whole
    seen = 0
    for t in range(records["tokens"].shape[1]):
      if not word_mask[b, t] or int(records["tokens"][b, t]) not in digit_ids:
        continue
      dots = [regions[b, r] @ words[b, t] if region_mask[b, r] else -np.inf
              for r in range(regions.shape[1])]
      best = all_boxes[int(np.argmax(dots))]
      box = digit_boxes[seen]  # the caption names the digits in the record's order
      inter = (max(0, min(best[2], box[2]) - max(best[0], box[0]))
               * max(0, min(best[3], box[3]) - max(best[1], box[1])))
      union = ((best[2] - best[0]) * (best[3] - best[1]) + (box[2] - box[0]) * (box[3] - box[1])
               - inter)
      correct += int(inter / union >= 0.5)
      total += 1
      seen += 1
  assert total > 0
  assert final["novel"]["alignment_accuracy"] == pytest.approx(correct / total, abs=1e-3)
