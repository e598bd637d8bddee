"""Sample quality of image generators (GANs, DRAW, alignDRAW), automated and reproducible.

No human study here: each paper's judgement of samples gets a measured analogue, all on host
NumPy/SciPy arrays (the networks run jitted, in batches).

* `frechet_distance`: the distance between Gaussians fitted to real and generated features
  (Heusel et al. 2017, the FID's formula), `||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`, in the
  feature space of a digit classifier trained once on the real training split
  (`train_digit_classifier`, cached) or of the scene judge (`judge.SceneJudge.features`).
* `classifier_score`: the inception score (Salimans et al. 2016, Sec. 4) with that digit
  classifier, `exp(E_x KL(p(y|x) || p(y)))`: K for confident, evenly spread classes, 1 for
  one class or no confidence.
* `two_sample_accuracy`: the analogue of LAPGAN's human "fooled" rate (Denton et al. 2015,
  Sec. 4.3) as a classifier two-sample test (Lopez-Paz & Oquab 2017): a small classifier
  learns real from generated on half of each set and is scored on the other half (0.5: it
  cannot tell them apart).
* `generative_adversarial_metric` (`gam`): GRAN's battle of two GANs (Im et al. 2016,
  Sec. 4, "Model evaluation: battle between GANs"), each discriminator judging the other's
  generator.

Features and probabilities come from `classifier_features` / `classifier_probs` for either
network: a `judge.ConvNet` digit classifier (penultimate ReLU features, softmax over digits)
or a `judge.SceneJudge` reading 60x60 captioned-digit canvases (layout and window features,
`SceneJudge.features`; the distribution of the digit in the first slot of the layout it
reads).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
import scipy.special

from vislang_jax.checks import (check_float, check_int, check_positive_int, check_rank,
                                check_same_shape)
from vislang_jax.metrics import judge as judge_lib


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The mean and covariance of a set of features, the Gaussian the Frechet distance fits.

  Args:
    features: [N, F] float, one row per image, N >= 2, finite.

  Returns:
    (mu [F], sigma [F, F]) float64; sigma the unbiased sample covariance (N - 1 in the
    denominator, `np.cov`'s default, as the TTUR reference code).
  """
  features = np.asarray(features, np.float64)
  check_rank("features", features, "[N, F]")
  if len(features) < 2:
    raise ValueError(f"features must hold N >= 2 rows for a covariance, got shape "
                     f"{features.shape}.")
  if not np.all(np.isfinite(features)):
    raise ValueError(f"features must be finite, got {np.sum(~np.isfinite(features))} "
                     f"non-finite values.")
  return features.mean(0), np.atleast_2d(np.cov(features, rowvar=False))


def _matrix_sqrt(matrix: np.ndarray) -> np.ndarray | None:
  """`scipy.linalg.sqrtm(matrix)`, or None where SciPy finds it singular or it is not finite."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
    try:
      root = scipy.linalg.sqrtm(matrix)
    except (scipy.linalg.LinAlgError, scipy.linalg.LinAlgWarning):
      return None
  return root if np.all(np.isfinite(root)) else None


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, *, eps: float = 1e-6) -> float:
  """The Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  `||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))` (Heusel et al. 2017;
  Dowson & Landau 1982). The square root is `scipy.linalg.sqrtm`'s; as in the TTUR
  reference code, a product that SciPy finds singular (or whose root is not finite) is
  retried with `eps * I` added to both covariances, and an imaginary part (rounding: the
  eigenvalues of a product of two covariances are real and >= 0) is discarded when it is
  below 1e-3 on the diagonal, an error above. Where TTUR adds `eps * I` inside the root
  only, the regularised retry here adds it to both covariances throughout, so the value
  stays the distance between two (slightly widened) Gaussians: 0 for identical sets, where
  TTUR's would be `-2 eps F`. Rounding can leave a result a little below 0; it is not
  clipped.

  Args:
    mu1, mu2: [F] float, the means.
    sigma1, sigma2: [F, F] float, the covariances (symmetric positive semi-definite).
    eps: the regularising ridge, > 0.

  Returns:
    The distance, a Python float.
  """
  eps = check_float("eps", eps, low=0.0)
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  check_same_shape("[F]", mu1=mu1, mu2=mu2)
  dim = mu1.shape[0]
  for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
    if sigma.shape != (dim, dim):
      raise ValueError(f"{name} must have shape [F, F] = ({dim}, {dim}) as the means, got "
                       f"{sigma.shape}.")
  for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
    if not np.all(np.isfinite(value)):
      raise ValueError(f"{name} must be finite, got {np.sum(~np.isfinite(value))} "
                       f"non-finite values.")
  root = _matrix_sqrt(sigma1 @ sigma2)
  if root is None:
    sigma1, sigma2 = sigma1 + eps * np.eye(dim), sigma2 + eps * np.eye(dim)
    root = _matrix_sqrt(sigma1 @ sigma2)
    if root is None:
      raise ValueError(f"sigma1 @ sigma2 has no finite square root, even with eps = {eps} "
                       f"added to both covariances.")
  if np.iscomplexobj(root):
    imaginary = np.max(np.abs(np.diagonal(root).imag))
    if imaginary > 1e-3:
      raise ValueError(f"sigma1 @ sigma2 must have a real square root (sigma1 and sigma2 "
                       f"covariances), got one with imaginary parts up to {imaginary:.3g} "
                       f"on its diagonal.")
    root = root.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def frechet_distance_of(real_features: np.ndarray, fake_features: np.ndarray, *,
                        eps: float = 1e-6) -> float:
  """`frechet_distance` between the Gaussians fitted to two sets of features.

  Args:
    real_features: [N, F] float; fake_features: [M, F] float (N, M >= 2).
    eps: as `frechet_distance`.
  """
  real_features, fake_features = np.asarray(real_features), np.asarray(fake_features)
  check_rank("real_features", real_features, "[N, F]")
  check_rank("fake_features", fake_features, "[M, F]")
  if real_features.shape[1] != fake_features.shape[1]:
    raise ValueError(f"real_features and fake_features must have the same F, got shapes "
                     f"{real_features.shape} and {fake_features.shape}.")
  return frechet_distance(*feature_statistics(real_features),
                          *feature_statistics(fake_features), eps=eps)


def classifier_score(probs: np.ndarray, *, splits: int = 1) -> float:
  """The inception score's analogue with a digit classifier (Salimans et al. 2016, Sec. 4).

  `exp(E_x KL(p(y|x) || p(y)))`, `p(y)` the mean of `p(y|x)` over the set (0 log 0 = 0).
  With `splits > 1` the set is cut into that many consecutive parts (part i holds rows
  `[i N // splits, (i + 1) N // splits)`), each scored with its own `p(y)`, and the scores
  are averaged, as Salimans et al.'s code (which reports the parts' standard deviation too).

  Args:
    probs: [N, K] float, one distribution over K classes per image (rows >= 0, summing to
      1 within 1e-3).
    splits: the number of parts, in [1, N].

  Returns:
    The score, in [1, K].
  """
  probs = np.asarray(probs, np.float64)
  check_rank("probs", probs, "[N, K]")
  if len(probs) < 1:
    raise ValueError(f"probs must hold N >= 1 rows, got shape {probs.shape}.")
  splits = check_int("splits", splits, low=1, high=len(probs))
  sums = probs.sum(-1)
  if not np.all(np.isfinite(probs)) or np.any(probs < 0) or np.any(np.abs(sums - 1) > 1e-3):
    raise ValueError(f"probs must hold distributions (rows >= 0 summing to 1), got row sums "
                     f"in [{sums.min():.6g}, {sums.max():.6g}] and minimum {probs.min():.6g}.")
  num = len(probs)
  scores = []
  for i in range(splits):
    part = probs[i * num // splits:(i + 1) * num // splits]
    marginal = part.mean(0, keepdims=True)
    kl = np.sum(scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal), -1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores))


def generative_adversarial_metric(d1_test_logits: np.ndarray, d2_test_logits: np.ndarray,
                                  d1_on_g2_logits: np.ndarray, d2_on_g1_logits: np.ndarray,
                                  *, tolerance: float = 0.1) -> dict[str, float | int]:
  """GRAN's generative adversarial metric: two GANs M1 = (G1, D1), M2 = (G2, D2) battle.

  Im et al. 2016, Sec. 4: with `err` a discriminator's classification error rate,

    r_test = err(D1(x_test)) / err(D2(x_test)),
    r_sample = err(D1(G2(z))) / err(D2(G1(z))),

  and the winner is M1 when r_sample < 1 (G1 fools D2 more often than G2 fools D1), M2 when
  r_sample > 1, provided r_test ~ 1 (neither discriminator judges real test images much
  worse, e.g. by overfitting its training set); otherwise (or r_sample = 1) a tie. A logit
  > 0 (sigmoid > 0.5) reads "real", as GRAN's code (`errors`: `p > 0.5`): a real image with
  logit <= 0 is an error, a sample with logit > 0 is one. The paper gives no number for
  "r_test ~ 1"; `tolerance` is ours: |r_test - 1| <= tolerance. A ratio with a zero
  denominator is 1 for 0 / 0 (both perfect) and inf otherwise. Fidelity: GRAN's released
  `battle.py` divides accuracies, `(1 - err) / (1 - err)`, and declares M1 the winner when
  that sample ratio is > 1: the same winner when r_test is ignored, other ratios. The
  paper's error ratios are reported here.

  Args:
    d1_test_logits, d2_test_logits: [N] float, D1's and D2's logits on the same N real test
      images.
    d1_on_g2_logits: [M] float, D1's logits on M samples of G2.
    d2_on_g1_logits: [M'] float, D2's logits on M' samples of G1.
    tolerance: how far from 1 r_test may be for a winner, >= 0.

  Returns:
    {"r_test", "r_sample": floats, "winner": 1, 2 or 0 (tie), and the four error rates
    "d1_test_error", "d2_test_error", "d1_on_g2_error", "d2_on_g1_error"}.
  """
  tolerance = check_float("tolerance", tolerance, low=0.0)
  arrays = {"d1_test_logits": d1_test_logits, "d2_test_logits": d2_test_logits,
            "d1_on_g2_logits": d1_on_g2_logits, "d2_on_g1_logits": d2_on_g1_logits}
  arrays = {name: np.asarray(a, np.float64) for name, a in arrays.items()}
  check_same_shape("[N]", d1_test_logits=arrays["d1_test_logits"],
                   d2_test_logits=arrays["d2_test_logits"])
  for name, logits in arrays.items():
    check_rank(name, logits, "[N]")
    if logits.size == 0 or not np.all(np.isfinite(logits)):
      raise ValueError(f"{name} must hold one or more finite logits, got shape "
                       f"{logits.shape} with {np.sum(~np.isfinite(logits))} non-finite.")
  errors = {
      "d1_test_error": float(np.mean(arrays["d1_test_logits"] <= 0)),  # real called fake
      "d2_test_error": float(np.mean(arrays["d2_test_logits"] <= 0)),
      "d1_on_g2_error": float(np.mean(arrays["d1_on_g2_logits"] > 0)),  # sample called real
      "d2_on_g1_error": float(np.mean(arrays["d2_on_g1_logits"] > 0)),
  }
  ratio = lambda a, b: a / b if b > 0 else (1.0 if a == 0 else float("inf"))
  r_test = ratio(errors["d1_test_error"], errors["d2_test_error"])
  r_sample = ratio(errors["d1_on_g2_error"], errors["d2_on_g1_error"])
  winner = 0
  if abs(r_test - 1.0) <= tolerance and r_sample != 1.0:
    winner = 1 if r_sample < 1.0 else 2
  return {"r_test": r_test, "r_sample": r_sample, "winner": winner, **errors}


gam = generative_adversarial_metric


@functools.partial(jax.jit, static_argnames="net")
def _forward(net: judge_lib.ConvNet | judge_lib.SceneJudge, params: Any,
             images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """images [B, H, W, C] -> (features [B, F], class probabilities [B, K]) of `net`."""
  variables = {"params": params}
  features = net.apply(variables, images, method=type(net).features)
  if isinstance(net, judge_lib.SceneJudge):
    layouts = jnp.argmax(net.apply(variables, images, method=judge_lib.SceneJudge.layout_logits),
                         -1)
    logits = net.apply(variables, images, layouts,
                       method=judge_lib.SceneJudge.object_logits)[:, 0]
  else:
    logits = net.apply(variables, images)
  return features, jax.nn.softmax(logits)


def _forward_batched(net: judge_lib.ConvNet | judge_lib.SceneJudge, params: Any,
                     images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`_forward` over host images in batches of one shape (the last padded): one compile."""
  if not isinstance(net, (judge_lib.ConvNet, judge_lib.SceneJudge)):
    raise ValueError(f"net must be a judge.ConvNet or a judge.SceneJudge, got "
                     f"{type(net).__name__}.")
  batch_size = check_positive_int("batch_size", batch_size)
  images = np.asarray(images, np.float32)
  check_rank("images", images, "[N, H, W, C]")
  if len(images) == 0:
    raise ValueError(f"images must hold N >= 1 images, got shape {images.shape}.")
  size = min(batch_size, len(images))
  features, probs = [], []
  for start in range(0, len(images), size):
    batch = images[start:start + size]
    padded = np.concatenate([batch, np.zeros((size - len(batch),) + batch.shape[1:],
                                             batch.dtype)])
    f, p = _forward(net, params, padded)
    features.append(np.asarray(f)[:len(batch)])
    probs.append(np.asarray(p)[:len(batch)])
  return np.concatenate(features), np.concatenate(probs)


def classifier_features(net: judge_lib.ConvNet | judge_lib.SceneJudge, params: Any,
                        images: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
  """The features that `frechet_distance` compares, jitted in batches.

  Args:
    net, params: a `judge.ConvNet` (e.g. `train_digit_classifier`'s) and its `params`
      collection, or a `judge.SceneJudge` and its params.
    images: [N, H, W, C] float in [0, 1].
    batch_size: images per jitted call (every call has this shape: the last batch is padded,
      so the results do not depend on it).

  Returns:
    [N, F] float32: a ConvNet's penultimate ReLU layer (F = hidden), or
    `SceneJudge.features` (F = 2 hidden).
  """
  return _forward_batched(net, params, images, batch_size)[0]


def classifier_probs(net: judge_lib.ConvNet | judge_lib.SceneJudge, params: Any,
                     images: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
  """The class distributions that `classifier_score` reads, jitted in batches.

  Args:
    net, params, images, batch_size: as `classifier_features`.

  Returns:
    [N, K] float32: a ConvNet's softmax over its classes; for a SceneJudge, the softmax over
    digits of the first slot (the single digit, or the left / upper one) in the windows of
    the layout it reads, i.e. the classifier score of canvases scores their first digits.
  """
  return _forward_batched(net, params, images, batch_size)[1]


def sample_quality(net: judge_lib.ConvNet | judge_lib.SceneJudge, params: Any,
                   real_images: np.ndarray, fake_images: np.ndarray, *,
                   batch_size: int = 500, eps: float = 1e-6) -> dict[str, float]:
  """The Frechet distance and both sets' classifier scores in one pass over each set.

  Args:
    net, params, batch_size: as `classifier_features`.
    real_images: [N, H, W, C], fake_images: [M, H, W, C] float in [0, 1] (N, M >= 2).
    eps: as `frechet_distance`.

  Returns:
    {"frechet_distance", "classifier_score" (of the fakes), "real_classifier_score"}.
  """
  real_features, real_probs = _forward_batched(net, params, real_images, batch_size)
  fake_features, fake_probs = _forward_batched(net, params, fake_images, batch_size)
  return {"frechet_distance": frechet_distance_of(real_features, fake_features, eps=eps),
          "classifier_score": classifier_score(fake_probs),
          "real_classifier_score": classifier_score(real_probs)}


def _classification_loss(net: judge_lib.ConvNet, params: Any,
                         batch: dict[str, jax.Array]) -> jax.Array:
  """The mean softmax cross-entropy of `net` on {"images", "labels"}."""
  logits = net.apply({"params": params}, batch["images"])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]))


def train_digit_classifier(images: np.ndarray, labels: np.ndarray, *, seed: int,
                           cache_dir: str | None = None, num_classes: int = 10,
                           widths: Sequence[int] = (32, 64), hidden: int = 128,
                           num_steps: int = 2000, batch_size: int = 128,
                           learning_rate: float = 1e-3) -> tuple[judge_lib.ConvNet, Any]:
  """The feature network: a `judge.ConvNet` trained once on real images, then cached.

  Adam on the softmax cross-entropy (`judge.fit`), cached by content (`judge.load_or_fit`:
  the configuration, the seed and the training arrays), so every run on the same training
  split reads the same classifier and its numbers compare.

  Args:
    images: [N, H, W, C] float in [0, 1], the real training split.
    labels: [N] int in [0, num_classes).
    seed: initialises the network and draws the minibatches.
    cache_dir: `load_or_fit`'s cache directory; None trains without one.
    num_classes, widths, hidden: the ConvNet.
    num_steps, batch_size, learning_rate: `judge.fit`'s schedule.

  Returns:
    (net, params): the ConvNet and its `params` collection.
  """
  num_classes = check_int("num_classes", num_classes, low=2)
  widths = tuple(check_positive_int("widths", w) for w in widths)
  hidden = check_positive_int("hidden", hidden)
  images = np.asarray(images, np.float32)
  check_rank("images", images, "[N, H, W, C]")
  labels = np.asarray(labels)
  if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be an int array [N] = ({len(images)},), got "
                     f"{labels.dtype} {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, num_classes) = [0, {num_classes}), got values "
                     f"in [{labels.min()}, {labels.max()}].")
  labels = labels.astype(np.int32)
  net = judge_lib.ConvNet(widths, num_classes, hidden)
  template = jax.jit(net.init)(jax.random.PRNGKey(seed),
                               jnp.zeros((1,) + images.shape[1:]))["params"]
  options = {"num_steps": num_steps, "batch_size": batch_size,
             "learning_rate": learning_rate}
  config = {"judge": "ConvNet", "widths": list(widths), "hidden": hidden,
            "num_classes": num_classes, **options}
  arrays = {"images": images, "labels": labels}
  loss = functools.partial(_classification_loss, net)
  params = judge_lib.load_or_fit(
      lambda: judge_lib.fit(loss, template, arrays, seed=seed, **options), template=template,
      cache_dir=cache_dir, config=config, seed=seed, arrays=arrays)
  return net, params


def two_sample_accuracy(real: np.ndarray, fake: np.ndarray, *, seed: int,
                        widths: Sequence[int] = (16, 32), hidden: int = 32,
                        num_steps: int = 300, batch_size: int = 64,
                        learning_rate: float = 1e-3, eval_batch_size: int = 500) -> float:
  """A classifier two-sample test: how well real and generated images can be told apart.

  The automated analogue of LAPGAN's human study (Denton et al. 2015, Sec. 4.3, the
  fraction of samples people took for real), after Lopez-Paz & Oquab (2017): each set is
  shuffled and halved; a `judge.ConvNet` with two classes learns real (1) from generated
  (0) on the first halves (`judge.fit`, Adam) and reports its accuracy on the second
  halves. The test halves are balanced, so 0.5 is chance: the generator's samples cannot
  be told from real ones (by this classifier); 1.0: all can. Deterministic in `seed` (the
  shuffles, the initialisation and the minibatches).

  Args:
    real, fake: [N, H, W, C] float in [0, 1], the same shape, N >= 2.
    seed: an int.
    widths, hidden: the classifier.
    num_steps, batch_size, learning_rate: `judge.fit`'s schedule.
    eval_batch_size: as `classifier_features`' batch_size.

  Returns:
    The held-out accuracy in [0, 1].
  """
  real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
  check_same_shape("[N, H, W, C]", real=real, fake=fake)
  if len(real) < 2:
    raise ValueError(f"real, fake must hold N >= 2 images each, got shape {real.shape}.")
  widths = tuple(check_positive_int("widths", w) for w in widths)
  rng = np.random.default_rng(seed)
  real, fake = real[rng.permutation(len(real))], fake[rng.permutation(len(fake))]
  half = len(real) // 2
  split = lambda r, f: (np.concatenate([r, f]),
                        np.concatenate([np.ones(len(r), np.int32), np.zeros(len(f), np.int32)]))
  train_images, train_labels = split(real[:half], fake[:half])
  test_images, test_labels = split(real[half:], fake[half:])
  net = judge_lib.ConvNet(widths, 2, check_positive_int("hidden", hidden))
  params = jax.jit(net.init)(jax.random.PRNGKey(seed), train_images[:1])["params"]
  params = judge_lib.fit(functools.partial(_classification_loss, net), params,
                         {"images": train_images, "labels": train_labels},
                         num_steps=num_steps, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed)
  probs = classifier_probs(net, params, test_images, batch_size=eval_batch_size)
  return float(np.mean(np.argmax(probs, -1) == test_labels))
