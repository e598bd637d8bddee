"""Captioning objectives of Show, Attend and Tell (Xu et al., 2015): soft and hard attention.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio, "Show, Attend and Tell: Neural
Image Caption Generation with Visual Attention", ICML 2015.

Shapes: ``B`` examples, ``T`` steps, ``K`` = ``V`` words, ``L`` locations. ``logits``
[B, T, V] are the model's predictions of ``targets`` [B, T] (the caption ``y_1..y_T``, the
model having been fed ``<bos>, y_1..y_{T-1}``); ``mask`` [B, T] is 1 (True) at the real
tokens, ``<eos>`` included, and 0 at padding. Every function returns per-example values; a
training step averages them over the batch. All quantities are in nats.
"""

import jax
import jax.numpy as jnp

from vislang_jax.checks import check_float, check_ids


def _check_steps(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                 **per_step: jax.Array) -> None:
  """Checks logits [B, T, V], targets/mask [B, T] and each of ``per_step`` [B, T, ...]."""
  if jnp.ndim(logits) != 3:
    raise ValueError(f"logits must have shape [B, T, V], got {jnp.shape(logits)}.")
  steps = tuple(logits.shape[:2])
  for name, array in {"targets": targets, "mask": mask}.items():
    if tuple(jnp.shape(array)) != steps:
      raise ValueError(f"{name} must have shape [B, T] = {steps} (logits' first axes), got "
                       f"{jnp.shape(array)}.")
  for name, (array, rank) in per_step.items():
    if jnp.ndim(array) != rank or tuple(jnp.shape(array)[:2]) != steps:
      expected = "[B, T]" if rank == 2 else "[B, T, L]"
      raise ValueError(f"{name} must have shape {expected} with (B, T) = {steps}, got "
                       f"{jnp.shape(array)}.")
  check_ids("targets", targets, vocab_size=logits.shape[-1])


def caption_nll(logits: jax.Array, targets: jax.Array,
                mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``-log p(y | a) = -sum_t mask_t log p(y_t | a, y_{<t})``, summed over the real tokens.

  Args:
    logits: [B, T, V] float.
    targets: [B, T] int ids in [0, V).
    mask: [B, T] bool or float, 1 at real tokens.

  Returns:
    ``(nll [B], num_tokens [B])``; pad positions contribute nothing, whatever their logits.
  """
  _check_steps(logits, targets, mask)
  return _caption_nll(logits, targets, mask)


def _caption_nll(logits: jax.Array, targets: jax.Array,
                 mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``caption_nll`` without the argument checks."""
  mask = jnp.asarray(mask, jnp.float32)
  log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return -jnp.sum(jnp.where(mask > 0, token_log_probs, 0.0) * mask, axis=1), jnp.sum(mask, 1)


def doubly_stochastic_penalty(alpha: jax.Array, mask: jax.Array) -> jax.Array:
  """``sum_i (1 - sum_t alpha_ti)^2`` of eq. (14), the sum over ``t`` on real steps only.

  Encourages the model to pay equal attention to every part of the image over the caption
  (Sec. 4.2.1, "doubly stochastic attention"); steps past ``<eos>`` are not part of the
  caption and do not count.

  Args:
    alpha: [B, T, L] float, the attention weights ``aux["alpha"]``.
    mask: [B, T] bool or float, 1 at real steps.

  Returns:
    [B] float.
  """
  if jnp.ndim(alpha) != 3 or tuple(jnp.shape(mask)) != tuple(jnp.shape(alpha)[:2]):
    raise ValueError(f"alpha must have shape [B, T, L] and mask [B, T] with the same (B, T), "
                     f"got {jnp.shape(alpha)} and {jnp.shape(mask)}.")
  mask = jnp.asarray(mask, jnp.float32)
  attention_per_location = jnp.einsum("bt,btl->bl", mask, alpha)
  return jnp.sum(jnp.square(1.0 - attention_per_location), axis=-1)


def soft_attention_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                        alpha: jax.Array, *,
                        penalty: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The deterministic soft-attention loss of eq. (14), per example.

  ``L_d = -log p(y | a) + lambda sum_i (1 - sum_t alpha_ti)^2``, trained end to end by
  backpropagation (Sec. 4.2); ``alpha`` depends on the parameters and carries the penalty's
  gradient. Nothing is held fixed: there is no sampled quantity.

  Args:
    logits: [B, T, V] float.
    targets: [B, T] int ids in [0, V).
    mask: [B, T] bool or float, 1 at real tokens.
    alpha: [B, T, L] float, ``aux["alpha"]`` of ``models.show_attend_tell``.
    penalty: ``lambda`` >= 0 of eq. (14).

  Returns:
    ``(loss [B], metrics)``; ``metrics`` holds ``"nll"`` [B] (nats per caption),
    ``"nll_per_token"`` [B] (nats per real token), ``"attention_penalty"`` [B] (the
    unweighted sum of eq. 14) and ``"num_tokens"`` [B].
  """
  check_float("penalty", penalty, low=0.0)
  _check_steps(logits, targets, mask, alpha=(alpha, 3))
  nll, num_tokens = _caption_nll(logits, targets, mask)
  attention_penalty = doubly_stochastic_penalty(alpha, mask)
  return nll + penalty * attention_penalty, {
      "nll": nll, "nll_per_token": nll / jnp.maximum(num_tokens, 1.0),
      "attention_penalty": attention_penalty, "num_tokens": num_tokens}


def hard_attention_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, log_prob_locations: jax.Array,
    entropy: jax.Array, baseline: jax.Array, *, entropy_weight: float,
    reinforce_weight: float = 0.1, baseline_decay: float = 0.9,
    sampled: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
  """A surrogate whose gradient is the hard-attention learning rule of Sec. 4.1 (eq. 10-12).

  Hard attention maximises the lower bound ``L_s = sum_s p(s | a) log p(y | s, a) <= log
  p(y | a)`` (eq. 10). With one location sequence ``s~ ~ Multinoulli(alpha)`` per example
  (drawn by the model), the paper's estimator (eq. 11-12 with a baseline and an entropy term,
  end of Sec. 4.1) is

      d log p(y | s~, a) / dW
        + lambda_r (R - b) d log p(s~ | a) / dW
        + lambda_e d H[s~] / dW,

  with ``log p(s~ | a) = sum_t log alpha_{t, s~_t}`` and ``H[s~] = sum_t H[alpha_t]``, both
  over the real steps (locations drawn after ``<eos>`` do not affect the caption's
  likelihood). Per example this function returns

      loss = -log p(y | s~, a)
             - lambda_r stop_gradient(R - b) log p(s~ | a)
             - lambda_e H[s~],

  so ``-jax.grad`` of its batch mean is the batch average of the estimator: the reward ``R``
  and the baseline ``b`` are constants of the score-function term.

  The reward, the baseline and ``lambda_r`` follow the authors' code (arctic-captions
  ``capgen.py``, ``train()``, ``RL_sumCost=True``, its default), not the paper's eq. (12),
  whose reward is the caption's log-likelihood ``log p(y | s~, a)`` itself:

  * ``R = log p(y | s~, a) / n``, the mean log-likelihood over the caption's ``n`` real tokens
    (``<eos>`` included): the code's ``masked_cost.mean(0)``, its batches holding captions of
    one length (``HomogeneousData``), so that mean over time is the per-token mean;
  * ``b`` on that scale: ``b_k = 0.9 b_{k-1} + 0.1 mean(R)`` (the code's ``baseline_time *
    0.9 + 0.1 * masked_cost.mean()``, on the cost scale, i.e. ``-b``), the mean over the
    batch's sampled examples; the experiment keeps ``b`` in its train state, passes it in as
    ``baseline`` and stores the returned ``new_baseline``;
  * ``lambda_r = 0.1``: the code's ``/10.`` in ``known_grads={alphas: (baseline_time -
    masked_cost.mean(0))[None, :, None] / 10. * (-alphas_sample / alphas) + alpha_entropy_c *
    (tensor.log(alphas) + 1)}``, which is this function's gradient with respect to
    ``alpha`` (through ``log p(s~ | a)``) and with ``lambda_e = alpha_entropy_c`` (0.002
    there; ``H[s~]`` summed along the path as here).

  The code adds those ``known_grads`` per example to the gradient of the batch-mean NLL
  (``cost.mean()``): its score-function and entropy terms are not divided by the batch size
  ``B``. In this function's convention (every term per example, then the batch mean) the
  code's update is ``reinforce_weight = B / 10`` and ``entropy_weight = 0.002 B`` (3.2 and
  0.064 at ``B = 32``). With the per-token reward the estimator is unbiased for
  ``dL_s / dW`` only when ``lambda_r = n``: the per-token reward weighs the score-function
  term by ``lambda_r / n`` against the likelihood term, a weighting the code chose (and a
  scalar baseline centres a per-token reward whatever the caption's length, which a summed
  reward, growing with ``n``, is not).

  Examples whose context the model replaced by its expectation (``sampled`` False,
  ``Decoder.expectation_prob``) drew no location that influenced their caption: their
  likelihood with the expected context ``sum_i alpha_ti a_i`` is differentiable in
  ``alpha`` and backpropagation already gives its exact gradient. So their score-function
  term is zeroed (in the code ``alphas_sample = alphas`` there, and ``-alphas_sample /
  alphas = -1`` has no gradient through the softmax: zero too), and they do not enter the
  baseline (unlike the code, which updates ``b`` on every batch: their likelihood, under
  another context, would pull ``b`` away from the reward of the sampled examples it
  centres). Their entropy bonus stays, as in the code.

  Args:
    logits: [B, T, V] float, predictions given the drawn locations.
    targets: [B, T] int ids in [0, V).
    mask: [B, T] bool or float, 1 at real tokens.
    log_prob_locations: [B, T] float, ``log alpha_{t, s~_t}`` (``aux["log_prob_locations"]``).
    entropy: [B, T] float, ``H[alpha_t]`` (``aux["entropy"]``).
    baseline: [] float, the moving-average baseline ``b_{k-1}`` of the per-token reward.
    entropy_weight: ``lambda_e`` >= 0.
    reinforce_weight: ``lambda_r`` >= 0 (0 drops the score-function term); the code's 1/10.
    baseline_decay: the moving average's 0.9, in [0, 1).
    sampled: [B] bool (``aux["sampled"]``), False where the expectation replaced the drawn
      locations; None means every example was sampled.

  Returns:
    ``(loss [B], metrics, new_baseline [])``; ``metrics`` holds ``"nll"``, ``"nll_per_token"``
    and ``"num_tokens"`` as in ``soft_attention_loss``, ``"reward"`` (``R``, nats per token),
    ``"advantage"`` (``R - b``, zero where not sampled), ``"log_prob_locations"``
    (``log p(s~ | a)``) and ``"entropy"`` (``H[s~]``), each [B]. ``new_baseline`` is ``b``
    itself when no example of the batch was sampled.
  """
  check_float("entropy_weight", entropy_weight, low=0.0)
  check_float("reinforce_weight", reinforce_weight, low=0.0)
  check_float("baseline_decay", baseline_decay, low=0.0, below=1.0)
  _check_steps(logits, targets, mask, log_prob_locations=(log_prob_locations, 2),
               entropy=(entropy, 2))
  batch = logits.shape[0]
  if jnp.ndim(baseline) != 0:
    raise ValueError(f"baseline must be a scalar, got shape {jnp.shape(baseline)}.")
  if sampled is None:
    sampled = jnp.ones((batch,), bool)
  elif tuple(jnp.shape(sampled)) != (batch,):
    raise ValueError(f"sampled must have shape [B] = ({batch},), got {jnp.shape(sampled)}.")
  sampled = jnp.asarray(sampled, jnp.float32)
  mask_f = jnp.asarray(mask, jnp.float32)

  nll, num_tokens = _caption_nll(logits, targets, mask)
  nll_per_token = nll / jnp.maximum(num_tokens, 1.0)
  log_p_locations = jnp.sum(log_prob_locations * mask_f, axis=1)  # log p(s~ | a)
  total_entropy = jnp.sum(entropy * mask_f, axis=1)  # H[s~]
  baseline = jax.lax.stop_gradient(jnp.asarray(baseline, jnp.float32))
  reward = jax.lax.stop_gradient(-nll_per_token)  # R, a constant of the REINFORCE term
  advantage = (reward - baseline) * sampled
  loss = nll - reinforce_weight * advantage * log_p_locations - entropy_weight * total_entropy

  num_sampled = jnp.sum(sampled)
  batch_reward = jnp.sum(sampled * reward) / jnp.maximum(num_sampled, 1.0)
  new_baseline = jnp.where(num_sampled > 0,
                           baseline_decay * baseline + (1.0 - baseline_decay) * batch_reward,
                           baseline)
  return loss, {
      "nll": nll, "nll_per_token": nll_per_token, "num_tokens": num_tokens, "reward": reward,
      "advantage": advantage, "log_prob_locations": log_p_locations,
      "entropy": total_entropy}, new_baseline
