"""Greedy decoding, temperature sampling and beam search over a generic step function.

Every autoregressive model of the package (the Show-Attend-and-Tell captioner, the seq2seq
models) decodes through these three functions. A model supplies one decoder step::

  step_fn(tokens: [N] int32, state: PyTree) -> (logits: [N, V] float, state: PyTree, extras: PyTree)

``tokens`` are the previous tokens (``bos_id`` at the first step), ``state`` is any pytree whose
leaves all have the leading axis ``N`` (an LSTM carry, the per-example annotation vectors, a
step counter ...) and must come back with the same structure, shapes and dtypes; ``extras``
is a pytree of per-step outputs to record, each leaf ``[N, ...]`` (for example the attention
weights ``alpha: [N, L]``). ``N`` is the flattened batch: ``B`` for ``greedy`` and ``sample``,
``B * K`` for ``beam_search``, whose row ``b * K + k`` is beam ``k`` of example ``b``.

Semantics shared by the three decoders, all with at most ``T = max_len`` steps (``greedy``
and ``sample``: ``lax.scan`` over ``T``; ``beam_search``: a ``lax.while_loop`` that may stop
early), so that shapes are static and everything jits:

* Step ``t`` (0-based) feeds token ``y_{t-1}`` (``y_{-1} = BOS``) and emits ``y_t``; the
  extras recorded at time ``t`` are those of that step, so an attention map at time ``t`` is
  the one used to predict ``y_t``.
* A sequence ends at the first EOS, which it keeps: its length counts the tokens up to and
  including EOS (``T`` if it never emits EOS). Afterwards its tokens are ``pad_id``, its
  recorded extras are zeros and its score no longer changes. (``greedy`` and ``sample`` still
  call the step function on it, with ``eos_id`` as input, and ignore what it returns for it;
  ``beam_search`` moves it out of the live beams.)
* Scores are sums of the model's log-probabilities ``log_softmax(logits)`` (temperature 1,
  whatever the sampling temperature) of the emitted tokens, EOS included.

Jitting: the decoders take Python ints for ids and sizes (static), so wrap them with the step
function bound, and build the step function inside the jitted function when it closes over
parameters, so that the parameters are traced arguments instead of constants baked into the
compiled program::

  @jax.jit
  def caption(params, init_state):
    step_fn = functools.partial(model_step, params)
    return beam_search(step_fn, init_state, bos_id=1, eos_id=2, max_len=20, beam_size=3)

or, for a step function without parameters,
``jax.jit(functools.partial(greedy, step_fn, bos_id=1, eos_id=2, max_len=20))(init_state)``.
"""

import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from vislang_jax.checks import check_float, check_int, check_positive_int
from vislang_jax.ops.sequence import length_mask

PyTree = Any
StepFn = Callable[[jax.Array, PyTree], tuple[jax.Array, PyTree, PyTree]]


class Decoded(NamedTuple):
  """Decoded sequences; ``[B]`` for ``greedy``/``sample``, ``[B, K]`` (best first) for beams.

  Attributes:
    tokens: [B, (K,) T] int32, the generated tokens without BOS, ``pad_id`` after EOS.
    lengths: [B, (K)] int32, the number of tokens up to and including EOS (``T`` without EOS).
    scores: [B, (K)] float32, the sum of the model's log-probabilities of those tokens.
    normalized_scores: [B, (K)] float32, ``scores / gnmt_length_penalty(lengths, alpha)``, the
      key that ranks beams; equal to ``scores`` for ``greedy`` and ``sample`` (``alpha = 0``).
    extras: the step function's extras with a time axis, each leaf ``[B, (K,) T, ...]``;
      position ``t`` holds the extras of the step that emitted ``tokens[..., t]`` (zeros at
      ``t >= lengths``). For beam search each beam's extras are its own history.
  """

  tokens: jax.Array
  lengths: jax.Array
  scores: jax.Array
  normalized_scores: jax.Array
  extras: PyTree


def gnmt_length_penalty(lengths: jax.Array, *, alpha: float) -> jax.Array:
  """GNMT's length penalty ``lp(Y) = ((5 + |Y|) / 6) ** alpha``.

  Wu et al., "Google's Neural Machine Translation System: Bridging the Gap between Human and
  Machine Translation", arXiv:1609.08144, 2016, section 7: beams are ranked by
  ``log P(Y | X) / lp(Y)``; ``alpha = 0`` ranks by the log-probability itself.

  Args:
    lengths: [...] int, hypothesis lengths ``|Y|``.
    alpha: the exponent, >= 0.

  Returns:
    [...] float32 penalties, 1 for ``alpha = 0``.
  """
  return ((5.0 + jnp.asarray(lengths, jnp.float32)) / 6.0) ** alpha


def greedy(step_fn: StepFn, init_state: PyTree, *, bos_id: int, eos_id: int, max_len: int,
           pad_id: int = 0) -> Decoded:
  """Greedy decoding: ``y_t = argmax_v logits_t[v]`` until EOS or ``max_len`` tokens.

  Args:
    step_fn: the decoder step (module docstring), with ``N = B``.
    init_state: the decoder state before the first step; leaves [B, ...].
    bos_id: the token fed at the first step, in ``[0, V)``.
    eos_id: the token that ends a sequence, in ``[0, V)``.
    max_len: ``T >= 1``, the number of decoding steps.
    pad_id: the token written after EOS.

  Returns:
    ``Decoded`` with tokens [B, T], lengths/scores/normalized_scores [B], extras [B, T, ...].

  Raises:
    ValueError: for a bad id or size, or a step function or state that breaks the contract.
  """
  return _decode_one_per_row(step_fn, init_state, lambda key, logits: jnp.argmax(logits, -1),
                             None, bos_id=bos_id, eos_id=eos_id, max_len=max_len,
                             pad_id=pad_id)


def sample(key: jax.Array, step_fn: StepFn, init_state: PyTree, *, bos_id: int, eos_id: int,
           max_len: int, temperature: float = 1.0, pad_id: int = 0) -> Decoded:
  """Ancestral sampling: ``y_t ~ softmax(logits_t / temperature)`` until EOS or ``max_len``.

  Every row draws independently; step ``t`` uses the ``t``-th of ``split(key, max_len)``.
  ``temperature -> 0`` tends to ``greedy``; ``scores`` are under the untempered model.
  ``jax.vmap`` over ``key`` draws several samples per example.

  Args:
    key: a PRNG key.
    step_fn: the decoder step (module docstring), with ``N = B``.
    init_state: the decoder state before the first step; leaves [B, ...].
    bos_id: the token fed at the first step, in ``[0, V)``.
    eos_id: the token that ends a sequence, in ``[0, V)``.
    max_len: ``T >= 1``, the number of decoding steps.
    temperature: a finite float > 0 dividing the logits.
    pad_id: the token written after EOS.

  Returns:
    ``Decoded`` with tokens [B, T], lengths/scores/normalized_scores [B], extras [B, T, ...].

  Raises:
    ValueError: for a bad id, size or temperature, or a step function or state that breaks
      the contract.
  """
  if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
      or not math.isfinite(temperature) or temperature <= 0):
    raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}.")
  check_positive_int("max_len", max_len)

  def choose(step_key, logits):
    return jax.random.categorical(step_key, logits.astype(jnp.float32) / temperature, axis=-1)

  return _decode_one_per_row(step_fn, init_state, choose, jax.random.split(key, max_len),
                             bos_id=bos_id, eos_id=eos_id, max_len=max_len, pad_id=pad_id)


def beam_search(step_fn: StepFn, init_state: PyTree, *, bos_id: int, eos_id: int,
                max_len: int, beam_size: int, length_penalty: float = 0.0,
                pad_id: int = 0) -> Decoded:
  """Beam search with ``K`` live beams and a separate pool of the ``K`` best finished ones.

  The textbook search of Flax's and Tensor2Tensor's beam search (arctic-captions'
  ``gen_sample`` also sets finished hypotheses aside, though it shrinks the live beam as they
  accumulate). Step ``t`` extends every live beam by each of the ``V`` tokens. The candidates
  that end (emit EOS, or reach ``T = max_len`` tokens at the last step) enter the finished
  pool, which keeps the ``K`` best finished hypotheses seen so far by ``log P /
  gnmt_length_penalty(length, alpha)``, the pool's older members first among equals; the ``K``
  most probable of the others become the live beams. A finished hypothesis therefore stays
  until ``K`` better finished ones replace it: live beams never evict it. The pool after the
  last step is the result.

  Early stop: log-probabilities are <= 0, so a live hypothesis of score ``s`` has no
  continuation scoring more than ``s``, and with ``alpha >= 0`` the penalty grows with the
  length, so none of its finished continuations (of length ``<= T``) ranks above ``s /
  lp(T)``. Once the best live beam's ``s / lp(T)`` is at most the pool's worst rank (or no
  live beam has non-zero probability) for every example, no later step can change the pool,
  and the search stops: the result is that of all ``T`` steps (a ``lax.while_loop`` of at
  most ``T`` steps, so shapes stay static and everything jits).

  With ``K >= (V - 1) ** (T - 1)`` nothing is pruned and the result is the exact ``K`` best
  sequences; below that it is the usual approximation. ``K = 1`` keeps greedy's own
  hypothesis among its candidates, so it never ranks below greedy (for ``alpha = 0``). If fewer
  than ``K`` sequences of non-zero probability exist, the remaining beams have score ``-inf``,
  length 0 and only pad tokens.

  The step function runs on ``N = B * K`` rows, the live beams: ``init_state`` is repeated
  ``K`` times per example (row ``b * K + k``), and after each step the state rows are gathered
  by the new live beams' parents. Every live and finished beam carries its own tokens and
  extras, gathered with it, so each returned beam has its own history.

  Args:
    step_fn: the decoder step (module docstring), with ``N = B * K``.
    init_state: the decoder state before the first step, one row per example; leaves [B, ...].
    bos_id: the token fed at the first step, in ``[0, V)``.
    eos_id: the token that ends a sequence, in ``[0, V)``.
    max_len: ``T >= 1``, the largest number of decoding steps.
    beam_size: ``K >= 1``, the number of live beams and of finished hypotheses returned.
    length_penalty: GNMT's ``alpha >= 0`` (0: rank by log-probability, no normalisation).
    pad_id: the token written after EOS.

  Returns:
    ``Decoded`` with tokens [B, K, T], lengths/scores/normalized_scores [B, K] sorted by
    ``normalized_scores``, best first, and extras [B, K, T, ...].

  Raises:
    ValueError: for a bad id, size or length penalty, or a step function or state that breaks
      the contract.
  """
  check_positive_int("max_len", max_len)
  check_positive_int("beam_size", beam_size)
  check_float("length_penalty", length_penalty, low=0.0)
  batch, k = _batch_size(init_state), beam_size
  n = batch * k
  state = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), init_state)
  vocab, extras_shape = _check_step_fn(step_fn, state, n, bos_id=bos_id, eos_id=eos_id)
  rows = jnp.arange(batch)[:, None]  # [B, 1], pairs with [B, K] beam indices

  def rank(scores, lengths):
    return scores / gnmt_length_penalty(lengths, alpha=length_penalty)

  def searching(carry):
    """Below ``T`` steps, while a live beam of some example may end above its pool's worst."""
    t, _, _, live, pool = carry
    best_live = jnp.max(rank(live["scores"], max_len), axis=1)  # the bound s / lp(T)
    worst_pool = jnp.min(rank(pool["scores"], pool["lengths"]), axis=1)
    return (t < max_len) & jnp.any(best_live > worst_pool)

  def step(carry):
    t, state, inputs, live, pool = carry
    logits, state, extras = step_fn(inputs, state)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, vocab)
    scores = (live["scores"][..., None] + log_probs).reshape(batch, k * vocab)
    ending = (jnp.arange(k * vocab) % vocab == eos_id) | (t == max_len - 1)  # [K * V]
    extras = jax.tree.map(lambda x: x.reshape(batch, k, *x.shape[1:]), extras)

    def extend(candidate_scores):
      """The K best of candidates [B, K * V] as beams, their parents and tokens [B, K]."""
      scores, best = jax.lax.top_k(candidate_scores, k)
      parents, chosen = best // vocab, (best % vocab).astype(jnp.int32)

      def record(history, now):  # the parent's history [B, K, T, ...], step t's record at t
        return history[rows, parents].at[:, :, t].set(now)

      beam = {"scores": scores, "lengths": jnp.full((batch, k), t + 1, jnp.int32),
              "tokens": record(live["tokens"], chosen),
              "extras": jax.tree.map(lambda h, x: record(h, x[rows, parents]), live["extras"],
                                     extras)}
      return beam, parents, chosen

    ended, _, _ = extend(jnp.where(ending, scores, -jnp.inf))
    merged = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), pool, ended)
    _, keep = jax.lax.top_k(rank(merged["scores"], merged["lengths"]), k)  # pool first on ties
    pool = jax.tree.map(lambda x: x[rows, keep], merged)
    live, parents, chosen = extend(jnp.where(ending, -jnp.inf, scores))
    state = jax.tree.map(lambda x: x[(rows * k + parents).reshape(n)], state)
    return t + 1, state, chosen.reshape(n), live, pool

  def beams(scores):
    return {"scores": scores, "lengths": jnp.zeros((batch, k), jnp.int32),
            "tokens": jnp.full((batch, k, max_len), pad_id, jnp.int32),
            "extras": jax.tree.map(
                lambda x: jnp.zeros((batch, k, max_len, *x.shape[1:]), x.dtype), extras_shape)}

  live = beams(jnp.full((batch, k), -jnp.inf, jnp.float32).at[:, 0].set(0.0))  # one live beam
  carry = (jnp.zeros((), jnp.int32), state, jnp.full((n,), bos_id, jnp.int32), live,
           beams(jnp.full((batch, k), -jnp.inf, jnp.float32)))
  *_, pool = jax.lax.while_loop(searching, step, carry)
  lengths = jnp.where(pool["scores"] == -jnp.inf, 0, pool["lengths"])
  return _finish(pool["tokens"], pool["extras"], lengths, pool["scores"], alpha=length_penalty,
                 pad_id=pad_id)


def _decode_one_per_row(step_fn: StepFn, init_state: PyTree,
                        choose: Callable[[jax.Array | None, jax.Array], jax.Array],
                        keys: jax.Array | None, *, bos_id: int, eos_id: int, max_len: int,
                        pad_id: int) -> Decoded:
  """Greedy or sampled decoding; ``choose(key, logits [B, V]) -> [B]`` picks each token."""
  check_positive_int("max_len", max_len)
  n = _batch_size(init_state)
  _check_step_fn(step_fn, init_state, n, bos_id=bos_id, eos_id=eos_id)

  def step(carry, key):
    state, inputs, scores, lengths, finished = carry
    logits, state, extras = step_fn(inputs, state)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    chosen = choose(key, logits).astype(jnp.int32)
    live = ~finished
    scores = scores + jnp.where(live, jnp.take_along_axis(log_probs, chosen[:, None], 1)[:, 0],
                                0.0)
    lengths = lengths + live
    tokens = jnp.where(live, chosen, pad_id)
    finished = finished | (chosen == eos_id)
    inputs = jnp.where(finished, eos_id, chosen)
    return (state, inputs, scores, lengths, finished), (tokens, extras)

  carry = (init_state, jnp.full((n,), bos_id, jnp.int32), jnp.zeros((n,), jnp.float32),
           jnp.zeros((n,), jnp.int32), jnp.zeros((n,), bool))
  (_, _, scores, lengths, _), (tokens, extras) = jax.lax.scan(step, carry, keys, length=max_len)
  return _finish(tokens.T, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), extras), lengths,
                 scores, alpha=0.0, pad_id=pad_id)


def _finish(tokens: jax.Array, extras: PyTree, lengths: jax.Array, scores: jax.Array, *,
            alpha: float, pad_id: int) -> Decoded:
  """Pads tokens [..., T] and zeroes extras [..., T, ...] at positions >= lengths [...]."""
  valid = length_mask(lengths, tokens.shape[-1])  # [..., T]

  def zero_invalid(x):
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
    return jnp.where(mask, x, jnp.zeros((), x.dtype))

  return Decoded(tokens=jnp.where(valid, tokens, pad_id).astype(jnp.int32),
                 lengths=lengths.astype(jnp.int32), scores=scores,
                 normalized_scores=scores / gnmt_length_penalty(lengths, alpha=alpha),
                 extras=jax.tree.map(zero_invalid, extras))


def _batch_size(init_state: PyTree) -> int:
  """The common leading axis of the state's leaves."""
  shapes = [jnp.shape(x) for x in jax.tree.leaves(init_state)]
  if not shapes or any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
    raise ValueError("init_state must be a non-empty pytree of arrays sharing a leading batch "
                     f"axis, got leaves of shapes {shapes}.")
  return shapes[0][0]


def _check_step_fn(step_fn: StepFn, state: PyTree, n: int, *, bos_id: int,
                   eos_id: int) -> tuple[int, PyTree]:
  """Traces ``step_fn`` on ``n`` rows (no computation), checks its outputs.

  Returns:
    ``V`` and the extras' shapes and dtypes (``jax.ShapeDtypeStruct`` leaves [N, ...]).
  """
  out = jax.eval_shape(step_fn, jax.ShapeDtypeStruct((n,), jnp.int32), state)
  if not isinstance(out, tuple) or len(out) != 3:
    raise ValueError(f"step_fn must return a triple (logits, state, extras), got {out!r}.")
  logits, new_state, extras = out
  if not hasattr(logits, "shape") or len(logits.shape) != 2 or logits.shape[0] != n:
    raise ValueError(f"step_fn must return logits of shape [N, V] with N = {n}, got "
                     f"{getattr(logits, 'shape', logits)!r}.")
  expected = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)),
                          state)
  given = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), new_state)
  if jax.tree.structure(given) != jax.tree.structure(expected) or jax.tree.leaves(
      given) != jax.tree.leaves(expected):
    raise ValueError(f"step_fn must return a state like the one it was given, {expected}, "
                     f"got {given}.")
  extra_shapes = [x.shape for x in jax.tree.leaves(extras)]
  if any(len(s) == 0 or s[0] != n for s in extra_shapes):
    raise ValueError(f"step_fn must return extras whose leaves have leading axis N = {n}, got "
                     f"shapes {extra_shapes}.")
  vocab = logits.shape[1]
  check_int("bos_id", bos_id, low=0, high=vocab - 1)
  check_int("eos_id", eos_id, low=0, high=vocab - 1)
  return vocab, extras
