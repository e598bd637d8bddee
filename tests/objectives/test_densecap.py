"""Tests for vislang_jax.objectives.densecap against a float64 NumPy reference of the five
terms (DenseCap Sec. 3.4 with the normalisations of the authors' Torch criterions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.objectives import densecap as dc

B, S, P, T, V = 2, 6, 3, 4, 7


def _boxes(rng, shape):
  """Random non-empty (x0, y0, x1, y1) boxes of shape [..., 4]."""
  corner = rng.uniform(0, 20, size=(*shape, 2))
  size = rng.uniform(2, 10, size=(*shape, 2))
  return np.concatenate([corner, corner + size], -1)


def _outputs(seed=0):
  rng = np.random.default_rng(seed)
  positive = np.zeros((B, S), bool)
  positive[0, :2] = True  # image 0: 2 positives, 3 negatives, 1 empty slot
  positive[1, :1] = True  # image 1: 1 positive, 5 negatives
  sample_mask = np.ones((B, S), bool)
  sample_mask[0, 5] = False
  caption_mask = np.zeros((B, P, T), bool)
  caption_mask[0, 0, :3] = True
  caption_mask[0, 1, :4] = True
  caption_mask[1, 0, :2] = True
  return dc.DenseCapOutputs(
      anchor_logits=rng.normal(size=(B, S)) * 3, anchor_offsets=rng.normal(size=(B, S, 4)),
      anchors=_boxes(rng, (B, S)), proposals=_boxes(rng, (B, S)),
      final_logits=rng.normal(size=(B, S)) * 3, final_offsets=rng.normal(size=(B, S, 4)),
      caption_logits=rng.normal(size=(B, P, T, V)) * 2, positive=positive,
      sample_mask=sample_mask, matched_boxes=_boxes(rng, (B, S)),
      caption_targets=rng.integers(0, V, size=(B, P, T)).astype(np.int32),
      caption_mask=caption_mask)


def _as_jax(outputs):
  return dc.DenseCapOutputs(*(x if x is None else jnp.asarray(x)
                              if x.dtype == bool or x.dtype.kind == "i"
                              else jnp.asarray(x, jnp.float32) for x in outputs))


def _np_offsets(boxes, anchors):
  """The paper's (t_x, t_y, t_w, t_h) in float64, written out from Sec. 3.1.2."""
  def centre_size(b):
    return (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, b[..., 2] - b[..., 0], \
        b[..., 3] - b[..., 1]
  x, y, w, h = centre_size(boxes)
  xa, ya, wa, ha = centre_size(anchors)
  return np.stack([(x - xa) / wa, (y - ya) / ha, np.log(w / wa), np.log(h / ha)], -1)


def _np_smooth_l1(x):
  return np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)


def _np_logistic(a, y):
  return np.log1p(np.exp(-a)) if y else np.log1p(np.exp(a))


def reference(outputs):
  """Per-image terms by explicit loops over the slots, float64."""
  o = [np.asarray(x, np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
       for x in outputs]
  o = dc.DenseCapOutputs(*o)
  terms = {name: np.zeros(B) for name in dc.TERMS}
  for b in range(B):
    pos = [s for s in range(S) if o.sample_mask[b, s] and o.positive[b, s]]
    neg = [s for s in range(S) if o.sample_mask[b, s] and not o.positive[b, s]]
    terms["mid_objectness"][b] = (
        np.mean([_np_logistic(o.anchor_logits[b, s], 1) for s in pos])
        + np.mean([_np_logistic(o.anchor_logits[b, s], 0) for s in neg]))
    terms["end_objectness"][b] = np.mean(
        [_np_logistic(o.final_logits[b, s], s in pos) for s in pos + neg])
    terms["mid_box_reg"][b] = np.mean([_np_smooth_l1(
        o.anchor_offsets[b, s] - _np_offsets(o.matched_boxes[b, s], o.anchors[b, s]))
                                       for s in pos])
    terms["end_box_reg"][b] = np.mean([_np_smooth_l1(
        o.final_offsets[b, s] - _np_offsets(o.matched_boxes[b, s], o.proposals[b, s]))
                                       for s in pos])
    phrases = []
    for p in range(P):
      if not o.caption_mask[b, p].any():
        continue
      nll = 0.0
      for t in range(T):
        if o.caption_mask[b, p, t]:
          logits = o.caption_logits[b, p, t]
          log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
          nll -= logits[o.caption_targets[b, p, t]] - log_z
      phrases.append(nll)
    terms["captioning"][b] = np.mean(phrases)
  return terms


def test_hand_computed_elementwise_losses():
  np.testing.assert_allclose(dc.smooth_l1(jnp.array([0.0, 0.5, -0.5, 1.0, -2.0, 3.0])),
                             [0.0, 0.125, 0.125, 0.5, 1.5, 2.5], rtol=1e-6)
  np.testing.assert_allclose(dc.logistic_loss(jnp.array([0.0, 0.0, 100.0, -100.0]),
                                              jnp.array([1.0, 0.0, 0.0, 1.0])),
                             [np.log(2), np.log(2), 100.0, 100.0], rtol=1e-6)


def test_terms_match_numpy_reference_and_weights_combine_them():
  outputs = _outputs()
  weights = {"mid_box_reg_weight": 0.05, "mid_objectness_weight": 0.1,
             "end_box_reg_weight": 0.2, "end_objectness_weight": 0.3, "captioning_weight": 1.5}
  loss, metrics = jax.jit(lambda o: dc.densecap_loss(o, **weights))(_as_jax(outputs))
  expected = reference(outputs)
  for name in dc.TERMS:
    np.testing.assert_allclose(metrics[name], expected[name], rtol=2e-5, err_msg=name)
  np.testing.assert_allclose(loss, sum(weights[f"{name}_weight"] * expected[name]
                                       for name in dc.TERMS), rtol=2e-5)
  np.testing.assert_array_equal(metrics["num_positives"], [2, 1])
  np.testing.assert_array_equal(metrics["num_negatives"], [3, 5])


def test_default_weights_are_train_opts():
  outputs = _as_jax(_outputs())
  loss, metrics = dc.densecap_loss(outputs)
  expected = (0.1 * metrics["mid_objectness"] + 0.05 * metrics["mid_box_reg"]
              + 0.1 * metrics["end_objectness"] + 0.1 * metrics["end_box_reg"]
              + 1.0 * metrics["captioning"])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_box_decay_is_half_the_squared_offsets_summed_over_anchors():
  outputs = _outputs()
  all_offsets = np.random.default_rng(5).normal(size=(B, 7, 4))
  without, _ = dc.densecap_loss(_as_jax(outputs), box_reg_decay=0.3)
  loss, metrics = dc.densecap_loss(_as_jax(outputs._replace(all_offsets=all_offsets)),
                                   box_reg_decay=0.3)
  expected = 0.5 * np.sum(all_offsets ** 2, axis=(1, 2))  # RegularizeLayer: 0.5 w ||t||^2
  np.testing.assert_allclose(metrics["box_decay"], expected, rtol=1e-5)
  np.testing.assert_allclose(loss - without, 0.3 * expected, rtol=1e-4)
  with pytest.raises(ValueError, match=r"all_offsets must have shape \[B, N, 4\]"):
    dc.densecap_loss(_as_jax(outputs._replace(all_offsets=all_offsets[..., :3])))
  with pytest.raises(ValueError, match="box_reg_decay"):
    dc.densecap_loss(_as_jax(outputs), box_reg_decay=-1.0)


def test_masked_slots_and_tokens_do_not_count():
  base = _outputs()
  changed = base._replace(
      # the empty slot of image 0, negatives' offsets, padded tokens and uncaptioned slots
      anchor_logits=np.where(base.sample_mask, base.anchor_logits, 1e3),
      final_logits=np.where(base.sample_mask, base.final_logits, -1e3),
      anchor_offsets=np.where(base.positive[..., None], base.anchor_offsets, 50.0),
      final_offsets=np.where(base.positive[..., None], base.final_offsets, -50.0),
      caption_logits=np.where(base.caption_mask[..., None], base.caption_logits, 1e3))
  loss_a, _ = dc.densecap_loss(_as_jax(base))
  loss_b, _ = dc.densecap_loss(_as_jax(changed))
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)


def test_gradients_flow_to_predictions_not_to_targets():
  outputs = _as_jax(_outputs())

  def total(anchor_offsets, final_offsets, matched, proposals, anchors):
    o = outputs._replace(anchor_offsets=anchor_offsets, final_offsets=final_offsets,
                         matched_boxes=matched, proposals=proposals, anchors=anchors)
    return dc.densecap_loss(o)[0].sum()

  grads = jax.grad(total, argnums=(0, 1, 2, 3, 4))(
      outputs.anchor_offsets, outputs.final_offsets, outputs.matched_boxes, outputs.proposals,
      outputs.anchors)
  assert float(jnp.abs(grads[0]).max()) > 0 and float(jnp.abs(grads[1]).max()) > 0
  for g in grads[2:]:  # targets: stop_gradient
    np.testing.assert_array_equal(g, 0.0)
  # only the positives' offsets are regressed
  np.testing.assert_array_equal(grads[0][~np.asarray(outputs.positive)], 0.0)


def test_image_without_positives_contributes_no_nan():
  outputs = _outputs()
  outputs = outputs._replace(positive=np.zeros_like(outputs.positive),
                             caption_mask=np.zeros_like(outputs.caption_mask))
  loss, metrics = dc.densecap_loss(_as_jax(outputs))
  assert np.isfinite(loss).all()
  for name in ("mid_box_reg", "end_box_reg", "captioning"):
    np.testing.assert_array_equal(metrics[name], 0.0)


def test_errors():
  outputs = _as_jax(_outputs())
  with pytest.raises(ValueError, match="captioning_weight"):
    dc.densecap_loss(outputs, captioning_weight=-1.0)
  with pytest.raises(ValueError, match="final_offsets"):
    dc.densecap_loss(outputs._replace(final_offsets=outputs.final_offsets[:, :2]))
  with pytest.raises(ValueError, match="caption_mask"):
    dc.densecap_loss(outputs._replace(caption_mask=outputs.caption_mask[..., :2]))
  with pytest.raises(ValueError, match="DenseCapOutputs"):
    dc.densecap_loss(tuple(outputs))
