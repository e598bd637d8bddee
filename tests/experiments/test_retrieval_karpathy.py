"""`experiments/retrieval.py` on a Karpathy-split corpus (a tiny Flickr-style fixture): the
image side deduplicated, same-image hits, metrics recomputed by brute force from the checkpoint."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments import retrieval
from experiments.configs import retrieval as retrieval_config
from vislang_jax.train.checkpoint import load_params
from vislang_jax.train.metrics import read_metrics

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (230, 220, 30)}
SPLITS = ["train"] * 12 + ["val"] * 4 + ["test"] * 4
STEPS = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """`dataset_flickr.json` and 16x16 images: a colour square on another colour, 2-3 captions
  each; test images 16 and 18 share the caption "a red square" (a hit across images)."""
  root = tmp_path_factory.mktemp("karpathy")
  (root / "images").mkdir()
  rng = np.random.default_rng(0)
  names = list(COLOURS)
  entries = []
  for i, split in enumerate(SPLITS):
    fg, bg = rng.choice(len(names), 2, replace=False)
    fg, bg = ("red", "blue") if i in (16, 18) else (names[fg], names[bg])
    pixels = np.full((16, 16, 3), COLOURS[bg], np.uint8)
    y, x = rng.integers(0, 8, 2)
    pixels[y:y + 8, x:x + 8] = COLOURS[fg]
    pixels = np.clip(pixels + rng.integers(-10, 10, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(root / "images" / f"{1000 + i}.jpg")
    raw = [f"A {fg} square on a {bg} background.", f"a {fg} square",
           f"a small {fg} box drawn over a plain {bg} field of colour"][:2 + i % 2]
    entries.append({"filename": f"{1000 + i}.jpg", "split": split, "imgid": 500 - 7 * i,
                    "sentences": [{"raw": r, "tokens": r.lower().split()} for r in raw]})
  path = root / "dataset_flickr.json"
  path.write_text(json.dumps({"dataset": "flickr", "images": entries}))
  return str(path), str(root / "images")


def tiny_config(corpus, model):
  config = retrieval_config.get_config()
  config.model = model
  config.data.source = "karpathy"
  config.data.karpathy_json, config.data.image_dir = corpus
  config.data.image_size = 16
  config.data.captions_per_image = 3
  config.data.vocab_size = 12
  config.max_len = 8  # the third captions (11 words) are truncated
  config.vse.update(embed_dim=8, word_dim=8, encoder={"backbone": "convnet", "widths": (4,)})
  config.dvsa.update(embed_dim=8, word_dim=8, hidden_size=8, crop_size=(8, 8),
                     encoder={"backbone": "convnet", "widths": (4,)})
  config.grid = (2, 2)
  config.train.num_steps = STEPS
  config.train.batch_size = 6
  config.train.learning_rate = 1e-2
  config.train.log_every = 2
  config.train.eval_every = STEPS
  config.train.checkpoint_every = STEPS
  config.eval.batch_size = 8
  config.num_samples = 2
  config.top_k = 3
  return config


def brute_force_ranks(scores, hits):
  """Per query, 1 + the non-hits scoring at least the best hit."""
  ranks = []
  for q in range(scores.shape[0]):
    best = max(scores[q, c] for c in range(scores.shape[1]) if hits[q][c])
    ranks.append(1 + sum(1 for c in range(scores.shape[1])
                         if not hits[q][c] and scores[q, c] >= best))
  return np.array(ranks)


def test_retrieval_pool_by_hand():
  # Records of images 9, 9, 4, 7, 4 (ids not sorted: rows follow first appearance); record 3's
  # caption equals record 0's, so image 7's sentence is a hit for image 9 and vice versa.
  tokens = np.array([[5, 2], [6, 2], [7, 2], [5, 2], [8, 2]])
  first, owner, hits = retrieval.retrieval_pool(tokens, np.array([9, 9, 4, 7, 4]))
  np.testing.assert_array_equal(first, [0, 2, 3])
  np.testing.assert_array_equal(owner, [0, 0, 1, 2, 1])
  np.testing.assert_array_equal(hits, [[1, 1, 0, 1, 0], [0, 0, 1, 0, 1], [1, 0, 0, 1, 0]])
  # Digits: every record its own image, hits = identical captions.
  first, owner, hits = retrieval.retrieval_pool(tokens)
  np.testing.assert_array_equal(first, np.arange(5))
  np.testing.assert_array_equal(owner, np.arange(5))
  np.testing.assert_array_equal(hits, np.all(tokens[:, None] == tokens[None], -1))
  batch = {"tokens": tokens[:3], "image_id": np.array([9, 9, 4])}
  np.testing.assert_array_equal(retrieval.same_scene(batch), [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
  np.testing.assert_array_equal(retrieval.same_scene({"tokens": tokens[[0, 3]]}), [[1, 1], [1, 1]])
  boxes, mask = retrieval.region_boxes({"image": np.zeros((2, 16, 16, 3))}, (16, 16), (1, 2))
  np.testing.assert_array_equal(boxes, [[[0, 0, 8, 16], [8, 0, 16, 16]]] * 2)
  assert mask.shape == (2, 2) and bool(mask.all())


def test_config_errors_before_loading(tmp_path, corpus):
  config = tiny_config(corpus, "vse")
  config.data.karpathy_json = str(tmp_path / "missing.json")
  with pytest.raises(ValueError, match="data.karpathy_json must be"):
    retrieval.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config(corpus, "vse")
  config.data.image_dir = ""
  with pytest.raises(ValueError, match="data.image_dir must be"):
    retrieval.load_datasets(config)
  config.data.source = "flickr"
  with pytest.raises(ValueError, match=r"data.source must be one of .*'karpathy'.*'flickr'"):
    retrieval.load_datasets(config)
  config = tiny_config(corpus, "dvsa")
  config.grid, config.whole_image = (), False
  with pytest.raises(ValueError, match="grid must name cells or whole_image"):
    retrieval.train_and_evaluate(config, str(tmp_path / "b"))


@pytest.mark.parametrize("model", ["vse", "dvsa"])
def test_metrics_equal_brute_force(tmp_path, corpus, model):
  workdir = str(tmp_path / model)
  config = tiny_config(corpus, model)
  final = retrieval.train_and_evaluate(config, workdir)
  assert set(final) == {"validation", "test"}
  test = final["test"]
  assert test["num_images"] == 4 and test["num_folds"] == 1
  assert not {"alignment_accuracy", "mrf_alignment_accuracy", "arithmetic_r1"} & set(test)
  assert [r for r in read_metrics(workdir) if r["split"] == "train"]
  names = ["retrieval"] + (["alignment"] if model == "dvsa" else [])
  for name in names:
    assert os.path.isfile(os.path.join(workdir, "samples", f"{name}_test_{STEPS}.png"))
  # The test split from the checkpoint: 4 images x 3 records, each image embedded once.
  step, params = load_params(workdir)
  assert step == STEPS
  datasets, vocabulary = retrieval.load_datasets(config)
  split = datasets["test"]
  records = {k: np.stack([split[i][k] for i in range(len(split))])
             for k in ("image", "tokens", "length", "image_id")}
  assert records["image"].shape == (12, 16, 16, 3)
  ids = list(dict.fromkeys(records["image_id"].tolist()))  # first appearance
  first = [records["image_id"].tolist().index(i) for i in ids]
  tokens = records["tokens"]
  hits = [[ids[i] == records["image_id"][s] or any(
      np.array_equal(tokens[s], tokens[r]) for r in range(len(tokens))
      if records["image_id"][r] == ids[i]) for s in range(len(tokens))] for i in range(len(ids))]
  assert sum(map(sum, hits)) > 12  # the shared caption "a red square" adds cross-image hits
  variables = {"params": params}
  if model == "vse":
    net = retrieval.vse.VSE(vocab_size=len(vocabulary), **config.vse)
    x = np.asarray(net.apply(variables, records["image"][first], method=net.embed_images),
                   np.float64)
    v = np.asarray(net.apply(variables, tokens, records["length"], method=net.embed_sentences),
                   np.float64)
    scores = x @ v.T
  else:
    net = retrieval.dvsa.DVSA(vocab_size=len(vocabulary), **config.dvsa)
    cells = np.array([[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]], np.float32)
    regions, _ = net.apply(variables, records["image"][first], np.stack([cells] * len(first)),
                           np.ones((len(first), 4), bool), method=net.embed_regions)
    words, word_mask = net.apply(variables, tokens, records["length"] - 1,
                                 method=net.embed_words)
    regions, words = np.asarray(regions, np.float64), np.asarray(words, np.float64)
    assert regions.shape[1] == 5  # the whole image and the 4 cells
    scores = np.array([[sum(max(regions[i, r] @ words[s, t] for r in range(5))
                            for t in range(tokens.shape[1]) if word_mask[s, t])
                        for s in range(len(tokens))] for i in range(len(first))])
  i2t = brute_force_ranks(scores, hits)
  t2i = brute_force_ranks(scores.T, [list(h) for h in zip(*hits)])
  for name, ranks in (("i2t", i2t), ("t2i", t2i)):
    for k in (1, 5, 10):
      assert test[f"{name}_r{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-4)
    assert test[f"{name}_median_rank"] == pytest.approx(np.median(ranks))
    assert test[f"{name}_mean_rank"] == pytest.approx(np.mean(ranks), abs=1e-4)
