"""Sentence-level BLEU on padded token ids, vectorised in JAX (a reward for REINFORCE).

Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine Translation", ACL 2002:
modified (clipped) n-gram precisions ``p_n``, their geometric mean over ``n = 1..N`` and the
brevity penalty ``BP = exp(1 - r / c)`` for a hypothesis of ``c`` tokens shorter than the
reference length ``r`` (section 2.2.2). ``r`` is the length of the reference closest to
``c``, the shorter one on a tie, as in sacrebleu and the coco-caption toolkit.

Sentence-level smoothing follows Chen and Cherry, "A Systematic Comparison of Smoothing
Techniques for Sentence-Level BLEU", WMT 2014, exactly as sacrebleu 2.x implements it
(``sacrebleu.metrics.bleu.BLEU.compute_bleu``): ``sentence_bleu(...)[b]`` equals
``sacrebleu.sentence_bleu(hyp, refs, smooth_method=smoothing, smooth_value=smooth_value,
tokenize="none", use_effective_order=effective_order).score / 100`` with the token ids
written as space-separated words (up to float32 rounding). The default, ``"exp"`` with the
effective order, is sacrebleu's ``sentence_bleu`` default: the NIST mteval-v13a smoothing
(Chen and Cherry's method 3) that gives a partially correct caption a non-zero reward,
as self-critical training (Rennie et al., CVPR 2017) and MIXER (Ranzato et al., ICLR 2016)
need.

Everything has static shapes: n-grams are compared as windows of the padded arrays, masked by
the lengths. Both functions are jitted (options static), compile once per shape and option
set, and vmap over extra leading axes (for example ``[K, B, T]`` sampled captions per image).
"""

import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

SMOOTHING_METHODS = ("exp", "floor", "add-k", "none")
# sacrebleu's BLEU.SMOOTH_DEFAULTS for the methods that take a value.
_SMOOTH_DEFAULTS = {"floor": 0.1, "add-k": 1.0}


class BleuStatistics(NamedTuple):
  """BLEU's sufficient statistics of each hypothesis against its references.

  Attributes:
    matches: [B, N] int32, clipped n-gram matches ``sum_g min(count_hyp(g), max_r
      count_r(g))`` over the distinct n-grams ``g`` of the hypothesis, ``n = 1..N``.
    totals: [B, N] int32, the hypothesis' n-gram count ``max(c - n + 1, 0)``.
    hyp_len: [B] int32, ``c``, the hypothesis length.
    ref_len: [B] int32, ``r``, the length of the (unmasked) reference closest to ``c``, the
      shorter on a tie.
  """

  matches: jax.Array
  totals: jax.Array
  hyp_len: jax.Array
  ref_len: jax.Array


@functools.partial(jax.jit, static_argnames=("max_n",))
def bleu_statistics(hyp: jax.Array, hyp_len: jax.Array, refs: jax.Array, ref_len: jax.Array,
                    *, max_n: int = 4, ref_mask: jax.Array | None = None) -> BleuStatistics:
  """Clipped n-gram matches, n-gram totals and lengths of each hypothesis (BLEU section 2.1).

  Summing the statistics over a corpus gives corpus BLEU (the coco-caption ``Bleu`` scorer);
  ``sentence_bleu`` scores each row on its own.

  Args:
    hyp: [B, T] int token ids; only the first ``hyp_len[b]`` of row ``b`` count.
    hyp_len: [B] int lengths, clipped to ``[0, T]``.
    refs: [B, R, S] int token ids of ``R`` references per hypothesis.
    ref_len: [B, R] int lengths, clipped to ``[0, S]``.
    max_n: ``N >= 1``, the largest n-gram order.
    ref_mask: optional [B, R] bool, False for padding references (when examples have fewer
      than ``R``); every example needs at least one reference. Default: all True.

  Returns:
    ``BleuStatistics`` with matches and totals [B, N], hyp_len and ref_len [B].

  Raises:
    ValueError: for a bad shape, dtype or ``max_n``.
  """
  if isinstance(max_n, bool) or not isinstance(max_n, numbers.Integral) or max_n < 1:
    raise ValueError(f"max_n must be an int >= 1, got {max_n!r}.")
  hyp, hyp_len, refs, ref_len, ref_mask = _check_inputs(hyp, hyp_len, refs, ref_len, ref_mask)
  t, s = hyp.shape[1], refs.shape[2]
  hyp_len = jnp.clip(hyp_len, 0, t)
  ref_len = jnp.clip(ref_len, 0, s)

  # Token equality; an n-gram window starting at (i, j) matches when the n diagonal entries
  # (i + k, j + k), k < n, all do. Entries past the array end count as unequal.
  hyp_hyp = hyp[:, :, None] == hyp[:, None, :]  # [B, T, T]
  hyp_ref = hyp[:, None, :, None] == refs[:, :, None, :]  # [B, R, T, S]
  same_hyp, same_ref = hyp_hyp, hyp_ref
  positions_t, positions_s = jnp.arange(t), jnp.arange(s)
  earlier = positions_t[None, :] < positions_t[:, None]  # [T, T]: j < i
  matches, totals = [], []
  for n in range(1, max_n + 1):
    if n > 1:
      same_hyp = same_hyp & _shift(hyp_hyp, n - 1)
      same_ref = same_ref & _shift(hyp_ref, n - 1)
    hyp_window = positions_t[None, :] + n <= hyp_len[:, None]  # [B, T]
    ref_window = (positions_s[None, None, :] + n <= ref_len[:, :, None]) & ref_mask[..., None]
    # Occurrences of hypothesis n-gram i in the hypothesis, and at most in one reference.
    in_hyp = jnp.sum(same_hyp & hyp_window[:, None, :], axis=-1)  # [B, T]
    in_ref = jnp.max(jnp.sum(same_ref & ref_window[:, :, None, :], axis=-1), axis=1)  # [B, T]
    # Count each distinct n-gram once, at its first occurrence.
    first = ~jnp.any(same_hyp & hyp_window[:, None, :] & earlier, axis=-1)  # [B, T]
    clipped = jnp.where(hyp_window & first, jnp.minimum(in_hyp, in_ref), 0)
    matches.append(jnp.sum(clipped, axis=-1))
    totals.append(jnp.maximum(hyp_len - n + 1, 0))

  big = t + s + 1  # larger than any length difference
  diff = jnp.where(ref_mask, jnp.abs(ref_len - hyp_len[:, None]), big)  # [B, R]
  closest = ref_mask & (diff == jnp.min(diff, axis=1, keepdims=True))
  closest_len = jnp.min(jnp.where(closest, ref_len, big), axis=1)
  return BleuStatistics(matches=jnp.stack(matches, -1).astype(jnp.int32),
                        totals=jnp.stack(totals, -1).astype(jnp.int32),
                        hyp_len=hyp_len.astype(jnp.int32),
                        ref_len=jnp.where(jnp.any(ref_mask, 1), closest_len, 0).astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("max_n", "smoothing", "smooth_value",
                                             "effective_order"))
def sentence_bleu(hyp: jax.Array, hyp_len: jax.Array, refs: jax.Array, ref_len: jax.Array, *,
                  max_n: int = 4, smoothing: str = "exp", smooth_value: float | None = None,
                  effective_order: bool = True, ref_mask: jax.Array | None = None) -> jax.Array:
  """Smoothed sentence BLEU of each hypothesis against its references, in ``[0, 1]``.

  ``BLEU = BP * exp(sum_{n <= N'} log p_n / N')`` (Papineni et al. 2002, section 2.3),
  0 when no unigram matches. The precisions ``p_n = matches_n / totals_n`` are smoothed as in
  sacrebleu (Chen and Cherry 2014) when ``matches_n = 0``:

  * ``"exp"`` (method 3, NIST): ``p_n = 1 / (2^k totals_n)``, ``k`` the number of orders
    ``<= n`` without a match;
  * ``"floor"`` (method 1): ``p_n = smooth_value / totals_n`` (default 0.1);
  * ``"add-k"`` (method 2): ``p_n = (matches_n + k) / (totals_n + k)`` for every ``n >= 2``
    (default ``k = 1``), matched or not;
  * ``"none"``: ``p_n = 0``, so BLEU is 0.

  With ``effective_order`` the mean runs over the orders ``N'`` that the hypothesis has
  (``totals_n > 0``, so ``N' = min(N, c)``; with ``"add-k"`` every order counts); without it
  ``N' = N`` and a hypothesis shorter than ``N`` tokens scores 0 (except under ``"add-k"``).
  The result equals ``sacrebleu.sentence_bleu(..., tokenize="none").score / 100`` (module
  docstring).

  Args:
    hyp, hyp_len, refs, ref_len, max_n, ref_mask: the hypotheses [B, T], their lengths [B],
      the references [B, R, S], their lengths [B, R], the largest order ``N`` and the
      optional reference mask [B, R], as in ``bleu_statistics``.
    smoothing: one of ``"exp"``, ``"floor"``, ``"add-k"``, ``"none"``.
    smooth_value: the value of ``"floor"`` or ``"add-k"`` (> 0); None for their defaults.
    effective_order: average over the hypothesis' own orders only (sacrebleu's
      ``use_effective_order``).

  Returns:
    [B] float32 scores in ``[0, 1]``; no gradient flows (the inputs are integers).

  Raises:
    ValueError: for a bad shape, dtype, order or smoothing option.
  """
  if smoothing not in SMOOTHING_METHODS:
    raise ValueError(f"smoothing must be one of {SMOOTHING_METHODS}, got {smoothing!r}.")
  if smooth_value is None:
    smooth_value = _SMOOTH_DEFAULTS.get(smoothing, 0.0)
  elif smoothing not in _SMOOTH_DEFAULTS:
    raise ValueError(f"smooth_value is only used by 'floor' and 'add-k', got "
                     f"smooth_value={smooth_value!r} with smoothing={smoothing!r}.")
  elif (isinstance(smooth_value, bool) or not isinstance(smooth_value, numbers.Real)
        or not math.isfinite(smooth_value) or smooth_value <= 0):
    raise ValueError(f"smooth_value must be a finite float > 0, got {smooth_value!r}.")
  if not isinstance(effective_order, bool):
    raise ValueError(f"effective_order must be a bool, got {effective_order!r}.")

  stats = bleu_statistics(hyp, hyp_len, refs, ref_len, max_n=max_n, ref_mask=ref_mask)
  matches = stats.matches.astype(jnp.float32)
  totals = stats.totals.astype(jnp.float32)
  order = jnp.arange(1, max_n + 1)
  if smoothing == "add-k":
    matches = jnp.where(order > 1, matches + smooth_value, matches)
    totals = jnp.where(order > 1, totals + smooth_value, totals)
  has_order = totals > 0  # [B, N], a prefix of the orders
  safe_totals = jnp.where(has_order, totals, 1.0)
  if smoothing == "exp":
    unmatched = jnp.cumsum(matches == 0, axis=-1)
    smoothed = 1.0 / (2.0 ** unmatched * safe_totals)
  elif smoothing == "floor":
    smoothed = smooth_value / safe_totals
  else:  # "none"; "add-k" has no zero matches past the first order
    smoothed = jnp.zeros_like(totals)
  precision = jnp.where(matches > 0, matches / safe_totals, smoothed)
  if effective_order:
    used = has_order
  else:  # a missing order has precision 0 (sacrebleu's log floor), hence BLEU 0
    used = jnp.ones_like(has_order)
    precision = jnp.where(has_order, precision, 0.0)
  log_precision = jnp.where(used, jnp.log(jnp.where(used, precision, 1.0)), 0.0)
  n_used = jnp.maximum(jnp.sum(used, axis=-1), 1)
  mean_log = jnp.sum(log_precision, axis=-1) / n_used

  c = stats.hyp_len.astype(jnp.float32)
  r = stats.ref_len.astype(jnp.float32)
  log_bp = jnp.where(c < r, 1.0 - r / jnp.maximum(c, 1.0), 0.0)
  return jnp.where(stats.matches[:, 0] > 0, jnp.exp(log_bp + mean_log), 0.0)


def _shift(equal: jax.Array, k: int) -> jax.Array:
  """``equal[..., i + k, j + k]`` at ``[..., i, j]``, False past the end of either axis."""
  shifted = equal[..., k:, k:]
  pad = [(0, 0)] * (equal.ndim - 2) + [(0, min(k, equal.shape[-2])),
                                       (0, min(k, equal.shape[-1]))]
  return jnp.pad(shifted, pad, constant_values=False)


def _check_inputs(hyp, hyp_len, refs, ref_len, ref_mask):
  """Converts to arrays and checks ranks, batch sizes and dtypes; returns the arrays."""
  hyp, hyp_len, refs, ref_len = (jnp.asarray(x) for x in (hyp, hyp_len, refs, ref_len))
  if hyp.ndim != 2:
    raise ValueError(f"hyp must be [B, T], got shape {hyp.shape}.")
  batch = hyp.shape[0]
  if refs.ndim != 3 or refs.shape[0] != batch:
    raise ValueError(f"refs must be [B, R, S] with B = {batch} (from hyp), got shape "
                     f"{refs.shape}.")
  expected = {"hyp_len": (batch,), "ref_len": refs.shape[:2]}
  given = {"hyp_len": hyp_len, "ref_len": ref_len}
  if ref_mask is None:
    ref_mask = jnp.ones(refs.shape[:2], bool)
  else:
    ref_mask = jnp.asarray(ref_mask)
    expected["ref_mask"], given["ref_mask"] = refs.shape[:2], ref_mask
    if ref_mask.dtype != jnp.bool_:
      raise ValueError(f"ref_mask must be bool, got dtype {ref_mask.dtype}.")
  for name, shape in expected.items():
    if given[name].shape != shape:
      raise ValueError(f"{name} must have shape {shape}, got {given[name].shape}.")
  for name, x in (("hyp", hyp), ("hyp_len", hyp_len), ("refs", refs), ("ref_len", ref_len)):
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError(f"{name} must hold integers, got dtype {x.dtype}.")
  return hyp, hyp_len, refs, ref_len, ref_mask
