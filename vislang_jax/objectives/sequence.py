"""Sequence-level training of autoregressive models: XENT, DAD, E2E, REINFORCE and MIXER.

Ranzato, Chopra, Auli, Zaremba, "Sequence Level Training with Recurrent Neural Networks",
ICLR 2016 (arXiv:1511.06732). Sec. 3 trains a generator ``p(w_{t+1} | w_t, h_t, c)`` in five
ways, each a regime here (``REGIMES``). The section numbers below are those of arXiv v7 as
cited from memory: the paper's text was not reachable through this project's search tool
(its abstract, Algorithm 1 in a transcription and the released code were); the estimator
and the schedule follow Algorithm 1 and the code.

* XENT (Sec. 3.1.1): teacher forcing, ``-sum_t log p(y_t | y_<t)`` over the real tokens.
* DAD, data as demonstrator (Sec. 3.1.2; Bengio et al.'s scheduled sampling): at each step
  the next input is the ground truth, or with probability ``p`` the model's own sample; the
  loss is still XENT on the ground truth. ``p`` grows with training (``dad_probability``, a
  pure function of the step). The sampled token is an integer: no gradient flows through the
  draw (its embedding is an input like any other).
* E2E, end-to-end backprop (Sec. 3.1.3): the next input is ``sum_k w_k E[k]``, the
  renormalised softmax weights of the top-``k`` words (``top_k_weights``); the gradient flows
  through the weights into the previous step. A choice made here: fed with probability ``p``
  on DAD's schedule (``p = 1`` always feeds the soft input), so that E2E can start from
  teacher forcing as DAD does; the loss is XENT.
* REINFORCE (Sec. 3.2.1): sample ``w_1..w_T`` from the model, reward ``r`` = sentence BLEU-4
  of the whole sampled sequence (``bleu_reward``), and minimise ``-E[r]`` with the estimator
  ``dL/do_t = (r - b_t)(p(. | w_<t) - 1(w_t))`` on the logits ``o_t``, i.e. the surrogate

      L = -sum_t stop_gradient(r - b_t) log p(w_t | w_<t)               (``reinforce_loss``)

  with a learned baseline ``b_t``, a linear regressor on the decoder state that produced
  ``o_t`` (``linear_baseline``), trained by squared error on ``r`` and kept out of the
  policy's gradient: its input state and the reward are ``stop_gradient``-ed, and the
  advantage is a constant of the surrogate. A baseline depending on ``w_<t`` only leaves the
  estimator unbiased.
* MIXER (Sec. 3.2.2, Algorithm 1): the first ``s`` tokens of every sequence are the ground
  truth, trained by XENT; from position ``s`` on the model samples its own tokens, fed back,
  trained by REINFORCE on the reward of the whole sequence. ``s`` starts at ``T`` (pure XENT
  for ``N_XENT`` steps) and drops by ``Delta`` every ``N_XE+R`` steps (``mixer_xent_steps``).
  REINFORCE is MIXER with ``s = 0``, XENT MIXER with ``s = T``.

Conventions. ``B`` sequences of ``T`` steps over ``V`` words, inputs of width ``m``. Targets
``[B, T]`` are ``y_1..y_T``: word ids, then ``<eos>``, padded with ``<pad>`` (the vocabulary's
convention); ``mask [B, T]`` is True at the real tokens, ``<eos>`` included. Position ``t``
(0-based) holds the step fed ``x_t`` (``E[<bos>]`` at ``t = 0``) that emits token ``t``.

Every objective is one ``lax.scan`` over ``decode_step_embedded`` (``rollout``), so all five
regimes share one code path, run inside a jitted step (sampling included) and never return
to the host per token. A model supplies (the sequence-model contract)::

  step_fn(inputs [N, m], state, *, dropout_key=None) -> (logits [N, V], state, extras)
  embedding: [V, m], the matrix ``E`` that ``step_fn`` would look tokens up in

for example ``functools.partial(model.decode_step_embedded, params)`` and
``model.input_embedding(params)``. The baseline reads the state through a function argument
``baseline_features(state) -> [N, H]`` (for Show-Attend-Tell ``lambda s: s.hidden``, the
``h_t`` that produced ``o_t``), so no model has to put its state in the step's extras.

The released code (facebookarchive/MIXER, ``Mixer.lua``, ``ReinforceCriterion.lua``) is the
reference for details the paper leaves open: one linear regressor per time step
(``cum_reward_predictors[tt]``, weight 0 and bias 0.01 at initialisation, its input not
backpropagated: ``LinearNoBackpropInput``), a reward only at the end of the sequence, tokens
after ``<eos>`` ignored.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from vislang_jax.checks import check_choice, check_float, check_int, concrete, is_int
from vislang_jax.metrics.bleu import sentence_bleu
from vislang_jax.objectives.show_attend_tell import caption_nll

REGIMES = ("xent", "dad", "e2e", "reinforce", "mixer")
# How a model-chosen input is fed: its sampled token's embedding (DAD, REINFORCE, MIXER) or
# the top-k soft embedding (E2E).
FEEDS = ("sample", "soft")

PyTree = Any
StepFn = Callable[..., tuple[jax.Array, PyTree, PyTree]]


class Rollout(NamedTuple):
  """One pass of a model over ``T`` steps with chosen inputs (``rollout``).

  Attributes:
    logits: [B, T, V] float32, ``o_t``, the logits that emit token ``t``.
    tokens: [B, T] int32, the token taken at each step: the target where ``from_model`` is
      False, else the model's sample (``feed="sample"``) or its argmax (``feed="soft"``).
      Token ``t`` (or the soft input made from ``o_t``) is the input of step ``t + 1``.
    from_model: [B, T] bool, where the model chose.
    lengths: [B] int32, the tokens up to and including the first ``<eos>`` of ``tokens``
      (``T`` without one); later positions do not count.
    features: [B, T, H], ``baseline_features`` of the state after each step; None without it.
  """

  logits: jax.Array
  tokens: jax.Array
  from_model: jax.Array
  lengths: jax.Array
  features: jax.Array | None


def xent_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """XENT (Sec. 3.1.1): ``-sum_t mask_t log p(y_t | y_<t)`` in nats, per example.

  Args:
    logits: [B, T, V] float.
    targets: [B, T] int ids in [0, V).
    mask: [B, T] bool or float, 1 at the real tokens.

  Returns:
    [B] float32; masked positions contribute nothing, whatever their logits.
  """
  return caption_nll(logits, targets, mask)[0]


def top_k_weights(logits: jax.Array, *, k: int) -> jax.Array:
  """E2E's input weights (Sec. 3.1.3): the softmax renormalised over the ``k`` top words.

  ``w_j = exp(o_j) / sum_{i in top_k} exp(o_i)`` for ``j`` among the ``k`` largest logits,
  0 elsewhere; differentiable in the logits (``k = 1`` gives a constant one-hot).

  Args:
    logits: [..., V] float.
    k: an int in [1, V].

  Returns:
    [..., V] float weights summing to one.
  """
  vocab = logits.shape[-1]
  check_int("k", k, low=1, high=vocab)
  _, top = jax.lax.top_k(logits, k)
  chosen = jnp.sum(jax.nn.one_hot(top, vocab, dtype=jnp.bool_), axis=-2)
  return jax.nn.softmax(jnp.where(chosen, logits, -jnp.inf), axis=-1)


def rollout(key: jax.Array | None, step_fn: StepFn, embedding: jax.Array, init_state: PyTree,
            targets: jax.Array, from_model: jax.Array, *, bos_id: int, eos_id: int,
            feed: str = "sample", top_k: int | None = None,
            baseline_features: Callable[[PyTree], jax.Array] | None = None,
            dropout: bool = False) -> Rollout:
  """Runs ``step_fn`` for ``T`` steps, each input chosen as its regime says (one lax.scan).

  Step ``t`` is fed ``x_t`` (``E[<bos>]`` at ``t = 0``) and emits logits ``o_t``. Then
  ``x_{t+1} = E[y_t]`` where ``from_model[:, t]`` is False (teacher forcing), else the model's
  choice: ``E[w_t]`` for a sample ``w_t ~ softmax(o_t)`` (``feed="sample"``), or
  ``top_k_weights(o_t) @ E`` (``feed="soft"``, E2E; the gradient flows through the weights).
  Samples are integers: no gradient flows through the draw.

  Args:
    key: draws the samples (``feed="sample"``) and, with ``dropout``, the per-step dropout
      keys; None when neither is needed.
    step_fn: ``(inputs [B, m], state, *, dropout_key) -> (logits [B, V], state, extras)``.
    embedding: [V, m], the input embedding ``E``.
    init_state: the state before the first step (leaves with leading axis ``B``).
    targets: [B, T] int, the ground truth ``y``.
    from_model: [B, T] bool, where the model chooses token ``t`` (and hence input ``t+1``).
    bos_id, eos_id: the special ids.
    feed: ``"sample"`` or ``"soft"``.
    top_k: ``k`` of ``feed="soft"``, an int in [1, V].
    baseline_features: optional ``state -> [B, H]``, recorded after every step.
    dropout: pass per-step dropout keys (training mode) instead of None.

  Returns:
    ``Rollout``.

  Raises:
    ValueError: for a bad ``feed``, ``top_k``, shape or dtype, or a missing ``key``.
  """
  check_choice("feed", feed, FEEDS)
  if jnp.ndim(targets) != 2:
    raise ValueError(f"targets must have shape [B, T], got {jnp.shape(targets)}.")
  if tuple(jnp.shape(from_model)) != tuple(targets.shape):
    raise ValueError(f"from_model must have shape [B, T] = {tuple(targets.shape)} (targets'), "
                     f"got {jnp.shape(from_model)}.")
  if jnp.ndim(embedding) != 2:
    raise ValueError(f"embedding must have shape [V, m], got {jnp.shape(embedding)}.")
  vocab = embedding.shape[0]
  if feed == "soft":
    check_int("top_k", top_k, low=1, high=vocab)
  elif top_k is not None:
    raise ValueError(f"top_k is only used with feed='soft', got top_k={top_k!r} with "
                     f"feed={feed!r}.")
  if key is None and (feed == "sample" or dropout):
    raise ValueError("key must be a PRNG key when feed='sample' or dropout=True, got None.")
  batch, steps = targets.shape
  sample_key = dropout_key = None
  if key is not None:
    sample_key, dropout_key = jax.random.split(key)

  def body(carry, xs):
    state, inputs = carry
    t, target, choose = xs
    step_dropout = jax.random.fold_in(dropout_key, t) if dropout else None
    logits, state, _ = step_fn(inputs, state, dropout_key=step_dropout)
    logits = jnp.asarray(logits, jnp.float32)
    if feed == "sample":
      own = jax.random.categorical(jax.random.fold_in(sample_key, t), logits, axis=-1)
      own_inputs = embedding[own]
    else:
      own = jnp.argmax(logits, axis=-1)
      own_inputs = top_k_weights(logits, k=top_k) @ embedding
    token = jnp.where(choose, own, target).astype(jnp.int32)
    inputs = jnp.where(choose[:, None], own_inputs, embedding[target])
    features = None if baseline_features is None else baseline_features(state)
    return (state, inputs), (logits, token, features)

  first = jnp.broadcast_to(embedding[bos_id], (batch, embedding.shape[1]))
  xs = (jnp.arange(steps), jnp.swapaxes(targets, 0, 1),
        jnp.swapaxes(jnp.asarray(from_model, bool), 0, 1))
  _, (logits, tokens, features) = jax.lax.scan(body, (init_state, first), xs)
  tokens = jnp.swapaxes(tokens, 0, 1)
  is_eos = tokens == eos_id
  lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, steps)
  return Rollout(logits=jnp.swapaxes(logits, 0, 1), tokens=tokens,
                 from_model=jnp.asarray(from_model, bool), lengths=lengths.astype(jnp.int32),
                 features=None if features is None else jnp.swapaxes(features, 0, 1))


def live_positions(lengths: jax.Array, steps: int) -> jax.Array:
  """[B, T] bool, True at positions ``t < lengths`` (up to and including ``<eos>``)."""
  return jnp.arange(steps) < lengths[:, None]


def bleu_reward(tokens: jax.Array, lengths: jax.Array, references: jax.Array,
                reference_lengths: jax.Array, *, eos_id: int,
                reference_mask: jax.Array | None = None) -> jax.Array:
  """``r``: sentence BLEU-4 of each whole sequence against its references (Sec. 3.2.1).

  ``metrics.bleu.sentence_bleu`` (sacrebleu's default smoothing, so a partly right sequence
  earns a non-zero reward) on the words before ``<eos>``: ``<eos>`` itself is not a word.

  Args:
    tokens: [B, T] int, the sequences; only the first ``lengths`` count.
    lengths: [B] int, up to and including ``<eos>`` (``Rollout.lengths``).
    references: [B, R, S] int, written like the targets (words, ``<eos>``, padding).
    reference_lengths: [B, R] int, up to and including ``<eos>``.
    eos_id: the ``<eos>`` id.
    reference_mask: optional [B, R] bool, False for padding references.

  Returns:
    [B] float32 in [0, 1], a constant (no gradient).
  """

  def words(ids, length):
    real = jnp.arange(ids.shape[-1]) < length[..., None]
    return jnp.sum(real & (ids != eos_id), axis=-1)

  reward = sentence_bleu(tokens, words(tokens, lengths), references,
                         words(references, reference_lengths), max_n=4,
                         ref_mask=reference_mask)
  return jax.lax.stop_gradient(reward)


def init_linear_baseline(*, max_len: int, features: int) -> dict[str, jax.Array]:
  """Parameters of ``linear_baseline``: one regressor per step, weight 0 and bias 0.01.

  As the released code initialises its ``cum_reward_predictors`` (``Mixer.lua``).

  Returns:
    ``{"weight": [T, H] zeros, "bias": [T] 0.01}``.
  """
  check_int("max_len", max_len, low=1)
  check_int("features", features, low=1)
  return {"weight": jnp.zeros((max_len, features), jnp.float32),
          "bias": jnp.full((max_len,), 0.01, jnp.float32)}


def linear_baseline(params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
  """``b_t = w_t . stop_gradient(h_t) + c_t`` (Sec. 3.2.1), per example and step.

  The state is a constant here: the baseline's squared error trains ``w_t, c_t`` only and
  never reaches the model (the released code's ``LinearNoBackpropInput``).

  Args:
    params: ``init_linear_baseline``'s ``{"weight": [T, H], "bias": [T]}``.
    features: [B, T, H], ``Rollout.features``.

  Returns:
    [B, T] float32.
  """
  if jnp.ndim(features) != 3 or tuple(features.shape[1:]) != tuple(params["weight"].shape):
    raise ValueError(f"features must have shape [B, T, H] with (T, H) = "
                     f"{tuple(params['weight'].shape)} (the baseline's weight), got "
                     f"{jnp.shape(features)}.")
  state = jax.lax.stop_gradient(jnp.asarray(features, jnp.float32))
  return jnp.einsum("bth,th->bt", state, params["weight"]) + params["bias"]


def reinforce_loss(logits: jax.Array, tokens: jax.Array, positions: jax.Array,
                   reward: jax.Array, baseline: jax.Array
                   ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """REINFORCE with a learned baseline (Sec. 3.2.1), per example.

  ``surrogate = -sum_t stop_gradient(r - b_t) log p(w_t | w_<t)`` over ``positions``: its
  gradient on ``o_t`` is the paper's ``(r - b_t)(p(. | w_<t) - 1(w_t))``, and its expectation
  over the model's samples is ``-d E[r] / d theta``. The baseline's loss is
  ``sum_t (b_t - stop_gradient(r))^2 / 2`` over the same positions.

  Args:
    logits: [B, T, V] float, the ``o_t`` that emitted ``tokens``.
    tokens: [B, T] int, the sampled ``w_t``.
    positions: [B, T] bool, the sampled, real positions trained by REINFORCE.
    reward: [B] float, ``r`` of each whole sequence.
    baseline: [B, T] float, ``b_t``.

  Returns:
    ``(surrogate [B], baseline_loss [B], metrics)``; ``metrics["baseline_error"]`` [B] is
    the mean of ``(b_t - r)^2`` over ``positions`` (0 without any).
  """
  positions = jnp.asarray(positions, bool)
  log_p = jnp.take_along_axis(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1),
                              tokens[..., None], axis=-1)[..., 0]
  reward = jax.lax.stop_gradient(jnp.asarray(reward, jnp.float32))[:, None]
  advantage = jax.lax.stop_gradient(reward - baseline)
  surrogate = -jnp.sum(jnp.where(positions, advantage * log_p, 0.0), axis=1)
  squared = jnp.where(positions, jnp.square(baseline - reward), 0.0)
  count = jnp.sum(positions, axis=1)
  return surrogate, 0.5 * jnp.sum(squared, axis=1), {
      "baseline_error": jnp.sum(squared, axis=1) / jnp.maximum(count, 1)}


def dad_probability(step: jax.Array, *, start: float, end: float,
                    anneal_steps: int) -> jax.Array:
  """DAD's (and E2E's) probability of feeding the model's choice at training ``step``.

  Linear from ``start`` at step 0 to ``end`` at ``anneal_steps``, then constant: a pure
  function of the step, jittable (``step`` may be traced).

  Args:
    step: [] int, the training step (0-based).
    start, end: probabilities in [0, 1].
    anneal_steps: an int >= 0 (0: ``end`` from the first step).

  Returns:
    [] float32.
  """
  start = check_float("start", start, low=0.0)
  end = check_float("end", end, low=0.0)
  for name, value in (("start", start), ("end", end)):
    if value > 1.0:
      raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
  anneal_steps = check_int("anneal_steps", anneal_steps, low=0)
  done = jnp.clip(jnp.asarray(step, jnp.float32) / max(anneal_steps, 1), 0.0, 1.0)
  if anneal_steps == 0:
    done = jnp.ones_like(done)
  return jnp.asarray(start + (end - start) * done, jnp.float32)


def mixer_xent_steps(step: jax.Array, *, max_len: int, xent_steps: int, mixed_steps: int,
                     delta: int) -> jax.Array:
  """MIXER's ``s`` at training ``step``: the XENT prefix length (Algorithm 1).

  ``s = T`` for the first ``N_XENT = xent_steps`` steps (pure XENT); then ``s = T - Delta`` for
  ``N_XE+R = mixed_steps`` steps, ``T - 2 Delta`` for the next ``N_XE+R``, and so on down to
  0 (pure REINFORCE). Algorithm 1 counts epochs and stops its loop at ``s >= 1`` (the released
  code's last stage, ``main.lua``, keeps ``s`` there); the floor here is 0, as the issue asks.

  Args:
    step: [] int, the training step (0-based); may be traced.
    max_len: ``T``, an int >= 1.
    xent_steps: ``N_XENT``, an int >= 0.
    mixed_steps: ``N_XE+R``, an int >= 1.
    delta: ``Delta``, an int >= 1.

  Returns:
    [] int32 in [0, T].
  """
  max_len = check_int("max_len", max_len, low=1)
  xent_steps = check_int("xent_steps", xent_steps, low=0)
  mixed_steps = check_int("mixed_steps", mixed_steps, low=1)
  delta = check_int("delta", delta, low=1)
  step = jnp.asarray(step, jnp.int32)
  stage = jnp.maximum(step - xent_steps, 0) // mixed_steps + 1
  mixed = jnp.maximum(max_len - delta * stage, 0)
  return jnp.where(step < xent_steps, max_len, mixed).astype(jnp.int32)


def check_mixer_schedule(*, max_len: int, xent_steps: int, mixed_steps: int, delta: int,
                         num_steps: int) -> None:
  """A ValueError unless MIXER's schedule reaches REINFORCE (``s < T``) within ``num_steps``.

  Raises:
    ValueError: naming ``delta`` (< 1: ``s`` never drops), ``xent_steps`` (``N_XENT >=
      num_steps``: training ends during the pure XENT stage) or a bad value of any argument.
  """
  check_int("max_len", max_len, low=1)
  check_int("mixed_steps", mixed_steps, low=1)
  num_steps = check_int("num_steps", num_steps, low=1)
  if not is_int(delta) or delta < 1:
    raise ValueError(f"delta must be an int >= 1 (with regime='mixer', s drops by delta "
                     f"tokens per stage and never reaches REINFORCE otherwise), got {delta!r}.")
  xent_steps = check_int("xent_steps", xent_steps, low=0)
  if xent_steps >= num_steps:
    raise ValueError(f"xent_steps must be < num_steps = {num_steps} (with regime='mixer' the "
                     f"first xent_steps steps are pure XENT, so REINFORCE is never reached), "
                     f"got {xent_steps}.")


def check_probability(name: str, value: Any) -> None:
  """A ValueError unless a concrete ``value`` is a probability in [0, 1] (traced: unchecked)."""
  values = concrete(value)
  if values is not None and (values.size == 0 or not ((values >= 0) & (values <= 1)).all()):
    raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")


def model_choices(key: jax.Array | None, *, regime: str, shape: tuple[int, int],
                  probability: jax.Array | float = 0.0,
                  xent_steps: jax.Array | int = 0) -> jax.Array:
  """``from_model`` [B, T] of ``regime``: where the model chooses token ``t``.

  xent: nowhere; dad / e2e: each position independently with ``probability``; reinforce:
  everywhere; mixer: at ``t >= xent_steps`` (``s``).

  Args:
    key: draws the DAD / E2E coins (None for the other regimes).
    regime: one of ``REGIMES``.
    shape: ``(B, T)``.
    probability: [] float in [0, 1], ``dad_probability``'s value (dad, e2e).
    xent_steps: [] int, ``mixer_xent_steps``'s ``s`` (mixer).

  Returns:
    [B, T] bool.
  """
  check_choice("regime", regime, REGIMES)
  if regime in ("dad", "e2e"):
    check_probability("probability", probability)
    if key is None:
      raise ValueError(f"key must be a PRNG key for regime={regime!r}, got None.")
    return jax.random.bernoulli(key, probability, shape)
  if regime == "mixer":
    return jnp.broadcast_to(jnp.arange(shape[1]) >= xent_steps, shape)
  return jnp.full(shape, regime == "reinforce")


def sequence_loss(key: jax.Array, *, regime: str, step_fn: StepFn, embedding: jax.Array,
                  init_state: PyTree, targets: jax.Array, mask: jax.Array, bos_id: int,
                  eos_id: int, probability: jax.Array | float = 0.0,
                  xent_steps: jax.Array | int = 0, top_k: int | None = None,
                  baseline_params: dict[str, jax.Array] | None = None,
                  baseline_features: Callable[[PyTree], jax.Array] | None = None,
                  references: jax.Array | None = None,
                  reference_lengths: jax.Array | None = None,
                  dropout: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The per-example loss of ``regime`` (module docstring): one rollout, then its terms.

  * xent, dad, e2e: ``xent_loss`` of the rollout's logits on the targets (all real tokens).
  * reinforce, mixer: XENT on the ground-truth prefix (``t < s``, real tokens), plus
    ``reinforce_loss`` on the sampled positions up to the sampled ``<eos>``, plus the
    baseline's squared error; ``r = bleu_reward`` against ``references`` (default: the
    targets).

  Args:
    key: the rollout's randomness (and the DAD / E2E coins).
    regime: one of ``REGIMES``.
    step_fn, embedding, init_state, bos_id, eos_id, dropout: as in ``rollout``.
    targets: [B, T] int, the ground truth.
    mask: [B, T] bool, True at its real tokens.
    probability: ``dad_probability``'s value (dad, e2e).
    xent_steps: ``mixer_xent_steps``'s ``s`` (mixer).
    top_k: E2E's ``k``.
    baseline_params, baseline_features: ``linear_baseline``'s parameters and the state's
      features (reinforce, mixer).
    references, reference_lengths: optional [B, R, S] and [B, R] for the reward.

  Returns:
    ``(loss [B], metrics)``; ``metrics`` holds, per example, ``"xent"`` (nats over the XENT
    positions) and ``"xent_tokens"`` (their number); with reinforce and mixer also
    ``"reinforce"`` (the surrogate), ``"baseline_loss"``, ``"baseline_error"``, ``"reward"``,
    ``"sampled_tokens"`` (REINFORCE positions) and ``"length"`` (the rollout's, up to its
    ``<eos>``).
  """
  check_choice("regime", regime, REGIMES)
  sequence_level = regime in ("reinforce", "mixer")
  if sequence_level and (baseline_params is None or baseline_features is None):
    raise ValueError(f"regime={regime!r} needs baseline_params and baseline_features, got "
                     f"{'None' if baseline_params is None else 'params'} and "
                     f"{'None' if baseline_features is None else 'a function'}.")
  if regime != "e2e" and top_k is not None:
    raise ValueError(f"top_k is only used by regime='e2e', got top_k={top_k!r} with "
                     f"regime={regime!r}.")
  if (references is None) != (reference_lengths is None):
    raise ValueError("references and reference_lengths must be given together.")
  mask = jnp.asarray(mask, bool)
  coin_key, rollout_key = jax.random.split(key)
  from_model = model_choices(coin_key, regime=regime, shape=targets.shape,
                             probability=probability, xent_steps=xent_steps)
  out = rollout(rollout_key, step_fn, embedding, init_state, targets, from_model,
                bos_id=bos_id, eos_id=eos_id, feed="soft" if regime == "e2e" else "sample",
                top_k=top_k, baseline_features=baseline_features if sequence_level else None,
                dropout=dropout)
  xent_mask = mask if not sequence_level else mask & ~out.from_model
  xent = xent_loss(out.logits, targets, xent_mask)
  metrics = {"xent": xent, "xent_tokens": jnp.sum(xent_mask, axis=1).astype(jnp.float32)}
  if not sequence_level:
    return xent, metrics
  if references is None:
    references, reference_lengths = targets[:, None], jnp.sum(mask, axis=1)[:, None]
  reward = bleu_reward(out.tokens, out.lengths, references, reference_lengths, eos_id=eos_id)
  positions = out.from_model & live_positions(out.lengths, targets.shape[1])
  baseline = linear_baseline(baseline_params, out.features)
  surrogate, baseline_loss, extra = reinforce_loss(out.logits, out.tokens, positions, reward,
                                                   baseline)
  metrics.update(reinforce=surrogate, baseline_loss=baseline_loss,
                 baseline_error=extra["baseline_error"], reward=reward,
                 sampled_tokens=jnp.sum(positions, axis=1).astype(jnp.float32),
                 length=out.lengths.astype(jnp.float32))
  return xent + surrogate + baseline_loss, metrics
