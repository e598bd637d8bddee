"""DenseCap: the fully convolutional localisation network for dense captioning.

Johnson, Karpathy, Fei-Fei, "DenseCap: Fully Convolutional Localization Networks for Dense
Captioning", CVPR 2016 (Sec. 3); the authors' Torch code, jcjohnson/densecap
(``DenseCapModel.lua``, ``LocalizationLayer.lua``, ``LanguageModel.lua``, ``train_opts.lua``),
settles what the paper leaves open. Only the paper's abstract could be read when this was
checked: its section numbers and the statements credited to it below are the implementers'
reading, unverified; those credited to the code were checked against jcjohnson/densecap.
One network proposes regions, pools each with bilinear interpolation and describes it in
words:

1. Convolutional features (Sec. 3.1.1): ``trunk="vgg16"`` is the paper's VGG-16 up to
   ``conv5_3`` (``models.vgg.VGGFeatures``, no final pool: stride 16, 512 channels; its
   ImageNet weights, ``vgg_params_from_torch``, go to ``params["cnn"]``; inputs as
   torchvision normalises them); ``trunk="convnet"`` a small network trained from scratch,
   one 3x3 "SAME" convolution + ReLU and a 2x2 max-pool per entry of ``widths`` (stride
   ``2 ** len(widths)``), for small synthetic scenes.
2. The localisation layer (Sec. 3.1.2) on the ``Hf x Wf`` feature map of an ``H x W`` image:
   a 3x3 convolution of ``rpn_filters`` channels + ReLU, then 1x1 convolutions to ``k``
   objectness logits and ``4k`` offsets per cell, one per anchor (``ops.boxes.anchor_boxes``,
   ``k = len(anchor_sizes)`` boxes of fixed sizes centred on each cell; ``N = Hf Wf k``).
   Proposals are ``decode_offsets(offsets, anchors)``: ``x = x_a + t_x w_a``, ``y = y_a +
   t_y h_a``, ``w = w_a exp(t_w)``, ``h = h_a exp(t_h)``. The offset convolution starts at
   zero (the code's ``zero_box_conv``), so the first proposals are the anchors.

   * Training: per image, ``ops.boxes.sample_boxes`` draws ``S = sampler_batch_size``
     proposals among those inside the image, at most ``floor(S positive_fraction)`` positives
     (IoU >= ``high_threshold`` with a ground-truth region, or a region's best proposal),
     positives first, the rest negatives (IoU < ``low_threshold``).
   * Test (``detect``): proposals clipped to the image, greedy NMS at
     ``proposal_nms_threshold`` by objectness, the ``max_proposals`` best kept.

   Each kept box is read from the feature map into an ``X x Y = pool_size`` grid by bilinear
   interpolation (``ops.boxes.crop_regions(features, boxes, pool_size, image_hw=...)``, the
   spatial transformer's sampler). The grid is differentiable in the box coordinates and,
   with ``box_gradients`` (the default), the losses reach the proposal offsets through it,
   as the paper has it (Sec. 3.1.2, "Bilinear Interpolation") and as the code does
   (``LocalizationLayer:updateGradInput`` adds the pooling's box gradient to the proposals').
3. The recognition network (Sec. 3.1.3): two fully connected layers of ``region_dim`` units
   with ReLU and dropout (in the code VGG's fc6 and fc7 with their ImageNet weights,
   ``DenseCapModel.lua``'s ``recog_base``, D = 4096; trained from scratch here) give each
   region's code; from it a linear confidence logit and a linear refinement,
   offsets relative to the proposal (zero-initialised, as the code's ``box_reg_branch``).
4. The language model (Sec. 3.1.4, ``LanguageModel.lua``): an LSTM whose first input
   (``t = 0``) is the region code projected to the word-embedding size with a ReLU, then
   ``<bos>``, then the phrase's words; its outputs from ``<bos>`` on predict the phrase
   ``y_1..y_T`` (words, ``<eos>``, ``<pad>`` after, as ``data.regions`` encodes it). Only
   positives are captioned, with the phrase of their matched ground-truth region.

Shapes: ``B`` images ``[B, H, W, C]``, ground truth padded to ``R`` regions (``gt_boxes
[B, R, 4]`` ``(x0, y0, x1, y1)`` pixels, ``gt_mask [B, R]``, ``gt_tokens [B, R, T]``,
``gt_lengths [B, R]``), ``S`` sampled regions, ``P = floor(S positive_fraction)`` captioned
slots (positives come first, so every positive has one), ``V`` words, ``D`` region code
size. All shapes are static: the training call, ``detect`` and the decoding hooks jit.

Fidelity notes:

* One objectness logit per anchor (the paper's "5k" outputs per cell, a logistic loss); the
  code predicts two scores per anchor with a softmax, the same family.
* Sampling on the proposals (as the code's BoxSampler, fed the RPN's transformed boxes),
  those outside the image left out (the code's ``train_remove_outbounds_boxes = 1``);
  thresholds 0.7 / 0.3 as ``train_opts.lua`` (LocalizationLayer's own default low threshold,
  0.5, is overridden there); ``BoxSampler.lua`` counts IoU > 0.7 (strictly) as positive,
  here IoU >= 0.7.
* Test-time settings as ``train_opts.lua``: ``-test_rpn_nms_thresh 0.7``,
  ``-test_final_nms_thresh 0.3``, ``-test_num_proposals 300``; final boxes clipped to the
  image (``-clip_final_boxes 1``).
* Anchors: the code's 12 (w, h) pairs, 3 aspect ratios x 4 scales (``build_rpn`` in
  ``LocalizationLayer.lua``), ``PAPER_ANCHOR_SIZES``, centred on the feature cells as
  ``ops.boxes.anchor_boxes`` places them.
* ``rpn_filters = 256``: LocalizationLayer's ``rpn_num_filters`` (``train_opts.lua``'s
  ``-rpn_hidden_dim 512`` is not read by it). Initialisation as the code: the RPN's
  convolutions and the confidence ~ N(0, 0.01^2), zero biases; box offsets and refinements
  zero.
* The language model has no dropout (``LanguageModel.lua``'s default, which
  ``DenseCapModel.lua`` keeps); the recognition network's dropout is ``-drop_prob 0.5``.
* The code never backpropagates into VGG's conv1-conv2 (``DenseCapModel.lua``: modules 1-10)
  and fine-tunes conv3_1..conv5_3 only after ``-finetune_cnn_after`` iterations (default -1:
  never); ``freeze_trunk`` stops all gradients at the features.

Randomness: the box sampler draws from the ``"sample"`` rng stream (every training call),
dropout from ``"dropout"`` (with ``deterministic=False``).
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import (check_choice, check_float, check_hw, check_ids, check_int,
                                check_positive_int, check_rank, concrete)
from vislang_jax.models.vgg import VGGFeatures
from vislang_jax.objectives.densecap import DenseCapOutputs
from vislang_jax.ops.boxes import (anchor_boxes, check_boxes_inside, clip_boxes, crop_regions,
                                   decode_offsets, non_max_suppression, sample_boxes)
from vislang_jax.ops.sequence import length_mask, shift_right

TRUNKS = ("convnet", "vgg16", "vgg19")
# LocalizationLayer.lua, build_rpn: (w, h) in pixels, 3 aspect ratios at each of 4 scales.
PAPER_ANCHOR_SIZES = ((45, 90), (90, 45), (64, 64), (90, 180), (180, 90), (128, 128),
                      (181, 362), (362, 181), (256, 256), (362, 724), (724, 362), (512, 512))
_STD = 0.01  # DenseCapModel.lua / LocalizationLayer.lua: opt.std, new layers' N(0, std^2)


class DecodeState(NamedTuple):
  """The language model's LSTM state between decoding steps; leaves [N, hidden_size]."""

  cell: jax.Array
  hidden: jax.Array


class Detections(NamedTuple):
  """``DenseCap.detect``'s output: ``M`` slots per image, the kept regions first.

  Attributes:
    boxes: [B, M, 4] float ``(x0, y0, x1, y1)`` pixels, refined and clipped to the image
      (zeros on empty slots).
    scores: [B, M] float in [0, 1], ``sigmoid`` of the recognition network's confidence,
      descending over the kept slots (0 on empty slots).
    codes: [B, M, D] float, the region codes the language model reads.
    mask: [B, M] bool, the kept regions (a prefix).
    proposals: [B, M, 4] float, the localisation layer's proposals they were refined from.
  """

  boxes: jax.Array
  scores: jax.Array
  codes: jax.Array
  mask: jax.Array
  proposals: jax.Array


def _gather(values: jax.Array, indices: jax.Array) -> jax.Array:
  """``values [B, N, ...]`` at ``indices [B, S]`` per image -> [B, S, ...]."""
  return jax.vmap(lambda v, i: v[i])(values, indices)


def _nonempty(boxes: jax.Array) -> jax.Array:
  """[..., 4] -> [...] bool: positive width and height."""
  return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def _inside(boxes: jax.Array, image_hw: tuple[int, int]) -> jax.Array:
  """[..., 4] -> [...] bool: the box lies within the ``H x W`` canvas."""
  height, width = image_hw
  return ((boxes[..., 0] >= 0) & (boxes[..., 1] >= 0) & (boxes[..., 2] <= width)
          & (boxes[..., 3] <= height))


class ConvTrunk(nn.Module):
  """The small trunk: per width, a 3x3 "SAME" convolution, a ReLU and a 2x2 max-pool.

  [B, H, W, C] -> [B, H // 2^n, W // 2^n, widths[-1]], ``n = len(widths)``.
  """

  widths: Sequence[int]

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = jnp.asarray(images, jnp.float32)
    for width in self.widths:
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    return x


class RegionLanguageModel(nn.Module):
  """The LSTM language model of Sec. 3.1.4 conditioned on a region code (module docstring).

  Parameters: ``encode_region`` (the code's ``image_encoder``, Linear + ReLU to the word
  size), ``embed`` (word vectors), ``lstm``, ``logits``.
  """

  vocab_size: int
  embed_dim: int
  hidden_size: int

  def setup(self):
    self.encode_region = nn.Dense(self.embed_dim)
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.lstm = nn.OptimizedLSTMCell(self.hidden_size)
    self.logits = nn.Dense(self.vocab_size)

  def start(self, codes: jax.Array) -> DecodeState:
    """The state after the ``t = 0`` input ``relu(W codes + b)`` from a zero state.

    Args:
      codes: [N, D] float region codes.

    Returns:
      ``DecodeState`` with leaves [N, hidden_size]; its output at ``t = 0`` is not used.
    """
    inputs = nn.relu(self.encode_region(jnp.asarray(codes, jnp.float32)))
    zeros = jnp.zeros((codes.shape[0], self.hidden_size), jnp.float32)
    (cell, hidden), _ = self.lstm((zeros, zeros), inputs)
    return DecodeState(cell=cell, hidden=hidden)

  def _advance(self, state: DecodeState, tokens: jax.Array
               ) -> tuple[DecodeState, jax.Array]:
    (cell, hidden), _ = self.lstm((state.cell, state.hidden), self.embed(tokens))
    return DecodeState(cell=cell, hidden=hidden), self.logits(hidden)

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One step: the previous tokens [N] -> ``(logits [N, V], state, {})``."""
    state, logits = self._advance(state, tokens)
    return logits, state, {}

  def __call__(self, codes: jax.Array, tokens_in: jax.Array) -> jax.Array:
    """Teacher forcing: codes [N, D], inputs [N, T] (``<bos>``, y_1..y_{T-1}) -> [N, T, V]."""

    def body(module, state, tokens):
      return module._advance(state, tokens)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
    _, logits = scan(self, self.start(codes), jnp.swapaxes(tokens_in, 0, 1))
    return jnp.swapaxes(logits, 0, 1)


class DenseCap(nn.Module):
  """The FCLN dense captioner (module docstring). Defaults: the paper's model.

  Attributes:
    vocab_size: ``V``, the language model's vocabulary (``<pad>``, ``<bos>``, ``<eos>``...).
    trunk: ``"vgg16"`` (the paper), ``"vgg19"`` or ``"convnet"``.
    widths: the convnet's channels per block (convnet only), one max-pool each.
    anchor_sizes: ``k`` anchor ``(w, h)`` pairs in image pixels (``PAPER_ANCHOR_SIZES``).
    rpn_filters: channels of the localisation layer's 3x3 convolution (256).
    pool_size: ``(X, Y)`` the bilinear grid each region is read into, as (rows, columns)
      (7 x 7).
    region_dim: ``D``, the width of the two fully connected layers (4096).
    embed_dim: the word-vector size (the code's ``input_encoding_size``, 512).
    hidden_size: the LSTM size (``rnn_size``, 512).
    dropout_rate: dropout after each fully connected layer in training (0.5).
    sampler_batch_size: ``S``, proposals sampled per training image (256).
    positive_fraction: the largest share of positives among them (1/2).
    high_threshold: IoU at or above which a proposal is positive (0.7).
    low_threshold: IoU below which it is negative (0.3).
    max_proposals: proposals kept after NMS at test time (300).
    proposal_nms_threshold: their NMS IoU threshold (0.7).
    final_nms_threshold: the NMS IoU threshold among the final boxes (0.3).
    box_gradients: let the losses reach the proposal coordinates through the bilinear
      pooling (the paper); False pools at ``stop_gradient(proposals)``.
    freeze_trunk: stop gradients at the convolutional features.
    bos_id: the token fed after the region code (``data.vocabulary``'s ``<bos>`` is 1).
  """

  vocab_size: int
  trunk: str = "vgg16"
  widths: Sequence[int] = (32, 64, 128)
  anchor_sizes: Sequence[tuple[float, float]] = PAPER_ANCHOR_SIZES
  rpn_filters: int = 256
  pool_size: tuple[int, int] = (7, 7)
  region_dim: int = 4096
  embed_dim: int = 512
  hidden_size: int = 512
  dropout_rate: float = 0.5
  sampler_batch_size: int = 256
  positive_fraction: float = 0.5
  high_threshold: float = 0.7
  low_threshold: float = 0.3
  max_proposals: int = 300
  proposal_nms_threshold: float = 0.7
  final_nms_threshold: float = 0.3
  box_gradients: bool = True
  freeze_trunk: bool = False
  bos_id: int = 1

  def __post_init__(self):
    check_positive_int("vocab_size", self.vocab_size)
    check_choice("trunk", self.trunk, TRUNKS)
    if self.trunk == "convnet":
      if len(self.widths) == 0:
        raise ValueError(f"widths must name at least one block, got {self.widths!r}.")
      for width in self.widths:
        check_positive_int("widths entries", width)
    sizes = np.asarray(self.anchor_sizes, np.float64) if _numeric(self.anchor_sizes) else None
    if sizes is None or sizes.ndim != 2 or sizes.shape[1] != 2 or not len(sizes) or not np.all(
        np.isfinite(sizes) & (sizes > 0)):
      raise ValueError(f"anchor_sizes must be k >= 1 pairs (w, h) of positive pixel sizes, "
                       f"got {self.anchor_sizes!r}.")
    for name in ("rpn_filters", "region_dim", "embed_dim", "hidden_size",
                 "sampler_batch_size", "max_proposals"):
      check_positive_int(name, getattr(self, name))
    check_hw("pool_size", self.pool_size)
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    for name in ("positive_fraction", "high_threshold", "low_threshold",
                 "proposal_nms_threshold", "final_nms_threshold"):
      value = check_float(name, getattr(self, name), low=0.0)
      if value > 1.0:
        raise ValueError(f"{name} must be a finite float in [0, 1], got {value!r}.")
    if self.low_threshold > self.high_threshold:
      raise ValueError(f"low_threshold must be at most high_threshold = {self.high_threshold}, "
                       f"got {self.low_threshold!r}.")
    if self.num_captioned < 1:
      raise ValueError(f"sampler_batch_size * positive_fraction must allow at least one "
                       f"positive (floor >= 1), got {self.sampler_batch_size} * "
                       f"{self.positive_fraction}.")
    check_int("bos_id", self.bos_id, low=0, high=self.vocab_size - 1)
    super().__post_init__()

  @property
  def num_captioned(self) -> int:
    """``P = floor(S positive_fraction)``, the most positives (captioned slots) per image."""
    return int(self.sampler_batch_size * self.positive_fraction)

  @property
  def stride(self) -> int:
    """The trunk's feature stride: ``2 ** len(widths)`` for the convnet, 16 for VGG."""
    return 2 ** len(self.widths) if self.trunk == "convnet" else 16

  def setup(self):
    if self.trunk == "convnet":
      self.cnn = ConvTrunk(tuple(self.widths))
    else:
      self.cnn = VGGFeatures(depth=int(self.trunk[3:]))
    k = len(self.anchor_sizes)
    normal = nn.initializers.normal(_STD)
    self.rpn_conv = nn.Conv(self.rpn_filters, (3, 3), padding="SAME", kernel_init=normal)
    self.rpn_scores = nn.Conv(k, (1, 1), kernel_init=normal)
    self.rpn_offsets = nn.Conv(4 * k, (1, 1), kernel_init=nn.initializers.zeros)
    self.fc6 = nn.Dense(self.region_dim)
    self.fc7 = nn.Dense(self.region_dim)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.confidence = nn.Dense(1, kernel_init=normal)
    self.refine = nn.Dense(4, kernel_init=nn.initializers.zeros)
    self.language_model = RegionLanguageModel(self.vocab_size, self.embed_dim,
                                              self.hidden_size)

  # --- the network's parts -------------------------------------------------------------

  def _check_images(self, images: jax.Array) -> tuple[int, int]:
    """``(H, W)`` of images [B, H, W, C], at least the feature stride on each side."""
    check_rank("images", images, "[B, H, W, C]")
    height, width = images.shape[1:3]
    if height < self.stride or width < self.stride:
      raise ValueError(f"images must be at least the trunk's feature stride {self.stride} "
                       f"pixels in height and width ({self.trunk!r}), got {images.shape}.")
    return height, width

  def features(self, images: jax.Array) -> jax.Array:
    """Images [B, H, W, C] -> features [B, Hf, Wf, C'] (Sec. 3.1.1)."""
    self._check_images(images)
    features = self.cnn(images)
    return jax.lax.stop_gradient(features) if self.freeze_trunk else features

  def localize(self, features: jax.Array, image_hw: tuple[int, int]
               ) -> tuple[jax.Array, jax.Array, np.ndarray, jax.Array]:
    """The localisation layer's dense outputs (Sec. 3.1.2).

    Args:
      features: [B, Hf, Wf, C'].
      image_hw: ``(H, W)`` of the images.

    Returns:
      ``(logits [B, N], offsets [B, N, 4], anchors [N, 4] NumPy, proposals [B, N, 4])``,
      ``N = Hf Wf k`` in ``anchor_boxes``' order (row, column, anchor).

    Raises:
      ValueError: for anchors that do not fit the image (``anchor_boxes``).
    """
    batch, rows, cols = features.shape[:3]
    anchors = anchor_boxes(image_hw, (rows, cols), self.anchor_sizes)
    hidden = nn.relu(self.rpn_conv(features))
    logits = self.rpn_scores(hidden).reshape(batch, -1)
    offsets = self.rpn_offsets(hidden).reshape(batch, -1, 4)
    return logits, offsets, anchors, decode_offsets(offsets, jnp.asarray(anchors))

  def recognize(self, features: jax.Array, boxes: jax.Array, image_hw: tuple[int, int], *,
                deterministic: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Bilinear pooling and the recognition network (Sec. 3.1.2-3.1.3).

    Args:
      features: [B, Hf, Wf, C'].
      boxes: [B, M, 4] ``(x0, y0, x1, y1)`` image pixels.
      image_hw: ``(H, W)`` of the images.
      deterministic: no dropout when True (else the ``"dropout"`` rng).

    Returns:
      ``(codes [B, M, D], logits [B, M], offsets [B, M, 4])``: region codes, confidence
      logits, refinements relative to ``boxes``.
    """
    pooled = crop_regions(features, boxes, tuple(self.pool_size), image_hw=image_hw)
    x = pooled.reshape(*pooled.shape[:2], -1)
    x = self.dropout(nn.relu(self.fc6(x)), deterministic=deterministic)
    codes = self.dropout(nn.relu(self.fc7(x)), deterministic=deterministic)
    return codes, self.confidence(codes)[..., 0], self.refine(codes)

  # --- training -------------------------------------------------------------------------

  def __call__(self, images: jax.Array, gt_boxes: jax.Array, gt_mask: jax.Array,
               gt_tokens: jax.Array, gt_lengths: jax.Array, *, deterministic: bool
               ) -> tuple[DenseCapOutputs, dict[str, jax.Array]]:
    """The training-time forward pass: sample, pool, recognise, caption (teacher forcing).

    Args:
      images: [B, H, W, C] float.
      gt_boxes: [B, R, 4] float ``(x0, y0, x1, y1)`` pixels, inside the image where
        ``gt_mask``.
      gt_mask: [B, R] bool, the real regions; every image needs at least one.
      gt_tokens: [B, R, T] int, each region's phrase: word ids, ``<eos>``, ``<pad>`` after.
      gt_lengths: [B, R] int, tokens up to and including ``<eos>``.
      deterministic: no dropout when True (else the ``"dropout"`` rng); the box sampler
        always draws from the ``"sample"`` rng.

    Returns:
      ``(outputs, aux)``: ``outputs`` the ``objectives.densecap.DenseCapOutputs`` of the
      ``S`` sampled regions that ``densecap_loss`` reads (caption logits [B, P, T, V]);
      ``aux`` holds ``"proposal_logits"`` [B, N] and ``"proposals"`` [B, N, 4] (every
      anchor's), ``"codes"`` [B, S, D], ``"final_boxes"`` [B, S, 4] (the refined boxes),
      ``"sample_indices"`` and ``"matched"`` [B, S] int32 (into the ``N`` proposals and the
      ``R`` regions).

    Raises:
      ValueError: for wrong shapes, token ids outside [0, V), and, when the values are
        concrete (outside ``jax.jit``), an image without any ground-truth region or a
        ground-truth box outside its image.
    """
    image_hw = self._check_images(images)
    _check_ground_truth(images.shape[0], image_hw, gt_boxes, gt_mask, gt_tokens, gt_lengths,
                        vocab_size=self.vocab_size)
    gt_mask = jnp.asarray(gt_mask, bool)
    gt_boxes = jnp.asarray(gt_boxes, jnp.float32)
    features = self.features(images)
    logits, offsets, anchors, proposals = self.localize(features, image_hw)

    candidates = jax.lax.stop_gradient(proposals)
    keys = jax.random.split(self.make_rng("sample"), images.shape[0])

    def sample(key, boxes, gt, mask):
      return sample_boxes(key, boxes, gt, gt_mask=mask, valid=_inside(boxes, image_hw),
                          batch_size=self.sampler_batch_size,
                          positive_fraction=self.positive_fraction,
                          high_threshold=self.high_threshold, low_threshold=self.low_threshold)

    drawn = jax.vmap(sample)(keys, candidates, gt_boxes, gt_mask)
    indices = drawn.indices
    rois = _gather(proposals, indices)
    pooled_rois = rois if self.box_gradients else jax.lax.stop_gradient(rois)
    codes, final_logits, final_offsets = self.recognize(features, pooled_rois, image_hw,
                                                        deterministic=deterministic)

    captioned = self.num_captioned
    matched = drawn.matched[:, :captioned]
    targets = _gather(jnp.asarray(gt_tokens, jnp.int32), matched)  # [B, P, T]
    steps = targets.shape[-1]
    caption_mask = drawn.positive[:, :captioned, None] & length_mask(
        _gather(jnp.asarray(gt_lengths, jnp.int32), matched), steps)
    flat_targets = targets.reshape(-1, steps)
    caption_logits = self.language_model(
        codes[:, :captioned].reshape(-1, codes.shape[-1]),
        shift_right(flat_targets, bos_id=self.bos_id)).reshape(*targets.shape, -1)

    outputs = DenseCapOutputs(
        anchor_logits=_gather(logits, indices), anchor_offsets=_gather(offsets, indices),
        anchors=jnp.asarray(anchors)[indices], proposals=rois, final_logits=final_logits,
        final_offsets=final_offsets, caption_logits=caption_logits, positive=drawn.positive,
        sample_mask=drawn.mask, matched_boxes=_gather(gt_boxes, drawn.matched),
        caption_targets=targets, caption_mask=caption_mask, all_offsets=offsets)
    aux = {"proposal_logits": logits, "proposals": proposals, "codes": codes,
           "final_boxes": decode_offsets(final_offsets, rois), "sample_indices": indices,
           "matched": drawn.matched}
    return outputs, aux

  # --- test time ------------------------------------------------------------------------

  def detect(self, images: jax.Array, *, max_regions: int | None = None,
             max_proposals: int | None = None, proposal_nms_threshold: float | None = None,
             final_nms_threshold: float | None = None) -> Detections:
    """Test-time dense detection: proposals, NMS, recognition, refinement, final NMS.

    As the code's ``_forward_test`` and ``DenseCapModel:updateOutput``: the proposals are
    clipped to the image (empty ones dropped), NMS at ``proposal_nms_threshold`` by
    objectness keeps ``max_proposals``; the recognition network scores and refines them;
    the refined boxes, clipped to the image, go through NMS at ``final_nms_threshold`` by
    confidence, which keeps up to ``max_regions``. No dropout, no randomness.

    Args:
      images: [B, H, W, C] float.
      max_regions: ``M``, the output slots (default ``max_proposals``).
      max_proposals, proposal_nms_threshold, final_nms_threshold: override the module's.

    Returns:
      ``Detections`` (boxes [B, M, 4], scores [B, M], codes [B, M, D], mask [B, M],
      proposals [B, M, 4]), kept regions first by descending score.
    """
    max_proposals = check_positive_int(
        "max_proposals", self.max_proposals if max_proposals is None else max_proposals)
    max_regions = check_positive_int("max_regions",
                                     max_proposals if max_regions is None else max_regions)
    proposal_nms = (self.proposal_nms_threshold if proposal_nms_threshold is None
                    else proposal_nms_threshold)
    final_nms = self.final_nms_threshold if final_nms_threshold is None else final_nms_threshold
    image_hw = self._check_images(images)
    features = self.features(images)
    logits, _, _, proposals = self.localize(features, image_hw)
    proposals = clip_boxes(proposals, image_hw)

    def first_nms(boxes, scores):
      return non_max_suppression(boxes, scores, iou_threshold=proposal_nms,
                                 max_output=max_proposals, valid=_nonempty(boxes))

    kept, keep = jax.vmap(first_nms)(proposals, logits)
    proposals = _gather(proposals, kept)
    codes, final_logits, final_offsets = self.recognize(features, proposals, image_hw,
                                                        deterministic=True)
    boxes = clip_boxes(decode_offsets(final_offsets, proposals), image_hw)

    def final(boxes, scores, valid):
      return non_max_suppression(boxes, scores, iou_threshold=final_nms,
                                 max_output=max_regions, valid=valid)

    chosen, mask = jax.vmap(final)(boxes, final_logits, keep & _nonempty(boxes))
    mask_f = mask[..., None]
    return Detections(
        boxes=jnp.where(mask_f, _gather(boxes, chosen), 0.0),
        scores=jnp.where(mask, jax.nn.sigmoid(_gather(final_logits, chosen)), 0.0),
        codes=jnp.where(mask_f, _gather(codes, chosen), 0.0), mask=mask,
        proposals=jnp.where(mask_f, _gather(proposals, chosen), 0.0))

  # --- the language model on region codes ----------------------------------------------

  def start(self, codes: jax.Array) -> DecodeState:
    """``RegionLanguageModel.start`` on codes [N, D] (bound-module form)."""
    _check_codes(codes, self.region_dim, "[N, D]", 2)
    return self.language_model.start(codes)

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One decoding step (bound-module form): tokens [N] -> (logits [N, V], state, {})."""
    if jnp.ndim(tokens) != 1 or tokens.shape[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's rows), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.language_model.step(tokens, state)

  def log_likelihood(self, codes: jax.Array, tokens: jax.Array,
                     lengths: jax.Array) -> jax.Array:
    """``log p(y | region) = sum_{t <= length} log p(y_t | region, y_<t)`` (bound form).

    The score the paper ranks regions by for retrieval and open-world localisation (Sec. 4):
    the language model's likelihood of a query phrase given each region code.

    Args:
      codes: [..., D] float region codes.
      tokens: [..., T] int phrases (words, ``<eos>``, pad), leading axes broadcastable with
        the codes' (one query [T] against codes [B, M, D] gives [B, M]).
      lengths: [...] int, tokens up to and including ``<eos>``, broadcastable likewise.

    Returns:
      [...] float32, the broadcast leading axes, in nats (<= 0).
    """
    _check_codes(codes, self.region_dim, "[..., D]", None)
    if jnp.ndim(tokens) < 1:
      raise ValueError(f"tokens must have shape [..., T], got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    steps = tokens.shape[-1]
    lead = jnp.broadcast_shapes(codes.shape[:-1], tokens.shape[:-1], jnp.shape(lengths))
    codes = jnp.broadcast_to(codes, (*lead, codes.shape[-1])).reshape(-1, codes.shape[-1])
    targets = jnp.broadcast_to(jnp.asarray(tokens, jnp.int32), (*lead, steps)).reshape(-1, steps)
    mask = length_mask(jnp.broadcast_to(lengths, lead).reshape(-1), steps)
    logits = self.language_model(codes, shift_right(targets, bos_id=self.bos_id))
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(mask, token_log_probs, 0.0), axis=-1).reshape(lead)

  # --- functional wrappers --------------------------------------------------------------

  @nn.nowrap
  def detections(self, params: Any, images: jax.Array, **options: Any) -> Detections:
    """``detect`` with ``params`` (the ``"params"`` collection); ``options`` as ``detect``'s."""
    return self.apply({"params": params}, images, method=DenseCap.detect, **options)

  @nn.nowrap
  def init_decode_state(self, params: Any, codes: jax.Array) -> DecodeState:
    """The decoding state of region codes [N, D] (e.g. ``Detections.codes`` reshaped to
    ``[B * M, D]``): the LSTM after reading each code; ``vislang_jax.decoding`` then feeds
    ``<bos>`` first, as ``LanguageModel:sample`` does."""
    return self.apply({"params": params}, codes, method=DenseCap.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step once ``params`` is bound (``functools.partial``):
    tokens [N], ``DecodeState`` [N, H] -> ``(logits [N, V], state, {})``."""
    return self.apply({"params": params}, tokens, state, method=DenseCap.step)

  @nn.nowrap
  def phrase_log_likelihood(self, params: Any, codes: jax.Array, tokens: jax.Array,
                            lengths: jax.Array) -> jax.Array:
    """``log_likelihood`` with ``params``: codes [..., D], tokens [..., T], lengths [...]."""
    return self.apply({"params": params}, codes, tokens, lengths,
                      method=DenseCap.log_likelihood)


def _numeric(value: Any) -> bool:
  """True when ``value`` converts to a float NumPy array."""
  try:
    np.asarray(value, np.float64)
  except (TypeError, ValueError):
    return False
  return True


def _check_codes(codes: Any, dim: int, layout: str, rank: int | None) -> None:
  if (jnp.ndim(codes) < 1 or (rank is not None and jnp.ndim(codes) != rank)
      or jnp.shape(codes)[-1] != dim):
    raise ValueError(f"codes must have shape {layout} with D = region_dim = {dim}, got "
                     f"{jnp.shape(codes)}.")


def _check_ground_truth(batch: int, image_hw: tuple[int, int], gt_boxes: Any, gt_mask: Any,
                        gt_tokens: Any, gt_lengths: Any, *, vocab_size: int) -> None:
  """Shapes [B, R, 4], [B, R], [B, R, T], [B, R]; concrete values: regions in every image,
  boxes inside it."""
  if np.ndim(gt_boxes) != 3 or np.shape(gt_boxes)[0] != batch or np.shape(gt_boxes)[2] != 4:
    raise ValueError(f"gt_boxes must have shape [B, R, 4] with B = {batch} (the images'), got "
                     f"{np.shape(gt_boxes)}.")
  regions = np.shape(gt_boxes)[1]
  check_positive_int("gt_boxes.shape[1] (R)", regions)
  for name, array in (("gt_mask", gt_mask), ("gt_lengths", gt_lengths)):
    if tuple(np.shape(array)) != (batch, regions):
      raise ValueError(f"{name} must have shape [B, R] = {(batch, regions)} (gt_boxes'), got "
                       f"{np.shape(array)}.")
  if np.ndim(gt_tokens) != 3 or tuple(np.shape(gt_tokens)[:2]) != (batch, regions):
    raise ValueError(f"gt_tokens must have shape [B, R, T] with (B, R) = {(batch, regions)}, "
                     f"got {np.shape(gt_tokens)}.")
  check_ids("gt_tokens", gt_tokens, vocab_size=vocab_size)
  mask = concrete(gt_mask)
  if mask is not None:
    empty = np.flatnonzero(~mask.astype(bool).any(axis=1))
    if empty.size:
      raise ValueError(f"gt_mask must mark at least one ground-truth region in every image "
                       f"(an empty scene cannot be trained on), got none in image(s) "
                       f"{empty.tolist()}.")
  check_boxes_inside(gt_boxes, image_hw, name="gt_boxes", mask=gt_mask)
