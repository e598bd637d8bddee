"""Image captioning with semantic attention over detected attributes.

You, Jin, Wang, Fang, Luo, "Image Captioning with Semantic Attention", CVPR 2016, Sec. 3.

Inputs per image: a global image feature ``v`` [D] and ``K`` detected attributes ``A_i``,
given as word ids of the caption vocabulary (Sec. 3.5: the top attributes of detectors over
the vocabulary's content words) with their detection scores. Attribute ``i`` is embedded with
the caption model's own word embedding, ``y^i = E A_i`` (``E`` [V, d], the paper's ``E``
transposed); ``y_{t-1} = E Y_{t-1}`` is the previous word.

Recurrence (Sec. 3.2, eq. 1-4), one LSTM (``h_t``, ``c_t`` of width ``n``)::

  x_{-1} = W^{x,v} v                                      image, first step only (eq. 2)
  h_t    = LSTM(h_{t-1}, x_t),   h_{-2} = c_{-2} = 0
  x_t    = phi_in(y_{t-1}, {A_i}),  t >= 0,  y_{-1} = E <bos>

Input attention (Sec. 3.3, "input attention model")::

  alpha_t^i ∝ exp(y_{t-1}^T U y^i)                         softmax over real attributes
  x_t = W^{x,Y} (y_{t-1} + diag(w^{x,A}) sum_i alpha_t^i y^i)

Output attention (Sec. 3.3, "output attention model")::

  beta_t^i ∝ exp(h_t^T V sigma(y^i))                       softmax over real attributes
  p_t ∝ exp(E W^{Y,h} phi(h_t + diag(w^{Y,A}) sum_i beta_t^i W^{h,A} sigma(y^i)))

with ``sigma`` = tanh (the paper: "the same nonlinear activation function as in the RNN";
tanh for an LSTM's output) and ``phi`` = tanh. ``U`` [d, d], ``V`` [n, d], ``W^{h,A}``
[n, d] (no bias), ``w^{x,A}``, ``w^{Y,A}`` vectors, ``W^{x,Y}`` [d -> m] and ``W^{Y,h}``
[n -> d] dense layers with biases; the output logits use the tied embedding ``E`` plus a
per-word bias.

Regulariser (Sec. 3.4) on ``alpha``, ``beta`` read as [T, K] matrices (``attention_regularizer``)::

  g(alpha) = ||alpha||_{1,p} + ||alpha^T||_{q,1}
           = (sum_i (sum_t alpha_t^i)^p)^(1/p) + sum_t (sum_i (alpha_t^i)^q)^(1/q)

with ``p > 1`` and ``0 < q < 1`` (defaults ``p = 2``, ``q = 0.5``): the first term is
smallest when the attention a sentence pays is spread over all its attributes
(completeness), the second when each step attends to one attribute (sparsity: it penalises
"diverted" attention); training adds ``g(alpha) + g(beta)`` to the negative log-likelihood.

Attribute detector (Sec. 3.5; ``SemanticAttentionCaptioner``): one sigmoid per attribute word
(the vocabulary's content words, ``data.attributes``) on the image feature ``v``, trained on
the words of the image's captions (``data.attributes.attribute_targets``); the ``K``
highest-scoring words are the ``A_i`` fed to the decoder.

Fidelity: the paper's text could not be retrieved this session. The regulariser's form and
``p = 2``, ``q = 0.5`` match a public Torch reimplementation (eriche2016/
image_caption_with_semantic_attenion, ``Attention_Weights_Criterion.lua``: ``sqrt`` of the
summed squared column sums plus the per-step squared sums of ``sqrt(alpha)``, "to enforce
the completeness of attention as well as sparsity of attention at any particular timestep");
that code divides by ``B T`` and adds 1e-3 under the square root, we use exact per-example
sums with where-guarded zeros. Unverified, from memory of the paper: the exact
parameterisation of the bilinear ``U`` (full [d, d] matrix here; a low-rank
``U^T diag(w) U`` form is possible), the choice ``phi = tanh``, and that the image feature
enters only at ``t = -1`` (the paper says it does, to avoid overfitting). The detector here
is a linear (or one-hidden-layer) head on the mean of the encoder's annotations, trained
jointly; the paper's are separately trained (from memory: k-NN and FCN multiple-instance
detectors).
Detection scores are not used by the paper's model beyond selecting the top ``K``;
``score_weighting=True`` (off by default, an extension) scales each ``y^i`` by its score.
Attributes are padded to a fixed ``K`` with ``pad_id``; padded slots get zero attention (at
least one real attribute per example).
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import (check_float, check_ids, check_int, check_positive_int,
                                concrete, is_int)
from vislang_jax.models.show_attend_tell import ImageFeature
from vislang_jax.ops import attention


class DecodeState(NamedTuple):
  """The decoder's state between steps; every leaf has the leading axis ``N``.

  Attributes:
    attributes: [N, K, d], ``y^i = E A_i`` (times the score with ``score_weighting``).
    mask: [N, K] bool, True at real (non-padding) attributes.
    cell: [N, n], ``c_{t-1}``.
    hidden: [N, n], ``h_{t-1}``.
  """

  attributes: jax.Array
  mask: jax.Array
  cell: jax.Array
  hidden: jax.Array


class SemanticAttentionDecoder(nn.Module):
  """The semantic-attention captioner of You et al. (2016) (module docstring).

  Parameter names: ``embed`` is ``E``; ``image_proj`` ``W^{x,v}``; ``input_bilinear`` ``U``;
  ``input_attr_weight`` ``w^{x,A}``; ``input_proj`` ``W^{x,Y}``; ``lstm`` the LSTM;
  ``output_bilinear`` ``V``; ``output_attr`` ``W^{h,A}``; ``output_attr_weight``
  ``w^{Y,A}``; ``output_proj`` ``W^{Y,h}``; ``logit_bias`` the per-word output bias.

  Decoding with ``vislang_jax.decoding``::

    state = model.init_decode_state(params, image_features, attribute_ids, attribute_scores)
    step_fn = functools.partial(model.decode_step, params)
    out = decoding.beam_search(step_fn, state, bos_id=1, eos_id=2, max_len=16, beam_size=3)
    # out.extras["alpha"], out.extras["beta"]: [B, beams, T, K]

  Attributes:
    vocab_size: ``V``.
    embed_dim: ``d``, the word/attribute embedding size.
    input_dim: ``m``, the LSTM input size (width of ``x_t``).
    hidden_size: ``n``, the LSTM size.
    pad_id: the attribute id that marks a padded attribute slot.
    score_weighting: scale ``y^i`` by the detection score (not in the paper).
  """

  vocab_size: int
  embed_dim: int = 256
  input_dim: int = 256
  hidden_size: int = 512
  pad_id: int = 0
  score_weighting: bool = False

  def __post_init__(self):
    for name in ("vocab_size", "embed_dim", "input_dim", "hidden_size"):
      check_positive_int(name, getattr(self, name))
    check_int("pad_id", self.pad_id, low=0, high=self.vocab_size - 1)
    super().__post_init__()

  def setup(self):
    d, n = self.embed_dim, self.hidden_size
    init = nn.linear.default_kernel_init
    self.embed = nn.Embed(self.vocab_size, d)
    self.image_proj = nn.Dense(self.input_dim)
    self.input_bilinear = self.param("input_bilinear", init, (d, d))
    self.input_attr_weight = self.param("input_attr_weight", nn.initializers.ones, (d,))
    self.input_proj = nn.Dense(self.input_dim)
    self.lstm = nn.OptimizedLSTMCell(n)
    self.output_bilinear = self.param("output_bilinear", init, (n, d))
    self.output_attr = nn.Dense(n, use_bias=False)
    self.output_attr_weight = self.param("output_attr_weight", nn.initializers.ones, (n,))
    self.output_proj = nn.Dense(d)
    self.logit_bias = self.param("logit_bias", nn.initializers.zeros, (self.vocab_size,))

  def _check_inputs(self, image_features, attribute_ids, attribute_scores) -> None:
    if jnp.ndim(image_features) != 2:
      raise ValueError(f"image_features must have shape [B, D], got {jnp.shape(image_features)}.")
    batch = image_features.shape[0]
    for name, value in (("attribute_ids", attribute_ids), ("attribute_scores", attribute_scores)):
      if jnp.ndim(value) != 2 or value.shape[0] != batch:
        raise ValueError(f"{name} must have shape [B, K] with B = image_features.shape[0] = "
                         f"{batch}, got {jnp.shape(value)}.")
    if jnp.shape(attribute_ids) != jnp.shape(attribute_scores):
      raise ValueError(f"attribute_ids and attribute_scores must share one shape [B, K], got "
                       f"{jnp.shape(attribute_ids)} and {jnp.shape(attribute_scores)}.")
    check_ids("attribute_ids", attribute_ids, vocab_size=self.vocab_size)
    values = concrete(attribute_ids)
    if values is not None and np.any(np.all(values == self.pad_id, axis=-1)):
      raise ValueError(f"attribute_ids must hold at least one real attribute (not pad_id = "
                       f"{self.pad_id}) per example; rows "
                       f"{np.flatnonzero(np.all(values == self.pad_id, -1)).tolist()} have none.")

  def start(self, image_features: jax.Array, attribute_ids: jax.Array,
            attribute_scores: jax.Array) -> DecodeState:
    """The state before step 0: attribute embeddings and the LSTM after ``x_{-1} = W^{x,v} v``.

    Args:
      image_features: [B, D] float, ``v``.
      attribute_ids: [B, K] int, ``A_i`` as word ids in [0, V); ``pad_id`` marks padding
        (at least one real attribute per example).
      attribute_scores: [B, K] float, detection scores.

    Returns:
      ``DecodeState`` with leaves [B, ...].

    Raises:
      ValueError: for bad shapes or attribute ids outside [0, vocab_size) (when concrete).
    """
    self._check_inputs(image_features, attribute_ids, attribute_scores)
    attributes = self.embed(attribute_ids)  # [B, K, d]
    if self.score_weighting:
      attributes = attributes * jnp.asarray(attribute_scores, attributes.dtype)[..., None]
    mask = attribute_ids != self.pad_id
    batch = image_features.shape[0]
    zeros = jnp.zeros((batch, self.hidden_size), jnp.float32)
    x_image = self.image_proj(jnp.asarray(image_features, jnp.float32))  # eq. (2), t = -1
    (cell, hidden), _ = self.lstm((zeros, zeros), x_image)
    return DecodeState(attributes=attributes, mask=mask, cell=cell, hidden=hidden)

  def _step(self, state: DecodeState, embedded: jax.Array
            ) -> tuple[DecodeState, dict[str, jax.Array]]:
    """One step ``t >= 0``: ``embedded`` = ``y_{t-1}`` [N, d] -> (state, outputs)."""
    attrs = state.attributes
    scores_in = jnp.einsum("nd,de,nke->nk", embedded, self.input_bilinear, attrs)
    alpha = jnp.exp(attention.masked_log_softmax(scores_in, state.mask))
    x = self.input_proj(embedded + self.input_attr_weight
                        * jnp.einsum("nk,nkd->nd", alpha, attrs))
    (cell, hidden), _ = self.lstm((state.cell, state.hidden), x)
    squashed = jnp.tanh(attrs)  # sigma(y^i)
    scores_out = jnp.einsum("nh,hd,nkd->nk", hidden, self.output_bilinear, squashed)
    beta = jnp.exp(attention.masked_log_softmax(scores_out, state.mask))
    attended = jnp.einsum("nk,nkh->nh", beta, self.output_attr(squashed))
    out = self.output_proj(jnp.tanh(hidden + self.output_attr_weight * attended))
    logits = self.embed.attend(out) + self.logit_bias
    return state._replace(cell=cell, hidden=hidden), {"logits": logits, "alpha": alpha,
                                                      "beta": beta}

  def __call__(self, image_features: jax.Array, attribute_ids: jax.Array,
               attribute_scores: jax.Array, tokens_in: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced unroll over ``T`` steps (nn.scan).

    Args:
      image_features: [B, D] float, ``v``.
      attribute_ids: [B, K] int word ids, ``pad_id`` at padding.
      attribute_scores: [B, K] float.
      tokens_in: [B, T] int, ``<bos>`` then the caption shifted right.

    Returns:
      ``(logits [B, T, V], {"alpha": [B, T, K], "beta": [B, T, K]})``; rows of ``alpha`` and
      ``beta`` sum to 1 over the real attributes and are 0 at padded ones.

    Raises:
      ValueError: for bad shapes, mismatched batch sizes, or ids outside [0, vocab_size).
    """
    if jnp.ndim(tokens_in) != 2:
      raise ValueError(f"tokens_in must have shape [B, T], got {jnp.shape(tokens_in)}.")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    if jnp.ndim(image_features) >= 1 and image_features.shape[0] != tokens_in.shape[0]:
      raise ValueError(f"image_features must have shape [B, D] with B = tokens_in.shape[0] = "
                       f"{tokens_in.shape[0]}, got {jnp.shape(image_features)}.")
    state = self.start(image_features, attribute_ids, attribute_scores)
    embedded = jnp.swapaxes(self.embed(tokens_in), 0, 1)  # [T, B, d]

    def body(module, carry, x):
      return module._step(carry, x)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
    _, outputs = scan(self, state, embedded)
    outputs = {key: jnp.swapaxes(value, 0, 1) for key, value in outputs.items()}
    return outputs.pop("logits"), outputs

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One decoding step (``vislang_jax.decoding`` contract).

    Args:
      tokens: [N] int, ``Y_{t-1}``.
      state: ``DecodeState`` with leaves [N, ...].

    Returns:
      ``(logits [N, V], state, {"alpha": [N, K], "beta": [N, K]})``.
    """
    if jnp.ndim(tokens) != 1 or tokens.shape[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's batch), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    state, outputs = self._step(state, self.embed(tokens))
    return outputs.pop("logits"), state, outputs

  @nn.nowrap
  def init_decode_state(self, params: Any, image_features: jax.Array, attribute_ids: jax.Array,
                        attribute_scores: jax.Array) -> DecodeState:
    """``start`` with ``params`` (the ``"params"`` collection): the state before step 0."""
    return self.apply({"params": params}, image_features, attribute_ids, attribute_scores,
                      method=SemanticAttentionDecoder.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step function once ``params`` is bound (functools.partial)."""
    return self.apply({"params": params}, tokens, state, method=SemanticAttentionDecoder.step)


class Detections(NamedTuple):
  """The attribute detector's output for a batch of images (``SemanticAttentionCaptioner``).

  Attributes:
    features: [B, F], ``v``, ``show_attend_tell.ImageFeature`` of the encoder's annotations.
    logits: [B, A], one sigmoid logit per attribute word.
    ids: [B, K] int, the word ids of the ``K`` highest-scoring attributes, best first.
    scores: [B, K], their sigmoid scores.
  """

  features: jax.Array
  logits: jax.Array
  ids: jax.Array
  scores: jax.Array


class SemanticAttentionCaptioner(nn.Module):
  """Images -> captions: encoder, attribute detector (Sec. 3.5) and the semantic-attention decoder.

  ``v`` = ``show_attend_tell.ImageFeature(feature_dim)`` of ``encoder(images)`` [B, L, D] (the
  mean over ``L``, or a fully connected ReLU layer over the grid); the detector is
  ``Dense(A)`` on ``v`` (after a ReLU hidden layer of ``detector_hidden`` units when > 0),
  one sigmoid per attribute word; the ``K = top_k`` highest logits pick the attributes
  ``A_i = attribute_ids[top-K indices]`` (the selection under ``stop_gradient``) with their
  sigmoid scores, and ``decoder`` captions ``v`` attending to them. The detector learns from
  ``aux["attribute_logits"]`` (targets ``data.attributes.attribute_targets``) and, with the
  decoder's ``score_weighting``, from the caption loss through the scores.

  Decoding with ``vislang_jax.decoding``::

    state = model.init_decode_state(params, images)
    out = decoding.beam_search(functools.partial(model.decode_step, params), state,
                               bos_id=BOS_ID, eos_id=EOS_ID, max_len=16, beam_size=3)
    # out.extras["alpha"], out.extras["beta"]: [B, beams, T, K]

  Attributes:
    encoder: images [B, H, W, C] -> annotations [B, L, D], e.g. ``show_attend_tell.Encoder``.
    decoder: the ``SemanticAttentionDecoder``.
    attribute_ids: the ``A`` attribute words' ids (distinct, in [0, vocab_size), not the
      decoder's ``pad_id``), e.g. ``data.attributes.attribute_ids`` of the content words.
    top_k: ``K``, the attributes fed to the decoder, in [1, A].
    detector_hidden: units of the detector's ReLU hidden layer; 0 for a linear detector.
    feature_dim: ``ImageFeature.feature_dim``: 0 for the mean annotation, > 0 for a fully
      connected feature of that width.
  """

  encoder: nn.Module
  decoder: SemanticAttentionDecoder
  attribute_ids: tuple[int, ...]
  top_k: int = 10
  detector_hidden: int = 0
  feature_dim: int = 0

  def __post_init__(self):
    ids = self.attribute_ids
    if (not isinstance(ids, (tuple, list)) or not ids
        or not all(is_int(i) for i in ids)):
      raise ValueError(f"attribute_ids must be a non-empty tuple of word ids, got {ids!r}.")
    vocab_size, pad_id = self.decoder.vocab_size, self.decoder.pad_id
    outside = [int(i) for i in ids if not 0 <= i < vocab_size]
    if outside:
      raise ValueError(f"attribute_ids must be word ids in [0, vocab_size) = [0, {vocab_size}), "
                       f"got {outside}.")
    if pad_id in ids:
      raise ValueError(f"attribute_ids must not hold the decoder's pad_id = {pad_id} (it marks "
                       f"padded attribute slots), got it at position {list(ids).index(pad_id)}.")
    if len(set(ids)) != len(ids):
      raise ValueError(f"attribute_ids must be distinct, got {ids!r}.")
    check_int("top_k", self.top_k, low=1, high=len(ids))
    check_int("detector_hidden", self.detector_hidden, low=0)
    super().__post_init__()

  def setup(self):
    if self.detector_hidden:
      self.detector_hidden_layer = nn.Dense(self.detector_hidden)
    self.detector = nn.Dense(len(self.attribute_ids))
    self.image_feature = ImageFeature(self.feature_dim)

  def detect(self, images: jax.Array) -> Detections:
    """The image feature ``v`` and the top-``K`` attributes of ``images`` [B, H, W, C]."""
    features = self.image_feature(self.encoder(images))  # [B, F]
    hidden = features
    if self.detector_hidden:
      hidden = nn.relu(self.detector_hidden_layer(hidden))
    logits = self.detector(hidden)  # [B, A]
    _, top = jax.lax.top_k(jax.lax.stop_gradient(logits), self.top_k)  # [B, K]
    ids = jnp.asarray(self.attribute_ids, jnp.int32)[top]
    scores = jax.nn.sigmoid(jnp.take_along_axis(logits, top, axis=-1))
    return Detections(features=features, logits=logits, ids=ids, scores=scores)

  def __call__(self, images: jax.Array, tokens_in: jax.Array, *, deterministic: bool = True
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced captioning of ``images`` with their detected attributes.

    Args:
      images: [B, H, W, C] float.
      tokens_in: [B, T] int, ``<bos>`` then the caption shifted right.
      deterministic: accepted for symmetry with the other captioners (no dropout here).

    Returns:
      ``(logits [B, T, V], aux)``, aux: ``"alpha"``, ``"beta"`` [B, T, K];
      ``"attribute_logits"`` [B, A]; ``"attribute_ids"`` [B, K] int; ``"attribute_scores"``
      [B, K].
    """
    del deterministic
    found = self.detect(images)
    logits, aux = self.decoder(found.features, found.ids, found.scores, tokens_in)
    aux.update(attribute_logits=found.logits, attribute_ids=found.ids,
               attribute_scores=found.scores)
    return logits, aux

  def start(self, images: jax.Array) -> DecodeState:
    """The decoder's state before step 0 for ``images`` [B, H, W, C] (leaves [B, ...])."""
    found = self.detect(images)
    return self.decoder.start(found.features, found.ids, found.scores)

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """``SemanticAttentionDecoder.step``: ``(logits [N, V], state, {"alpha", "beta"})``."""
    return self.decoder.step(tokens, state)

  @nn.nowrap
  def init_decode_state(self, params: Any, images: jax.Array) -> DecodeState:
    """``start`` with ``params`` (the ``"params"`` collection): the state before step 0."""
    return self.apply({"params": params}, images, method=SemanticAttentionCaptioner.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step function once ``params`` is bound (functools.partial).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous tokens.
      state: ``DecodeState`` with leaves [N, ...]; beam search reorders its rows.

    Returns:
      ``(logits [N, V], state, {"alpha": [N, K], "beta": [N, K]})``.
    """
    return self.apply({"params": params}, tokens, state, method=SemanticAttentionCaptioner.step)


def attention_regularizer(alpha: jax.Array, beta: jax.Array, *, p: float = 2.0,
                          q: float = 0.5, mask: jax.Array | None = None) -> jax.Array:
  """``g(alpha) + g(beta)`` of Sec. 3.4 per example, ``g(a) = ||a||_{1,p} + ||a^T||_{q,1}``.

  ``g(a) = (sum_i (sum_t a_t^i)^p)^(1/p) + sum_t (sum_i (a_t^i)^q)^(1/q)`` for ``a`` [T, K]
  (time ``t``, attribute ``i``). With ``p > 1`` the first term is smallest when every
  attribute gets the same total attention over the sentence ("completeness"); with
  ``q < 1`` the second is smallest for one-hot rows (attention "sparse" at each step, not
  diverted over several attributes). Exact zeros (padded attributes, masked steps,
  underflow) get a gradient of 0 instead of ``x^(q-1) = inf``.

  Args:
    alpha: [B, T, K] float, input attention weights (non-negative).
    beta: [B, T, K] float, output attention weights.
    p: the exponent over attributes of the attention accumulated over time, >= 1.
    q: the exponent over attributes at each step, in (0, 1].
    mask: optional [B, T] bool, True at real steps; padded steps are left out of both sums.

  Returns:
    [B] float32.

  Raises:
    ValueError: for shapes that differ or are not [B, T, K], a bad ``p``/``q`` or mask shape.
  """
  p = check_float("p", p, low=1.0)
  q = check_float("q", q)
  if not 0.0 < q <= 1.0:
    raise ValueError(f"q must be a finite float in (0, 1], got {q!r}.")
  if np.shape(alpha) != np.shape(beta) or np.ndim(alpha) != 3:
    raise ValueError(f"alpha and beta must share one shape [B, T, K], got {np.shape(alpha)} "
                     f"and {np.shape(beta)}.")
  if mask is not None and np.shape(mask) != np.shape(alpha)[:2]:
    raise ValueError(f"mask must have shape [B, T] = {np.shape(alpha)[:2]}, got "
                     f"{np.shape(mask)}.")

  def g(a):
    a = jnp.asarray(a, jnp.float32)
    if mask is not None:
      a = jnp.where(jnp.asarray(mask, bool)[..., None], a, 0.0)
    total = jnp.sum(a, axis=1)  # [B, K]
    first = _p_norm(total, p)
    second = jnp.sum(_p_norm(a, q), axis=-1)
    return first + second

  return g(alpha) + g(beta)


def _p_norm(x: jax.Array, p: float) -> jax.Array:
  """``(sum_i x_i^p)^(1/p)`` over the last axis for ``x >= 0``, ``p > 0``.

  Where-guarded so that zeros get a gradient of 0: ``x^p`` has an infinite slope at 0 for
  ``p < 1``, and so has ``s^(1/p)`` at ``s = 0`` for ``p > 1``.
  """
  positive = x > 0
  powered = jnp.where(positive, jnp.where(positive, x, 1.0) ** p, 0.0)
  total = jnp.sum(powered, axis=-1)
  safe = jnp.where(total > 0, total, 1.0)
  return jnp.where(total > 0, safe ** (1.0 / p), 0.0)
