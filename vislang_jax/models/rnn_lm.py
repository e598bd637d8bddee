"""A word-level recurrent language model: the lecture's vanilla tanh RNN or an LSTM.

The model factorises a sentence ``w_1..w_T`` (its last word ``<eos>``) left to right,
``p(w_1..w_T) = prod_t p(w_t | w_{<t})``, every factor read off the hidden state after the
words before it, with ``w_0 = <bos>``:

  x_t = E w_{t-1}                                      (input embedding, ``E``: [V, m])
  h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)              (vanilla cell; ``h_0 = 0``)
  or (i, f, g, o) = (sigma, sigma, tanh, sigma)(W_h h_{t-1} + W_x x_t + b),
     c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)   (LSTM; ``c_0 = h_0 = 0``)
  p(w_t | w_{<t}) = softmax(W_hy h_t + b_y)            (output projection)

``num_layers`` cells stack, layer ``l`` reading layer ``l - 1``'s ``h_t`` as its input (layer
1 reads ``x_t``); the output projection reads the top layer. Dropout (Zaremba et al. 2014,
"Recurrent neural network regularization") applies to the non-recurrent connections only:
``x_t``, each layer's output on its way up and the top ``h_t`` before ``W_hy``.

Training is teacher-forced (``__call__``): the inputs are ``<bos>`` then the sentence shifted
right, the targets the sentence. Generation goes through ``vislang_jax.decoding``::

  state = model.init_decode_state(params, batch_size)          # or prefix=[B, P] words
  step_fn = functools.partial(model.decode_step, params)
  out = decoding.beam_search(step_fn, state, bos_id=1, eos_id=2, max_len=20, beam_size=4)

and the sequence objectives roll ``decode_step_embedded`` out with their own inputs (the
contract of ``objectives/sequence.py``: ``decode_step(params, w, s) ==
decode_step_embedded(params, input_embedding(params)[w], s)``).
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import (check_choice, check_float, check_ids, check_positive_int,
                                check_rank, concrete)

CELLS = ("vanilla", "lstm")


class LMState(NamedTuple):
  """The decoder's state between steps; every leaf has the leading axis ``N``.

  Attributes:
    hidden: [N, num_layers, H], every layer's ``h_{t-1}``.
    cell: [N, num_layers, H], every layer's LSTM memory ``c_{t-1}``; None for the vanilla cell.
    pending: [N] int32, the word the next step reads instead of its input (the last word of
      a prefix, see ``RNNLM.init_decode_state``), -1 for none.
  """

  hidden: jax.Array
  cell: jax.Array | None
  pending: jax.Array


class RNNLM(nn.Module):
  """The language model of the module docstring.

  Parameter names: ``embed`` is ``E``; ``layer_<l>`` the ``l``-th cell (vanilla: Flax's
  ``SimpleCell``, whose ``i`` is ``W_xh`` with the bias ``b`` and ``h`` is ``W_hh``; LSTM:
  Flax's ``OptimizedLSTMCell``, ``i<gate>`` and ``h<gate>`` (with the bias) for the gates
  ``i, f, g, o``); ``out`` is ``W_hy``, ``b_y``.

  Attributes:
    vocab_size: ``V``, the vocabulary size (the logits' last axis).
    cell: "vanilla" (``h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)``) or "lstm".
    embed_dim: ``m``, the word embedding size.
    hidden_size: ``H``, every layer's state size.
    num_layers: stacked cells.
    dropout_rate: dropout on the non-recurrent connections in training (0: none).
  """

  vocab_size: int
  cell: str = "lstm"
  embed_dim: int = 64
  hidden_size: int = 128
  num_layers: int = 1
  dropout_rate: float = 0.0

  def __post_init__(self):
    check_choice("cell", self.cell, CELLS)
    for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
      check_positive_int(name, getattr(self, name))
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    super().__post_init__()

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    make_cell = nn.SimpleCell if self.cell == "vanilla" else nn.OptimizedLSTMCell
    self.layers = [make_cell(self.hidden_size, name=f"layer_{l}")
                   for l in range(self.num_layers)]
    self.dropout = nn.Dropout(self.dropout_rate)
    self.out = nn.Dense(self.vocab_size)

  def zero_state(self, batch_size: int) -> LMState:
    """``h_0 = 0`` (and ``c_0 = 0``) for ``batch_size`` rows, nothing pending."""
    zeros = jnp.zeros((batch_size, self.num_layers, self.hidden_size), jnp.float32)
    return LMState(hidden=zeros, cell=zeros if self.cell == "lstm" else None,
                   pending=jnp.full((batch_size,), -1, jnp.int32))

  def _step(self, state: LMState, inputs: jax.Array, *,
            deterministic: bool) -> tuple[LMState, jax.Array, jax.Array]:
    """One time step on embedded inputs ``x_t`` [N, m] -> (state, logits [N, V], h_t [N, H])."""
    x = self.dropout(inputs, deterministic=deterministic)
    hidden, cell = [], []
    for l, layer in enumerate(self.layers):
      if self.cell == "lstm":
        (c, h), _ = layer((state.cell[:, l], state.hidden[:, l]), x)
        cell.append(c)
      else:
        h, _ = layer(state.hidden[:, l], x)
      hidden.append(h)
      x = self.dropout(h, deterministic=deterministic)
    state = state._replace(hidden=jnp.stack(hidden, 1),
                           cell=jnp.stack(cell, 1) if cell else None)
    return state, self.out(x), hidden[-1]

  def __call__(self, tokens_in: jax.Array, *,
               deterministic: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced unroll from the zero state over ``T`` steps (``nn.scan``).

    Args:
      tokens_in: [B, T] int, the inputs ``w_0..w_{T-1}``: ``<bos>`` then the sentence shifted
        right (the targets are ``w_1..w_T``).
      deterministic: no dropout when True; otherwise the ``"dropout"`` rng is used.

    Returns:
      ``(logits [B, T, V], {"hidden": [B, T, H]})``, the top layer's ``h_t`` in ``aux``.

    Raises:
      ValueError: for ``tokens_in`` not [B, T] integer ids in [0, vocab_size) (the range is
        checked when concrete).
    """
    check_rank("tokens_in", tokens_in, "[B, T]")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    embedded = jnp.swapaxes(self.embed(tokens_in), 0, 1)  # [T, B, m]

    def body(module, state, x):
      state, logits, hidden = module._step(state, x, deterministic=deterministic)
      return state, (logits, hidden)

    scan = nn.scan(body, variable_broadcast="params",
                   split_rngs={"params": False, "dropout": True})
    _, (logits, hidden) = scan(self, self.zero_state(tokens_in.shape[0]), embedded)
    return jnp.swapaxes(logits, 0, 1), {"hidden": jnp.swapaxes(hidden, 0, 1)}

  def read_prefix(self, prefix: jax.Array, lengths: jax.Array) -> LMState:
    """The state after reading ``p_1..p_{n-1}``, with ``p_n`` pending, ``n = lengths`` per row.

    Args:
      prefix: [B, P] int, each row's inputs, padded after ``lengths``.
      lengths: [B] int in [1, P], each row's prefix length.
    """
    batch, size = prefix.shape

    def body(module, state, x):
      t, embedded = x
      new, _, _ = module._step(state, embedded, deterministic=True)
      reading = (t < lengths)[:, None, None]  # p_t is read when t < n
      hidden, cell = jax.tree.map(lambda n, o: jnp.where(reading, n, o),
                                  (new.hidden, new.cell), (state.hidden, state.cell))
      return state._replace(hidden=hidden, cell=cell), None

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
    state = self.zero_state(batch)
    state, _ = scan(self, state, (jnp.arange(1, size + 1),
                                  jnp.swapaxes(self.embed(prefix), 0, 1)))
    last = jnp.take_along_axis(prefix, lengths[:, None] - 1, axis=1)[:, 0]
    return state._replace(pending=last.astype(jnp.int32))

  def step_embedded(self, inputs: jax.Array, state: LMState, *, deterministic: bool = True
                    ) -> tuple[jax.Array, LMState, dict[str, jax.Array]]:
    """One decoding step fed ``x_t`` [N, m] (a pending word replaces it); bound-module form."""
    waiting = state.pending >= 0
    inputs = jnp.where(waiting[:, None], self.embed(jnp.maximum(state.pending, 0)), inputs)
    state, logits, hidden = self._step(state, inputs, deterministic=deterministic)
    return logits, state._replace(pending=jnp.full_like(state.pending, -1)), {"hidden": hidden}

  def step(self, tokens: jax.Array,
           state: LMState) -> tuple[jax.Array, LMState, dict[str, jax.Array]]:
    """``step_embedded`` of ``E[tokens]`` without dropout; bound-module form."""
    return self.step_embedded(self.embed(tokens), state)

  @nn.nowrap
  def init_decode_state(self, params: Any, batch_size: int | None = None, *,
                        prefix: jax.Array | None = None,
                        prefix_lengths: jax.Array | None = None) -> LMState:
    """The state before the first decoding step: from scratch, or after a prefix.

    Without ``prefix`` the zero state of ``batch_size`` rows: decoding from ``<bos>``
    generates whole sentences. With ``prefix`` [B, P], the inputs read so far (``<bos>``
    then a sentence's first words), the state has read each row's prefix but its last
    input, which waits in ``pending`` and replaces the ``<bos>`` that ``decoding`` feeds
    first, so the decoded tokens continue the prefix (the prefix is not among them). A
    prefix of ``<bos>`` alone gives the zero state's decoding.

    Args:
      params: the model's ``"params"`` collection.
      batch_size: ``B`` (without ``prefix``).
      prefix: [B, P] int, P >= 1, ``<bos>`` and the words each sentence starts with.
      prefix_lengths: [B] int in [1, P], the inputs of each row of a padded ``prefix``;
        None: all P.

    Returns:
      ``LMState`` with leaves [B, ...].

    Raises:
      ValueError: unless exactly one of ``batch_size`` and ``prefix`` is given, or for a bad
        batch size, prefix or prefix lengths.
    """
    if (batch_size is None) == (prefix is None):
      raise ValueError(f"init_decode_state needs exactly one of batch_size and prefix, got "
                       f"batch_size={batch_size!r} and prefix of shape "
                       f"{None if prefix is None else jnp.shape(prefix)}.")
    if prefix is None:
      check_positive_int("batch_size", batch_size)
      return self.apply({"params": params}, batch_size, method=RNNLM.zero_state)
    check_rank("prefix", prefix, "[B, P]")
    check_ids("prefix", prefix, vocab_size=self.vocab_size)
    batch, size = jnp.shape(prefix)
    if size < 1:
      raise ValueError(f"prefix must hold at least one word per row, got shape {(batch, size)}.")
    if prefix_lengths is None:
      prefix_lengths = jnp.full((batch,), size, jnp.int32)
    lengths = concrete(prefix_lengths)
    if (jnp.shape(prefix_lengths) != (batch,)
        or not jnp.issubdtype(jnp.result_type(prefix_lengths), jnp.integer)
        or (lengths is not None and (lengths.min() < 1 or lengths.max() > size))):
      raise ValueError(f"prefix_lengths must be [B] = ({batch},) ints in [1, P] = [1, {size}], "
                       f"got {jnp.result_type(prefix_lengths)} {jnp.shape(prefix_lengths)}"
                       f"{'' if lengths is None else f' in [{lengths.min()}, {lengths.max()}]'}.")
    return self.apply({"params": params}, prefix, jnp.asarray(prefix_lengths, jnp.int32),
                      method=RNNLM.read_prefix)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: LMState) -> tuple[jax.Array, LMState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step once ``params`` is bound (``functools.partial``).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous words (``<bos>`` first).
      state: ``LMState`` with leaves [N, ...]; beam search reorders its rows.

    Returns:
      ``(logits [N, V], state, {"hidden": [N, H]})``, ``hidden`` the top layer's ``h_t``.
    """
    if jnp.ndim(tokens) != 1 or jnp.shape(tokens)[0] != state.hidden.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.hidden.shape[0]} (the "
                       f"state's rows), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.apply({"params": params}, tokens, state, method=RNNLM.step)

  @nn.nowrap
  def decode_step_embedded(self, params: Any, inputs: jax.Array, state: LMState, *,
                           dropout_key: jax.Array | None = None
                           ) -> tuple[jax.Array, LMState, dict[str, jax.Array]]:
    """``decode_step`` fed an embedded input ``x_t`` instead of a word.

    Args:
      params: the model's ``"params"`` collection.
      inputs: [N, m] float, e.g. ``input_embedding(params)[w]`` or a weighted sum of rows.
      state: ``LMState`` with leaves [N, ...].
      dropout_key: None: no dropout; a key: training-mode dropout drawn with it.

    Returns:
      ``(logits [N, V], state, {"hidden": [N, H]})``.
    """
    if jnp.shape(inputs) != (state.hidden.shape[0], self.embed_dim):
      raise ValueError(f"inputs must have shape [N, m] = ({state.hidden.shape[0]}, "
                       f"{self.embed_dim}), got {jnp.shape(inputs)}.")
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    return self.apply({"params": params}, inputs, state, deterministic=dropout_key is None,
                      rngs=rngs, method=RNNLM.step_embedded)

  @nn.nowrap
  def input_embedding(self, params: Any) -> jax.Array:
    """``E`` [V, m]: the step embeds word ``w`` as ``E[w]``."""
    return params["embed"]["embedding"]
