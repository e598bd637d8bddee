"""Visual-semantic embeddings and the structure-content neural language model.

Kiros, Salakhutdinov, Zemel, "Unifying Visual-Semantic Embeddings with Multimodal Neural
Language Models", arXiv:1411.2539, 2014.

Encoder (Sec. 2, ``VSE``): an image ``I`` becomes ``x = W_I f(I)``, ``f`` a convolutional
network (``models.show_attend_tell.Encoder``: trained from scratch or VGG, whose grid of
features is flattened or averaged); a sentence ``w_1..w_T`` is read by an LSTM over word
embeddings ``W_T w_t`` and becomes its last hidden state ``v`` (the paper's LSTM state *is*
the ``K``-dimensional sentence vector). Both are L2-normalised (``l2_normalize``) into the
joint space, and an image-sentence pair scores ``s(x, v) = x . v`` (``scores``); the pairwise
ranking loss over these scores is ``objectives.ranking``'s.

Multimodal vector arithmetic (Sec. 4, "image of a blue car - 'blue' + 'red'"):
``arithmetic_query`` = normalize(image - word + word), the nearest images of which are the
answer (``scores`` of the query against a pool).

Decoder (Sec. 3, ``SCNLM``), the structure-content neural language model: a log-bilinear
language model whose next-word prediction is gated by a vector ``u`` built from the content
vector (a point of the joint space) and the structure variables of the next words (the
paper's part-of-speech tags; on captioned digits the templates' word classes,
``data.captioned_digits.caption_structure``). The equations are in ``SCNLM``'s docstring.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from vislang_jax.checks import (check_choice, check_ids, check_int, check_positive_int,
                                check_rank, concrete)
from vislang_jax.models.show_attend_tell import Encoder, encoder_kwargs

POOLS = ("flatten", "mean")


def l2_normalize(x: jax.Array, *, eps: float = 1e-12) -> jax.Array:
  """``x / sqrt(||x||^2 + eps)`` along the last axis: unit vectors, and 0 for ``x = 0``.

  The epsilon keeps the value and the gradient finite at ``x = 0``; for ``||x||^2 >> eps``
  the result is ``x / ||x||`` to float32 precision.

  Args:
    x: [..., K] float.
    eps: a small float > 0 added to the squared norm.

  Returns:
    [..., K], the same dtype.
  """
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def scores(image_emb: jax.Array, sentence_emb: jax.Array) -> jax.Array:
  """The paper's ``s(x, v) = x . v`` of every image against every sentence (Sec. 2).

  Args:
    image_emb: [I, K] float, image embeddings ``x`` (unit vectors from ``VSE.embed_images``).
    sentence_emb: [S, K] float, sentence embeddings ``v`` (``VSE.embed_sentences``).

  Returns:
    [I, S], entry ``(i, s)`` the score of image ``i`` and sentence ``s``.

  Raises:
    ValueError: unless both are matrices whose last axes (the joint space's ``K``) agree;
      the message names both shapes.
  """
  check_rank("image_emb", image_emb, "[I, K]")
  check_rank("sentence_emb", sentence_emb, "[S, K]")
  if image_emb.shape[-1] != sentence_emb.shape[-1]:
    raise ValueError(f"image_emb and sentence_emb must share the joint space's K, got "
                     f"image_emb {tuple(image_emb.shape)} and sentence_emb "
                     f"{tuple(sentence_emb.shape)}.")
  return image_emb @ sentence_emb.T


def arithmetic_query(image_emb: jax.Array, minus: jax.Array, plus: jax.Array) -> jax.Array:
  """The multimodal vector arithmetic of Sec. 4: ``normalize(x - w_minus + w_plus)``.

  "image of a blue car - 'blue' + 'red'": ``image_emb`` the image's embedding, ``minus`` /
  ``plus`` the embeddings of the words taken away and added. The paper gets a word's vector
  from its sentence encoder applied to the word alone (its arithmetic figures use a
  bag-of-words encoder, where that is the word's embedding; it reports the LSTM encoder's
  space as less regular); here the word vectors are ``VSE.embed_sentences`` of one-word
  sentences (the word, then ``<eos>``). The query's nearest images (``scores`` against a
  pool) answer it.

  Args:
    image_emb: [..., K] float.
    minus: [..., K] float, broadcasting with ``image_emb``.
    plus: [..., K] float, broadcasting with ``image_emb``.

  Returns:
    [..., K], the unit query vector.

  Raises:
    ValueError: when the last axes differ (naming the three shapes).
  """
  dims = {jnp.shape(a)[-1] if jnp.ndim(a) else None for a in (image_emb, minus, plus)}
  if len(dims) != 1 or None in dims:
    raise ValueError(f"image_emb, minus and plus must share the joint space's K as their last "
                     f"axis, got {jnp.shape(image_emb)}, {jnp.shape(minus)} and "
                     f"{jnp.shape(plus)}.")
  return l2_normalize(image_emb - minus + plus)


def _check_lengths(lengths: jax.Array, batch: int, max_len: int) -> jax.Array:
  """``lengths`` as int32 [B] in [1, T] (the range checked when concrete)."""
  values = concrete(lengths)
  if (jnp.shape(lengths) != (batch,) or not jnp.issubdtype(jnp.result_type(lengths), jnp.integer)
      or (values is not None and values.size and (values.min() < 1 or values.max() > max_len))):
    raise ValueError(f"lengths must be [B] = ({batch},) ints in [1, T] = [1, {max_len}], got "
                     f"{jnp.result_type(lengths)} {jnp.shape(lengths)}"
                     f"{'' if values is None or not values.size else f' in [{values.min()}, {values.max()}]'}.")
  return jnp.asarray(lengths, jnp.int32)


class VSE(nn.Module):
  """The encoder of Sec. 2: images and sentences into one ``K``-dimensional unit sphere.

  Image side: ``x = normalize(W_I f(I))``, ``f`` = ``Encoder(**encoder)`` (its [B, L, D] grid
  pooled by ``pool``), ``W_I`` a linear map with a bias (the released code's ``ff_image``
  layer). Sentence side: ``v = normalize(h_n)``, ``h_n`` the LSTM's hidden state after the
  sentence's last token (per row's true length), the LSTM reading the word embeddings
  ``W_T w_t`` from a zero state. The sentence is the caption's ids then ``<eos>``, and
  ``<eos>`` is read: the released code (``tools.encode_sentences``) also feeds the
  end-of-sentence token (its id 0) as the last input. Padding after a row's length never
  reaches its vector (the LSTM is causal and ``h`` is read at the length).

  Parameter names: ``image_encoder`` (``f``; ``params["image_encoder"]["vgg16"]`` for VGG
  weights), ``image_projection`` (``W_I``), ``embed`` (``W_T``), ``lstm`` (Flax's
  ``OptimizedLSTMCell``), ``sentence_projection`` (only when ``hidden_size != embed_dim``).

  Attributes:
    vocab_size: ``V``.
    embed_dim: ``K``, the joint space.
    word_dim: the word embeddings' size (``W_T``'s rows).
    hidden_size: the LSTM's state size; None: ``K`` (the paper's choice: the state is the
      sentence vector); otherwise a linear map without bias takes ``h_n`` to ``K``.
    encoder: keyword arguments of ``models.show_attend_tell.Encoder`` (``backbone`` convnet,
      vgg16 or vgg19; ``widths``, ...), a dict or ConfigDict, kept as a FrozenDict.
    pool: ``"flatten"``, the grid [B, L, D] as [B, L * D], so that ``W_I`` sees where
      things are (as a fully connected top layer does; captions say "top left"), or
      ``"mean"``, the average over the ``L`` positions (a pooled VGG feature).
  """

  vocab_size: int
  embed_dim: int = 64
  word_dim: int = 64
  hidden_size: int | None = None
  encoder: Mapping[str, Any] = FrozenDict()
  pool: str = "flatten"

  def __post_init__(self):
    for name in ("vocab_size", "embed_dim", "word_dim"):
      check_positive_int(name, getattr(self, name))
    if self.hidden_size is not None:
      check_positive_int("hidden_size", self.hidden_size)
    check_choice("pool", self.pool, POOLS)
    object.__setattr__(self, "encoder", encoder_kwargs(self.encoder))
    super().__post_init__()

  @property
  def state_size(self) -> int:
    return self.embed_dim if self.hidden_size is None else self.hidden_size

  def setup(self):
    self.image_encoder = Encoder(**self.encoder)
    self.image_projection = nn.Dense(self.embed_dim)
    self.embed = nn.Embed(self.vocab_size, self.word_dim)
    self.lstm = nn.OptimizedLSTMCell(self.state_size)
    if self.state_size != self.embed_dim:
      self.sentence_projection = nn.Dense(self.embed_dim, use_bias=False)

  def embed_images(self, images: jax.Array) -> jax.Array:
    """``x = normalize(W_I f(I))``: [B, H, W, C] float images -> [B, K] unit vectors."""
    check_rank("images", images, "[B, H, W, C]")
    grid = self.image_encoder(images)  # [B, L, D]
    pooled = (grid.reshape(grid.shape[0], -1) if self.pool == "flatten"
              else jnp.mean(grid, axis=1))
    return l2_normalize(self.image_projection(pooled))

  def embed_sentences(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """``v = normalize(h_n)`` at each sentence's true length.

    Args:
      tokens: [B, T] int, the caption ids then ``<eos>``, padded after ``lengths``.
      lengths: [B] int in [1, T], the tokens of each row including ``<eos>``.

    Returns:
      [B, K] unit vectors; a row's value does not depend on its tokens past its length.

    Raises:
      ValueError: for tokens not [B, T] ids in [0, V), or lengths not [B] ints in [1, T]
        (ranges checked when concrete).
    """
    check_rank("tokens", tokens, "[B, T]")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    batch, max_len = tokens.shape
    lengths = _check_lengths(lengths, batch, max_len)
    embedded = self.embed(tokens)  # [B, T, W_T]

    def body(module, carry, x):
      carry, hidden = module.lstm(carry, x)
      return carry, hidden

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    zeros = jnp.zeros((batch, self.state_size), embedded.dtype)
    _, hidden = scan(self, (zeros, zeros), embedded)  # [B, T, H]
    last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]
    if self.state_size != self.embed_dim:
      last = self.sentence_projection(last)
    return l2_normalize(last)

  def __call__(self, images: jax.Array, tokens: jax.Array,
               lengths: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scores of a batch of images against a batch of sentences.

    Args:
      images: [B, H, W, C] float.
      tokens: [B', T] int (``embed_sentences``).
      lengths: [B'] int.

    Returns:
      ``(scores [B, B'], {"images": [B, K], "sentences": [B', K]})``, ``scores[i, s] =
      x_i . v_s``; with ``B = B'`` the diagonal holds the matching pairs.
    """
    images_emb = self.embed_images(images)
    sentences_emb = self.embed_sentences(tokens, lengths)
    return scores(images_emb, sentences_emb), {"images": images_emb,
                                                "sentences": sentences_emb}


class SCNLMState(NamedTuple):
  """The SC-NLM's decoding state; every leaf has the leading axis ``N``.

  Attributes:
    words: [N, n-1, m], the embedded context ``r_{w_1}..r_{w_{n-1}}``, oldest first; zero
      vectors stand for the positions before the sentence.
    content: [N, G], ``C^(v) v + b``, the content's part of ``u`` (computed once).
    structure: [N, S] int32, the structure variables of the words to generate (None
      without structure variables).
    step: [N] int32, the position ``t`` of the word the next step predicts.
  """

  words: jax.Array
  content: jax.Array
  structure: jax.Array | None
  step: jax.Array


class SCNLM(nn.Module):
  """The structure-content neural language model (Kiros et al. 2014, Sec. 3.1-3.3).

  Predicting word ``w_n`` from the ``n - 1`` previous words, the structure variables
  ``t_n..t_{n+k}`` of it and the ``k`` words after it, and the content vector ``v``:

    E      = (W^fk)^T W^fv                                 folded word embeddings [m, V]
    r_hat  = sum_{i=1}^{n-1} C^(i) E(:, w_i)                                  (Sec. 3.2)
    u      = max(sum_{i=n}^{n+k} C^(i) t_i + C^(v) v + b, 0)                  (Sec. 3.3)
    f      = (W^fk r_hat) * (W^fd u)                       factor outputs, * elementwise
    P(w_n = j | w_{1:n-1}, t_{n:n+k}, v) = softmax_j(W^fv(:, j)^T f + b_j)

  ``t_i`` is the learned embedding of structure class ``t_i``; ``W^fk`` [F, m], ``W^fd``
  [F, G], ``W^fv`` [F, V] factor the multiplicative model's word tensor ``T^u = (W^fv)^T
  diag(W^fd u) W^fk`` (Sec. 3.2): the content and structure enter only through the gate
  ``W^fd u`` on the factors. The factored part (folded embeddings, ``f``, the softmax over
  ``W^fv``) is the authors' released MLBL-F code's (ryankiros/multimodal-neural-language-
  models, ``lm/mlblf.py``: ``R = Wfx Whf``, ``F = (acts Wfx) * (IF Wfv)``, ``preds = F Whf +
  b``); the form of ``u`` (a rectified sum of the structure embeddings' and the content's
  context matrices and a bias) is our reading of Sec. 3.3: the SC-NLM's code was not
  released and the paper's text could not be retrieved here to check it word for word.
  Left out: MLBL-F also adds its conditioning vector to ``r_hat`` through a matrix ``M``;
  in our reading the SC-NLM conditions through the gate only, as here. With
  ``num_structure = 0`` there are no structure variables and ``u = max(C^(v) v + b, 0)``
  (a multiplicative log-bilinear model conditioned on the content alone).

  Positions before the sentence (the first words' missing context) are zero vectors: in
  ``__call__`` the context id -1; in ``sentence_logits`` and decoding the inputs start with
  ``<bos>`` and the ``n - 2`` positions before it are empty. Structure windows past the end
  of a given structure sequence repeat its last class (give captions' structure with the
  ``<eos>`` class last, ``data.captioned_digits.caption_structure``).

  Generation through ``vislang_jax.decoding``, from an image's joint-space embedding::

    state = model.init_decode_state(params, content, structure)   # structure [B, S] or None
    step_fn = functools.partial(model.decode_step, params)
    out = decoding.greedy(step_fn, state, bos_id=1, eos_id=2, max_len=16)

  Parameter names: ``context`` (``C^(1..n-1)``, [n-1, m, m]), ``structure_embed`` (the
  structure classes' vectors [num_structure, structure_dim]), ``structure_context``
  (``C^(n..n+k)``, [k+1, G, structure_dim]), ``content`` (``C^(v)`` with the bias ``b``),
  ``factor_words`` (``W^fk``), ``factor_gate`` (``W^fd``), ``factor_vocab`` (``W^fv``),
  ``vocab_bias`` (``b_j``).

  Attributes:
    vocab_size: ``V``.
    word_dim: ``m``, the word representations' size.
    context_size: ``n - 1``, the previous words read.
    num_structure: the number of structure classes; 0 for none.
    structure_window: ``k``, how many structure variables after the predicted word's are
      read (``k + 1`` in all).
    structure_dim: the structure classes' embedding size.
    hidden: ``G``, the size of ``u``.
    factors: ``F``.
  """

  vocab_size: int
  word_dim: int = 32
  context_size: int = 3
  num_structure: int = 0
  structure_window: int = 2
  structure_dim: int = 16
  hidden: int = 32
  factors: int = 32

  def __post_init__(self):
    for name in ("vocab_size", "word_dim", "context_size", "structure_dim", "hidden",
                 "factors"):
      check_positive_int(name, getattr(self, name))
    check_int("num_structure", self.num_structure, low=0)
    check_int("structure_window", self.structure_window, low=0)
    super().__post_init__()

  def setup(self):
    m, g, f = self.word_dim, self.hidden, self.factors
    normal = nn.initializers.normal
    self.context = self.param("context", normal(m ** -0.5), (self.context_size, m, m))
    if self.num_structure:
      self.structure_embed = nn.Embed(self.num_structure, self.structure_dim)
      self.structure_context = self.param(
          "structure_context", normal(((self.structure_window + 1) * self.structure_dim) ** -0.5),
          (self.structure_window + 1, g, self.structure_dim))
    self.content = nn.Dense(g)
    self.factor_words = self.param("factor_words", normal(m ** -0.5), (f, m))
    self.factor_gate = self.param("factor_gate", normal(g ** -0.5), (f, g))
    self.factor_vocab = self.param("factor_vocab", normal(f ** -0.5), (f, self.vocab_size))
    self.vocab_bias = self.param("vocab_bias", nn.initializers.zeros, (self.vocab_size,))

  def word_vectors(self) -> jax.Array:
    """``E^T = (W^fv)^T W^fk`` [V, m]: row ``j`` is word ``j``'s representation."""
    return self.factor_vocab.T @ self.factor_words

  def _check_structure(self, structure: jax.Array | None, batch: int, layout: str) -> None:
    if (structure is None) != (self.num_structure == 0):
      raise ValueError(f"structure must be {'None' if not self.num_structure else layout} for "
                       f"num_structure={self.num_structure}, got "
                       f"{None if structure is None else jnp.shape(structure)}.")
    if structure is not None:
      check_rank("structure", structure, layout)
      if structure.shape[0] != batch:
        raise ValueError(f"structure must have {batch} rows (the batch), got "
                         f"{jnp.shape(structure)}.")
      check_ids("structure", structure, vocab_size=self.num_structure)

  def _content_term(self, content: jax.Array, batch: int) -> jax.Array:
    """``C^(v) v + b`` [B, G] of content [B, K]."""
    if jnp.ndim(content) != 2 or content.shape[0] != batch:
      raise ValueError(f"content must have shape [B, K] with B = {batch}, got "
                       f"{jnp.shape(content)}.")
    return self.content(content)

  def _logits(self, words: jax.Array, structure: jax.Array | None,
              content_term: jax.Array) -> jax.Array:
    """The equations of the class docstring on embedded contexts and structure windows.

    Args:
      words: [..., n-1, m], ``E(:, w_i)`` oldest first (zeros for no word).
      structure: [..., k+1] int, ``t_n..t_{n+k}``, or None.
      content_term: [..., G], ``C^(v) v + b``.

    Returns:
      [..., V] logits.
    """
    r_hat = jnp.einsum("ijk,...ik->...j", self.context, words)
    pre = content_term
    if structure is not None:
      pre = pre + jnp.einsum("igd,...id->...g", self.structure_context,
                             self.structure_embed(structure))
    u = nn.relu(pre)
    f = (r_hat @ self.factor_words.T) * (u @ self.factor_gate.T)
    return f @ self.factor_vocab + self.vocab_bias

  def __call__(self, context: jax.Array, structure: jax.Array | None,
               content: jax.Array) -> jax.Array:
    """One next-word distribution per row.

    Args:
      context: [B, n-1] int, the previous words ``w_1..w_{n-1}`` oldest first, -1 for a
        position before the sentence.
      structure: [B, k+1] int, ``t_n..t_{n+k}`` in [0, num_structure); None iff
        ``num_structure = 0``.
      content: [B, K] float, the content vector ``v``.

    Returns:
      [B, V] logits of ``w_n``.
    """
    check_rank("context", context, "[B, n-1]")
    batch = context.shape[0]
    if context.shape[1] != self.context_size:
      raise ValueError(f"context must have shape [B, n-1] = [B, {self.context_size}], got "
                       f"{jnp.shape(context)}.")
    values = concrete(context)
    if (not jnp.issubdtype(jnp.result_type(context), jnp.integer)
        or (values is not None and values.size
            and (values.min() < -1 or values.max() >= self.vocab_size))):
      raise ValueError(f"context must hold word ids in [-1, vocab_size) = [-1, "
                       f"{self.vocab_size}) (-1: before the sentence), got "
                       f"{jnp.result_type(context)} ids"
                       f"{'' if values is None else f' in [{values.min()}, {values.max()}]'}.")
    self._check_structure(structure, batch, "[B, k+1]")
    if structure is not None and structure.shape[1] != self.structure_window + 1:
      raise ValueError(f"structure must have shape [B, k+1] = [B, {self.structure_window + 1}], "
                       f"got {jnp.shape(structure)}.")
    words = jnp.where((context >= 0)[..., None],
                      self.word_vectors()[jnp.maximum(context, 0)], 0.0)
    return self._logits(words, structure, self._content_term(content, batch))

  def _structure_windows(self, structure: jax.Array, steps: jax.Array) -> jax.Array:
    """``structure[b, min(t + j, S - 1)]``, ``j = 0..k``: [B, S] at steps [B, T'] -> [B, T', k+1]."""
    positions = steps[..., None] + jnp.arange(self.structure_window + 1)
    positions = jnp.minimum(positions, structure.shape[1] - 1)
    batch, count = steps.shape
    windows = jnp.take_along_axis(structure, positions.reshape(batch, -1), axis=1)
    return windows.reshape(batch, count, self.structure_window + 1)

  def sentence_logits(self, tokens_in: jax.Array, structure: jax.Array | None,
                      content: jax.Array) -> jax.Array:
    """Teacher-forced logits of a whole sentence, every window built at once.

    Step ``t`` (0-based) predicts target ``y_t`` from the inputs ``x_{t-n+2}..x_t`` (``x =
    tokens_in``, empty before ``x_0 = <bos>``) and the structure ``s_t..s_{t+k}``.

    Args:
      tokens_in: [B, T] int, ``<bos>`` then the targets shifted right
        (``ops.sequence.shift_right``).
      structure: [B, S] int, S >= 1, the targets' structure classes (``s_t`` that of
        ``y_t``); windows past S - 1 repeat ``s_{S-1}``, so [B, T + k] with k trailing
        classes, or the targets' [B, T] ending in the ``<eos>`` class, both work. None iff
        ``num_structure = 0``.
      content: [B, K] float.

    Returns:
      [B, T, V] logits; equal to stepping ``decode_step`` from ``init_decode_state`` with
      the same content and structure.
    """
    check_rank("tokens_in", tokens_in, "[B, T]")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    batch, length = tokens_in.shape
    self._check_structure(structure, batch, "[B, S]")
    embedded = self.word_vectors()[tokens_in]  # [B, T, m]
    n1 = self.context_size
    padded = jnp.pad(embedded, ((0, 0), (n1 - 1, 0), (0, 0)))
    words = jnp.stack([padded[:, i:i + length] for i in range(n1)], axis=2)  # [B, T, n-1, m]
    windows = None
    if structure is not None:
      steps = jnp.broadcast_to(jnp.arange(length), (batch, length))
      windows = self._structure_windows(structure, steps)
    content_term = self._content_term(content, batch)[:, None]
    return self._logits(words, windows, content_term)

  def start(self, content: jax.Array, structure: jax.Array | None) -> SCNLMState:
    """The decoding state before ``<bos>`` (bound-module form of ``init_decode_state``)."""
    batch = jnp.shape(content)[0] if jnp.ndim(content) else 0
    self._check_structure(structure, batch, "[B, S]")
    if structure is not None and structure.shape[1] < 1:
      raise ValueError(f"structure must hold at least one class per row, got "
                       f"{jnp.shape(structure)}.")
    return SCNLMState(
        words=jnp.zeros((batch, self.context_size, self.word_dim), jnp.float32),
        content=self._content_term(content, batch),
        structure=None if structure is None else jnp.asarray(structure, jnp.int32),
        step=jnp.zeros((batch,), jnp.int32))

  def step_embedded(self, inputs: jax.Array,
                    state: SCNLMState) -> tuple[jax.Array, SCNLMState, dict[str, jax.Array]]:
    """One step fed the previous word's representation [N, m] (bound-module form)."""
    words = jnp.concatenate([state.words[:, 1:], inputs[:, None].astype(state.words.dtype)],
                            axis=1)
    windows = (None if state.structure is None
               else self._structure_windows(state.structure, state.step[:, None])[:, 0])
    logits = self._logits(words, windows, state.content)
    return logits, state._replace(words=words, step=state.step + 1), {}

  def step(self, tokens: jax.Array,
           state: SCNLMState) -> tuple[jax.Array, SCNLMState, dict[str, jax.Array]]:
    """``step_embedded`` of ``E(:, tokens)`` (bound-module form)."""
    return self.step_embedded(self.word_vectors()[tokens], state)

  @nn.nowrap
  def init_decode_state(self, params: Any, content: jax.Array,
                        structure: jax.Array | None = None) -> SCNLMState:
    """The state before the first decoding step (which feeds ``<bos>``).

    Args:
      params: the model's ``"params"`` collection.
      content: [B, K] float, e.g. ``VSE.embed_images`` of the images to describe.
      structure: [B, S] int, the structure classes of the words to generate (a template:
        the paper conditions generation on a part-of-speech sequence); decoding past S
        repeats the last class. None iff ``num_structure = 0``.

    Returns:
      ``SCNLMState`` with leaves [B, ...].
    """
    return self.apply({"params": params}, content, structure, method=SCNLM.start)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array,
                  state: SCNLMState) -> tuple[jax.Array, SCNLMState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step once ``params`` is bound (``functools.partial``).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous words (``<bos>`` first).
      state: ``SCNLMState`` with leaves [N, ...]; beam search reorders its rows.

    Returns:
      ``(logits [N, V], state, {})``.
    """
    if jnp.ndim(tokens) != 1 or jnp.shape(tokens)[0] != state.step.shape[0]:
      raise ValueError(f"tokens must have shape [N] with N = {state.step.shape[0]} (the "
                       f"state's rows), got {jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.apply({"params": params}, tokens, state, method=SCNLM.step)

  @nn.nowrap
  def decode_step_embedded(self, params: Any, inputs: jax.Array, state: SCNLMState, *,
                           dropout_key: jax.Array | None = None
                           ) -> tuple[jax.Array, SCNLMState, dict[str, jax.Array]]:
    """``decode_step`` fed a word representation [N, m] (e.g. ``input_embedding(params)[w]``).

    ``dropout_key`` is accepted for the contract of ``objectives.sequence``; the SC-NLM has
    no dropout, so it changes nothing.
    """
    del dropout_key
    if jnp.shape(inputs) != (state.step.shape[0], self.word_dim):
      raise ValueError(f"inputs must have shape [N, m] = ({state.step.shape[0]}, "
                       f"{self.word_dim}), got {jnp.shape(inputs)}.")
    return self.apply({"params": params}, inputs, state, method=SCNLM.step_embedded)

  @nn.nowrap
  def input_embedding(self, params: Any) -> jax.Array:
    """``E^T = (W^fv)^T W^fk`` [V, m], the folded word representations the steps read."""
    return params["factor_vocab"].T @ params["factor_words"]
