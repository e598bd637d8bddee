"""Encoder-decoders for translation, without attention (Sutskever / Cho) and with it (Bahdanau).

Bahdanau, Cho, Bengio, "Neural machine translation by jointly learning to align and
translate", ICLR 2015 (RNNsearch; equation numbers and Appendix A are that paper's);
Sutskever, Vinyals, Le, "Sequence to sequence learning with neural networks", NIPS 2014 and
Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical
machine translation", EMNLP 2014 (the model without attention).

Source ``x = (x_1, ..., x_{T_x})`` is a padded row of ``S`` ids with its true length; the
target ``y = (y_1, ..., y_{T_y})`` ends with ``<eos>`` (``data.vocabulary``). ``E`` embeds target
words, a separate embedding the source words.

``attention=False`` (Sutskever et al. 2014, Sec. 2; Cho et al. 2014, Sec. 2.2): one LSTM reads
the source; its state ``(c, h)`` at the true length ``T_x`` (padding never enters it) is the
decoder LSTM's initial state, and ``p(y_i | y_{<i}, x) = softmax(W_o s_i)`` with ``s_i =
LSTM(s_{i-1}, E y_{i-1})``. With ``reverse_source`` the encoder reads each source sentence
backwards within its length (Sutskever et al. 2014, Sec. 3.3).

``attention=True`` (RNNsearch, Sec. 3 and Appendix A):

    h_j     = [h_j^fwd; h_j^bwd]                                  bidirectional encoder, A.1.1
    e_ij    = v_a^T tanh(W_a s_{i-1} + U_a h_j)                   (6), A.1.2
    a_ij    = exp(e_ij) / sum_k exp(e_ik)  over the real j        (6)
    c_i     = sum_j a_ij h_j                                      (5)
    s_i     = f(s_{i-1}, y_{i-1}, c_i)                            (4), A.2.2
    t~_i    = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i               A.2.2 (deep output)
    t_i     = [max(t~_{i,2j-1}, t~_{i,2j})]_{j=1..l}              A.2.2 (maxout)
    p(y_i | y_{<i}, x) = softmax(W_o t_i)                         A.2.2
    s_0     = tanh(W_s h_1^bwd)                                   A.2.2

``h^bwd`` reads each source sentence backwards *within its length*, so ``h_1^bwd`` has read
``x_{T_x} .. x_1`` and no padding; ``a_ij`` is 0 at padded positions (``ops.attention``).
``U_a h_j`` does not depend on ``i`` and is computed once per sentence (Appendix A.1.2 notes
the same). The deep output uses ``s_{i-1}`` as Appendix A.2.2 writes it (eq. (4) of the main
text writes ``g(y_{i-1}, s_i, c_i)``; the appendix is the more detailed of the two).

Where this departs from the paper (documented choices):

* ``f`` and both encoder directions are LSTMs (``nn.OptimizedLSTMCell``) instead of the
  paper's gated unit of Appendix A.1.1 / A.2.2 (the GRU): the issue allows it. ``s_i`` is the
  LSTM's output ``h``; its memory starts at ``0`` (the paper's unit has no memory cell),
  ``s_0`` as the paper writes it.
* Every linear map has a bias where the paper omits them "to make the equations less
  cluttered" (A.1), except ``W_a`` (``U_a``'s bias plays its part), ``V_o`` and ``C_o``
  (``U_o``'s bias covers ``t~_i``).
* Optional dropout (``dropout_rate``, off by default as in the paper) on ``t_i`` before
  ``W_o`` (on ``s_i`` without attention); the training-mode step takes a ``"dropout"`` rng.

Decoding (``vislang_jax.decoding``; the sequence-model contract of ``models.show_attend_tell``)::

  state = model.init_decode_state(params, source, source_length)
  out = decoding.beam_search(functools.partial(model.decode_step, params), state,
                             bos_id=1, eos_id=2, max_len=T, beam_size=K)
  # out.extras["alignment"]: [B, K, T, S] (attention only); "hidden": [B, K, T, n]
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_ids, check_positive_int, concrete
from vislang_jax.ops.attention import additive_attention
from vislang_jax.ops.sequence import length_mask


class DecodeState(NamedTuple):
  """The decoder's state between steps; every leaf has the leading axis ``N``.

  Attributes:
    cell: [N, n], the decoder LSTM's memory.
    hidden: [N, n], ``s_{i-1}``.
    annotations: [N, S, 2n], the ``h_j`` (None without attention).
    keys: [N, S, A], ``U_a h_j`` with its bias, computed once per sentence (None without
      attention).
    mask: [N, S] bool, True at the source's real positions (None without attention).
  """

  cell: jax.Array
  hidden: jax.Array
  annotations: jax.Array | None = None
  keys: jax.Array | None = None
  mask: jax.Array | None = None


class Seq2Seq(nn.Module):
  """The encoder-decoder of the module docstring, with or without attention.

  Parameter names: ``source_embed``; ``target_embed`` is ``E``; ``encoder_fwd`` /
  ``encoder_bwd`` the encoder LSTMs (``encoder_bwd`` with attention, ``encoder_fwd`` only
  without it); ``init_state`` is ``W_s``; ``att_keys`` / ``att_query`` / ``att_v`` are ``U_a``
  (with the bias), ``W_a``, ``v_a``; ``decoder`` is ``f``; ``out_state`` / ``out_embed`` /
  ``out_context`` are ``U_o`` (with the bias), ``V_o``, ``C_o``; ``out_logits`` is ``W_o``.

  Attributes:
    source_vocab_size: the source vocabulary size (source ids lie in ``[0, it)``).
    target_vocab_size: ``K``, the target vocabulary size (the logits' last axis).
    attention: RNNsearch (True) or the encoder-decoder without attention (False).
    embed_dim: ``m``, the word embedding size of both languages (the paper's 620).
    hidden_size: ``n``, the decoder's and each encoder direction's size (the paper's 1000).
    attention_dim: ``n'``, the width of ``W_a s`` and ``U_a h_j`` (the paper's 1000).
    maxout_dim: ``l``, the maxout units of the deep output (the paper's 500); ``t~_i`` has
      ``2 l``.
    dropout_rate: dropout on ``t_i`` (``s_i`` without attention) in training; 0: none.
    reverse_source: without attention only, read each source backwards (Sutskever et al.).
  """

  source_vocab_size: int
  target_vocab_size: int
  attention: bool = True
  embed_dim: int = 620
  hidden_size: int = 1000
  attention_dim: int = 1000
  maxout_dim: int = 500
  dropout_rate: float = 0.0
  reverse_source: bool = False

  def __post_init__(self):
    for name in ("source_vocab_size", "target_vocab_size", "embed_dim", "hidden_size",
                 "attention_dim", "maxout_dim"):
      check_positive_int(name, getattr(self, name))
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    for name in ("attention", "reverse_source"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}.")
    if self.attention and self.reverse_source:
      raise ValueError("reverse_source must be False with attention=True (the bidirectional "
                       "encoder reads both ways), got reverse_source=True.")
    super().__post_init__()

  def setup(self):
    self.source_embed = nn.Embed(self.source_vocab_size, self.embed_dim)
    self.target_embed = nn.Embed(self.target_vocab_size, self.embed_dim)
    self.encoder_fwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size), return_carry=True,
                              reverse=self.reverse_source, keep_order=True)
    self.decoder = nn.OptimizedLSTMCell(self.hidden_size)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.out_logits = nn.Dense(self.target_vocab_size)
    if self.attention:
      self.encoder_bwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size), return_carry=True,
                                reverse=True, keep_order=True)
      self.init_state = nn.Dense(self.hidden_size)
      self.att_keys = nn.Dense(self.attention_dim)
      self.att_query = nn.Dense(self.attention_dim, use_bias=False)
      self.att_v = self.param("att_v", nn.initializers.normal(self.attention_dim ** -0.5),
                              (self.attention_dim,))
      self.out_state = nn.Dense(2 * self.maxout_dim)
      self.out_embed = nn.Dense(2 * self.maxout_dim, use_bias=False)
      self.out_context = nn.Dense(2 * self.maxout_dim, use_bias=False)

  def encode(self, source: jax.Array, source_length: jax.Array) -> DecodeState:
    """The decoder's state before step 1 (bound-module form of ``init_decode_state``).

    Args:
      source: [B, S] int source ids; positions ``>= source_length`` are ignored.
      source_length: [B] int, each sentence's true length in ``[1, S]`` (checked when
        concrete; under ``jit`` a length outside it is not detected).

    Returns:
      ``DecodeState`` with leaves [B, ...].
    """
    self._check_source(source, source_length)
    embedded = self.source_embed(source)  # [B, S, m]
    (cell, hidden), forward = self.encoder_fwd(embedded, seq_lengths=source_length)
    if not self.attention:
      return DecodeState(cell=cell, hidden=hidden)
    (_, last_bwd), backward = self.encoder_bwd(embedded, seq_lengths=source_length)
    annotations = jnp.concatenate([forward, backward], axis=-1)  # [B, S, 2n], A.1.1
    # h_1^bwd is the backward pass's state after reading x_{T_x} .. x_1: its final carry.
    hidden = jnp.tanh(self.init_state(last_bwd))  # s_0 = tanh(W_s h_1^bwd), A.2.2
    return DecodeState(cell=jnp.zeros_like(hidden), hidden=hidden, annotations=annotations,
                       keys=self.att_keys(annotations),
                       mask=length_mask(source_length, source.shape[1]))

  def _step(self, state: DecodeState, embedded: jax.Array, *, deterministic: bool
            ) -> tuple[DecodeState, dict[str, jax.Array]]:
    """One decoder step fed ``embedded`` = ``E y_{i-1}`` [N, m] -> (state, outputs)."""
    previous = state.hidden  # s_{i-1}
    outputs = {}
    if self.attention:
      context, alignment = additive_attention(  # c_i and a_ij, eq. (5)-(6)
          self.att_query(previous), state.keys, self.att_v, state.annotations, state.mask)
      inputs = jnp.concatenate([embedded, context], axis=-1)
      outputs["alignment"] = alignment
    else:
      inputs = embedded
    (cell, hidden), _ = self.decoder((state.cell, previous), inputs)  # s_i = f(...), (4)
    if self.attention:  # the deep output with maxout, Appendix A.2.2
      pre = self.out_state(previous) + self.out_embed(embedded) + self.out_context(context)
      features = jnp.max(pre.reshape(*pre.shape[:-1], self.maxout_dim, 2), axis=-1)
    else:
      features = hidden
    outputs["logits"] = self.out_logits(self.dropout(features, deterministic=deterministic))
    outputs["hidden"] = hidden
    return state._replace(cell=cell, hidden=hidden), outputs

  def __call__(self, source: jax.Array, source_length: jax.Array, target_in: jax.Array, *,
               deterministic: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced logits of every target position (``nn.scan`` over ``T`` steps).

    Args:
      source: [B, S] int source ids.
      source_length: [B] int lengths in ``[1, S]``.
      target_in: [B, T] int, the decoder inputs ``y_0 .. y_{T-1}``: ``<bos>`` then the target
        shifted right (the predicted targets are ``y_1 .. y_T``).
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.

    Returns:
      ``(logits [B, T, K], aux)``; ``aux["hidden"]`` [B, T, n] holds ``s_i``, and with
      attention ``aux["alignment"]`` [B, T, S] the ``a_ij`` (0 at padded positions ``j``).

    Raises:
      ValueError: for shapes other than these, ids outside the vocabularies or lengths
        outside ``[1, S]`` (values checked when concrete).
    """
    self._check_source(source, source_length)
    if jnp.ndim(target_in) != 2 or jnp.shape(target_in)[0] != jnp.shape(source)[0]:
      raise ValueError(f"target_in must have shape [B, T] with B = source.shape[0] = "
                       f"{jnp.shape(source)[:1]}, got {jnp.shape(target_in)}.")
    check_ids("target_in", target_in, vocab_size=self.target_vocab_size)
    state = self.encode(source, source_length)
    embedded = jnp.swapaxes(self.target_embed(target_in), 0, 1)  # [T, B, m]

    def body(module, carry, x):
      return module._step(carry, x, deterministic=deterministic)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False,
                                                                  "dropout": True})
    _, outputs = scan(self, state, embedded)
    outputs = {key: jnp.swapaxes(value, 0, 1) for key, value in outputs.items()}
    return outputs.pop("logits"), outputs

  def step_embedded(self, inputs: jax.Array, state: DecodeState, *, deterministic: bool
                    ) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """One step fed an embedded input [N, m] (bound-module form of ``decode_step_embedded``)."""
    batch = state.hidden.shape[0]
    if jnp.shape(inputs) != (batch, self.embed_dim):
      raise ValueError(f"inputs must have shape [N, m] = [{batch}, {self.embed_dim}] (the "
                       f"state's batch, embed_dim), got {jnp.shape(inputs)}.")
    state, outputs = self._step(state, inputs, deterministic=deterministic)
    return outputs.pop("logits"), state, outputs

  def _check_source(self, source: jax.Array, source_length: jax.Array) -> None:
    if jnp.ndim(source) != 2 or jnp.shape(source)[1] == 0:
      raise ValueError(f"source must have shape [B, S] with S >= 1, got {jnp.shape(source)}.")
    check_ids("source", source, vocab_size=self.source_vocab_size)
    batch, max_len = jnp.shape(source)
    if jnp.shape(source_length) != (batch,):
      raise ValueError(f"source_length must have shape [B] = ({batch},) (source's batch), got "
                       f"{jnp.shape(source_length)}.")
    dtype = jnp.result_type(source_length)
    if not jnp.issubdtype(dtype, jnp.integer):
      raise ValueError(f"source_length must hold integer lengths, got dtype {dtype}.")
    values = concrete(source_length)
    if values is not None and (values.min() < 1 or values.max() > max_len):
      bad = np.flatnonzero((values < 1) | (values > max_len)).tolist()
      raise ValueError(f"source_length must lie in [1, S] = [1, {max_len}], got "
                       f"{values[bad].tolist()} at rows {bad}.")

  @nn.nowrap
  def init_decode_state(self, params: Any, source: jax.Array,
                        source_length: jax.Array) -> DecodeState:
    """The state before the first decoding step: the encoder run on the source.

    Args:
      params: the model's ``"params"`` collection.
      source: [B, S] int source ids.
      source_length: [B] int lengths in ``[1, S]``.

    Returns:
      ``DecodeState`` with leaves [B, ...].
    """
    return self.apply({"params": params}, source, source_length, method=Seq2Seq.encode)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: DecodeState) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step function once ``params`` is bound (functools.partial).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, ``y_{i-1}``.
      state: ``DecodeState`` with leaves [N, ...]; beam search reorders its rows.

    Returns:
      ``(logits [N, K], state, extras)``, no dropout; ``extras["hidden"]`` [N, n] is the new
      ``s_i`` and, with attention, ``extras["alignment"]`` [N, S] the ``a_ij`` used. Equal to
      ``decode_step_embedded(params, input_embedding(params)[tokens], state)``.
    """
    if jnp.ndim(tokens) != 1 or jnp.shape(tokens)[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's batch), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.target_vocab_size)
    return self.decode_step_embedded(params, self.input_embedding(params)[tokens], state)

  @nn.nowrap
  def decode_step_embedded(self, params: Any, inputs: jax.Array, state: DecodeState, *,
                           dropout_key: jax.Array | None = None
                           ) -> tuple[jax.Array, DecodeState, dict[str, jax.Array]]:
    """``decode_step`` fed an embedded input ``inputs`` [N, m] in place of ``E y_{i-1}``.

    ``inputs`` enters everywhere ``E y_{i-1}`` does: the decoder LSTM and ``V_o E y_{i-1}`` of
    the deep output. The sequence objectives (``objectives.sequence``) roll the decoder out
    over this step with ground-truth, sampled or soft (weighted-sum) embeddings.

    Args:
      params: the model's ``"params"`` collection.
      inputs: [N, m] float.
      state: ``DecodeState`` with leaves [N, ...].
      dropout_key: None for no dropout; a key for training-mode dropout (on ``t_i``, or
        ``s_i`` without attention; the logits change, never the state).

    Returns:
      ``(logits [N, K], state, extras)`` as ``decode_step``.
    """
    rngs = {} if dropout_key is None else {"dropout": dropout_key}
    return self.apply({"params": params}, inputs, state, deterministic=dropout_key is None,
                      rngs=rngs, method=Seq2Seq.step_embedded)

  @nn.nowrap
  def input_embedding(self, params: Any) -> jax.Array:
    """``E`` [K, m], the target embedding: ``decode_step`` embeds ``tokens`` as ``E[tokens]``."""
    return params["target_embed"]["embedding"]
