"""Show, Attend and Tell: image captioning with soft and hard visual attention.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio, "Show, Attend and Tell: Neural
Image Caption Generation with Visual Attention", ICML 2015.

Encoder (Sec. 3.1.1): a convolutional network whose last feature map, ``h x w`` positions of
``D`` channels, is read as ``L = h w`` annotation vectors ``a = {a_1, ..., a_L}``, ``a_i`` in
``R^D``, flattened row-major (``i = y w + x``; reshape ``alpha [.., L]`` to ``[.., h, w]`` to
plot it). ``Encoder`` trains a small network from scratch (for 60x60 captioned digits) or
runs ``models.vgg.VGGFeatures``, the convolutions of torchvision's ``vgg16().features`` or
``vgg19().features``, whose ImageNet weights ``models.vgg.vgg_params_from_torch`` converts
(the paper uses the 14 x 14 x 512 map of VGG-19 at conv5_4, before its last max-pool,
Sec. 4.3).

Decoder (Sec. 3.1.2), one step ``t = 1..T`` given ``y_{t-1}`` (``<bos>`` at ``t = 1``):

    e_ti    = f_att(a_i, h_{t-1}) = w^T tanh(W_a a_i + W_h h_{t-1})          (4)
    alpha_t = softmax_i(e_t)                                                 (5)
    z_t     = beta_t phi({a_i}, {alpha_i}),  beta_t = sigmoid(f_beta(h_{t-1}))  (6), Sec. 4.2.1
    (i, f, o, g, c_t, h_t) = LSTM(c_{t-1}, h_{t-1}, [E y_{t-1}, z_t])       (1)-(3)
    p(y_t | a, y_{<t}) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))             (7)

with ``c_0 = f_init,c(mean_i a_i)``, ``h_0 = f_init,h(mean_i a_i)`` (two MLPs, Sec. 3.1.2)
and dropout on ``h_t`` before ``L_h`` (Sec. 4.3). ``W_a a_i`` does not depend on ``t`` and is
computed once per image; eq. (4)-(5) and the soft ``phi`` are ``ops.attention``'s additive
scores (query ``W_h h_{t-1}``, keys ``W_a a_i``), softmax and context. The deep output is
linear inside the softmax, as eq. (7) writes it (the authors' Theano code puts a tanh
there).

Teacher forcing (``Decoder.__call__``) scans only the recurrence, eq. (4)-(6) and (1)-(3),
and takes out of the loop what does not depend on it: the deep output (7) feeds nothing back,
so it maps all ``T`` steps at once after the scan (one ``[B T, m] x [m, K]`` product instead
of ``T`` small ones, and no per-step accumulation of its gradients in the backward loop), and
the LSTM's pre-activation from ``E y_{t-1}`` is one product for all steps before it; the
backward pass recomputes the attention's ``[B, L, A]`` tanh of each step rather than the scan
storing all ``T`` of them. A decoding step (``Decoder.step_embedded``) runs the same
``_step`` and ``_deep_output`` for its one step, so both paths compute the same logits from
the same state.

``phi`` is

* soft (Sec. 4.2): the expectation ``sum_i alpha_ti a_i``, trained by backpropagation with
  ``objectives.show_attend_tell.soft_attention_loss``;
* hard (Sec. 4.1): ``a_{s_t}`` for one location ``s_t ~ Multinoulli_L(alpha_t)`` (eq. 8-9),
  trained with the REINFORCE-style learning rule that closes Sec. 4.1 in
  ``objectives.show_attend_tell.hard_attention_loss``. With probability ``expectation_prob``
  (the paper's 0.5) an example's whole caption uses the expectation instead (Sec. 4.1: "we
  set the sampled attention location s~ to its expected value alpha"); ``aux["sampled"]``
  says which examples drew locations, so the objective gives the others no REINFORCE term
  (no drawn location influenced their captions; see ``hard_attention_loss``).

Decoding (``vislang_jax.decoding``) always uses the soft expectation, also for a model
trained with hard attention: it is the deterministic mean of the hard model's context, the
approximation the paper trains half of its hard-attention examples with, and it makes greedy
and beam search deterministic functions of the image.

Randomness: dropout takes the ``"dropout"`` rng stream (only with ``deterministic=False``),
hard attention the ``"sample"`` stream (locations and the per-example expectation coin).
"""

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict
from flax.linen.recurrent import DenseParams

from vislang_jax.checks import check_ids, check_int, check_positive_int, check_rank
from vislang_jax.models.vgg import VGGFeatures
from vislang_jax.ops import attention
from vislang_jax.ops.matmul import matmul

ATTENTIONS = ("soft", "hard")
# The convnet trained from scratch, or ``models.vgg.VGGFeatures`` of depth 16 or 19.
BACKBONES = ("convnet", "vgg16", "vgg19")


def encoder_kwargs(encoder: Any) -> FrozenDict:
  """``Encoder`` keyword arguments (a dict or ConfigDict) as a FrozenDict: hashable when its
  values are, so a module holding them (VSE, DVSA, ...) can be a static jit argument."""
  if not hasattr(encoder, "keys"):
    raise ValueError(f"encoder must be a mapping of show_attend_tell.Encoder keyword "
                     f"arguments, got {type(encoder).__name__}.")
  return FrozenDict(encoder)


class Encoder(nn.Module):
  """Images to annotation vectors (Sec. 3.1.1): [B, H, W, C] -> [B, L, D].

  Attributes:
    backbone: ``"convnet"``, a network trained from scratch: ``len(widths)`` blocks, each of
      ``convs_per_block`` 3x3 "SAME" convolutions with ReLUs and a 2x2 max-pool of stride 2
      (the defaults take a 60x60 image to a 7x7 grid, ``L = 49``, ``D = 128``); or
      ``"vgg16"`` / ``"vgg19"``, ``models.vgg.VGGFeatures`` of that depth (``D = 512``;
      224x224 gives ``L = 196``). Its parameters are ``params["vgg16"]`` / ``["vgg19"]``,
      ``models.vgg.vgg_params_from_torch``'s output for ImageNet weights.
    widths: output channels of the convnet's blocks (convnet only).
    convs_per_block: convolutions per block (convnet only).
    include_final_pool: ``VGGFeatures.include_final_pool`` (VGG only).
  """

  backbone: str = "convnet"
  widths: Sequence[int] = (32, 64, 128)
  convs_per_block: int = 1
  include_final_pool: bool = False

  def __post_init__(self):
    if self.backbone not in BACKBONES:
      raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}.")
    if self.backbone == "convnet":
      if len(self.widths) == 0:
        raise ValueError(f"widths must name at least one block, got {self.widths!r}.")
      for width in self.widths:
        check_positive_int("widths entries", width)
      check_positive_int("convs_per_block", self.convs_per_block)
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] float images -> [B, L, D] annotations, ``L = h w`` row-major."""
    check_rank("images", images, "[B, H, W, C]")
    if self.backbone != "convnet":
      x = VGGFeatures(depth=int(self.backbone[3:]), include_final_pool=self.include_final_pool,
                      name=self.backbone)(images)
    else:
      x = jnp.asarray(images, jnp.float32)
      for width in self.widths:
        for _ in range(self.convs_per_block):
          x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    if x.shape[1] == 0 or x.shape[2] == 0:
      raise ValueError(f"images of shape {images.shape} are too small for backbone "
                       f"{self.backbone!r}: its feature map is {x.shape}.")
    return x.reshape(x.shape[0], -1, x.shape[-1])



class ImageFeature(nn.Module):
  """One feature vector per image from its annotations: [B, L, D] -> [B, F].

  Attributes:
    feature_dim: 0 for the mean over the ``L`` locations (``F = D``, a global average pool,
      as GoogLeNet's final feature: it keeps what is in the image, not where); > 0 for a
      ReLU fully connected layer of ``F = feature_dim`` units over the flattened grid
      (``L D`` inputs, as VGG's fc layers: it keeps where things are).
  """

  feature_dim: int = 0

  def __post_init__(self):
    check_int("feature_dim", self.feature_dim, low=0)
    super().__post_init__()

  @nn.compact
  def __call__(self, annotations: jax.Array) -> jax.Array:
    check_rank("annotations", annotations, "[B, L, D]")
    if not self.feature_dim:
      return jnp.mean(annotations, axis=1)
    flat = annotations.reshape(annotations.shape[0], -1)
    return nn.relu(nn.Dense(self.feature_dim, name="fc")(flat))

class DecodeState(NamedTuple):
  """The decoder's state between steps; every leaf has the leading axis ``N``.

  Attributes:
    annotations: [N, L, D], the ``a_i``.
    projected: [N, L, A], ``W_a a_i`` (with its bias), computed once per image.
    cell: [N, H], the LSTM memory ``c_{t-1}``.
    hidden: [N, H], ``h_{t-1}``.
  """

  annotations: jax.Array
  projected: jax.Array
  cell: jax.Array
  hidden: jax.Array


class _InitMLP(nn.Module):
  """``f_init``: ``hidden`` ReLU layers, then a tanh layer of ``features`` units.

  As arctic-captions ``capgen.py`` builds it: ``n_layers_init - 1`` shared ``ff_init_*``
  layers with ``activ='rectifier'``, then ``ff_state`` / ``ff_memory`` with ``'tanh'`` (its
  dropout after the ReLU layers is left out; the paper, Sec. 3.1.2, only says "MLPs").
  """

  hidden: Sequence[int]
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return jnp.tanh(nn.Dense(self.features)(x))


class ScoreVector(nn.Module):
  """The vector ``v`` of additive attention scores ``v^T tanh(...)`` (``ops.attention``).

  Stored as ``kernel`` [A, 1] with ``nn.Dense``'s initialiser: the parameter of the
  ``nn.Dense(1, use_bias=False)`` that computed the scores before ``ops.attention`` did, so
  a module naming it as it named that layer keeps its parameter tree (and its values at
  initialisation).

  Attributes:
    size: ``A``, the width of the attention layer.
  """

  size: int

  @nn.compact
  def __call__(self) -> jax.Array:
    """-> ``v`` [A]."""
    return self.param("kernel", nn.linear.default_kernel_init, (self.size, 1))[:, 0]


class LSTMWeights(nn.Module):
  """The parameters of ``nn.OptimizedLSTMCell(hidden_size)`` (the same names ``ii`` ..
  ``io``, ``hi`` .. ``ho``, shapes and initialisers), returned concatenated over the gates
  ``(i, f, g, o)`` for ``lstm_cell``, so that a caller can split the input kernel by rows
  and project part of the input outside a loop.

  Attributes:
    hidden_size: ``n``.
  """

  hidden_size: int

  @nn.compact
  def __call__(self, input_dim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """-> ``(W_x [input_dim, 4n], W_h [n, 4n], b [4n])``."""
    inputs = jax.ShapeDtypeStruct((input_dim,), jnp.float32)  # DenseParams reads the shape
    hidden = jax.ShapeDtypeStruct((self.hidden_size,), jnp.float32)
    w_x, w_h, b = [], [], []
    for gate in "ifgo":
      w_x.append(DenseParams(self.hidden_size, use_bias=False, name=f"i{gate}")(inputs)[0])
      kernel, bias = DenseParams(self.hidden_size, kernel_init=nn.initializers.orthogonal(),
                                 name=f"h{gate}")(hidden)
      w_h.append(kernel)
      b.append(bias)
    return tuple(jnp.concatenate(x, -1) for x in (w_x, w_h, b))


def lstm_cell(gates: jax.Array, cell: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``nn.OptimizedLSTMCell``'s update from its pre-activations ``gates`` [N, 4n] (``i, f, g,
  o`` concatenated, eq. 1) and ``c_{t-1}`` [N, n] -> ``(c_t, h_t)`` (eq. 2-3)."""
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  cell = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
  return cell, jax.nn.sigmoid(o) * jnp.tanh(cell)


class Decoder(nn.Module):
  """The attention LSTM of Sec. 3.1.2 over annotation vectors (eq. 1-7, module docstring).

  Parameter names: ``embed`` is ``E``; ``init_c``, ``init_h`` the MLPs ``f_init,c``,
  ``f_init,h``; ``att_annotations``, ``att_hidden``, ``att_score`` are ``W_a`` (with a bias),
  ``W_h`` and ``w`` of eq. (4); ``gate`` is ``f_beta``; ``lstm`` the LSTM (``LSTMWeights``,
  ``nn.OptimizedLSTMCell``'s parameters, with ``lstm_cell``'s update); ``out_hidden``,
  ``out_context``, ``out_logits`` are ``L_h``, ``L_z``, ``L_o`` of eq. (7).

  Attributes:
    vocab_size: ``K``, the vocabulary size (the logits' last axis).
    embed_dim: ``m``, the word embedding size (also the deep output's width).
    hidden_size: ``n``, the LSTM size.
    attention_dim: the width of ``W_a a_i`` and ``W_h h``.
    init_hidden: widths of the ReLU hidden layers of ``f_init,c`` and ``f_init,h`` before
      their tanh output layer; ``()`` is one tanh layer each (the code's ``n_layers_init=1``,
      ``train()``'s default; ``evaluate_coco.py`` uses 2, i.e. one hidden layer of the
      annotations' width, which the code shares between the two MLPs, the paper's two
      "separate MLPs" here do not).
    gating: multiply the context by ``beta_t = sigmoid(f_beta(h_{t-1}))`` (Sec. 4.2.1); without
      it ``beta_t = 1``.
    dropout_rate: dropout on ``h_t`` before ``L_h`` in training.
    expectation_prob: the probability that a hard-attention example uses the expected
      context ``sum_i alpha_ti a_i`` for its whole caption (Sec. 4.1; 0 always samples).
  """

  vocab_size: int
  embed_dim: int = 512
  hidden_size: int = 512
  attention_dim: int = 512
  init_hidden: Sequence[int] = ()
  gating: bool = True
  dropout_rate: float = 0.5
  expectation_prob: float = 0.5

  def __post_init__(self):
    for name in ("vocab_size", "embed_dim", "hidden_size", "attention_dim"):
      check_positive_int(name, getattr(self, name))
    for width in self.init_hidden:
      check_positive_int("init_hidden entries", width)
    for name, upper_ok in (("dropout_rate", False), ("expectation_prob", True)):
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0
          or (value == 1.0 and not upper_ok)):
        raise ValueError(f"{name} must be a float in [0, 1{']' if upper_ok else ')'}, got "
                         f"{value!r}.")
    super().__post_init__()

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.init_c = _InitMLP(self.init_hidden, self.hidden_size)
    self.init_h = _InitMLP(self.init_hidden, self.hidden_size)
    self.att_annotations = nn.Dense(self.attention_dim)
    self.att_hidden = nn.Dense(self.attention_dim, use_bias=False)
    self.att_score = ScoreVector(self.attention_dim)  # w; a bias would cancel in (5)
    if self.gating:
      self.gate = nn.Dense(1)
    self.lstm = LSTMWeights(self.hidden_size)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.out_hidden = nn.Dense(self.embed_dim)
    self.out_context = nn.Dense(self.embed_dim, use_bias=False)
    self.out_logits = nn.Dense(self.vocab_size)

  def init_state(self, annotations: jax.Array) -> DecodeState:
    """The state before step 1: ``W_a a_i`` and ``(c_0, h_0)`` from ``mean_i a_i`` (Sec. 3.1.2).

    Args:
      annotations: [N, L, D] float.

    Returns:
      ``DecodeState`` with leaves [N, ...].
    """
    if jnp.ndim(annotations) != 3:
      raise ValueError(f"annotations must have shape [B, L, D], got {jnp.shape(annotations)}.")
    annotations = jnp.asarray(annotations, jnp.float32)
    mean = jnp.mean(annotations, axis=1)
    return DecodeState(annotations=annotations, projected=self.att_annotations(annotations),
                       cell=self.init_c(mean), hidden=self.init_h(mean))

  def _lstm_weights(self, annotation_dim: int) -> tuple[jax.Array, jax.Array, jax.Array,
                                                         jax.Array]:
    """The LSTM's input kernel split by rows: ``(W_y [m, 4n], W_z [D, 4n], W_h [n, 4n],
    b [4n])``, so that ``[E y, z] W_x = E y W_y + z W_z``."""
    w_x, w_h, b = self.lstm(self.embed_dim + annotation_dim)
    return w_x[:self.embed_dim], w_x[self.embed_dim:], w_h, b

  def _step(self, state: DecodeState, input_gates: jax.Array,
            weights: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
            expected: jax.Array | None, *, hard: bool
            ) -> tuple[DecodeState, dict[str, jax.Array]]:
    """The recurrence of one step, eq. (4)-(6) and (1)-(3) -> (state, outputs),
    ``outputs["context"]`` the ``z_t`` [N, D] that ``_deep_output`` reads (with ``h_t``, the
    new ``state.hidden``).

    ``input_gates`` [N, 4n] is the LSTM's pre-activation from ``E y_{t-1}``, ``E y_{t-1} W_y
    + b`` (``weights`` is ``_lstm_weights``): it does not depend on the recurrence, so teacher
    forcing computes it for all ``T`` steps before the scan.

    ``expected`` [N] bool (hard attention only) marks the examples whose context is the
    expectation instead of the sampled ``a_{s_t}``.
    """
    annotations = state.annotations
    h_prev = state.hidden
    # [N, L], eq. (4); checkpointed: the backward pass recomputes the [N, L, A] tanh instead
    # of the scan storing it for every step ([T, N, L, A], the largest residual by far).
    scores = jax.checkpoint(attention.additive_scores)(self.att_hidden(h_prev), state.projected,
                                                       self.att_score())
    log_alpha = attention.masked_log_softmax(scores)  # eq. (5)
    alpha = jnp.exp(log_alpha)
    context = attention.context(alpha, annotations)  # soft phi, Sec. 4.2
    outputs = {"alpha": alpha}
    if hard:  # eq. (8)-(9): s_t ~ Multinoulli_L(alpha_t), z_t = a_{s_t}
      locations = jax.random.categorical(self.make_rng("sample"), log_alpha, axis=-1)
      picked = jnp.take_along_axis(annotations, locations[:, None, None], axis=1)[:, 0]
      context = jnp.where(expected[:, None], context, picked)
      outputs.update(
          locations=locations.astype(jnp.int32),
          log_prob_locations=jnp.take_along_axis(log_alpha, locations[:, None], axis=1)[:, 0],
          entropy=-jnp.sum(alpha * log_alpha, axis=-1))
    if self.gating:  # Sec. 4.2.1
      beta = jax.nn.sigmoid(self.gate(h_prev)[:, 0])
    else:
      beta = jnp.ones(h_prev.shape[:1], h_prev.dtype)
    z = beta[:, None] * context
    _, w_z, w_h, _ = weights
    cell, hidden = lstm_cell(input_gates + matmul(z, w_z) + matmul(h_prev, w_h),
                             state.cell)  # (1)-(3)
    outputs.update(beta=beta, context=z)
    return state._replace(cell=cell, hidden=hidden), outputs

  def _deep_output(self, embedded: jax.Array, hidden: jax.Array, context: jax.Array, *,
                   deterministic: bool) -> jax.Array:
    """The logits of eq. (7), ``L_o(E y_{t-1} + L_h dropout(h_t) + L_z z_t)``: [..., m],
    [..., n], [..., D] -> [..., K], over any leading axes (one step, or all ``T`` at once)."""
    h_out = self.dropout(hidden, deterministic=deterministic)
    return self.out_logits(embedded + self.out_hidden(h_out) + self.out_context(context))

  def __call__(self, annotations: jax.Array, tokens_in: jax.Array, *, deterministic: bool,
               attention: str = "soft") -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced unroll over ``T`` steps: ``nn.scan`` over ``_step`` (the recurrence,
    eq. 1-6) emits ``h_t`` and ``z_t``; ``_deep_output`` (eq. 7, dropout on ``h_t``) then
    maps all steps at once (module docstring).

    Args:
      annotations: [B, L, D] float, the ``a_i``.
      tokens_in: [B, T] int, the inputs ``y_0..y_{T-1}``: ``<bos>`` then the caption shifted
        right (the targets are ``y_1..y_T``).
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.
      attention: ``"soft"`` or ``"hard"`` (needs the ``"sample"`` rng).

    Returns:
      ``(logits [B, T, K], aux)``; ``aux["alpha"]`` [B, T, L] are the attention weights of
      each step, ``aux["beta"]`` [B, T] the gates (ones without gating). With hard attention
      also ``"locations"`` [B, T] int32, the drawn ``s_t``; ``"log_prob_locations"`` [B, T],
      ``log alpha_{t, s_t}``; ``"entropy"`` [B, T], ``H[alpha_t] = -sum_i alpha_ti log
      alpha_ti``; and ``"sampled"`` [B] bool, True where the context was ``a_{s_t}``, False
      where it was the expectation (probability ``expectation_prob``); for the latter the
      locations are still drawn (and reported) but unused.

    Raises:
      ValueError: for a bad ``attention``, ``tokens_in`` not of shape [B, T] with integer
        ids in [0, vocab_size) (checked when concrete), or mismatched batch sizes.
    """
    if attention not in ATTENTIONS:
      raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}.")
    if jnp.ndim(tokens_in) != 2:
      raise ValueError(f"tokens_in must have shape [B, T], got {jnp.shape(tokens_in)}.")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    if jnp.ndim(annotations) != 3 or annotations.shape[0] != tokens_in.shape[0]:
      raise ValueError(f"annotations must have shape [B, L, D] with B = tokens_in.shape[0] = "
                       f"{tokens_in.shape[0]}, got {jnp.shape(annotations)}.")
    hard = attention == "hard"
    state = self.init_state(annotations)
    batch = tokens_in.shape[0]
    expected = None
    if hard:
      expected = jax.random.bernoulli(self.make_rng("sample"), self.expectation_prob, (batch,))
    embedded = self.embed(tokens_in)  # [B, T, m]
    weights = self._lstm_weights(annotations.shape[-1])
    input_gates = matmul(jnp.swapaxes(embedded, 0, 1), weights[0]) + weights[3]  # [T,B,4n]

    def body(module, carry, x):
      carry, outputs = module._step(carry, x, weights, expected, hard=hard)
      return carry, dict(outputs, hidden=carry.hidden)

    scan = nn.scan(body, variable_broadcast="params",
                   split_rngs={"params": False, "sample": True})
    _, outputs = scan(self, state, input_gates)
    outputs = {key: jnp.swapaxes(value, 0, 1) for key, value in outputs.items()}
    logits = self._deep_output(embedded, outputs.pop("hidden"), outputs.pop("context"),
                               deterministic=deterministic)
    if hard:
      outputs["sampled"] = ~expected
    return logits, outputs

  def step_embedded(self, inputs: jax.Array, state: DecodeState, *, deterministic: bool
                    ) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One soft-attention step fed an embedded input instead of a token id.

    ``inputs`` stands for ``E y_{t-1}`` everywhere eq. (1)-(3) and (7) read it: a weighted
    sum of embeddings (a soft input) enters the LSTM and the deep output alike.

    Args:
      inputs: [N, m] float.
      state: ``DecodeState`` with leaves [N, ...].
      deterministic: no dropout on ``h_t`` when True (else the ``"dropout"`` rng).

    Returns:
      ``(logits [N, K], state, {"alpha": [N, L], "beta": [N], "hidden": [N, n]})``;
      ``"hidden"`` is ``h_t`` before dropout (the new ``state.hidden``).
    """
    batch = state.hidden.shape[0]
    if jnp.shape(inputs) != (batch, self.embed_dim):
      raise ValueError(f"inputs must have shape [N, m] = [{batch}, {self.embed_dim}] (the "
                       f"state's batch, embed_dim), got {jnp.shape(inputs)}.")
    weights = self._lstm_weights(state.annotations.shape[-1])
    state, outputs = self._step(state, matmul(inputs, weights[0]) + weights[3], weights, None,
                                hard=False)
    logits = self._deep_output(inputs, state.hidden, outputs.pop("context"),
                               deterministic=deterministic)
    return logits, state, dict(outputs, hidden=state.hidden)

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One decoding step with soft attention and no dropout (``vislang_jax.decoding``).

    ``step_embedded`` of ``E y_{t-1}``.

    Args:
      tokens: [N] int, ``y_{t-1}``.
      state: ``DecodeState`` with leaves [N, ...].

    Returns:
      ``(logits [N, K], state, {"alpha": [N, L], "beta": [N], "hidden": [N, n]})``.
    """
    if jnp.ndim(tokens) != 1 or tokens.shape[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's batch), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.step_embedded(self.embed(tokens), state, deterministic=True)


class ShowAttendTell(nn.Module):
  """The captioner: ``encoder`` images to annotations, ``decoder`` annotations to words.

  Build it as ``ShowAttendTell(encoder=Encoder(...), decoder=Decoder(vocab_size=K, ...))``;
  parameters live under ``params["encoder"]`` and ``params["decoder"]``.

  Decoding with ``vislang_jax.decoding``::

    state = model.init_decode_state(params, images)
    step_fn = functools.partial(model.decode_step, params)
    out = decoding.beam_search(step_fn, state, bos_id=1, eos_id=2, max_len=16, beam_size=3)
    # out.extras["alpha"]: [B, K, T, L]; "beta" [B, K, T]; "hidden" [B, K, T, n]

  Attributes:
    encoder: a module mapping [B, H, W, C] images to [B, L, D] annotations (``Encoder``).
    decoder: the ``Decoder``.
    freeze_encoder: stop gradients at the annotations, so the encoder keeps its (e.g.
      ImageNet) weights, as the paper does with VGG (Sec. 4.3).
  """

  encoder: nn.Module
  decoder: Decoder
  freeze_encoder: bool = False

  def __post_init__(self):
    if not isinstance(self.decoder, Decoder):
      raise ValueError(f"decoder must be a Decoder, got {type(self.decoder).__name__}.")
    if not isinstance(self.encoder, nn.Module):
      raise ValueError(f"encoder must be a flax Module, got {type(self.encoder).__name__}.")
    super().__post_init__()

  def encode(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] images -> [B, L, D] annotations."""
    check_rank("images", images, "[B, H, W, C]")
    annotations = self.encoder(images)
    if jnp.ndim(annotations) != 3:
      raise ValueError(f"encoder must return annotations of shape [B, L, D], got "
                       f"{jnp.shape(annotations)}.")
    return jax.lax.stop_gradient(annotations) if self.freeze_encoder else annotations

  def __call__(self, images: jax.Array, tokens_in: jax.Array, *, deterministic: bool,
               attention: str = "soft") -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced captioning of ``images``: ``Decoder.__call__`` on their annotations.

    Args:
      images: [B, H, W, C] float.
      tokens_in: [B, T] int, ``<bos>`` then the caption shifted right.
      deterministic: no dropout when True (else the ``"dropout"`` rng).
      attention: ``"soft"`` or ``"hard"`` (the ``"sample"`` rng).

    Returns:
      ``(logits [B, T, K], aux)`` as ``Decoder.__call__``: ``alpha`` [B, T, L], ``beta``
      [B, T]; for hard attention also ``locations``, ``log_prob_locations``, ``entropy``
      [B, T] and ``sampled`` [B].
    """
    return self.decoder(self.encode(images), tokens_in, deterministic=deterministic,
                        attention=attention)

  def start(self, images: jax.Array) -> DecodeState:
    """The decoding state of ``images`` [B, H, W, C] (bound-module form)."""
    return self.decoder.init_state(self.encode(images))

  def step(self, tokens: jax.Array,
           state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """``Decoder.step`` (bound-module form)."""
    return self.decoder.step(tokens, state)

  def step_embedded(self, inputs: jax.Array, state: DecodeState, *, deterministic: bool
                    ) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """``Decoder.step_embedded`` (bound-module form)."""
    return self.decoder.step_embedded(inputs, state, deterministic=deterministic)

  @nn.nowrap
  def init_decode_state(self, params: Any, images: jax.Array) -> DecodeState:
    """The state before the first decoding step.

    Args:
      params: the model's ``"params"`` collection.
      images: [B, H, W, C] float.

    Returns:
      ``DecodeState``: annotations [B, L, D], ``W_a a`` [B, L, A], ``c_0``, ``h_0`` [B, H].
    """
    return self.apply({"params": params}, images, method=ShowAttendTell.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step function once ``params`` is bound (functools.partial).

    Soft attention (the expectation, also for hard-attention models) and no dropout.

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous tokens.
      state: ``DecodeState`` with leaves [N, ...]; beam search reorders its rows.

    Returns:
      ``(logits [N, K], state, {"alpha": [N, L], "beta": [N], "hidden": [N, n]})``; equal to
      ``decode_step_embedded(params, input_embedding(params)[tokens], state)``.
    """
    return self.apply({"params": params}, tokens, state, method=ShowAttendTell.step)

  @nn.nowrap
  def decode_step_embedded(self, params: Any, inputs: jax.Array, state: DecodeState, *,
                           dropout_key: jax.Array | None = None
                           ) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """``decode_step`` fed an embedded input ``inputs`` [N, m] in place of ``E y_{t-1}``.

    The sequence objectives (``objectives.sequence``) roll the decoder out over this step
    with inputs of their choosing: ground-truth or sampled embeddings, or a weighted sum of
    embeddings, which then also enters the deep output of eq. (7).

    Args:
      params: the model's ``"params"`` collection.
      inputs: [N, m] float.
      state: ``DecodeState`` with leaves [N, ...].
      dropout_key: None for no dropout; a key for training-mode dropout on ``h_t`` (it
        changes the logits only, never the state).

    Returns:
      ``(logits [N, K], state, {"alpha": [N, L], "beta": [N], "hidden": [N, n]})``,
      ``"hidden"`` the new ``h_t`` (before dropout).
    """
    rngs = {} if dropout_key is None else {"dropout": dropout_key}
    return self.apply({"params": params}, inputs, state, deterministic=dropout_key is None,
                      rngs=rngs, method=ShowAttendTell.step_embedded)

  @nn.nowrap
  def input_embedding(self, params: Any) -> jax.Array:
    """``E`` [K, m], the word embedding: ``decode_step`` embeds ``tokens`` as ``E[tokens]``."""
    return params["decoder"]["embed"]["embedding"]
