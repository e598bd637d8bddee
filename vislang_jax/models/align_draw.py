"""alignDRAW: generating images from captions with attention (Mansimov et al., 2016).

Mansimov, Parisotto, Ba, Salakhutdinov, "Generating Images from Captions with Attention",
ICLR 2016. A caption ``y`` of ``Ty`` words is read by a bidirectional LSTM (section 3.1),
``h^lang_j = [h->_j; h<-_j]``; an image is drawn by a conditional DRAW network (section 3.2)
whose generative LSTM attends to the words at every step. Step ``t = 1..T`` of the
generative model:

    z_t ~ P(Z_t | Z_1:t-1, y) = N(mu_t, sigma_t),                              (prior)
          mu_t = tanh(W_mu h^gen_{t-1} + b_mu),
          sigma_t = exp(tanh(W_sigma h^gen_{t-1} + b_sigma))    (t >= 2; P(Z_1) = N(0, I))
    s_t  = align(h^gen_{t-1}, h^lang) = sum_j alpha_tj h^lang_j,                (align)
          alpha_tj proportional to exp(v^T tanh(U h^lang_j + W h^gen_{t-1} + b))
          (ops.attention's additive scores, masked softmax over the words, and context)
    h^gen_t = LSTM^gen(h^gen_{t-1}, [z_t, s_t])
    c_t  = c_{t-1} + write(h^gen_t)

and ``x ~ P(x | y, Z_1:T)``, a Bernoulli (binary images) or a Gaussian (colour) with mean
``sigmoid(c_T)``. The approximate posterior, used for training (section 3.2, inference):

    x^_t = x - sigmoid(c_{t-1})
    r_t  = read(x, x^_t, h^gen_{t-1})
    h^infer_t = LSTM^infer(h^infer_{t-1}, [r_t, h^gen_{t-1}])
    Q(Z_t | x, y, Z_1:t-1) = N(mu(h^infer_t), sigma(h^infer_t))

The loss, the negative variational bound of section 3.3, is in ``objectives/align_draw.py``.
``read`` and ``write`` are DRAW's Gaussian filterbanks (``models.draw.FilterbankRead`` and
``FilterbankWrite``).

Where the paper is silent this follows the authors' released Theano code (emansim/text2image,
``alignDraw.py``, function ``build_lang_encoder_and_attention_vae_decoder``):

* Initial states: the canvas ``c_0`` (one learned value per pixel, initialised at -10, so
  ``sigmoid(c_0)`` is a black canvas, as the code's comment says) and the hidden states
  ``h^gen_0``, ``h^infer_0`` and ``h^lang_0`` (one vector each, shared by the forward and
  backward language LSTMs as there) are parameters; the LSTM cells start at zero. A learned
  black canvas lets the model spend its writes on ink instead of first erasing a grey
  ``sigmoid(0) = 0.5`` background that covers most of a 60x60 digit canvas.
* ``P(Z_1) = N(0, I)``, fixed: the code starts its scan with ``mu_prior_0 = log_sigma_prior_0
  = 0`` and computes the prior of ``Z_{t+1}`` from ``h^gen_t`` at the end of step ``t``
  (``tanh`` of one linear layer, split into ``mu`` and ``log sigma``); so does this model.
  The caption changes the prior from ``t = 2`` on.
* Differences kept: the posterior's ``log sigma`` is one linear layer (the code halves a
  linear layer: the same family); words are embedded (``embed_size``) before the language
  LSTMs, where the code feeds one-hot words (the same family when ``embed_size`` is at
  least the vocabulary size); padding is masked (the code batches captions of one length).

Choices this implementation makes where neither says more:

* Variants (section 5, the paper's ablations): ``"align"`` is alignDRAW; ``"noalign"``
  replaces ``s_t`` by the mean of ``h^lang`` over the caption's words (every ``alpha_tj =
  1 / length``); ``"unconditional"`` ignores the caption (no language model, no ``s_t``) and
  keeps the learned recurrent prior, so the three variants share one loss and one sampler.
  Its prior family contains DRAW's ``N(0, I)`` (``W_mu = W_sigma = 0``, zero biases); the
  exact DRAW baseline is ``models.draw.DRAW``.
* Padding: token ``j`` of example ``b`` is a word iff ``j < lengths[b]``. The backward LSTM
  reads each caption from its own last word (each sequence is reversed within its length),
  ``h^lang`` is zero on padding and the alignment gives padding exactly zero weight, so
  padding ids never change the output.

Randomness: the reparameterised samples take ``eps`` from the ``"sample"`` rng stream
(``rngs={"params": k1, "sample": k2}`` at init, ``rngs={"sample": k}`` at apply), or from an
explicit ``noise`` argument.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_choice, check_ids, check_positive_int, check_rank, concrete
from vislang_jax.models.draw import (FilterbankRead, FilterbankWrite, as_image_batch,
                                     check_grid_size, latent_noise, scan_aux)
from vislang_jax.models.show_attend_tell import ScoreVector
from vislang_jax.objectives.align_draw import OUTPUTS
from vislang_jax.ops import attention
from vislang_jax.ops.sequence import length_mask

VARIANTS = ("align", "noalign", "unconditional")
CANVAS_INIT = -10.0  # c_0 at initialisation: sigmoid(-10) ~ 5e-5, a black canvas (released code)


def check_captions(tokens: jax.Array, lengths: jax.Array, *, vocab_size: int,
                   batch: int | None = None) -> None:
  """Checks a batch of encoded captions; values are checked only when not traced.

  Args:
    tokens: [B, Ty] int word ids in ``[0, vocab_size)``, ``<pad>`` after each caption.
    lengths: [B] int, the number of words of each caption, in ``[1, Ty]``.
    vocab_size: the number of word ids.
    batch: when given, the expected ``B``.

  Raises:
    ValueError: for a wrong rank, dtype or batch size; and, when the arrays are concrete
      (outside ``jax.jit``), for lengths outside ``[1, Ty]`` or ids outside the vocabulary.
  """
  check_rank("tokens", tokens, "[B, Ty]")
  check_ids("tokens", tokens, vocab_size=vocab_size)
  num, max_len = tokens.shape
  if batch is not None and num != batch:
    raise ValueError(f"tokens must have B = {batch} rows (one caption per image), got "
                     f"{tokens.shape}.")
  dtype = jnp.result_type(lengths)
  if jnp.shape(lengths) != (num,) or not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"lengths must be an integer array [B] = ({num},) to match tokens "
                     f"{tokens.shape}, got {dtype} {jnp.shape(lengths)}.")
  values = concrete(lengths)
  if values is not None and num and (values.min() < 1 or values.max() > max_len):
    raise ValueError(f"lengths must lie in [1, Ty] = [1, {max_len}] (every caption needs a "
                     f"word), got values in [{values.min()}, {values.max()}].")


def initial_lstm_state(h0: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
  """The ``(cell, hidden)`` carry of an ``nn.OptimizedLSTMCell``: zero cells, ``h0`` [D]
  (a learned initial state) in every row; each [batch, D]."""
  return jnp.zeros((batch,) + h0.shape, h0.dtype), jnp.broadcast_to(h0, (batch,) + h0.shape)


class CaptionEncoder(nn.Module):
  """The bidirectional language model of section 3.1: word embeddings and two LSTMs.

  The forward LSTM reads ``y_1..y_L`` and the backward LSTM ``y_L..y_1``, where ``L`` is each
  caption's own length (the sequence is reversed within its length, read, and reversed back,
  ``nn.RNN(reverse=True, keep_order=True, seq_lengths=...)``), so neither direction ever
  reads padding before a word. Both directions start from zero cells and the learned hidden
  state ``h0`` [lang_size] (initialised at zero), one vector shared by the two as in the
  released code's ``h0_lang``.

  Attributes:
    vocab_size: the number of word ids (``len(vocabulary)``, specials included).
    embed_size: word embedding size.
    lang_size: LSTM size per direction.
  """

  vocab_size: int
  embed_size: int
  lang_size: int

  @nn.compact
  def __call__(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """[B, Ty] int ids, [B] int lengths -> h^lang [B, Ty, 2 lang_size], zero on padding.

    ``h^lang[b, j] = [h->_j; h<-_j]``: the forward state after word ``j`` and the backward
    state after reading words ``L-1, ..., j`` (0-based, ``L = lengths[b]``).
    """
    embedded = nn.Embed(self.vocab_size, self.embed_size, name="embed")(tokens)
    h0 = self.param("h0", nn.initializers.zeros, (self.lang_size,))
    start = initial_lstm_state(h0, tokens.shape[0])
    forward = nn.RNN(nn.OptimizedLSTMCell(self.lang_size, name="forward"))(
        embedded, initial_carry=start, seq_lengths=lengths)
    backward = nn.RNN(nn.OptimizedLSTMCell(self.lang_size, name="backward"), reverse=True,
                      keep_order=True)(embedded, initial_carry=start, seq_lengths=lengths)
    h_lang = jnp.concatenate([forward, backward], axis=-1)
    return jnp.where(length_mask(lengths, tokens.shape[1])[..., None], h_lang, 0.0)


class AlignDRAW(nn.Module):
  """alignDRAW of Mansimov et al. (2016), unrolled over ``glimpses`` steps with nn.scan.

  Read and write always go through DRAW's filterbanks (the paper's model):
  ``models.draw.FilterbankRead`` and ``FilterbankWrite`` of ``h^gen``, whose attention layers
  are initialised to cover the image.

  Attributes:
    height: image height in pixels.
    width: image width in pixels.
    vocab_size: the number of word ids (``len(vocabulary)``).
    channels: image channels ``C``; ``1`` also accepts [B, H, W] images.
    glimpses: ``T``, the number of generative steps.
    read_n: ``N`` of the read grid (the read is ``2 read_n^2 C`` numbers: x and x^).
    write_n: ``N`` of the write grid.
    z_size: latent units per step.
    enc_size: size of the inference LSTM ``LSTM^infer``.
    gen_size: size of the generative LSTM ``LSTM^gen``.
    lang_size: size of each direction of the language LSTM (``h^lang`` has ``2 lang_size``).
    embed_size: word embedding size.
    align_size: size of the alignment layer (the rows of ``U`` and ``W``, the length of ``v``).
    variant: ``"align"`` (alignDRAW), ``"noalign"`` (``s_t`` = mean of ``h^lang`` over the
      words) or ``"unconditional"`` (the caption is ignored; see the module docstring).
    output: ``"bernoulli"`` (binary images) or ``"gaussian"`` (colour): ``P(x | y, Z)`` has
      mean ``sigmoid(c_T)``; a Gaussian's log standard deviation is a learned parameter per
      channel, ``x_logsigma`` [C] (initialised to 0), returned in ``aux``.
  """

  height: int
  width: int
  vocab_size: int
  channels: int = 1
  glimpses: int = 10
  read_n: int = 2
  write_n: int = 5
  z_size: int = 10
  enc_size: int = 256
  gen_size: int = 256
  lang_size: int = 128
  embed_size: int = 128
  align_size: int = 128
  variant: str = "align"
  output: str = "bernoulli"

  def __post_init__(self):
    for name in ("height", "width", "vocab_size", "channels", "glimpses", "z_size", "enc_size",
                 "gen_size", "lang_size", "embed_size", "align_size"):
      check_positive_int(name, getattr(self, name))
    for name in ("read_n", "write_n"):
      check_grid_size(name, getattr(self, name), height=self.height, width=self.width)
    check_choice("variant", self.variant, VARIANTS)
    check_choice("output", self.output, OUTPUTS)
    super().__post_init__()

  def setup(self):
    self.infer_lstm = nn.OptimizedLSTMCell(self.enc_size)
    self.gen_lstm = nn.OptimizedLSTMCell(self.gen_size)
    self.q_mu = nn.Dense(self.z_size)
    self.q_logsigma = nn.Dense(self.z_size)
    self.prior_mu = nn.Dense(self.z_size)  # W_mu, b_mu
    self.prior_logsigma = nn.Dense(self.z_size)  # W_sigma, b_sigma
    self.reader = FilterbankRead(self.height, self.width, self.read_n)  # read(x, x^, h^gen)
    self.writer = FilterbankWrite(self.height, self.width, self.write_n, self.channels)
    # The learned initial states (module docstring): c_0 per pixel, h^infer_0, h^gen_0.
    self.c0 = self.param("c0", nn.initializers.constant(CANVAS_INIT),
                         (self.height, self.width, self.channels))
    self.h0_infer = self.param("h0_infer", nn.initializers.zeros, (self.enc_size,))
    self.h0_gen = self.param("h0_gen", nn.initializers.zeros, (self.gen_size,))
    if self.variant != "unconditional":
      self.caption_encoder = CaptionEncoder(self.vocab_size, self.embed_size, self.lang_size)
    if self.variant == "align":
      self.align_u = nn.Dense(self.align_size, use_bias=False)  # U
      self.align_w = nn.Dense(self.align_size)  # W and b
      self.align_v = ScoreVector(self.align_size)  # v
    if self.output == "gaussian":
      self.x_logsigma = self.param("x_logsigma", nn.initializers.zeros, (self.channels,))

  # -- language -------------------------------------------------------------------------

  def _encode_caption(self, tokens: jax.Array,
                      lengths: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array] | None:
    """The per-call language context ``(h^lang [B,Ty,2L], keys [B,Ty,A] or weights, mask)``.

    ``keys = U h^lang_j`` are computed once, outside the time loop; for ``noalign`` the
    second entry is the uniform weights [B, Ty] instead. None for ``unconditional``.
    """
    if self.variant == "unconditional":
      return None
    h_lang = self.caption_encoder(tokens, lengths)
    mask = length_mask(lengths, tokens.shape[1])
    if self.variant == "align":
      return h_lang, self.align_u(h_lang), mask
    uniform = mask / lengths[:, None].astype(h_lang.dtype)
    return h_lang, uniform, mask

  def _attend(self, h_gen: jax.Array, lang: Any) -> dict[str, jax.Array | None]:
    """``context`` = ``s_t`` [B, 2L] and ``alignment`` = ``alpha_t`` [B, Ty] from
    ``h^gen_{t-1}`` [B, gen_size] (both None without a caption)."""
    if lang is None:
      return {"context": None, "alignment": None}
    h_lang, keys_or_weights, mask = lang
    if self.variant == "align":  # padding gets weight exactly 0 (and no gradient)
      scores = attention.additive_scores(self.align_w(h_gen), keys_or_weights, self.align_v())
      alpha = attention.masked_softmax(scores, mask)
    else:
      alpha = keys_or_weights
    return {"context": attention.context(alpha, h_lang), "alignment": alpha}

  # -- image ----------------------------------------------------------------------------

  def _initial_carry(self, batch: int) -> tuple[jax.Array, Any, tuple[jax.Array, jax.Array]]:
    """``(c_0, (cell, h^gen_0), P(Z_1))`` for ``batch`` rows: the learned canvas and hidden
    state, zero cells, and ``P(Z_1) = N(0, I)`` as ``(mu, log sigma)`` [B, Z] zeros."""
    canvas = jnp.broadcast_to(self.c0, (batch,) + self.c0.shape)
    prior = (jnp.zeros((batch, self.z_size)), jnp.zeros((batch, self.z_size)))
    return canvas, initial_lstm_state(self.h0_gen, batch), prior

  def _draw_step(self, canvas: jax.Array, gen_state: Any, z: jax.Array,
                 context: jax.Array | None
                 ) -> tuple[jax.Array, Any, tuple[jax.Array, jax.Array], dict[str, Any]]:
    """``h^gen_t = LSTM^gen(h^gen_{t-1}, [z_t, s_t])``, ``c_t = c_{t-1} + write(h^gen_t)``
    and the prior of the next step, ``(tanh(W_mu h^gen_t + b_mu), tanh(W_sigma h^gen_t +
    b_sigma))`` = ``(mu_{t+1}, log sigma_{t+1})``."""
    inputs = z if context is None else jnp.concatenate([z, context], axis=-1)
    gen_state, h_gen = self.gen_lstm(gen_state, inputs)
    update, write_att = self.writer(h_gen)
    canvas = canvas + update
    prior = (jnp.tanh(self.prior_mu(h_gen)), jnp.tanh(self.prior_logsigma(h_gen)))
    return canvas, gen_state, prior, {"canvas": canvas, "write": write_att, "z": z}

  def _infer_step(self, carry: tuple[jax.Array, Any, Any, Any], x: jax.Array, lang: Any,
                  eps: jax.Array) -> tuple[tuple[jax.Array, Any, Any, Any], dict[str, Any]]:
    """One step with ``z_t`` from the posterior; ``carry = (c, infer state, gen state,
    (mu_t, log sigma_t) of the prior)``."""
    canvas, infer_state, gen_state, (p_mu, p_logsigma) = carry
    h_gen = gen_state[1]
    out = self._attend(h_gen, lang)
    x_hat = x - jax.nn.sigmoid(canvas)
    r, read_att = self.reader(x, x_hat, h_gen)
    infer_state, h_infer = self.infer_lstm(infer_state, jnp.concatenate([r, h_gen], axis=-1))
    q_mu = self.q_mu(h_infer)
    q_logsigma = self.q_logsigma(h_infer)
    z = q_mu + jnp.exp(q_logsigma) * eps  # reparameterisation
    canvas, gen_state, prior, drawn = self._draw_step(canvas, gen_state, z, out["context"])
    out.update(drawn, q_mu=q_mu, q_logsigma=q_logsigma, p_mu=p_mu, p_logsigma=p_logsigma,
               read=read_att)
    return (canvas, infer_state, gen_state, prior), out

  def _prior_step(self, carry: tuple[jax.Array, Any, Any], lang: Any,
                  eps: jax.Array) -> tuple[tuple[jax.Array, Any, Any], dict[str, Any]]:
    """One step with ``z_t = mu_t + sigma_t eps`` from the prior; ``carry = (c, gen state,
    (mu_t, log sigma_t))``."""
    canvas, gen_state, (p_mu, p_logsigma) = carry
    out = self._attend(gen_state[1], lang)
    z = p_mu + jnp.exp(p_logsigma) * eps
    canvas, gen_state, prior, drawn = self._draw_step(canvas, gen_state, z, out["context"])
    out.update(drawn, p_mu=p_mu, p_logsigma=p_logsigma)
    return (canvas, gen_state, prior), out

  def __call__(self, x: jax.Array, tokens: jax.Array, lengths: jax.Array, *,
               noise: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """Encodes ``x`` given its caption and redraws it over ``glimpses`` steps.

    Args:
      x: [B, H, W] (only when ``channels == 1``) or [B, H, W, C] float images in [0, 1].
      tokens: [B, Ty] int caption word ids in ``[0, vocab_size)`` (``Vocabulary.encode``),
        ``<pad>`` after each caption; checked, but ignored by the ``unconditional`` variant.
      lengths: [B] int, the words of each caption (``<eos>`` included), in ``[1, Ty]``.
      noise: optional [T, B, Z] standard normal ``eps`` of the posterior samples; drawn from
        the ``"sample"`` rng stream when None.

    Returns:
      ``(logits, aux)``: ``logits`` = ``c_T``, the shape of ``x``; ``sigmoid(c_T)`` is the
      mean of ``P(x | y, Z)``. ``aux`` holds ``canvases`` [T, B, H, W(, C)] (``c_1..c_T``);
      ``q_mu``, ``q_logsigma`` (posterior), ``p_mu``, ``p_logsigma`` (prior; ``p_*[0] = 0``
      is ``P(Z_1) = N(0, I)``) and ``z`` (the posterior samples), each [T, B, Z]; ``read``
      and ``write``: ``AttentionParams`` with each field [T, B] (step ``t`` reads from
      ``h^gen_{t-1}`` and writes from ``h^gen_t``); unless ``unconditional``: ``alignment``
      [T, B, Ty] (``alpha_t``, zero on padding, rows summing to one) and ``context``
      [T, B, 2 lang_size] (``s_t``); for ``output == "gaussian"``: ``x_logsigma`` [C].

    Raises:
      ValueError: if ``x``, ``tokens``, ``lengths`` or ``noise`` has the wrong shape or
        dtype, or (outside jit) a length or id is out of range.
    """
    x, squeeze = as_image_batch(x, height=self.height, width=self.width, channels=self.channels)
    batch = x.shape[0]
    check_captions(tokens, lengths, batch=batch, vocab_size=self.vocab_size)
    noise = latent_noise(self, noise, (self.glimpses, batch, self.z_size))

    lang = self._encode_caption(tokens, lengths)
    canvas, gen_state, prior = self._initial_carry(batch)
    carry = (canvas, initial_lstm_state(self.h0_infer, batch), gen_state, prior)
    scan = nn.scan(AlignDRAW._infer_step, variable_broadcast="params",
                   split_rngs={"params": False}, in_axes=(nn.broadcast, nn.broadcast, 0),
                   length=self.glimpses)
    (canvas, _, _, _), outs = scan(self, carry, x, lang, noise)
    aux = scan_aux(outs, squeeze)
    if self.output == "gaussian":
      aux["x_logsigma"] = self.x_logsigma
    return canvas[..., 0] if squeeze else canvas, aux

  def generate(self, tokens: jax.Array, lengths: jax.Array, *, glimpses: int | None = None,
               noise: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """Draws one image per caption from the generative model, ``z_t`` from the learned prior.

    Args:
      tokens: [S, Ty] int caption word ids (repeat a caption to draw several images of it);
        the ``unconditional`` variant only takes ``S`` from them.
      lengths: [S] int caption lengths in ``[1, Ty]``.
      glimpses: steps to draw for; ``self.glimpses`` when None.
      noise: optional [T, S, Z] standard normal ``eps`` of ``z_t = mu_t + sigma_t eps``
        (e.g. one draw per record, whatever the batch); from the ``"sample"`` stream when
        None.

    Returns:
      ``(canvases, aux)``: canvases [T, S, H, W] (``channels == 1``) or [T, S, H, W, C], the
      logits ``c_1..c_T`` (``jax.nn.sigmoid`` of them are the images); ``aux`` holds ``z``,
      ``p_mu``, ``p_logsigma`` [T, S, Z], ``write`` (``AttentionParams``, fields [T, S]) and,
      unless ``unconditional``, ``alignment`` [T, S, Ty] and ``context`` [T, S, 2 lang_size].
    """
    steps = self.glimpses if glimpses is None else glimpses
    check_positive_int("glimpses", steps)
    check_captions(tokens, lengths, vocab_size=self.vocab_size)
    num_samples = tokens.shape[0]
    eps = latent_noise(self, noise, (steps, num_samples, self.z_size))
    lang = self._encode_caption(tokens, lengths)
    scan = nn.scan(AlignDRAW._prior_step, variable_broadcast="params",
                   split_rngs={"params": False}, in_axes=(nn.broadcast, 0))
    _, outs = scan(self, self._initial_carry(num_samples), lang, eps)
    aux = scan_aux(outs, self.channels == 1)
    return aux.pop("canvases"), aux


@functools.partial(jax.jit, static_argnames=("model", "T"))
def _generate(model: AlignDRAW, params: Any, key: jax.Array, tokens: jax.Array,
              lengths: jax.Array, T: int | None) -> tuple[jax.Array, dict[str, Any]]:  # noqa: N803
  return model.apply({"params": params}, tokens, lengths, glimpses=T,
                     method=AlignDRAW.generate, rngs={"sample": key})


def generate(model: AlignDRAW, params: Any, key: jax.Array, tokens: jax.Array,
             lengths: jax.Array, T: int | None = None  # noqa: N803 (the paper's T)
             ) -> tuple[jax.Array, dict[str, Any]]:
  """Jitted ``AlignDRAW.generate``: one image per caption, drawn over ``T`` steps.

  Concrete ``tokens`` and ``lengths`` are range-checked before the jitted call.

  Args:
    model: the AlignDRAW module (static: its fields define the computation).
    params: its ``"params"`` collection, ``variables["params"]``.
    key: PRNG key of the prior samples ``z_t``.
    tokens: [S, Ty] int caption word ids.
    lengths: [S] int caption lengths.
    T: steps to draw for (static); ``model.glimpses`` when None.

  Returns:
    ``(canvases [T, S, H, W(, C)], aux)`` as ``AlignDRAW.generate``; ``aux["alignment"]``
    [T, S, Ty] shows which words each step attended to.
  """
  check_captions(tokens, lengths, vocab_size=model.vocab_size)
  return _generate(model, params, key, tokens, lengths, T=T)

