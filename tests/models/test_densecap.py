"""Tests for vislang_jax.models.densecap: the FCLN dense captioner on tiny scenes.

Independent references: anchors written out by hand (cell centres ``(c + 0.5) stride``),
IoUs and offsets in NumPy, a float64 NumPy LSTM for the language model (region code at
``t = 0``, then ``<bos>``, then the words), pairwise IoUs of the kept detections, and the
objective's own NumPy-checked terms for the training run.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vislang_jax import decoding
from vislang_jax.models import densecap as dc
from vislang_jax.objectives.densecap import densecap_loss

V, SIZE, STRIDE, T = 9, 16, 4, 4
BOS, EOS = 1, 2
ANCHOR_SIZES = ((6, 6), (10, 10))

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _model(**overrides):
  options = dict(vocab_size=V, trunk="convnet", widths=(4, 8), anchor_sizes=ANCHOR_SIZES,
                 rpn_filters=8, pool_size=(2, 2), region_dim=16, embed_dim=8, hidden_size=8,
                 sampler_batch_size=8, max_proposals=8)
  return dc.DenseCap(**{**options, **overrides})


def _scene():
  """Two 16x16 images: bright squares on black, each region with a phrase.

  Image 0 has regions (1, 1, 11, 11) and (5, 5, 15, 15), image 1 one region (5, 1, 15, 11)
  (a padding slot); each is exactly a 10x10 anchor (centres 6 or 10 on the stride-4 grid).
  """
  images = np.zeros((2, SIZE, SIZE, 1), np.float32)
  images[0, 1:11, 1:11] = 1.0
  images[0, 5:15, 5:15] += 0.5
  images[1, 1:11, 5:15] = 1.0
  boxes = np.array([[[1, 1, 11, 11], [5, 5, 15, 15]],
                    [[5, 1, 15, 11], [0, 0, 0, 0]]], np.float32)
  mask = np.array([[True, True], [True, False]])
  tokens = np.array([[[5, 6, EOS, 0], [7, EOS, 0, 0]],
                     [[8, 5, EOS, 0], [0, 0, 0, 0]]], np.int32)
  lengths = np.array([[3, 2], [3, 0]], np.int32)
  return images, boxes, mask, tokens, lengths


def _init_params(model, scene):
  return model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, *scene,
                    deterministic=True)["params"]


def _apply_model(model, params, scene, key, deterministic=False):
  sample_key, dropout_key = jax.random.split(key)
  return model.apply({"params": params}, *scene, deterministic=deterministic,
                     rngs={"sample": sample_key, "dropout": dropout_key})


_init = _jit(_init_params, static_argnums=0)
_apply = _jit(_apply_model, static_argnums=0, static_argnames="deterministic")


@pytest.fixture(scope="module")
def setup():
  model, scene = _model(), _scene()
  return model, _init(model, scene), scene


def _np_iou(a, b):
  """IoU of boxes a [..., 4] and b [..., 4], float64, written out."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
  return w * h / (area(a) + area(b) - w * h)


def _np_anchors():
  """[Hf * Wf * k, 4] in (row, column, anchor) order: centres ((c + 0.5) 4, (r + 0.5) 4)."""
  rows = []
  for r in range(SIZE // STRIDE):
    for c in range(SIZE // STRIDE):
      for w, h in ANCHOR_SIZES:
        cx, cy = (c + 0.5) * STRIDE, (r + 0.5) * STRIDE
        rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
  return np.array(rows)


def test_training_call_shapes_under_jit(setup):
  model, params, scene = setup
  outputs, aux = _apply(model, params, scene, jax.random.key(3))
  s, p, n = 8, 4, (SIZE // STRIDE) ** 2 * len(ANCHOR_SIZES)
  shapes = {"anchor_logits": (2, s), "anchor_offsets": (2, s, 4), "anchors": (2, s, 4),
            "proposals": (2, s, 4), "final_logits": (2, s), "final_offsets": (2, s, 4),
            "caption_logits": (2, p, T, V), "positive": (2, s), "sample_mask": (2, s),
            "matched_boxes": (2, s, 4), "caption_targets": (2, p, T),
            "caption_mask": (2, p, T), "all_offsets": (2, n, 4)}
  assert {k: tuple(v.shape) for k, v in outputs._asdict().items()} == shapes
  assert aux["proposals"].shape == (2, n, 4) and aux["proposal_logits"].shape == (2, n)
  assert aux["codes"].shape == (2, s, 16) and aux["final_boxes"].shape == (2, s, 4)
  for b in range(2):  # positives first, then negatives, then empty slots
    positive, filled = np.asarray(outputs.positive[b]), np.asarray(outputs.sample_mask[b])
    assert positive.sum() >= 1
    np.testing.assert_array_equal(positive, np.arange(s) < positive.sum())
    np.testing.assert_array_equal(filled, np.arange(s) < filled.sum())


def test_initial_proposals_are_the_anchors(setup):
  """The offset convolution starts at zero (zero_box_conv): proposals == anchors."""
  model, params, scene = setup
  _, aux = _apply(model, params, scene, jax.random.key(3))
  for b in range(2):
    np.testing.assert_allclose(aux["proposals"][b], _np_anchors(), atol=1e-5)


def test_sampled_regions_and_their_targets(setup):
  model, params, scene = setup
  images, gt_boxes, gt_mask, gt_tokens, gt_lengths = scene
  outputs, aux = _apply(model, params, scene, jax.random.key(4))
  proposals = np.asarray(aux["proposals"])
  inside = ((proposals[..., :2] >= 0) & (proposals[..., 2:] <= SIZE)).all(-1)
  for b in range(2):
    real = gt_boxes[b][gt_mask[b]]
    iou = _np_iou(proposals[b][:, None], real[None])  # [N, G]
    best = np.where(inside[b][:, None], iou, -1).argmax(0)
    for s in range(8):
      if not outputs.sample_mask[b, s]:
        continue
      index, j = int(aux["sample_indices"][b, s]), int(aux["matched"][b, s])
      assert inside[b, index]
      np.testing.assert_allclose(outputs.proposals[b, s], proposals[b, index], atol=1e-5)
      if not outputs.positive[b, s]:
        assert iou[index].max() < 0.3
        continue
      assert iou[index].max() >= 0.7 or index in best
      np.testing.assert_array_equal(outputs.matched_boxes[b, s], gt_boxes[b, j])
      # the anchor regression target decodes back to the ground-truth box
      anchor = np.asarray(outputs.anchors[b, s], np.float64)
      np.testing.assert_allclose(anchor, _np_anchors()[index], atol=1e-5)
      (ax, ay), (aw, ah) = (anchor[:2] + anchor[2:]) / 2, anchor[2:] - anchor[:2]
      g = gt_boxes[b, j].astype(np.float64)
      (gx, gy), (gw, gh) = (g[:2] + g[2:]) / 2, g[2:] - g[:2]
      t = [(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)]
      cx, cy, w, h = ax + t[0] * aw, ay + t[1] * ah, aw * np.exp(t[2]), ah * np.exp(t[3])
      np.testing.assert_allclose([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], g,
                                 atol=1e-9)
      # the captioned phrase is the matched region's
      np.testing.assert_array_equal(outputs.caption_targets[b, s], gt_tokens[b, j])
      np.testing.assert_array_equal(outputs.caption_mask[b, s],
                                    np.arange(T) < gt_lengths[b, j])
    # both regions of image 0 have their exact anchor among the positives
    positives = {int(aux["sample_indices"][b, s]) for s in range(8) if outputs.positive[b, s]}
    assert set(np.flatnonzero(iou.max(1) > 0.999)) <= positives


TERMS = ("mid_box_reg", "mid_objectness", "end_box_reg", "end_objectness", "captioning")
TRAIN_OPTS = np.array([0.05, 0.1, 0.1, 0.1, 1.0], np.float32)  # densecap_loss's defaults
ONLY_CAPTIONING = np.array([0, 0, 0, 0, 1.0], np.float32)


def _weighted_loss(model, params, scene, key, weights):
  """The batch mean of sum_i weights[i] term_i, and the terms' batch means: the weights are
  traced, so one compiled gradient serves every combination."""
  outputs, _ = _apply_model(model, params, scene, key, deterministic=True)
  loss, metrics = densecap_loss(outputs)
  terms = {term: metrics[term].mean() for term in TERMS}
  weighted = sum(weights[i] * terms[term] for i, term in enumerate(TERMS))
  return weighted, dict(terms, loss=loss.mean())


_value_and_grad = _jit(jax.value_and_grad(_weighted_loss, argnums=1, has_aux=True),
                       static_argnums=0)


@pytest.mark.parametrize("box_gradients", [True, False])
def test_captioning_gradient_reaches_proposal_offsets_through_pooling(setup, box_gradients):
  """The captioning loss depends on the offsets only through the pooled boxes."""
  _, params, scene = setup
  (_, terms), grads = _value_and_grad(_model(box_gradients=box_gradients), params, scene,
                                      jax.random.key(5), ONLY_CAPTIONING)
  assert float(terms["captioning"]) > 0
  offsets = np.abs(np.asarray(grads["rpn_offsets"]["kernel"])).max()
  assert np.isfinite(offsets)
  assert (offsets > 0) == box_gradients
  assert np.abs(np.asarray(grads["fc6"]["kernel"])).max() > 0


def _train(model, params, scene, weights, *, steps, learning_rate):
  """Adam on a fixed sampling key; the terms at every step."""
  optimizer = optax.adam(learning_rate)
  update = _jit(optimizer.update)
  state = optimizer.init(params)
  history = []
  for step in range(steps):
    (loss, terms), grads = _value_and_grad(model, params, scene, jax.random.key(6), weights)
    if step == 0:
      for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(g).all(), jax.tree_util.keystr(path)
        assert np.abs(g).max() > 0 or not weights.all(), jax.tree_util.keystr(path)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(dict({k: float(v) for k, v in terms.items()}, weighted=float(loss)))
  return history


def test_training_steps_reduce_the_loss(setup):
  """A tiny scene whose regions are not exactly anchors: with all five terms every parameter
  gets a gradient and the loss halves (the captioning term dominates); the localisation
  layer's terms alone lower its objectness loss."""
  model, params, scene = setup
  images, boxes, *rest = scene
  scene = (images, boxes + np.array([1, 0, 2, 1], np.float32), *rest)
  history = _train(model, params, scene, TRAIN_OPTS, steps=20, learning_rate=3e-2)
  np.testing.assert_allclose(history[0]["weighted"], history[0]["loss"], rtol=1e-6)
  assert history[-1]["loss"] < 0.5 * history[0]["loss"], history
  assert history[-1]["captioning"] < 0.5 * history[0]["captioning"], history
  localisation = np.array([1.0, 1.0, 0, 0, 0], np.float32)
  history = _train(model, params, scene, localisation, steps=15, learning_rate=1e-2)
  assert history[-1]["mid_objectness"] < 0.9 * history[0]["mid_objectness"], history


def test_detect_fixed_shapes_final_nms_and_images_independent(setup):
  """``detect`` against a Python greedy NMS at 0.3 over its own candidates (the refined
  boxes with the final NMS switched off)."""
  model, params, scene = setup
  images = scene[0]

  @_jit
  def detect(params, images):
    return (model.detections(params, images, max_proposals=16, max_regions=6),
            model.detections(params, images, max_proposals=16, max_regions=16,
                             final_nms_threshold=1.0))

  out, candidates = detect(params, images)
  assert out.boxes.shape == (2, 6, 4) and out.scores.shape == (2, 6)
  assert out.codes.shape == (2, 6, 16) and out.mask.shape == (2, 6)
  assert out.proposals.shape == (2, 6, 4)
  suppressed = 0
  for b in range(2):
    mask = np.asarray(out.mask[b])
    kept = int(mask.sum())
    np.testing.assert_array_equal(mask, np.arange(6) < kept)
    scores, boxes = np.asarray(out.scores[b, :kept]), np.asarray(out.boxes[b, :kept])
    assert np.all(np.diff(scores) <= 0) and np.all((scores > 0) & (scores < 1))
    assert np.all(boxes >= 0) and np.all(boxes <= SIZE)
    np.testing.assert_array_equal(out.boxes[b, kept:], 0.0)
    count = int(candidates.mask[b].sum())
    order = np.asarray(candidates.boxes[b, :count], np.float64)
    chosen = []  # greedy NMS: keep a box unless it overlaps a kept one by more than 0.3
    for i in range(count):
      if all(_np_iou(order[i], order[j]) <= 0.3 for j in chosen):
        chosen.append(i)
    suppressed += count - len(chosen)
    chosen = chosen[:6]
    assert kept == len(chosen)
    np.testing.assert_allclose(boxes, order[chosen], atol=1e-5)
    np.testing.assert_allclose(scores, candidates.scores[b, np.array(chosen)], atol=1e-6)
    np.testing.assert_allclose(out.codes[b, :kept], candidates.codes[b, np.array(chosen)],
                               atol=1e-5)
  assert suppressed > 0  # the final NMS had something to do
  swapped, _ = detect(params, images[::-1])  # the per-image (vmapped) NMS: images independent
  for got, want in zip(swapped, out):
    np.testing.assert_allclose(got[::-1], want, atol=1e-5)


def _np_log_likelihood(params, codes, tokens, length):
  """The language model in float64: relu(W code) at t = 0, then <bos>, y_1, ..."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["language_model"])
  sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  lstm = p["lstm"]

  def step(c, h, x):
    gate = {g: x @ lstm["i" + g]["kernel"] + h @ lstm["h" + g]["kernel"] + lstm["h" + g]["bias"]
            for g in "ifgo"}
    c = sigmoid(gate["f"]) * c + sigmoid(gate["i"]) * np.tanh(gate["g"])
    return c, sigmoid(gate["o"]) * np.tanh(c)

  code = np.asarray(codes, np.float64)
  x = np.maximum(code @ p["encode_region"]["kernel"] + p["encode_region"]["bias"], 0)
  c, h = step(np.zeros(8), np.zeros(8), x)
  total, previous = 0.0, BOS
  for t in range(length):
    c, h = step(c, h, p["embed"]["embedding"][previous])
    logits = h @ p["logits"]["kernel"] + p["logits"]["bias"]
    total += logits[tokens[t]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    previous = tokens[t]
  return total


def test_log_likelihood_against_numpy_language_model(setup):
  model, params, _ = setup
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: x + 0.3 * rng.normal(size=x.shape).astype(x.dtype), params)
  codes = rng.normal(size=(2, 3, 16)).astype(np.float32)
  query = np.array([5, 6, EOS, 0], np.int32)
  got = _jit(model.phrase_log_likelihood)(params, codes, query, 3)  # one query, [2, 3] codes
  assert got.shape == (2, 3)
  for b in range(2):
    for m in range(3):
      np.testing.assert_allclose(got[b, m], _np_log_likelihood(params, codes[b, m], query, 3),
                                 rtol=1e-4)


def test_training_captions_and_decoding_use_the_same_language_model(setup):
  """Teacher-forced training logits, the log-likelihood and greedy decoding agree."""
  model, params, scene = setup
  outputs, aux = _apply(model, params, scene, jax.random.key(7))
  b, s = 0, 0  # a positive
  log_probs = jax.nn.log_softmax(outputs.caption_logits[b, s])
  targets, mask = outputs.caption_targets[b, s], outputs.caption_mask[b, s]
  teacher = jnp.sum(jnp.where(mask, log_probs[jnp.arange(T), targets], 0.0))

  @_jit
  def decode(params, codes, targets, length):
    out = decoding.greedy(functools.partial(model.decode_step, params),
                          model.init_decode_state(params, codes), bos_id=BOS, eos_id=EOS,
                          max_len=T)
    # one [S + 1, T] batch: the positive's phrase, then the greedy captions of every region
    tokens = jnp.concatenate([targets[None], out.tokens])
    lengths = jnp.concatenate([length[None], out.lengths])
    codes = jnp.concatenate([codes[s:s + 1], codes])
    return out, model.phrase_log_likelihood(params, codes, tokens, lengths)

  out, likelihood = decode(params, aux["codes"][b], targets, mask.sum())
  assert out.tokens.shape == (8, T)
  np.testing.assert_allclose(likelihood[0], teacher, rtol=1e-5)
  np.testing.assert_allclose(likelihood[1:], out.scores, rtol=1e-4, atol=1e-5)


def test_vgg_trunk_layout():
  """The paper's trunk: VGG-16 conv5_3 (stride 16, 512 channels) under params["cnn"]."""
  model = _model(trunk="vgg16", anchor_sizes=((16, 16),))
  images = jnp.zeros((1, 32, 32, 3))
  scene = (images, jnp.array([[[0.0, 0.0, 16.0, 16.0]]]), jnp.array([[True]]),
           jnp.array([[[5, EOS, 0, 0]]]), jnp.array([[2]]))
  shapes = jax.eval_shape(functools.partial(_init_params, model), scene)
  assert sorted(shapes["cnn"]) == sorted(f"features_{i}" for i in (
      0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
  assert shapes["rpn_conv"]["kernel"].shape == (3, 3, 512, 8)
  assert shapes["rpn_scores"]["kernel"].shape == (1, 1, 8, 1)
  assert shapes["fc6"]["kernel"].shape == (2 * 2 * 512, 16)
  out, aux = jax.eval_shape(functools.partial(_apply_model, model), shapes, scene,
                            jax.random.key(0))
  assert aux["proposals"].shape == (1, 2 * 2 * 1, 4)  # 32 / 16 = 2 cells a side


def test_paper_defaults():
  model = dc.DenseCap(vocab_size=V)
  assert (model.trunk, model.rpn_filters, tuple(model.pool_size), model.region_dim) == (
      "vgg16", 256, (7, 7), 4096)
  assert len(model.anchor_sizes) == 12 and model.stride == 16
  assert (model.sampler_batch_size, model.positive_fraction, model.high_threshold,
          model.low_threshold) == (256, 0.5, 0.7, 0.3)
  assert (model.max_proposals, model.proposal_nms_threshold, model.final_nms_threshold) == (
      300, 0.7, 0.3)
  assert (model.embed_dim, model.hidden_size, model.dropout_rate) == (512, 512, 0.5)


@pytest.mark.parametrize("options, match", [
    (dict(trunk="resnet"), "trunk"),
    (dict(anchor_sizes=((4, -1),)), "anchor_sizes"),
    (dict(sampler_batch_size=8, positive_fraction=0.1), "positive"),
    (dict(low_threshold=0.8), "low_threshold"),
    (dict(bos_id=V), "bos_id"),
])
def test_construction_errors(options, match):
  with pytest.raises(ValueError, match=match):
    _model(**options)


def _broken(index, value):
  scene = list(_scene())
  scene[index] = value(scene[index]) if callable(value) else value
  return scene


@pytest.mark.parametrize("scene, model_options, match", [
    (_broken(0, lambda x: x[:, :3, :3]), {}, "stride"),  # smaller than the feature stride
    (_scene(), dict(anchor_sizes=((40, 40),)), "anchor_sizes"),  # anchors larger than 16x16
    (_broken(1, lambda x: x[..., :3]), {}, "gt_boxes"),
    (_broken(2, lambda x: x[:, :1]), {}, "gt_mask"),
    (_broken(3, lambda x: x[..., 0]), {}, "gt_tokens"),
    (_broken(3, lambda x: x + V), {}, "gt_tokens"),
    (_broken(2, np.array([[True, True], [False, False]])), {}, "empty scene"),
    (_broken(1, lambda x: x + np.array([0, 0, 8, 0], np.float32)), {}, "inside"),
])
def test_call_errors(scene, model_options, match):
  with pytest.raises(ValueError, match=match):
    _init_params(_model(**model_options), scene)
