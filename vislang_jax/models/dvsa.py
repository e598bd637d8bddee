"""Deep visual-semantic alignments: regions and words in one space, and the multimodal RNN.

Karpathy & Fei-Fei, "Deep visual-semantic alignments for generating image descriptions",
CVPR 2015 (released code: karpathy/neuraltalk, the generator only).

Alignment model (Sec. 3.1), ``DVSA``:

* Regions (Sec. 3.1.1): the whole image and one crop per region proposal, every one resampled
  to ``crop_size`` by the spatial transformer's sampler (``ops.boxes.crop_regions``) and
  embedded by a CNN, ``v = W_m [CNN(I_b)] + b_m`` (1), the CNN's feature grid
  (``show_attend_tell.Encoder``) flattened (the paper: RCNN's top 19 detections and the whole
  image, 4096-d fc7 features of a fixed VGG).
* Words (Sec. 3.1.2), the bidirectional RNN with ``f = ReLU``::

    x_t   = W_w I_t                                  (2)   word embedding
    e_t   = f(W_e x_t + b_e)                         (3)
    h^f_t = f(e_t + W_f h^f_{t-1} + b_f)             (4)   h^f_0 = 0
    h^b_t = f(e_t + W_b h^b_{t+1} + b_b)             (5)   h^b_{N+1} = 0, N the sentence's length
    s_t   = f(W_d (h^f_t + h^b_t) + b_d)             (6)

  The backward pass starts at each sentence's own last word (a per-length reversal), so
  padding never reaches a real word. The words are the sentence's words: ``<eos>`` is not one
  (``lengths`` counts words; the data's lengths count ``<eos>``, pass ``length - 1``). The
  paper keeps ``W_w`` fixed at 300-d word2vec vectors; here it is learned from scratch.
* Score and objective (Sec. 3.1.3): ``S_kl = sum_t max_i v_i . s_t`` (8)
  (``objectives.ranking.region_word_scores``) and the hinge of (9)
  (``objectives.ranking.ranking_loss(S, margin=1)``).
* Alignment (Sec. 3.1.4): ``word_region_scores`` gives the unaries ``v_i . s_t`` of the chain
  MRF that ``ops.chain_mrf.align_words`` maximises.

Generator (Sec. 3.2), ``MultimodalRNN``: a ReLU RNN whose first step alone sees the image,

    b_v = W_hi [CNN(I)]                                             (13)
    h_t = f(W_hx x_t + W_hh h_{t-1} + b_h + 1(t = 1) . b_v)         (14)
    y_t = softmax(W_oh h_t + b_o)                                   (15)

with ``h_0 = 0``, ``x_1`` the ``<bos>`` (START) embedding and ``x_t`` the embedding of the
previous word. The image is a whole image or a region crop at the crop size (Sec. 3.2 trains
on both). The released code's ``rnn_feed_once = 0`` default adds the image at every step; the
paper's eq. (14), followed here, only at ``t = 1``.
"""

from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from vislang_jax.checks import (check_float, check_hw, check_ids, check_positive_int,
                                check_rank, concrete)
from vislang_jax.models.show_attend_tell import Encoder, encoder_kwargs
from vislang_jax.objectives.ranking import region_word_scores
from vislang_jax.ops.boxes import check_boxes_inside, crop_regions
from vislang_jax.ops.sequence import length_mask


def word_region_scores(regions: jax.Array, words: jax.Array, *,
                       region_mask: jax.Array | None = None) -> jax.Array:
  """Every word against every region, ``v_i . s_t``: the MRF's unaries (Sec. 3.1.4, eq. 11).

  Args:
    regions: [..., R, h] float, ``v_i``.
    words: [..., T, h] float, ``s_t`` (same leading axes).
    region_mask: [..., R] bool, the real regions (None: all); the others score ``-inf``, so
      neither ``max`` nor ``ops.chain_mrf.align_words`` picks them.

  Returns:
    [..., T, R] float32, ``scores[..., t, i] = v_i . s_t``; feed it to
    ``align_words(scores, word_mask, beta=...)``.
  """
  if (jnp.ndim(regions) < 2 or jnp.ndim(words) != jnp.ndim(regions)
      or jnp.shape(regions)[-1] != jnp.shape(words)[-1]):
    raise ValueError(f"regions [..., R, h] and words [..., T, h] must share their leading axes "
                     f"and h, got {jnp.shape(regions)} and {jnp.shape(words)}.")
  scores = jnp.einsum("...rd,...td->...tr", regions, words,
                      precision=jax.lax.Precision.HIGHEST).astype(jnp.float32)
  if region_mask is None:
    return scores
  if tuple(np.shape(region_mask)) != tuple(jnp.shape(regions)[:-1]):
    raise ValueError(f"region_mask must have shape {tuple(jnp.shape(regions)[:-1])}, got "
                     f"{np.shape(region_mask)}.")
  return jnp.where(jnp.asarray(region_mask, bool)[..., None, :], scores, -jnp.inf)


def _flat_features(encoder: nn.Module, images: jax.Array) -> jax.Array:
  """``CNN(I)``: the encoder's [N, L, D] grid flattened to [N, L * D]."""
  features = encoder(images)
  return features.reshape(features.shape[0], -1)


def _relu_recurrence(cell: nn.Module, inputs: jax.Array) -> jax.Array:
  """``h_t = f(inputs_t + cell(h_{t-1}))`` from ``h_0 = 0`` over [B, T, H] -> [B, T, H]."""

  def body(cell, hidden, x):
    hidden = nn.relu(x + cell(hidden))
    return hidden, hidden

  scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1)
  _, states = scan(cell, jnp.zeros_like(inputs[:, 0]), inputs)
  return states


def _reverse_within(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Each row's first ``lengths`` steps reversed, padding left in place: [B, T, ...].

  An involution: applying it twice gives ``x`` back.
  """
  steps = jnp.arange(x.shape[1])
  index = jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


class DVSA(nn.Module):
  """The alignment model of Sec. 3.1 (module docstring): regions, words and ``S_kl``.

  Parameter names: ``encoder`` the region CNN; ``region`` is ``W_m``, ``b_m`` (1);
  ``word_embed`` ``W_w`` (2); ``word_in`` ``W_e``, ``b_e`` (3); ``forward`` / ``backward``
  ``W_f``, ``b_f`` / ``W_b``, ``b_b`` (4)-(5); ``word_out`` ``W_d``, ``b_d`` (6).

  Attributes:
    vocab_size: the vocabulary size (ids in [0, vocab_size)).
    embed_dim: ``h``, the multimodal space of ``v_i`` and ``s_t``.
    word_dim: the size of ``x_t = W_w I_t``.
    hidden_size: the size of ``e_t``, ``h^f_t`` and ``h^b_t``.
    crop_size: ``(h, w)`` every region (and the whole image) is resampled to.
    encoder: keyword arguments of ``show_attend_tell.Encoder``, the region CNN.
  """

  vocab_size: int
  embed_dim: int = 64
  word_dim: int = 32
  hidden_size: int = 64
  crop_size: tuple[int, int] = (28, 28)
  encoder: Mapping[str, Any] = FrozenDict()

  def __post_init__(self):
    for name in ("vocab_size", "embed_dim", "word_dim", "hidden_size"):
      check_positive_int(name, getattr(self, name))
    check_hw("crop_size", self.crop_size)
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  def setup(self):
    self.cnn = Encoder(**self.encoder, name="encoder")
    self.region = nn.Dense(self.embed_dim)
    self.word_embed = nn.Embed(self.vocab_size, self.word_dim)
    self.word_in = nn.Dense(self.hidden_size)
    self.forward = nn.Dense(self.hidden_size)
    self.backward = nn.Dense(self.hidden_size)
    self.word_out = nn.Dense(self.embed_dim)

  def embed_regions(self, images: jax.Array, boxes: jax.Array,
                    box_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The whole image and every box as ``v = W_m [CNN(I_b)] + b_m`` (eq. 1).

    Args:
      images: [B, H, W, C] float.
      boxes: [B, R, 4] float ``(x0, y0, x1, y1)`` pixels, exclusive ends (``ops.boxes``).
      box_mask: [B, R] bool, the real boxes; the others (padding, any values) are replaced
        by the whole image before cropping and masked out.

    Returns:
      ``(regions [B, R + 1, h], region_mask [B, R + 1] bool)``: region 0 the whole image
      (resampled to ``crop_size`` like the others), then the boxes in order.

    Raises:
      ValueError: for bad shapes, or (when the boxes are concrete) a real box that is empty
        or not inside the image, naming ``boxes``, the image size and the box.
    """
    check_rank("images", images, "[B, H, W, C]")
    batch, height, width = jnp.shape(images)[:3]
    if jnp.ndim(boxes) != 3 or jnp.shape(boxes)[0] != batch or jnp.shape(boxes)[-1] != 4:
      raise ValueError(f"boxes must have shape [B, R, 4] with B = {batch} (the images'), got "
                       f"{jnp.shape(boxes)}.")
    if tuple(np.shape(box_mask)) != tuple(jnp.shape(boxes)[:2]):
      raise ValueError(f"box_mask must have shape [B, R] = {tuple(jnp.shape(boxes)[:2])}, got "
                       f"{np.shape(box_mask)}.")
    check_boxes_inside(boxes, (height, width), name="boxes", mask=box_mask)
    box_mask = jnp.asarray(box_mask, bool)
    whole = jnp.asarray([0.0, 0.0, width, height], jnp.float32)
    boxes = jnp.where(box_mask[..., None], jnp.asarray(boxes, jnp.float32), whole)
    boxes = jnp.concatenate([jnp.broadcast_to(whole, (batch, 1, 4)), boxes], axis=1)
    crops = crop_regions(images, boxes, self.crop_size)  # [B, R + 1, h, w, C]
    features = _flat_features(self.cnn, crops.reshape((-1,) + crops.shape[2:]))
    regions = self.region(features).reshape(batch, boxes.shape[1], self.embed_dim)
    return regions, jnp.concatenate([jnp.ones((batch, 1), bool), box_mask], axis=1)

  def embed_words(self, tokens: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The bidirectional RNN of eq. (2)-(6) over each sentence's words.

    Args:
      tokens: [B, T] int ids; row ``b``'s words are ``tokens[b, :lengths[b]]``, the rest
        (``<eos>``, padding) is ignored.
      lengths: [B] int in [1, T], the number of words (``<eos>`` not counted).

    Returns:
      ``(words [B, T, h], word_mask [B, T] bool)``: ``s_t`` at the words, zeros after them;
      ``word_mask`` is ``t < lengths``.

    Raises:
      ValueError: for bad shapes, ids out of range or lengths outside [1, T] (values
        checked when concrete).
    """
    check_rank("tokens", tokens, "[B, T]")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    batch, steps = jnp.shape(tokens)
    values = concrete(lengths)
    if (jnp.shape(lengths) != (batch,)
        or not jnp.issubdtype(jnp.result_type(lengths), jnp.integer)
        or (values is not None and (values.min() < 1 or values.max() > steps))):
      raise ValueError(f"lengths must be [B] = ({batch},) ints in [1, T] = [1, {steps}] (the "
                       f"words of each sentence), got {jnp.result_type(lengths)} "
                       f"{jnp.shape(lengths)}"
                       f"{'' if values is None else f' in [{values.min()}, {values.max()}]'}.")
    lengths = jnp.asarray(lengths, jnp.int32)
    embedded = nn.relu(self.word_in(self.word_embed(tokens)))  # e_t, eq. (2)-(3)
    forward = _relu_recurrence(self.forward, embedded)  # eq. (4)
    backward = _reverse_within(
        _relu_recurrence(self.backward, _reverse_within(embedded, lengths)), lengths)  # (5)
    mask = length_mask(lengths, steps)
    words = nn.relu(self.word_out(forward + backward))  # eq. (6)
    return jnp.where(mask[..., None], words, 0.0), mask

  def __call__(self, images: jax.Array, boxes: jax.Array, box_mask: jax.Array,
               tokens: jax.Array, lengths: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The image-sentence scores ``S_kl = sum_t max_i v_i . s_t`` (eq. 8) of a batch.

    Args:
      images, boxes, box_mask: as ``embed_regions``.
      tokens, lengths: as ``embed_words`` (same ``B``).

    Returns:
      ``(S [B, B] float32, aux)``: ``S[k, l]`` image ``k`` against sentence ``l`` (the true
      pairs on the diagonal; ``ranking_loss(S, margin=1)`` is eq. 9); ``aux`` holds
      ``regions`` [B, R + 1, h], ``region_mask`` [B, R + 1], ``words`` [B, T, h] and
      ``word_mask`` [B, T].
    """
    regions, region_mask = self.embed_regions(images, boxes, box_mask)
    words, word_mask = self.embed_words(tokens, lengths)
    if words.shape[0] != regions.shape[0]:
      raise ValueError(f"tokens must have the images' batch size {regions.shape[0]}, got "
                       f"{words.shape[0]}.")
    scores = region_word_scores(regions, region_mask, words, word_mask)
    return scores, {"regions": regions, "region_mask": region_mask, "words": words,
                    "word_mask": word_mask}


class MRNNState(NamedTuple):
  """The multimodal RNN's state between steps; every leaf has the leading axis ``N``.

  Attributes:
    hidden: [N, H], ``h_{t-1}`` (``h_0 = 0``).
    image_bias: [N, H], what the next step adds inside ``f``: ``b_v`` before the first step,
      zeros after it (the ``1(t = 1)`` of eq. 14).
  """

  hidden: jax.Array
  image_bias: jax.Array


class MultimodalRNN(nn.Module):
  """The generator of Sec. 3.2, eq. (13)-(15) (module docstring).

  Parameter names: ``encoder`` the CNN; ``image`` is ``W_hi`` (13); ``embed`` the word
  vectors ``x_t`` (``<bos>``'s row the START vector); ``input`` ``W_hx``; ``recurrent``
  ``W_hh`` with ``b_h`` (14); ``out`` ``W_oh``, ``b_o`` (15). Dropout (as neuraltalk's
  ``drop_prob_encoder`` / ``drop_prob_decoder``) on ``x_t`` and on ``h_t`` before ``W_oh``.

  Training is teacher-forced (``__call__``: ``<bos>`` then the caption shifted right,
  ``ops.sequence.shift_right``); generation goes through ``vislang_jax.decoding``::

    state = model.init_decode_state(params, images)     # whole images or region crops
    step_fn = functools.partial(model.decode_step, params)
    out = decoding.beam_search(step_fn, state, bos_id=1, eos_id=2, max_len=12, beam_size=3)

  Attributes:
    vocab_size: ``V``, the logits' last axis.
    word_dim: the size of the word vectors ``x_t``.
    hidden_size: ``H``, the size of ``h_t``.
    encoder: keyword arguments of ``show_attend_tell.Encoder`` (its grid flattened is
      ``CNN(I)``).
    dropout_rate: dropout on ``x_t`` and ``h_t`` in training (0: none).
  """

  vocab_size: int
  word_dim: int = 32
  hidden_size: int = 64
  encoder: Mapping[str, Any] = FrozenDict()
  dropout_rate: float = 0.0

  def __post_init__(self):
    for name in ("vocab_size", "word_dim", "hidden_size"):
      check_positive_int(name, getattr(self, name))
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  def setup(self):
    self.cnn = Encoder(**self.encoder, name="encoder")
    self.image = nn.Dense(self.hidden_size, use_bias=False)
    self.embed = nn.Embed(self.vocab_size, self.word_dim)
    self.input = nn.Dense(self.hidden_size, use_bias=False)
    self.recurrent = nn.Dense(self.hidden_size)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.out = nn.Dense(self.vocab_size)

  def start(self, images: jax.Array) -> MRNNState:
    """``h_0 = 0`` and ``b_v = W_hi [CNN(I)]`` (eq. 13) of images [B, H, W, C]."""
    check_rank("images", images, "[B, H, W, C]")
    image_bias = self.image(_flat_features(self.cnn, images))
    return MRNNState(hidden=jnp.zeros_like(image_bias), image_bias=image_bias)

  def _step(self, state: MRNNState, inputs: jax.Array, *,
            deterministic: bool) -> tuple[MRNNState, jax.Array]:
    """Eq. (14)-(15) on embedded inputs ``x_t`` [N, m] -> (state, logits [N, V])."""
    x = self.dropout(inputs, deterministic=deterministic)
    hidden = nn.relu(self.input(x) + self.recurrent(state.hidden) + state.image_bias)  # (14)
    logits = self.out(self.dropout(hidden, deterministic=deterministic))  # (15), pre-softmax
    return MRNNState(hidden=hidden, image_bias=jnp.zeros_like(state.image_bias)), logits

  def __call__(self, images: jax.Array, tokens_in: jax.Array, *,
               deterministic: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced unroll over ``T`` steps (``nn.scan``).

    Args:
      images: [B, H, W, C] float, whole images or region crops.
      tokens_in: [B, T] int, ``<bos>`` then the caption shifted right (targets: the caption).
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.

    Returns:
      ``(logits [B, T, V], {"hidden": [B, T, H]})``, the logits of ``y_t`` before the softmax.
    """
    check_rank("tokens_in", tokens_in, "[B, T]")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    state = self.start(images)
    if state.hidden.shape[0] != tokens_in.shape[0]:
      raise ValueError(f"tokens_in must have the images' batch size {state.hidden.shape[0]}, "
                       f"got {jnp.shape(tokens_in)}.")

    def body(module, state, x):
      state, logits = module._step(state, x, deterministic=deterministic)
      return state, (logits, state.hidden)

    scan = nn.scan(body, variable_broadcast="params",
                   split_rngs={"params": False, "dropout": True}, in_axes=1, out_axes=1)
    _, (logits, hidden) = scan(self, state, self.embed(tokens_in))
    return logits, {"hidden": hidden}

  def step_embedded(self, inputs: jax.Array, state: MRNNState, *, deterministic: bool = True
                    ) -> tuple[jax.Array, MRNNState, dict[str, jax.Array]]:
    """One step fed ``x_t`` [N, m] (bound-module form) -> (logits, state, {"hidden"})."""
    state, logits = self._step(state, inputs, deterministic=deterministic)
    return logits, state, {"hidden": state.hidden}

  def step(self, tokens: jax.Array,
           state: MRNNState) -> tuple[jax.Array, MRNNState, dict[str, jax.Array]]:
    """``step_embedded`` of the words' vectors without dropout (bound-module form)."""
    return self.step_embedded(self.embed(tokens), state)

  @nn.nowrap
  def init_decode_state(self, params: Any, images: jax.Array) -> MRNNState:
    """The state before the first step: ``h_0 = 0`` and ``b_v`` of ``images`` [B, H, W, C]."""
    return self.apply({"params": params}, images, method=MultimodalRNN.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: MRNNState) -> tuple[jax.Array, MRNNState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step once ``params`` is bound (``functools.partial``).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous words (``<bos>`` first).
      state: ``MRNNState`` with leaves [N, H]; beam search reorders its rows.

    Returns:
      ``(logits [N, V], state, {"hidden": [N, H]})``; equal to
      ``decode_step_embedded(params, input_embedding(params)[tokens], state)``.
    """
    if jnp.ndim(tokens) != 1 or jnp.shape(tokens)[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's rows), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.apply({"params": params}, tokens, state, method=MultimodalRNN.step)

  @nn.nowrap
  def decode_step_embedded(self, params: Any, inputs: jax.Array, state: MRNNState, *,
                           dropout_key: jax.Array | None = None
                           ) -> tuple[jax.Array, MRNNState, dict[str, jax.Array]]:
    """``decode_step`` fed an embedded input ``x_t`` [N, m] instead of a word.

    ``dropout_key``: None for no dropout; a key for training-mode dropout on ``x_t`` (which
    reaches the state) and on ``h_t`` before ``W_oh``.
    """
    if jnp.shape(inputs) != (state.hidden.shape[0], self.word_dim):
      raise ValueError(f"inputs must have shape [N, m] = ({state.hidden.shape[0]}, "
                       f"{self.word_dim}), got {jnp.shape(inputs)}.")
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    return self.apply({"params": params}, inputs, state, deterministic=dropout_key is None,
                      rngs=rngs, method=MultimodalRNN.step_embedded)

  @nn.nowrap
  def input_embedding(self, params: Any) -> jax.Array:
    """The word vectors [V, m]: the step embeds word ``w`` as row ``w``."""
    return params["embed"]["embedding"]
