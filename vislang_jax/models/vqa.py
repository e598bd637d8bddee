"""Visual question answering: the naive CNN + LSTM model, stacked attention networks and
end-to-end memory networks over image regions.

Every model maps ``(images [B, H, W, C] float, question [B, T] int ids, length [B] int)`` to
``(logits [B, num_answers], aux)``: a classifier over a fixed answer set (train it with a
softmax cross-entropy). ``question`` holds the question's word ids then ``<eos>``, padded
with ``<pad> = 0`` after ``length`` (which counts ``<eos>``); tokens past a row's length
never change its output. Images become a grid of ``L`` region vectors ``f_i`` in ``R^D``
through ``models.show_attend_tell.Encoder(**encoder)`` (a small convnet trained from scratch,
or VGG-16/19 convolutions: ``encoder={"backbone": "vgg19"}``, 448x448 images give the
papers' 14 x 14 = 196 regions of 512 channels), flattened row-major (``i = y w + x``;
reshape ``aux["attention"] [B, K, L]`` to ``[B, K, h, w]`` to plot it).

* ``NaiveVQA``: Antol, Agrawal, Lu, Mitchell, Batra, Zitnick, Parikh, "VQA: Visual Question
  Answering", ICCV 2015, Sec. 5 ("deeper LSTM Q + norm I"): one image vector and one question
  vector, fused and classified by an MLP.
* ``StackedAttention``: Yang, He, Gao, Deng, Smola, "Stacked Attention Networks for Image
  Question Answering", CVPR 2016, Sec. 3: the question vector queries the regions ``K``
  times, each attention layer refining the query.
* ``MemoryNetwork``: Sukhbaatar, Szlam, Weston, Fergus, "End-To-End Memory Networks", NeurIPS
  2015, Sec. 2 and 4.1-4.2, with the image regions as the memories and the question as the
  query.

``__call__`` runs the encoder, then ``from_features`` (callable on its own with
``method=Model.from_features`` for precomputed grids, as the papers use). The attention
models take an optional ``region_mask`` [B, L] bool (True at real regions): masked regions
get exactly zero weight (``ops.attention.masked_softmax``) and their features never reach the
output. Dropout draws from the ``"dropout"`` rng stream when ``deterministic=False``.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from vislang_jax.checks import (check_choice, check_float, check_ids, check_positive_int,
                                check_rank, concrete)
from vislang_jax.models.show_attend_tell import Encoder, ScoreVector, encoder_kwargs
from vislang_jax.models.vse import l2_normalize
from vislang_jax.ops import attention

POOLS = ("flatten", "mean")
FUSIONS = ("product", "concat")
ACTIVATIONS = ("tanh", "relu")
TYINGS = ("adjacent", "layerwise")
QUESTION_ENCODINGS = ("position", "bow")


def check_question(question: Any, length: Any, *, vocab_size: int) -> jax.Array:
  """``question`` [B, T] integer ids in [0, V) and ``length`` [B] ints in [1, T] (values
  checked when concrete); returns ``length`` as int32."""
  check_rank("question", question, "[B, T]")
  check_ids("question", question, vocab_size=vocab_size)
  batch, max_len = question.shape
  dtype = jnp.result_type(length)
  values = concrete(length)
  if (jnp.shape(length) != (batch,) or not jnp.issubdtype(dtype, jnp.integer)
      or (values is not None and values.size and (values.min() < 1 or values.max() > max_len))):
    found = "" if values is None or not values.size else f" in [{values.min()}, {values.max()}]"
    raise ValueError(f"length must be [B] = ({batch},) ints in [1, T] = [1, {max_len}] (the "
                     f"question's tokens up to and including <eos>), got {dtype} "
                     f"{jnp.shape(length)}{found}.")
  return jnp.asarray(length, jnp.int32)


def check_images(images: Any, batch: int) -> None:
  """``images`` [B, H, W, C] with the question's ``B``."""
  check_rank("images", images, "[B, H, W, C]")
  if jnp.shape(images)[0] != batch:
    raise ValueError(f"images must have shape [B, H, W, C] with B = question.shape[0] = "
                     f"{batch}, got {jnp.shape(images)}.")


def check_features(features: Any, batch: int, region_mask: Any = None) -> None:
  """``features`` [B, L, D] with the question's ``B``; ``region_mask`` None or [B, L] bool."""
  if jnp.ndim(features) != 3 or jnp.shape(features)[0] != batch:
    raise ValueError(f"features must have shape [B, L, D] with B = question.shape[0] = "
                     f"{batch}, got {jnp.shape(features)}.")
  if region_mask is not None and (jnp.shape(region_mask) != jnp.shape(features)[:2]
                                  or jnp.result_type(region_mask) != jnp.bool_):
    raise ValueError(f"region_mask must be bool [B, L] = {tuple(jnp.shape(features)[:2])}, "
                     f"got {jnp.result_type(region_mask)} {jnp.shape(region_mask)}.")


def position_encoding(num_words: jax.Array, max_len: int, dim: int) -> jax.Array:
  """The position encoding of End-To-End Memory Networks, Sec. 4.1.

  ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for word ``j = 1..J`` of a sentence of ``J`` words
  and embedding coordinate ``k = 1..d`` (both 1-based, as in the paper); a sentence's vector
  is ``sum_j l_j * (B x_j)`` (element-wise). Positions ``j > J`` (``<eos>`` and padding) are 0.

  Args:
    num_words: [...] int, ``J`` of each sentence.
    max_len: ``T``, the padded length.
    dim: ``d``.

  Returns:
    [..., T, d] float32 weights.
  """
  words = jnp.asarray(num_words, jnp.float32)[..., None, None]
  j = jnp.arange(1, max_len + 1, dtype=jnp.float32)[:, None]
  k = jnp.arange(1, dim + 1, dtype=jnp.float32)[None, :]
  safe = jnp.maximum(words, 1.0)
  weights = (1.0 - j / safe) - (k / dim) * (1.0 - 2.0 * j / safe)
  return jnp.where(j <= words, weights, 0.0)


def grid_coordinates(num_regions: int) -> jax.Array:
  """The (row, column) of each cell of a square grid, scaled to [-1, 1]: [L, 2] float32.

  Cells are row-major (``i = y g + x`` for ``L = g^2``), as ``show_attend_tell.Encoder``
  flattens its grid; a one-cell grid sits at (0, 0). The relation network tags every cell
  of its CNN's map with its coordinates this way (Santoro et al. 2017, Sec. 4).

  Raises:
    ValueError: when ``num_regions`` is not a square.
  """
  side = int(round(num_regions ** 0.5))
  if side < 1 or side * side != num_regions:
    raise ValueError(f"region coordinates need a square grid of L = g^2 regions, got "
                     f"L = {num_regions}.")
  axis = jnp.linspace(-1.0, 1.0, side) if side > 1 else jnp.zeros((1,))
  rows, cols = jnp.meshgrid(axis, axis, indexing="ij")
  return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)


class _LSTMStates(nn.Module):
  """An ``OptimizedLSTMCell`` step that also emits its carry ``(c, h)`` (for ``nn.scan``)."""

  features: int

  @nn.compact
  def __call__(self, carry, x):
    carry, _ = nn.OptimizedLSTMCell(self.features, name="cell")(carry, x)
    return carry, carry


class QuestionLSTM(nn.Module):
  """Stacked LSTMs over embedded questions, read at each question's own length.

  Layer ``n`` reads layer ``n - 1``'s hidden states from a zero state; every layer's
  ``(c, h)`` is taken after token ``length - 1`` (``<eos>`` included, as ``models.vse``
  reads it), so padding never reaches them (the LSTM is causal). Parameters
  ``layer_<n>/cell`` are Flax ``OptimizedLSTMCell``s (``h_t = o_t tanh(c_t)``).

  Attributes:
    hidden_size: the state size.
    num_layers: how many LSTMs are stacked.
  """

  hidden_size: int
  num_layers: int = 1

  @nn.compact
  def __call__(self, embedded: jax.Array, length: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """[B, T, E] embedded tokens, [B] int lengths -> per layer ``(c, h)``, each [B, H]."""
    scan = nn.scan(_LSTMStates, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    batch = embedded.shape[0]
    index = (length - 1)[:, None, None]
    states, inputs = [], embedded
    for layer in range(self.num_layers):
      zeros = jnp.zeros((batch, self.hidden_size), inputs.dtype)
      _, (cells, hidden) = scan(self.hidden_size, name=f"layer_{layer}")((zeros, zeros), inputs)
      states.append((jnp.take_along_axis(cells, index, axis=1)[:, 0],
                     jnp.take_along_axis(hidden, index, axis=1)[:, 0]))
      inputs = hidden
    return states


class NaiveVQA(nn.Module):
  """The naive model: one image vector times one question vector, then an MLP.

  Antol et al. 2015, Sec. 5, "deeper LSTM Q + norm I":

    i = tanh(W_i normalize(pool(f)) + b_i)        image: the grid pooled, L2-normalised
    q = tanh(W_q [c_1, h_1, ..., c_N, h_N] + b_q)  question: every LSTM layer's cell and
                                                   hidden state after the last token
    z = i * q   (``fusion="product"``, the paper's)   or   [i, q]   (``"concat"``)
    logits = MLP(z)                               ``mlp_sizes`` hidden layers, dropout on
                                                   each layer's input

  The paper uses fc7 of VGGNet (4096-d, L2-normalised), a 2-layer LSTM of 512 units (a
  2048-d ``[c, h]`` question vector), 1024-d ``i`` and ``q``, and an MLP of 2 hidden layers
  of 1000 tanh units with dropout 0.5. Here the image vector is the encoder's grid flattened
  (``pool="flatten"``, so the projection sees where things are) or averaged (``"mean"``, a
  global feature like fc7).

  Parameter names: ``image_encoder``, ``image_projection`` (``W_i``), ``embed``,
  ``question_lstm`` (``layer_<n>/cell``), ``question_projection`` (``W_q``), ``mlp_<n>``,
  ``answer``.

  Attributes:
    num_answers: the answer classes.
    vocab_size: ``V``.
    encoder: ``show_attend_tell.Encoder`` keyword arguments (a dict or ConfigDict).
    embed_dim: the word embeddings' size.
    hidden_size: the LSTM's size and the width of ``i`` and ``q``.
    lstm_layers: ``N``, stacked LSTMs (the paper's "deeper LSTM": 2).
    pool: ``"flatten"`` or ``"mean"`` (above).
    normalize_image: L2-normalise the pooled image vector ("norm I").
    fusion: ``"product"`` or ``"concat"``.
    mlp_sizes: the MLP's hidden widths (``()``: a linear classifier on ``z``).
    activation: the MLP's non-linearity, ``"tanh"`` (the paper's) or ``"relu"``.
    dropout_rate: dropout on the input of every MLP layer (the answer layer included).
  """

  num_answers: int
  vocab_size: int
  encoder: Mapping[str, Any] = FrozenDict()
  embed_dim: int = 300
  hidden_size: int = 512
  lstm_layers: int = 2
  pool: str = "flatten"
  normalize_image: bool = True
  fusion: str = "product"
  mlp_sizes: Sequence[int] = (1000, 1000)
  activation: str = "tanh"
  dropout_rate: float = 0.5

  def __post_init__(self):
    for name in ("num_answers", "vocab_size", "embed_dim", "hidden_size", "lstm_layers"):
      check_positive_int(name, getattr(self, name))
    check_choice("pool", self.pool, POOLS)
    check_choice("fusion", self.fusion, FUSIONS)
    check_choice("activation", self.activation, ACTIVATIONS)
    for width in self.mlp_sizes:
      check_positive_int("mlp_sizes entries", width)
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    object.__setattr__(self, "mlp_sizes", tuple(self.mlp_sizes))
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  def setup(self):
    self.image_encoder = Encoder(**self.encoder)
    self.image_projection = nn.Dense(self.hidden_size)
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.question_lstm = QuestionLSTM(self.hidden_size, self.lstm_layers)
    self.question_projection = nn.Dense(self.hidden_size)
    self.mlp = [nn.Dense(width) for width in self.mlp_sizes]
    self.answer = nn.Dense(self.num_answers)
    self.dropout = nn.Dropout(self.dropout_rate)

  def from_features(self, features: jax.Array, question: jax.Array, length: jax.Array, *,
                    deterministic: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The model on the encoder's grid ``features`` [B, L, D] (``__call__``'s other args)."""
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_features(features, question.shape[0])
    pooled = (features.reshape(features.shape[0], -1) if self.pool == "flatten"
              else jnp.mean(features, axis=1))
    if self.normalize_image:
      pooled = l2_normalize(pooled)
    image = jnp.tanh(self.image_projection(pooled))
    states = self.question_lstm(self.embed(question), length)
    q = jnp.tanh(self.question_projection(jnp.concatenate([s for cell_hidden in states
                                                            for s in cell_hidden], -1)))
    x = image * q if self.fusion == "product" else jnp.concatenate([image, q], -1)
    act = jnp.tanh if self.activation == "tanh" else nn.relu
    for layer in self.mlp:
      x = act(layer(self.dropout(x, deterministic=deterministic)))
    return self.answer(self.dropout(x, deterministic=deterministic)), {}

  def __call__(self, images: jax.Array, question: jax.Array, length: jax.Array, *,
               deterministic: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Answer logits.

    Args:
      images: [B, H, W, C] float.
      question: [B, T] int ids (words, ``<eos>``, then ``<pad> = 0``).
      length: [B] int in [1, T], the tokens up to and including ``<eos>``.
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.

    Returns:
      ``(logits [B, num_answers], {})``.

    Raises:
      ValueError: for images not [B, H, W, C], question not [B, T] ids in [0, V), length not
        [B] ints in [1, T] (values checked when concrete).
    """
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_images(images, question.shape[0])
    return self.from_features(self.image_encoder(images), question, length,
                              deterministic=deterministic)


class StackedAttention(nn.Module):
  """Stacked attention networks, Yang et al. 2016, Sec. 3 (the LSTM question model, 3.2.1).

  With ``f_i`` the ``L`` region vectors (Sec. 3.1) and ``d = hidden_size``:

    v_I   = tanh(W_I f_I + b_I)                                   [L, d]   (Sec. 3.1)
    v_Q   = h_T of an LSTM over the embedded question             [d]      (Sec. 3.2.1)
    u^0   = v_Q
    for k = 1..K, each layer with its own parameters:
      h_A^k = tanh(W_IA^k v_I + (W_QA^k u^{k-1} + b_A^k))         [L, m]   (15)
      p_I^k = softmax(W_P^k h_A^k + b_P^k)                        [L]      (16)
      v~_I^k = sum_i p_i^k v_i                                    [d]      (17)
      u^k   = v~_I^k + u^{k-1}                                             (18)
    p_ans = softmax(W_u u^K + b_u)                                         (19)

  (``+`` of a matrix and a vector adds the vector to every row.) ``W_IA`` has no bias, as in
  (15); ``b_P`` adds the same number to every region's score and cancels in the softmax
  (16), so it is left out (it would never get a gradient). Eq. (15)-(17) are
  ``ops.attention``'s additive scores (query ``W_QA u + b_A``, keys ``W_IA v_I``, score
  vector ``W_P``), masked softmax and context.

  Dropout: the paper's training details (Sec. 4) say dropout is used, not where; the authors'
  released Theano code (zcyang/imageqa-san, ``san_att_lstm_twolayer_theano.py``, option
  ``combined_mlp_drop_0``) applies it, with ratio 0.5, to ``u^K`` before the answer layer
  only (``use_attention_drop`` and ``sent_drop`` are off). That is ``dropout_rate`` here.
  Where the released code departs from the paper's equations, the equations are kept: the
  code applies a tanh to ``W_IA v_I + b`` and to ``W_QA u + b`` separately and another to
  ``W_P h_A + b_P``, and its LSTM outputs ``h_t = o_t c_t`` (``use_tanh=False``) with a
  forget-gate bias of 1; here ``h_t = o_t tanh(c_t)`` (Flax's ``OptimizedLSTMCell``) and
  zero biases. Training settings (Sec. 4): SGD with momentum 0.9, batch size 100, gradient
  clipping; the released code clips each parameter's gradient norm at 0.1 and adds weight
  decay 5e-4 (word embeddings excluded).

  ``region_coordinates`` (off by default, not in the paper) appends each region's grid
  (row, column) in [-1, 1] to ``f_i`` before ``W_I`` (``grid_coordinates``), as the relation
  network tags its CNN cells (Santoro et al. 2017): a weighted sum of regions (17) keeps
  what they hold but not where they are, which Sort-of-CLEVR's "is the red object on the
  left" and "closest to" questions ask.

  Parameter names: ``image_encoder``, ``image_projection`` (``W_I``, ``b_I``), ``embed``,
  ``question_lstm`` (``layer_0/cell``), ``att_image_<k>`` (``W_IA^k``), ``att_query_<k>``
  (``W_QA^k``, ``b_A^k``), ``att_score_<k>`` (``W_P^k``), ``answer`` (``W_u``, ``b_u``);
  ``<k>`` counts layers from 0.

  Attributes:
    num_answers: the answer classes.
    vocab_size: ``V``.
    encoder: ``show_attend_tell.Encoder`` keyword arguments.
    embed_dim: the word embeddings' size (the paper's 500).
    hidden_size: ``d``, the LSTM's size and the width of ``v_I``, ``v_Q``, ``u`` (1024).
    attention_dim: ``m``, the width of ``h_A`` (512 in the released code).
    num_layers: ``K`` >= 1 (the paper's best: 2).
    dropout_rate: dropout on ``u^K`` before ``W_u`` (the released code's 0.5).
    region_coordinates: append each region's grid coordinates to ``f_i`` (a square grid).
  """

  num_answers: int
  vocab_size: int
  encoder: Mapping[str, Any] = FrozenDict()
  embed_dim: int = 500
  hidden_size: int = 1024
  attention_dim: int = 512
  num_layers: int = 2
  dropout_rate: float = 0.5
  region_coordinates: bool = False

  def __post_init__(self):
    for name in ("num_answers", "vocab_size", "embed_dim", "hidden_size", "attention_dim",
                 "num_layers"):
      check_positive_int(name, getattr(self, name))
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  def setup(self):
    self.image_encoder = Encoder(**self.encoder)
    self.image_projection = nn.Dense(self.hidden_size)
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.question_lstm = QuestionLSTM(self.hidden_size)
    self.att_image = [nn.Dense(self.attention_dim, use_bias=False)
                      for _ in range(self.num_layers)]
    self.att_query = [nn.Dense(self.attention_dim) for _ in range(self.num_layers)]
    self.att_score = [ScoreVector(self.attention_dim) for _ in range(self.num_layers)]
    self.answer = nn.Dense(self.num_answers)
    self.dropout = nn.Dropout(self.dropout_rate)

  def from_features(self, features: jax.Array, question: jax.Array, length: jax.Array, *,
                    region_mask: jax.Array | None = None, deterministic: bool = True
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The model on the encoder's grid ``features`` [B, L, D] (``__call__``'s other args)."""
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_features(features, question.shape[0], region_mask)
    if self.region_coordinates:
      coordinates = grid_coordinates(features.shape[1]).astype(features.dtype)
      features = jnp.concatenate(
          [features, jnp.broadcast_to(coordinates, features.shape[:2] + (2,))], axis=-1)
    regions = jnp.tanh(self.image_projection(features))  # v_I [B, L, d]
    ((_, u),) = self.question_lstm(self.embed(question), length)  # v_Q = u^0 [B, d]
    weights = []
    for att_image, att_query, att_score in zip(self.att_image, self.att_query, self.att_score):
      scores = attention.additive_scores(att_query(u), att_image(regions), att_score())  # (15)
      p = attention.masked_softmax(scores, region_mask)  # (16)
      u = attention.context(p, regions) + u  # (17)-(18)
      weights.append(p)
    logits = self.answer(self.dropout(u, deterministic=deterministic))  # (19)
    return logits, {"attention": jnp.stack(weights, axis=1)}

  def __call__(self, images: jax.Array, question: jax.Array, length: jax.Array, *,
               region_mask: jax.Array | None = None, deterministic: bool = True
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Answer logits and each layer's attention.

    Args:
      images: [B, H, W, C] float.
      question: [B, T] int ids (words, ``<eos>``, then ``<pad> = 0``).
      length: [B] int in [1, T], the tokens up to and including ``<eos>``.
      region_mask: [B, L] bool, True at real regions (None: all); masked regions get weight
        exactly 0. Every row needs a real region (a ValueError when concrete).
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.

    Returns:
      ``(logits [B, num_answers], {"attention": [B, K, L]})``, ``attention[:, k]`` the
      ``p_I`` of layer ``k + 1``.

    Raises:
      ValueError: as ``NaiveVQA``, and for a region_mask not bool [B, L].
    """
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_images(images, question.shape[0])
    return self.from_features(self.image_encoder(images), question, length,
                              region_mask=region_mask, deterministic=deterministic)


class _Locations(nn.Module):
  """A learned vector per region, ``T(i)`` [L, d] (``L`` taken from the call)."""

  dim: int
  init_stddev: float

  @nn.compact
  def __call__(self, num_regions: int) -> jax.Array:
    return self.param("embedding", nn.initializers.normal(self.init_stddev),
                      (num_regions, self.dim))


class MemoryNetwork(nn.Module):
  """End-to-end memory network (Sukhbaatar et al. 2015) whose memories are image regions.

  With ``v_i`` the ``L`` region vectors, ``q`` the question's words and ``d = embed_dim``:

    m_i^k = A^k v_i + T_A^k(i)        input memories   (Sec. 2.1; T_A: Sec. 4.1)
    c_i^k = C^k v_i + T_C^k(i)        output memories  (Sec. 2.1)
    u^1   = sum_j l_j * (B x_j)       the question, over its J real words (Sec. 4.1)
    for k = 1..K:
      p^k     = softmax_i(u^k . m_i^k)                                  (1)
      o^k     = sum_i p_i^k c_i^k                                       (2)
      u^{k+1} = u^k + o^k  (adjacent)   or   H u^k + o^k  (layer-wise)  (Sec. 2.2)
    logits = W u^{K+1}                (a^ = softmax(W (o^K + u^K)), eq. 3)

  ``A``, ``C`` are linear maps (no bias) from the region features, as the paper's embedding
  matrices are linear in a sentence's bag of words; ``B`` embeds the question's words.
  ``l_j = 1`` is the bag of words (``question_encoding="bow"``), ``l_kj = (1 - j/J) - (k/d)
  (1 - 2j/J)`` the position encoding (``"position"``, ``position_encoding``); the words are
  the ``length - 1`` tokens before ``<eos>``. ``T_A(i)``, ``T_C(i)``: a learned vector per
  region position (``location_encoding``), the image analogue of the paper's temporal
  encoding ``T_A(i)`` of the ``i``-th sentence (Sec. 4.1), tied like ``A`` and ``C``.

  Weight tying (Sec. 2.2): ``"adjacent"``: ``A^{k+1} = C^k`` (and ``T_A^{k+1} = T_C^k``):
  ``K + 1`` maps ``E_0..E_K`` with ``A^k = E_{k-1}``, ``C^k = E_k``, and ``u^{k+1} = u^k +
  o^k``. The paper also ties ``W^T = C^K`` and ``B = A^1``; both need the memories and the
  answers / question to live in one word space, which image-region memories, word questions
  and a separate answer set do not, so ``W`` and ``B`` are free here. ``"layerwise"``:
  ``A^1 = ... = A^K``, ``C^1 = ... = C^K`` (two maps) and ``u^{k+1} = H u^k + o^k`` with a
  learned linear ``H``.

  Model structure taken from the paper: no biases and no non-linearity (eq. 1-3), every
  weight initialised from N(0, 0.1^2) (Sec. 4.2, ``init_stddev``), and the linear start's
  softmax-free hops (``linear_start=True``: ``p^k = u^k . m_i^k`` on real regions, 0 on
  masked ones; the same parameters, so an experiment switches a trained model back to the
  softmax by building the module with ``linear_start=False``). Training settings for an
  experiment's paper preset (Sec. 4.2): SGD with learning rate 0.01 halved every 25 epochs
  until 100 epochs, no momentum or weight decay, the gradient rescaled to L2 norm 40 when
  its norm exceeds 40, batch size 32, linear start (train with the softmaxes removed until
  the validation loss stops falling, then reinsert them; LS learning rate 0.005), and random
  noise (10% empty memories added, for temporal encoding; not applicable to a fixed grid).

  Parameter names: ``image_encoder``, ``question_embed`` (``B``), ``memory_embed_<j>``
  (``E_j``; ``layerwise``: 0 is ``A``, 1 is ``C``), ``location_embed_<j>`` (``T``, like
  ``memory_embed``), ``hop_map`` (``H``, layer-wise only), ``answer`` (``W``).

  Attributes:
    num_answers: the answer classes.
    vocab_size: ``V``.
    encoder: ``show_attend_tell.Encoder`` keyword arguments.
    embed_dim: ``d``.
    hops: ``K`` >= 1 (the paper's 3).
    tying: ``"adjacent"`` or ``"layerwise"``.
    question_encoding: ``"position"`` or ``"bow"``.
    location_encoding: add ``T_A(i)``, ``T_C(i)`` to the memories.
    linear_start: remove the hops' softmax (above).
    init_stddev: the standard deviation of every weight's Gaussian initialisation.
  """

  num_answers: int
  vocab_size: int
  encoder: Mapping[str, Any] = FrozenDict()
  embed_dim: int = 128
  hops: int = 3
  tying: str = "adjacent"
  question_encoding: str = "position"
  location_encoding: bool = True
  linear_start: bool = False
  init_stddev: float = 0.1

  def __post_init__(self):
    for name in ("num_answers", "vocab_size", "embed_dim", "hops"):
      check_positive_int(name, getattr(self, name))
    check_choice("tying", self.tying, TYINGS)
    check_choice("question_encoding", self.question_encoding, QUESTION_ENCODINGS)
    check_float("init_stddev", self.init_stddev, low=0.0)
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  @property
  def num_maps(self) -> int:
    """How many distinct memory maps: ``K + 1`` adjacent, 2 layer-wise."""
    return self.hops + 1 if self.tying == "adjacent" else 2

  def setup(self):
    init = nn.initializers.normal(self.init_stddev)
    self.image_encoder = Encoder(**self.encoder)
    self.question_embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=init)
    self.memory_embed = [nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
                         for _ in range(self.num_maps)]
    if self.location_encoding:
      self.location_embed = [_Locations(self.embed_dim, self.init_stddev)
                             for _ in range(self.num_maps)]
    if self.tying == "layerwise":
      self.hop_map = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
    self.answer = nn.Dense(self.num_answers, use_bias=False, kernel_init=init)

  def from_features(self, features: jax.Array, question: jax.Array, length: jax.Array, *,
                    region_mask: jax.Array | None = None, deterministic: bool = True
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The model on the encoder's grid ``features`` [B, L, D] (``__call__``'s other args)."""
    del deterministic  # no dropout in the paper's model
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_features(features, question.shape[0], region_mask)
    num_regions = features.shape[1]
    memories = [embed(features) for embed in self.memory_embed]  # E_j v_i [B, L, d]
    if self.location_encoding:
      memories = [m + t(num_regions) for m, t in zip(memories, self.location_embed)]
    words = length - 1  # J: the tokens before <eos>
    weights = position_encoding(words, question.shape[1], self.embed_dim)
    if self.question_encoding == "bow":
      weights = (jnp.arange(question.shape[1]) < words[:, None])[..., None].astype(jnp.float32)
    u = jnp.sum(weights * self.question_embed(question), axis=1)  # u^1 [B, d]
    mask = (jnp.ones(features.shape[:2], bool) if region_mask is None
            else jnp.asarray(region_mask, bool))
    attended = []
    for hop in range(self.hops):
      inputs, outputs = ((memories[hop], memories[hop + 1]) if self.tying == "adjacent"
                         else (memories[0], memories[1]))
      scores = jnp.einsum("bld,bd->bl", inputs, u)  # u^T m_i
      p = (jnp.where(mask, scores, 0.0) if self.linear_start
           else attention.masked_softmax(scores, region_mask))  # (1)
      o = attention.context(p, outputs)  # (2)
      u = (u if self.tying == "adjacent" else self.hop_map(u)) + o
      attended.append(p)
    return self.answer(u), {"attention": jnp.stack(attended, axis=1)}

  def __call__(self, images: jax.Array, question: jax.Array, length: jax.Array, *,
               region_mask: jax.Array | None = None, deterministic: bool = True
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Answer logits and each hop's attention.

    Args:
      images: [B, H, W, C] float.
      question: [B, T] int ids (words, ``<eos>``, then ``<pad> = 0``).
      length: [B] int in [1, T], the tokens up to and including ``<eos>``.
      region_mask: [B, L] bool, True at real regions (None: all); masked regions get weight
        exactly 0. Every row needs a real region (a ValueError when concrete).
      deterministic: accepted for the shared contract; the model has no dropout.

    Returns:
      ``(logits [B, num_answers], {"attention": [B, K, L]})``, ``attention[:, k]`` the
      ``p`` of hop ``k + 1``.

    Raises:
      ValueError: as ``StackedAttention``.
    """
    length = check_question(question, length, vocab_size=self.vocab_size)
    check_images(images, question.shape[0])
    return self.from_features(self.image_encoder(images), question, length,
                              region_mask=region_mask, deterministic=deterministic)


MODELS = {"naive": NaiveVQA, "san": StackedAttention, "memnet": MemoryNetwork}
