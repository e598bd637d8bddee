"""The DenseCap training loss: five terms over sampled regions (Johnson et al., 2016).

Johnson, Karpathy, Fei-Fei, "DenseCap: Fully Convolutional Localization Networks for Dense
Captioning", CVPR 2016, Sec. 3.2 ("Loss function"): a weighted sum of five losses (only the
paper's abstract could be read when this was checked: its section numbers and the statements
credited to it are the implementers' reading, unverified; those credited to the code were
checked against jcjohnson/densecap),

    L = w_mo L_mid_objectness + w_mb L_mid_box_reg        (the localisation layer, Sec. 3.1.2)
      + w_eo L_end_objectness + w_eb L_end_box_reg        (the recognition network, Sec. 3.1.3)
      + w_c L_captioning                                  (the language model, Sec. 3.1.4)

computed, per image, on the ``S`` region proposals that the localisation layer's box
sampler drew (positives, IoU >= 0.7 with a ground-truth region or the best proposal of one,
first; negatives, IoU < 0.3, after; ``models.densecap``):

* ``L_mid_objectness``: the binary logistic loss of the proposals' objectness logits, 1 on
  positives and 0 on negatives; as the code (``LocalizationLayer.lua``, ``obj_crit_pos`` and
  ``obj_crit_neg``), the mean over the positives plus the mean over the negatives.
* ``L_mid_box_reg``: smooth L1 between the positives' predicted offsets from their anchors
  and ``encode_offsets(matched ground truth, anchor)``, the paper's ``(t_x, t_y, t_w, t_h)``
  (Sec. 3.1.2, "Box Regression"); the mean over the positives' 4 offsets
  (``nn.SmoothL1Criterion``, size-averaged).
* ``L_end_objectness``: the logistic loss of the recognition network's confidences of all
  sampled regions, 1 on positives, 0 on negatives, the mean over them
  (``DenseCapModel.lua``'s ``LogisticCriterion``, divided by the number of boxes).
* ``L_end_box_reg``: smooth L1 between the positives' refinements and
  ``encode_offsets(matched ground truth, proposal)``, the mean over the positives' 4
  offsets (``BoxRegressionCriterion.lua``).
* ``L_captioning``: the cross-entropy of each positive's phrase (``<eos>`` included), summed
  over its tokens and averaged over the positives (torch-rnn's
  ``TemporalCrossEntropyCriterion``, batch-averaged, not time-averaged).

Smooth L1 is ``0.5 x^2`` for ``|x| < 1`` and ``|x| - 0.5`` otherwise (Fast R-CNN; torch's
``SmoothL1Criterion``). An image without positives (impossible with ground truth, whose best
proposal is always positive) or negatives contributes 0 to the corresponding mean.

Gradients: the regression targets are constants (``jax.lax.stop_gradient``). The code also
backpropagates the end box regression into the proposal coordinates through its target
(``BoxRegressionCriterion:updateGradInput`` returns a gradient for the boxes); here the
proposal is held fixed there, and the proposals' coordinates get their gradient through the
bilinear pooling (``models.densecap``), as the paper describes (Sec. 3.1.2). The code's
dropping of targets ``|t| > 10`` is left out.

Box decay: beside the five terms, the code pulls every anchor's offsets towards zero,
``0.5 * box_reg_decay * sum_anchors ||t||^2`` (``RegularizeLayer`` in the RPN,
``train_opts.lua``'s ``-box_reg_decay 5e-5``, "strength of pull that boxes experience towards
their anchor"), summed, not averaged, over the anchors of an image. It keeps the proposals
near their anchors while the pooling's box gradients push them about; without it proposals
can drift off the image, where nothing is sampled. Here it is the ``box_decay`` term,
weight ``box_reg_decay`` (0 turns it off).

Default weights: the code's ``train_opts.lua`` (``-mid_box_reg_weight 0.05``,
``-mid_objectness_weight 0.1``, ``-end_box_reg_weight 0.1``, ``-end_objectness_weight 0.1``,
``-captioning_weight 1.0``, checked); the paper (Sec. 3.2) is read as giving 0.1 for the
first four terms and 1.0 for captioning, and as normalising by the batch and the sequence
length (both unverified), where the code's criterions average the captioning loss over the
regions only (summed over tokens), as here.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_ids
from vislang_jax.ops.boxes import encode_offsets

TERMS = ("mid_objectness", "mid_box_reg", "end_objectness", "end_box_reg", "captioning")


class DenseCapOutputs(NamedTuple):
  """What the loss reads from ``models.densecap.DenseCap``'s training call, per image.

  ``S`` sampled regions per image (positives first), ``P <= S`` of them captioned (the
  first ``P`` slots, which hold every positive), phrases of ``T`` tokens, ``V`` words.
  Boxes are ``(x0, y0, x1, y1)`` pixels.

  Attributes:
    anchor_logits: [B, S] float, the localisation layer's objectness logits.
    anchor_offsets: [B, S, 4] float, its predicted offsets from the anchors.
    anchors: [B, S, 4] float, the sampled regions' anchors.
    proposals: [B, S, 4] float, the sampled proposals (``decode_offsets`` of the offsets).
    final_logits: [B, S] float, the recognition network's confidence logits.
    final_offsets: [B, S, 4] float, its refinements, offsets from the proposals.
    caption_logits: [B, P, T, V] float, the language model's teacher-forced predictions.
    positive: [B, S] bool, the sampled positives.
    sample_mask: [B, S] bool, the filled sample slots (positives and negatives).
    matched_boxes: [B, S, 4] float, the ground-truth box of each positive (any value
      elsewhere).
    caption_targets: [B, P, T] int, each positive's phrase ``y_1..y_T`` (``<eos>``, then pad).
    caption_mask: [B, P, T] bool, True on the real tokens of positives' phrases.
    all_offsets: [B, N, 4] float, the localisation layer's offsets of every anchor (the
      code's box decay reads them); None leaves that term out.
  """

  anchor_logits: jax.Array
  anchor_offsets: jax.Array
  anchors: jax.Array
  proposals: jax.Array
  final_logits: jax.Array
  final_offsets: jax.Array
  caption_logits: jax.Array
  positive: jax.Array
  sample_mask: jax.Array
  matched_boxes: jax.Array
  caption_targets: jax.Array
  caption_mask: jax.Array
  all_offsets: jax.Array | None = None


def smooth_l1(x: jax.Array) -> jax.Array:
  """Elementwise ``0.5 x^2`` where ``|x| < 1``, ``|x| - 0.5`` elsewhere (Fast R-CNN eq. 3)."""
  absolute = jnp.abs(x)
  return jnp.where(absolute < 1.0, 0.5 * jnp.square(x), absolute - 0.5)


def logistic_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Elementwise ``-y log sigmoid(a) - (1 - y) log sigmoid(-a)``, stable for any ``a``."""
  labels = jnp.asarray(labels, jnp.float32)
  return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def _masked_mean(values: jax.Array, mask: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """Mean of ``values`` over ``axes`` where ``mask``; 0 where nothing is masked in."""
  mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), values.shape)
  total = jnp.sum(jnp.where(mask > 0, values, 0.0), axis=axes)
  return total / jnp.maximum(jnp.sum(mask, axis=axes), 1.0)


def _check_outputs(outputs: DenseCapOutputs) -> None:
  """Shapes [B, S], [B, S, 4], [B, P, T, V], [B, P, T] consistent with each other."""
  if not isinstance(outputs, DenseCapOutputs):
    raise ValueError(f"outputs must be a DenseCapOutputs, got {type(outputs).__name__}.")
  batch, slots = np.shape(outputs.anchor_logits)[:2] if np.ndim(
      outputs.anchor_logits) == 2 else (None, None)
  if batch is None:
    raise ValueError(f"outputs.anchor_logits must have shape [B, S], got "
                     f"{np.shape(outputs.anchor_logits)}.")
  for name in ("final_logits", "positive", "sample_mask"):
    if tuple(np.shape(getattr(outputs, name))) != (batch, slots):
      raise ValueError(f"outputs.{name} must have shape [B, S] = {(batch, slots)}, got "
                       f"{np.shape(getattr(outputs, name))}.")
  for name in ("anchor_offsets", "anchors", "proposals", "final_offsets", "matched_boxes"):
    if tuple(np.shape(getattr(outputs, name))) != (batch, slots, 4):
      raise ValueError(f"outputs.{name} must have shape [B, S, 4] = {(batch, slots, 4)}, got "
                       f"{np.shape(getattr(outputs, name))}.")
  all_offsets = outputs.all_offsets
  if all_offsets is not None and (np.ndim(all_offsets) != 3 or np.shape(all_offsets)[0] != batch
                                  or np.shape(all_offsets)[2] != 4):
    raise ValueError(f"outputs.all_offsets must have shape [B, N, 4] with B = {batch}, got "
                     f"{np.shape(all_offsets)}.")
  logits = outputs.caption_logits
  if np.ndim(logits) != 4 or np.shape(logits)[0] != batch or np.shape(logits)[1] > slots:
    raise ValueError(f"outputs.caption_logits must have shape [B, P, T, V] with B = {batch} "
                     f"and P <= S = {slots}, got {np.shape(logits)}.")
  for name in ("caption_targets", "caption_mask"):
    if tuple(np.shape(getattr(outputs, name))) != tuple(np.shape(logits)[:3]):
      raise ValueError(f"outputs.{name} must have shape [B, P, T] = {np.shape(logits)[:3]}, "
                       f"got {np.shape(getattr(outputs, name))}.")
  check_ids("outputs.caption_targets", outputs.caption_targets, vocab_size=np.shape(logits)[3])


def densecap_loss(outputs: DenseCapOutputs, *, mid_box_reg_weight: float = 0.05,
                  mid_objectness_weight: float = 0.1, end_box_reg_weight: float = 0.1,
                  end_objectness_weight: float = 0.1, captioning_weight: float = 1.0,
                  box_reg_decay: float = 5e-5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The five-term DenseCap loss of Sec. 3.2 per image (module docstring).

  Args:
    outputs: ``DenseCapOutputs`` of ``B`` images (``DenseCap.__call__``'s first output).
    mid_box_reg_weight: ``w_mb`` >= 0, the localisation layer's box regression.
    mid_objectness_weight: ``w_mo`` >= 0, the localisation layer's objectness.
    end_box_reg_weight: ``w_eb`` >= 0, the recognition network's box refinement.
    end_objectness_weight: ``w_eo`` >= 0, the recognition network's confidence.
    captioning_weight: ``w_c`` >= 0, the language model's cross-entropy.
    box_reg_decay: >= 0, the code's pull of every anchor's offsets towards 0 (module
      docstring); needs ``outputs.all_offsets``.

  Returns:
    ``(loss [B], metrics)``: ``loss`` the weighted sum; ``metrics`` the unweighted terms
    ``"mid_objectness"``, ``"mid_box_reg"``, ``"end_objectness"``, ``"end_box_reg"``,
    ``"captioning"`` (nats per phrase), ``"box_decay"`` (``0.5 sum ||t||^2``, 0 without
    ``all_offsets``), and ``"num_positives"``, ``"num_negatives"``, each [B] float32.

  Raises:
    ValueError: for a negative or non-finite weight, or outputs of inconsistent shapes.
  """
  weights = {"mid_objectness": mid_objectness_weight, "mid_box_reg": mid_box_reg_weight,
             "end_objectness": end_objectness_weight, "end_box_reg": end_box_reg_weight,
             "captioning": captioning_weight}
  for term, weight in weights.items():
    check_float(f"{term}_weight", weight, low=0.0)
  check_float("box_reg_decay", box_reg_decay, low=0.0)
  _check_outputs(outputs)
  positive = jnp.asarray(outputs.positive, bool) & jnp.asarray(outputs.sample_mask, bool)
  negative = ~jnp.asarray(outputs.positive, bool) & jnp.asarray(outputs.sample_mask, bool)
  sampled = positive | negative
  labels = positive.astype(jnp.float32)
  matched = jax.lax.stop_gradient(jnp.asarray(outputs.matched_boxes, jnp.float32))

  anchor_ce = logistic_loss(outputs.anchor_logits, labels)  # [B, S]
  mid_objectness = (_masked_mean(anchor_ce, positive, (1,))
                    + _masked_mean(anchor_ce, negative, (1,)))
  anchor_targets = jax.lax.stop_gradient(encode_offsets(matched, outputs.anchors))
  mid_box_reg = _masked_mean(smooth_l1(outputs.anchor_offsets - anchor_targets),
                             positive[..., None], (1, 2))

  end_objectness = _masked_mean(logistic_loss(outputs.final_logits, labels), sampled, (1,))
  proposal_targets = jax.lax.stop_gradient(
      encode_offsets(matched, jax.lax.stop_gradient(outputs.proposals)))
  end_box_reg = _masked_mean(smooth_l1(outputs.final_offsets - proposal_targets),
                             positive[..., None], (1, 2))

  mask = jnp.asarray(outputs.caption_mask, jnp.float32)
  log_probs = jax.nn.log_softmax(jnp.asarray(outputs.caption_logits, jnp.float32), axis=-1)
  token_nll = -jnp.take_along_axis(log_probs, outputs.caption_targets[..., None], -1)[..., 0]
  phrase_nll = jnp.sum(jnp.where(mask > 0, token_nll, 0.0), axis=2)  # [B, P]
  captioned = jnp.any(mask > 0, axis=2)
  captioning = _masked_mean(phrase_nll, captioned, (1,))

  terms = {"mid_objectness": mid_objectness, "mid_box_reg": mid_box_reg,
           "end_objectness": end_objectness, "end_box_reg": end_box_reg,
           "captioning": captioning}
  if outputs.all_offsets is None:
    box_decay = jnp.zeros_like(captioning)
  else:
    box_decay = 0.5 * jnp.sum(jnp.square(jnp.asarray(outputs.all_offsets, jnp.float32)), (1, 2))
  loss = sum(weights[term] * terms[term] for term in TERMS) + box_reg_decay * box_decay
  metrics = dict(terms, box_decay=box_decay, num_positives=jnp.sum(positive, 1).astype(jnp.float32),
                 num_negatives=jnp.sum(negative, 1).astype(jnp.float32))
  return loss, metrics
