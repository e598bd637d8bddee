"""Deep Compositional Captioning (DCC): transferring the multimodal layer to novel words.

Hendricks, Venugopalan, Rohrbach, Mooney, Saenko, Darrell, "Deep Compositional Captioning:
Describing Novel Object Categories without Paired Training Data", CVPR 2016, Sec. 3.3
("Transferring information between objects"); released code LisaAnne/DCC,
``dcc_transfer/transfer_weights.py``.

DCC's caption model scores the next word with one linear multimodal layer over the
concatenation of the language model's features ``l_t`` (LSTM state) and the lexical
classifier's concept probabilities ``f_I`` (sigmoid per concept):

    logits_t = W [l_t ; f_I] + b,    W [V, L + C],  b [V]

Layout used by every function here:

* ``weights`` ``W`` [V, F] with F = L + C: columns ``[0, L)`` read the language features,
  columns ``[L, L + C)`` read the concept probabilities (column ``L + c`` reads concept ``c``).
  ``num_language`` = L is passed explicitly.
* ``bias`` ``b`` [V].
* ``word_concept`` [V] int: the lexical-classifier concept that word ``v`` names, or -1 when
  the word has no classifier.

A novel word ``n`` (present in unpaired text and as a classifier, never in paired captions)
gets its row from a seen source word ``s`` (``closest_seen_words``):

* ``direct_transfer``: ``W[n] = W[s]``, ``b[n] = b[s]``, then the concept cross terms
  ``W[n, L + c_n] = W[s, L + c_s]`` (n reads its own classifier as s read its own),
  ``W[n, L + c_s] = 0`` (n ignores s's classifier) and ``W[s, L + c_n] = 0`` (s ignores n's).
* ``delta_transfer``: language part and bias ``W[n, :L] = W[s, :L] + (W_lm[n] - W_lm[s])``
  (``W_lm`` the LM-only model's output layer, trained on unpaired text), i.e. the novel word's
  LM weights moved by the change the source word underwent in paired training; the concept
  part as in direct transfer.

Fidelity notes (what was verified and what was not):

* The cross terms follow the released code (``transfer_weights.py``, read for this module):
  the novel row's source-concept weight and the source row's novel-concept weight are set to
  zero; they are not swapped. The paper's Sec. 3.3 equations could not be retrieved here, so
  the exact typeset form was not checked against the paper.
* The released code's delta transfer adds ``mean_k (W_ft[s_k] - W_lm[s_k])`` over the K
  closest words (K = 3 by default) to the caption model's *own* novel row ``W_ft[n]``; here
  the base is the LM-only row ``W_lm[n]`` (pass ``source_ids`` [N, K] to average K deltas).
  The two coincide when the caption model's novel row still equals the LM's (it is
  initialised from the LM and the novel word is never a target in paired data; softmax
  gradients as a negative class still move it slightly). The concept part uses the first
  source, as the code does.
* The released code keeps separate language and image biases and adds the delta only to the
  language bias; here ``b`` is their sum, so the delta is added to the whole bias and the
  image bias of the source is implicitly included through ``b[s]``.
* Closeness: the released code uses word2vec vectors (cosine) restricted to classifier words
  minus the novel ones; here any embedding matrix the caller passes (e.g. the LM's input
  embeddings learnt on unpaired text, as the issue asks), restricted to ``seen_ids``.

Modules: ``LexicalClassifier`` (Sec. 3.1: one sigmoid per concept over image features) and
``MultimodalCaptioner`` (Sec. 3.2: LSTM language features and concept probabilities in one
linear multimodal layer; it decodes through ``vislang_jax.decoding`` with
``init_decode_state`` / ``decode_step`` and a ``CaptionerState``); ``multimodal_layer`` / ``with_multimodal_layer`` convert its Flax
parameters to and from the ``(W [V, F], b [V])`` layout above. The LM-only model is the same
captioner called with ``concept_probs=None`` (only ``W[:, :L]`` and ``b`` are used and
trained), so ``multimodal_layer(lm_params)[0][:, :L]`` is ``lm_weights`` for delta transfer.
Simplifications not verified against the paper's exact architecture: the language features
are the LSTM's ``h_t`` only (DCC's LM stacks embedding layers and an LSTM and feeds its
output), and the image features are the classifier probabilities alone.

Multiple novel words are transferred one after the other in the order given (as the code's
loop does), so a later novel word copying a source row already sees that row's zeroed
novel-concept weights. All functions jit (ids are then unchecked) and are differentiable in the
float arrays.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vislang_jax.checks import check_ids, check_int, check_positive_int, check_rank, concrete
from vislang_jax.models.show_attend_tell import ImageFeature


def _check_weights(weights: Any, bias: Any, num_language: Any, word_concept: Any
                   ) -> tuple[int, int, int]:
  check_rank("weights", weights, "[V, F]")
  check_rank("bias", bias, "[V]")
  check_rank("word_concept", word_concept, "[V]")
  vocab, features = np.shape(weights)
  if np.shape(bias) != (vocab,) or np.shape(word_concept) != (vocab,):
    raise ValueError(f"bias and word_concept must have shape [V] = ({vocab},), got "
                     f"{np.shape(bias)} and {np.shape(word_concept)}.")
  num_language = check_int("num_language", num_language, low=0, high=features - 1)
  num_concepts = features - num_language
  concepts = concrete(word_concept)
  if concepts is not None and concepts.size and (
      concepts.min() < -1 or concepts.max() >= num_concepts):
    raise ValueError(f"word_concept must hold concept ids in [-1, C) = [-1, {num_concepts}) "
                     f"(C = F - num_language), got ids in [{concepts.min()}, "
                     f"{concepts.max()}].")
  return vocab, num_language, num_concepts


def _ids(name: str, ids: Any, *, vocab_size: int, rank: tuple[int, ...] = (1,)) -> Any:
  """Integer ids of rank in `rank`, in [0, vocab_size) when concrete."""
  dtype = ids.dtype if hasattr(ids, "dtype") else np.asarray(ids).dtype
  if not np.issubdtype(dtype, np.integer):
    raise ValueError(f"{name} must hold integer ids, got dtype {dtype}.")
  if np.ndim(ids) not in rank:
    layout = " or ".join({1: "[N]", 2: "[N, K]"}[r] for r in rank)
    raise ValueError(f"{name} must have shape {layout}, got {np.shape(ids)}.")
  values = concrete(ids)
  if values is not None and values.size and (values.min() < 0 or values.max() >= vocab_size):
    raise ValueError(f"{name} must hold ids in [0, V) = [0, {vocab_size}), got ids in "
                     f"[{values.min()}, {values.max()}].")
  return values


def _check_disjoint(novel: Any, name: str, other: Any) -> None:
  if novel is None or other is None:
    return
  if len(set(novel.tolist())) != novel.size:
    raise ValueError(f"novel_ids must not repeat a word, got {novel.tolist()}.")
  common = sorted(set(novel.ravel().tolist()) & set(other.ravel().tolist()))
  if common:
    raise ValueError(f"{name} must not contain novel words, got novel ids {common} in "
                     f"{name} {other.tolist()}.")


def closest_seen_words(embeddings: jax.Array, novel_ids: jax.Array, seen_ids: jax.Array, *,
                       top_k: int | None = None) -> jax.Array:
  """The seen word whose embedding is most cosine-similar to each novel word's (Sec. 3.3).

  Args:
    embeddings: [V, E] word embeddings (e.g. the LM's, learnt on unpaired text).
    novel_ids: [N] int ids of the novel words.
    seen_ids: [S] int ids of the candidate source words (seen in paired data, with a
      classifier); must not contain a novel id.
    top_k: None for the single closest word, or an int in [1, S] for the k closest, most
      similar first.

  Returns:
    [N] int vocabulary ids (``top_k`` None) or [N, top_k]. Ties go to the earlier entry of
    ``seen_ids``. A zero embedding has cosine 0 with everything.
  """
  check_rank("embeddings", embeddings, "[V, E]")
  vocab = np.shape(embeddings)[0]
  novel = _ids("novel_ids", novel_ids, vocab_size=vocab)
  seen = _ids("seen_ids", seen_ids, vocab_size=vocab)
  if np.shape(seen_ids)[0] == 0:
    raise ValueError("seen_ids must hold at least one word, got none.")
  _check_disjoint(novel, "seen_ids", seen)
  if top_k is not None:
    top_k = check_int("top_k", top_k, low=1, high=np.shape(seen_ids)[0])
  norms = jnp.linalg.norm(embeddings, axis=-1, keepdims=True)
  unit = embeddings / jnp.maximum(norms, 1e-12)
  sims = unit[novel_ids] @ unit[seen_ids].T  # [N, S]
  if top_k is None:
    return jnp.asarray(seen_ids)[jnp.argmax(sims, axis=-1)]
  _, order = jax.lax.top_k(sims, top_k)
  return jnp.asarray(seen_ids)[order]


def _concept_cross_terms(weights: jax.Array, word_concept: jax.Array, novel: jax.Array,
                         source: jax.Array, num_language: int) -> jax.Array:
  """Novel row's concept part from the source row, cross terms zeroed (see module doc)."""
  c_n = num_language + word_concept[novel]
  c_s = num_language + word_concept[source]
  source_row = weights[source]
  row = source_row.at[c_n].set(source_row[c_s]).at[c_s].set(0.0)
  weights = weights.at[novel, num_language:].set(row[num_language:])
  return weights.at[source, c_n].set(0.0)


def _check_transfer(weights, bias, num_language, word_concept, novel_ids, source_ids,
                    source_rank):
  vocab, num_language, _ = _check_weights(weights, bias, num_language, word_concept)
  novel = _ids("novel_ids", novel_ids, vocab_size=vocab)
  source = _ids("source_ids", source_ids, vocab_size=vocab, rank=source_rank)
  if np.shape(source_ids)[0] != np.shape(novel_ids)[0]:
    raise ValueError(f"source_ids must have one row per novel word ({np.shape(novel_ids)[0]}),"
                     f" got shape {np.shape(source_ids)}.")
  _check_disjoint(novel, "source_ids", source)
  concepts = concrete(word_concept)
  if concepts is not None:
    for name, ids in (("novel_ids", novel), ("source_ids", source)):
      if ids is not None and ids.size and (concepts[ids] < 0).any():
        raise ValueError(f"{name} must be words with a concept (word_concept >= 0), got "
                         f"words {sorted(set(ids[concepts[ids] < 0].tolist()))} with none.")
  return num_language


def direct_transfer(weights: jax.Array, bias: jax.Array, *, num_language: int,
                    word_concept: jax.Array, novel_ids: jax.Array, source_ids: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """DCC direct transfer (Sec. 3.3): each novel word takes its source word's output row.

  For each pair (n, s) in order, with ``c = word_concept``, ``L = num_language``:
  ``W[n] = W[s]``, ``b[n] = b[s]``, then ``W[n, L + c_n] = W[s, L + c_s]``,
  ``W[n, L + c_s] = 0``, ``W[s, L + c_n] = 0`` (released code; see the module docstring).

  Args:
    weights: [V, F] multimodal output weights, F = L + C (language columns first).
    bias: [V] output bias.
    num_language: L, the number of language-feature columns.
    word_concept: [V] int concept per word, -1 for none.
    novel_ids: [N] int novel word ids (each with a concept, none repeated).
    source_ids: [N] int source word ids (with concepts, none of them novel).

  Returns:
    (weights [V, F], bias [V]) after transfer.
  """
  num_language = _check_transfer(weights, bias, num_language, word_concept, novel_ids,
                                 source_ids, (1,))
  weights, bias = jnp.asarray(weights), jnp.asarray(bias)
  word_concept = jnp.asarray(word_concept)
  for i in range(np.shape(novel_ids)[0]):
    n, s = novel_ids[i], source_ids[i]
    weights = weights.at[n, :num_language].set(weights[s, :num_language])
    bias = bias.at[n].set(bias[s])
    weights = _concept_cross_terms(weights, word_concept, n, s, num_language)
  return weights, bias


def delta_transfer(weights: jax.Array, bias: jax.Array, lm_weights: jax.Array,
                   lm_bias: jax.Array, *, num_language: int, word_concept: jax.Array,
                   novel_ids: jax.Array, source_ids: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """DCC delta transfer (Sec. 3.3): the novel word's LM weights plus the source's change.

  For each novel n with sources ``s_1..s_K`` (K = 1 for [N] ``source_ids``):
  ``W[n, :L] = W_lm[n] + mean_k (W[s_k, :L] - W_lm[s_k])``, i.e. for K = 1
  ``W[s, :L] + (W_lm[n] - W_lm[s])``; ``b[n] = b_lm[n] + mean_k (b[s_k] - b_lm[s_k])``; the
  concept columns as in ``direct_transfer`` from the first source ``s_1``.

  Args:
    weights, bias: [V, F], [V] the caption model's multimodal output layer (paired training).
    lm_weights, lm_bias: [V, L], [V] the LM-only model's output layer (unpaired text), over
      the same language features.
    num_language, word_concept, novel_ids: as in ``direct_transfer``.
    source_ids: [N] or [N, K] int source ids (K closest words, e.g. ``closest_seen_words(...,
      top_k=K)``).

  Returns:
    (weights [V, F], bias [V]) after transfer.
  """
  num_language = _check_transfer(weights, bias, num_language, word_concept, novel_ids,
                                 source_ids, (1, 2))
  check_rank("lm_weights", lm_weights, "[V, L]")
  if np.shape(lm_weights) != (np.shape(weights)[0], num_language):
    raise ValueError(f"lm_weights must have shape [V, L] = ({np.shape(weights)[0]}, "
                     f"{num_language}), got {np.shape(lm_weights)}.")
  if np.shape(lm_bias) != np.shape(bias):
    raise ValueError(f"lm_bias must have shape [V] = {np.shape(bias)}, got "
                     f"{np.shape(lm_bias)}.")
  weights, bias = jnp.asarray(weights), jnp.asarray(bias)
  lm_weights, lm_bias = jnp.asarray(lm_weights), jnp.asarray(lm_bias)
  word_concept = jnp.asarray(word_concept)
  sources = jnp.asarray(source_ids)
  if sources.ndim == 1:
    sources = sources[:, None]
  for i in range(np.shape(novel_ids)[0]):
    n, s = novel_ids[i], sources[i]
    delta_w = jnp.mean(weights[s, :num_language] - lm_weights[s], axis=0)
    delta_b = jnp.mean(bias[s] - lm_bias[s])
    weights = weights.at[n, :num_language].set(lm_weights[n] + delta_w)
    bias = bias.at[n].set(lm_bias[n] + delta_b)
    weights = _concept_cross_terms(weights, word_concept, n, s[0], num_language)
  return weights, bias


class LexicalClassifier(nn.Module):
  """DCC's lexical classifier (Sec. 3.1): independent sigmoid per concept over image features.

  Attributes:
    num_concepts: C, the number of concepts (words with a visual classifier).
    hidden_dim: width of an optional ReLU hidden layer (0: a single linear layer).

  ``__call__(features [B, D]) -> (probs [B, C], {"logits": [B, C]})``.
  """

  num_concepts: int
  hidden_dim: int = 0

  def __post_init__(self):
    check_positive_int("num_concepts", self.num_concepts)
    check_int("hidden_dim", self.hidden_dim, low=0)
    super().__post_init__()

  @nn.compact
  def __call__(self, features: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    check_rank("features", features, "[B, D]")
    x = features
    if self.hidden_dim:
      x = nn.relu(nn.Dense(self.hidden_dim, name="hidden")(x))
    logits = nn.Dense(self.num_concepts, name="logits")(x)
    return jax.nn.sigmoid(logits), {"logits": logits}



class ImageLexicalClassifier(nn.Module):
  """The lexical classifier on images: ``encoder(images)`` annotations [B, L, D], into one
  feature per image (``show_attend_tell.ImageFeature(feature_dim)``: the mean over L, or a
  fully connected layer over the grid, as DCC's VGG fc7), into ``classifier``.

  ``__call__(images [B, H, W, C]) -> (probs [B, C], {"logits": [B, C]})``.
  """

  encoder: nn.Module
  classifier: LexicalClassifier
  feature_dim: int = 0

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = ImageFeature(self.feature_dim, name="image_feature")(self.encoder(images))
    return self.classifier(features)

def lexical_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Multi-label sigmoid cross-entropy summed over concepts, per example.

  Args:
    logits: [B, C] classifier logits.
    labels: [B, C] {0, 1} concept labels (treated as constants).

  Returns:
    [B] loss.
  """
  check_rank("logits", logits, "[B, C]")
  if np.shape(labels) != np.shape(logits):
    raise ValueError(f"labels must have the shape of logits {np.shape(logits)}, got "
                     f"{np.shape(labels)}.")
  labels = jax.lax.stop_gradient(jnp.asarray(labels, logits.dtype))
  return optax.sigmoid_binary_cross_entropy(logits, labels).sum(-1)


class CaptionerState(NamedTuple):
  """``MultimodalCaptioner``'s decoding state; every leaf has the leading axis ``N``.

  Attributes:
    cell: [N, L], the LSTM memory ``c_{t-1}``.
    hidden: [N, L], ``h_{t-1}``.
    concept_probs: [N, C], the image's ``f_I``, constant over the steps (zeros for the LM
      only, which then leaves ``W[:, L:]`` unread); beam search reorders it with the rows.
  """

  cell: jax.Array
  hidden: jax.Array
  concept_probs: jax.Array


class MultimodalCaptioner(nn.Module):
  """DCC's caption model (Sec. 3.2): ``logits_t = W [h_t ; f_I] + b`` with an LSTM LM.

  At step ``t`` the LSTM reads the embedded previous word ``E w_{t-1}`` (``w_0 = <bos>``),
  ``(c_t, h_t) = LSTM((c_{t-1}, h_{t-1}), E w_{t-1})`` from ``c_0 = h_0 = 0``, and the
  multimodal layer scores the next word from ``[h_t ; f_I]``.

  Attributes:
    vocab_size: V.
    num_concepts: C, the length of the classifier output ``f_I``.
    embed_dim: word embedding size.
    hidden_dim: L, the LSTM size (= ``num_language`` for the transfer functions).

  ``__call__(tokens_in [B, T] int, concept_probs [B, C] or None) ->
  (logits [B, T, V], {"hidden": [B, T, L]})``, teacher-forced. With ``concept_probs=None``
  it is the LM-only model (text without images): the concept columns of ``W`` are not used.
  Decoding goes through ``vislang_jax.decoding``::

    state = model.init_decode_state(params, concept_probs)   # [B, C] probabilities
    out = decoding.greedy(functools.partial(model.decode_step, params), state, bos_id=1,
                          eos_id=2, max_len=20)

  Parameters: ``embed`` (Embed), ``lstm`` (OptimizedLSTMCell), ``multimodal`` (Dense,
  kernel [L + C, V] = ``W.T``).
  """

  vocab_size: int
  num_concepts: int
  embed_dim: int = 32
  hidden_dim: int = 64

  def __post_init__(self):
    for name in ("vocab_size", "num_concepts", "embed_dim", "hidden_dim"):
      check_positive_int(name, getattr(self, name))
    super().__post_init__()

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.lstm = nn.OptimizedLSTMCell(self.hidden_dim)
    self.multimodal = nn.Dense(self.vocab_size)

  def _step_embedded(self, state: CaptionerState, inputs: jax.Array
                     ) -> tuple[CaptionerState, jax.Array]:
    """One step on ``E w_{t-1}`` [N, embed_dim] -> (state, logits [N, V])."""
    (cell, hidden), _ = self.lstm((state.cell, state.hidden), inputs)
    logits = self.multimodal(jnp.concatenate([hidden, state.concept_probs], axis=-1))
    return state._replace(cell=cell, hidden=hidden), logits

  def step(self, tokens: jax.Array, state: CaptionerState
           ) -> tuple[jax.Array, CaptionerState, dict[str, jax.Array]]:
    """One decoding step on the previous words ``tokens`` [N]; bound-module form."""
    state, logits = self._step_embedded(state, self.embed(tokens))
    return logits, state, {}

  def __call__(self, tokens_in: jax.Array, concept_probs: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    check_rank("tokens_in", tokens_in, "[B, T]")
    check_ids("tokens_in", tokens_in, vocab_size=self.vocab_size)
    embedded = jnp.swapaxes(self.embed(tokens_in), 0, 1)  # [T, B, embed_dim]
    state = self._start(concept_probs, tokens_in.shape[0], embedded.dtype)

    def body(module, state, x):
      state, logits = module._step_embedded(state, x)
      return state, (logits, state.hidden)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
    _, (logits, hidden) = scan(self, state, embedded)
    return jnp.swapaxes(logits, 0, 1), {"hidden": jnp.swapaxes(hidden, 0, 1)}

  @nn.nowrap
  def _start(self, concept_probs: jax.Array | None, batch: int, dtype: Any) -> CaptionerState:
    """``c_0 = h_0 = 0`` [B, L] and ``f_I`` [B, C] (zeros when None), checked."""
    if concept_probs is None:
      concept_probs = jnp.zeros((batch, self.num_concepts), dtype)
    elif np.shape(concept_probs) != (batch, self.num_concepts):
      raise ValueError(f"concept_probs must have shape [B, C] = ({batch}, "
                       f"{self.num_concepts}), got {np.shape(concept_probs)}.")
    zeros = jnp.zeros((batch, self.hidden_dim), dtype)
    return CaptionerState(cell=zeros, hidden=zeros,
                          concept_probs=jnp.asarray(concept_probs, dtype))

  @nn.nowrap
  def init_decode_state(self, params: Any, concept_probs: jax.Array | None, *,
                        batch_size: int | None = None) -> CaptionerState:
    """The state before the first decoding step (fed ``<bos>``).

    Args:
      params: the model's ``"params"`` collection (gives the state's dtype).
      concept_probs: [B, C] the lexical classifier's probabilities ``f_I``, or None for the
        LM only (``batch_size`` rows that never read the concept columns).
      batch_size: B when ``concept_probs`` is None; else None or equal to its rows.

    Returns:
      ``CaptionerState`` with ``cell``, ``hidden`` [B, L] zeros and ``concept_probs`` [B, C].

    Raises:
      ValueError: for ``concept_probs`` not [B, C], or a missing or mismatched
        ``batch_size``.
    """
    if concept_probs is None:
      if batch_size is None:
        raise ValueError("batch_size must be given when concept_probs is None (the LM only), "
                         "got None.")
      batch = check_positive_int("batch_size", batch_size)
    else:
      check_rank("concept_probs", concept_probs, "[B, C]")
      batch = np.shape(concept_probs)[0]
      if batch_size is not None and batch_size != batch:
        raise ValueError(f"batch_size must be None or the rows of concept_probs ({batch}), "
                         f"got {batch_size!r}.")
    return self._start(concept_probs, batch, params["multimodal"]["kernel"].dtype)

  @nn.nowrap
  def decode_step(self, params: Any, tokens: jax.Array, state: CaptionerState
                  ) -> tuple[jax.Array, CaptionerState, dict[str, jax.Array]]:
    """A ``vislang_jax.decoding`` step once ``params`` is bound (``functools.partial``).

    Args:
      params: the model's ``"params"`` collection.
      tokens: [N] int, the previous words (``<bos>`` first).
      state: ``CaptionerState`` with leaves [N, ...].

    Returns:
      ``(logits [N, V], state, {})``; stepping ``tokens_in[:, t]`` for t = 0..T-1 from
      ``init_decode_state`` gives ``__call__``'s ``logits[:, t]``.
    """
    rows = state.hidden.shape[0]
    if jnp.ndim(tokens) != 1 or jnp.shape(tokens)[0] != rows:
      raise ValueError(f"tokens must have shape [N] with N = {rows} (the state's rows), got "
                       f"{jnp.shape(tokens)}.")
    check_ids("tokens", tokens, vocab_size=self.vocab_size)
    return self.apply({"params": params}, tokens, state, method=MultimodalCaptioner.step)


def multimodal_layer(params: Any) -> tuple[jax.Array, jax.Array]:
  """``(W [V, L + C], b [V])`` of a ``MultimodalCaptioner``'s params (``{"params": ...}`` ok)."""
  params = params.get("params", params)
  layer = params["multimodal"]
  return layer["kernel"].T, layer["bias"]


def with_multimodal_layer(params: Any, weights: jax.Array, bias: jax.Array) -> Any:
  """``params`` with the multimodal layer replaced by ``(W [V, F], b [V])`` (a new tree)."""
  outer = "params" in params
  inner = dict(params["params"] if outer else params)
  old = inner["multimodal"]
  if np.shape(weights) != np.shape(old["kernel"])[::-1] or np.shape(bias) != np.shape(
      old["bias"]):
    raise ValueError(f"weights, bias must have shapes {np.shape(old['kernel'])[::-1]}, "
                     f"{np.shape(old['bias'])}, got {np.shape(weights)}, {np.shape(bias)}.")
  inner["multimodal"] = {**old, "kernel": jnp.asarray(weights).T, "bias": jnp.asarray(bias)}
  return {**params, "params": inner} if outer else inner
