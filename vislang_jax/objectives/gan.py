"""Adversarial objectives: GAN, GAN-CLS, GAN-INT and the style encoder, per example.

Every loss takes discriminator LOGITS ``a`` (``D = sigmoid(a)``) and forms its logarithms
stably: ``log D = log_sigmoid(a)`` and ``log(1 - D) = log_sigmoid(-a)``, finite with finite
gradients for any finite ``a`` (in probability space ``log(1 - sigmoid(a))`` is
``log(0) = -inf`` at ``a = 100`` in float32). Each returns ``[B]`` float32, one value per
example, to be averaged by the caller. The losses are minimised: the discriminator's is its
binary cross-entropy, the generator's is the quantity it descends.

Goodfellow et al., "Generative adversarial nets", NIPS 2014, eq. (1):

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))].

Alg. 1 alternates ``k`` discriminator steps ascending ``V`` (here: descending
``discriminator_loss = -log D(x) - log(1 - D(G(z)))``) with one generator step descending
``log(1 - D(G(z)))`` (``generator_loss(..., saturating=True)``). Sec. 3: early in training
``D`` rejects the fakes confidently and ``log(1 - D(G(z)))`` saturates, so ``G`` is trained
instead to maximise ``log D(G(z))``, the non-saturating loss ``-log D(G(z))`` (the default).

Why the saturating loss starves the generator (Im et al., "Generating images with recurrent
adversarial networks" (GRAN), 2016, whose released ``gran.py`` trains ``G`` on the
non-saturating cross-entropy with target 1 for the same reason). With ``D = sigmoid(a)`` and
``dD/da = D (1 - D)``, the gradient that reaches ``G`` through the logit ``a = D's logit of
G(z)`` is

    d/da  log(1 - D) = -D              (saturating, minimax)
    d/da  -log D     = -(1 - D)        (non-saturating)

When ``D`` confidently rejects a fake (``D(G(z)) -> 0``, the normal state early on) the
saturating gradient ``-D`` vanishes with ``D``: the generator gets almost no signal exactly
when it is worst. The non-saturating gradient tends to ``-1``. Both push ``a`` up and give
the game the same fixed point (Goodfellow Sec. 3), but the non-saturating loss pushes hardest
on the fakes that ``D`` rejects most.

Reed et al., "Generative adversarial text to image synthesis", ICML 2016:

- GAN-CLS, Alg. 1, the matching-aware discriminator: with ``s_r = D(x, h)`` (real image,
  right text), ``s_w = D(x, h_hat)`` (real image, wrong text) and ``s_f = D(x_hat, h)`` (fake
  image, right text), ``L_D = log s_r + (log(1 - s_w) + log(1 - s_f)) / 2`` ascended, i.e.
  ``matching_aware_discriminator_loss = -log s_r - (log(1 - s_w) + log(1 - s_f)) / 2``
  descended. The paper writes ``L_G = log s_f`` "descended" (a sign slip: the released code
  descends the cross-entropy ``-log s_f``); the generator loss is ``generator_loss`` of
  ``s_f``'s logits.
- GAN-INT, Sec. 4.3: the generator is also trained on interpolated text embeddings
  ``beta t1 + (1 - beta) t2`` (``interpolate_embeddings``, the paper fixes ``beta = 0.5``);
  the paper writes the term in the minimax form ``E[log(1 - D(G(z, beta t1 + (1 - beta)
  t2)))]``.
- Sec. 4.4, the style encoder ``S`` inverts ``G``: ``L_style = E ||z - S(G(z, phi(t)))||_2^2``
  (``style_loss``).

The released code (reedscot/icml2016, ``main_cls_int.lua``, the script behind GAN-INT and
GAN-INT-CLS; ``main_cls.lua`` for GAN-CLS) against the paper, and what is followed here:

- The discriminator never sees interpolated embeddings: its update uses only the batch's own
  (real) text, with the real-right, wrong and fake-right terms. As the paper says, there are
  no real image-text pairs for an interpolated embedding; ``D`` is only asked whether pairs
  match. Followed: ``matching_aware_discriminator_loss`` / ``discriminator_loss`` take no
  interpolated terms.
- The generator update runs ``G`` on ``3B/2`` embeddings: the ``B`` real ones and ``B/2``
  interpolations ``(t_i + t_{i + B/2}) / 2`` of the first half of the batch with the second
  (``interp_type=1``: ``beta = 0.5``), each with fresh noise, and scores every fake with ``D``
  conditioned on the SAME embedding that generated it: ``D(G(z, t_int), t_int)``. The loss is
  the non-saturating cross-entropy with target "real", weighted 1 on the ``B`` ordinary fakes
  and ``interp_weight`` (1.0 in the released training scripts) on the ``B/2`` interpolated
  ones, summed and divided by ``3B/2`` (Torch's ``BCECriterion(weights)``). So the GAN-INT
  generator term is ``generator_loss(fake_int_logits)`` on the interpolated batch, with
  ``fake_int_logits = D(G(z, t_int), t_int)``; no separate function. Followed: the
  non-saturating form by default (the code, Goodfellow Sec. 3), the paper's minimax form with
  ``saturating=True``; how the two batches are weighted and averaged is the caller's choice.
- ``interp_type=2`` adds an extrapolation ``alpha (t2 - t1)``, ``alpha ~ U(-1, 1)``, i.e.
  ``beta`` in [-0.5, 1.5]. Not followed (not in the paper): ``beta`` must lie in [0, 1].
- The discriminator weights the two "fake" terms by ``cls_weight`` (wrong) and
  ``1 - cls_weight`` (fake); the training scripts set 0.5, the paper's average.
  ``wrong_weight`` is that knob (default 0.5, the paper); 0 gives the plain GAN loss.
- The code's wrong pair is a mismatched image with the right text, the paper's a real image
  with mismatched text; both are real images paired with text they do not match, and these
  functions take only the discriminator's logits, so either source fits.

Shapes: ``B`` examples, ``D`` embedding units, ``Z`` noise units.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_rank, check_same_shape, concrete


def _logits(**arrays: jax.Array) -> list[jax.Array]:
  """The arrays as float32 after checking they share one shape [B]."""
  if len(arrays) == 1:
    name, array = next(iter(arrays.items()))
    check_rank(name, array, "[B]")
  else:
    check_same_shape("[B]", **arrays)
  return [jnp.asarray(a, jnp.float32) for a in arrays.values()]


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The discriminator's cross-entropy ``-log D(x) - log(1 - D(G(z)))`` (Goodfellow eq. 1).

  Args:
    real_logits: [B] float, ``D``'s logits of real examples ``x``.
    fake_logits: [B] float, ``D``'s logits of generated examples ``G(z)``.

  Returns:
    [B] float32, ``-log sigmoid(real) - log sigmoid(-fake)``.
  """
  real, fake = _logits(real_logits=real_logits, fake_logits=fake_logits)
  return -jax.nn.log_sigmoid(real) - jax.nn.log_sigmoid(-fake)


def generator_loss(fake_logits: jax.Array, *, saturating: bool = False) -> jax.Array:
  """The generator's loss on ``D``'s logits of its samples (module docstring: Goodfellow
  Sec. 3, GRAN).

  Args:
    fake_logits: [B] float, ``D``'s logits of ``G(z)`` (for GAN-CLS ``D(G(z, t), t)``; for
      GAN-INT ``D(G(z, t_int), t_int)``).
    saturating: False: the non-saturating ``-log D(G(z))`` (gradient ``-(1 - D)`` in the
      logit); True: the minimax ``log(1 - D(G(z)))`` of eq. (1) (gradient ``-D``, which
      vanishes when ``D`` rejects the fakes).

  Returns:
    [B] float32, the value ``G`` descends.
  """
  if not isinstance(saturating, bool):
    raise ValueError(f"saturating must be a bool, got {saturating!r}.")
  (fake,) = _logits(fake_logits=fake_logits)
  if saturating:
    return jax.nn.log_sigmoid(-fake)
  return -jax.nn.log_sigmoid(fake)


def matching_aware_discriminator_loss(real_right_logits: jax.Array,
                                      real_wrong_logits: jax.Array,
                                      fake_right_logits: jax.Array, *,
                                      wrong_weight: float = 0.5) -> jax.Array:
  """GAN-CLS's discriminator loss (Reed et al. Alg. 1), descended.

  ``-log s_r - (w log(1 - s_w) + (1 - w) log(1 - s_f))`` with ``w = wrong_weight``; at the
  default ``w = 1/2`` this is Alg. 1's ``-log s_r - (log(1 - s_w) + log(1 - s_f)) / 2``.

  Args:
    real_right_logits: [B] float, logits of ``s_r = D(x, h)``: real image, matching text.
    real_wrong_logits: [B] float, logits of ``s_w = D(x, h_hat)``: real image, mismatched
      text (the released code: a mismatched real image with the text).
    fake_right_logits: [B] float, logits of ``s_f = D(G(z, h), h)``: fake image, its text.
    wrong_weight: ``w`` in [0, 1], the released code's ``cls_weight``; 1/2 is the paper's
      average, 0 the plain conditional GAN's ``discriminator_loss``.

  Returns:
    [B] float32.
  """
  wrong_weight = check_float("wrong_weight", wrong_weight, low=0.0)
  if wrong_weight > 1.0:
    raise ValueError(f"wrong_weight must be a finite float in [0, 1], got {wrong_weight!r}.")
  right, wrong, fake = _logits(real_right_logits=real_right_logits,
                               real_wrong_logits=real_wrong_logits,
                               fake_right_logits=fake_right_logits)
  return -jax.nn.log_sigmoid(right) - (wrong_weight * jax.nn.log_sigmoid(-wrong)
                                       + (1.0 - wrong_weight) * jax.nn.log_sigmoid(-fake))


def interpolate_embeddings(t1: jax.Array, t2: jax.Array, *,
                           beta: float | jax.Array = 0.5) -> jax.Array:
  """GAN-INT's interpolated text embeddings ``beta t1 + (1 - beta) t2`` (Reed Sec. 4.3).

  The released code pairs the first half of a batch with the second half at ``beta = 0.5``;
  the generator loss on ``D(G(z, t_int), t_int)`` is ``generator_loss`` (module docstring).

  Args:
    t1: [B, D] float, the first embeddings.
    t2: [B, D] float, the second embeddings.
    beta: a float in [0, 1] or a [B] float array in [0, 1] (one weight per pair); concrete
      arrays are checked, traced ones (inside ``jax.jit``) are not.

  Returns:
    [B, D] float32; ``t1`` at ``beta = 1``, ``t2`` at ``beta = 0``.
  """
  check_same_shape("[B, D]", t1=t1, t2=t2)
  t1 = jnp.asarray(t1, jnp.float32)
  t2 = jnp.asarray(t2, jnp.float32)
  if isinstance(beta, (jax.Array, np.ndarray)):
    if tuple(np.shape(beta)) != t1.shape[:1]:
      raise ValueError(f"beta must be a float or have shape [B] = {t1.shape[:1]}, got "
                       f"{np.shape(beta)}.")
    values = concrete(beta)
    if values is not None and not (np.all(np.isfinite(values)) and np.all(values >= 0.0)
                                   and np.all(values <= 1.0)):
      raise ValueError(f"beta must lie in [0, 1], got values in "
                       f"[{np.min(values)}, {np.max(values)}].")
    beta = jnp.asarray(beta, jnp.float32)[:, None]
  else:
    beta = check_float("beta", beta, low=0.0)
    if beta > 1.0:
      raise ValueError(f"beta must be a finite float in [0, 1], got {beta!r}.")
  return beta * t1 + (1.0 - beta) * t2


def style_loss(z: jax.Array, z_hat: jax.Array) -> jax.Array:
  """The style encoder's regression ``||z - S(G(z, phi(t)))||_2^2`` (Reed Sec. 4.4).

  ``z`` is the target: ``jax.lax.stop_gradient`` keeps the loss from reaching whatever
  produced it. ``S`` is trained on samples of a trained ``G``; differentiate with respect to
  ``S``'s parameters only (or stop the gradient on ``G``'s samples).

  Args:
    z: [B, Z] float, the noise ``G`` was given.
    z_hat: [B, Z] float, the style encoder's estimate ``S(G(z, phi(t)))``.

  Returns:
    [B] float32, the squared error summed over the ``Z`` code units.
  """
  check_same_shape("[B, Z]", z=z, z_hat=z_hat)
  target = jax.lax.stop_gradient(jnp.asarray(z, jnp.float32))
  return jnp.sum(jnp.square(target - jnp.asarray(z_hat, jnp.float32)), axis=-1)
