"""`metrics.generation`: Frechet distance against closed forms, classifier score by hand, the
two-sample test on known cases, GAM on hand-set logits, the cached classifier, batching."""

import chex
import jax
import numpy as np
import pytest

from vislang_jax.metrics import generation
from vislang_jax.metrics import judge as judge_lib


def _random_covariance(rng, dim):
  a = rng.normal(size=(dim, dim))
  return a @ a.T + 0.1 * np.eye(dim)


def _reference_distance(mu1, sigma1, mu2, sigma2):
  """Tr((S1 S2)^(1/2)) as the sum of sqrt eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric)."""
  values, vectors = np.linalg.eigh(sigma1)
  root1 = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
  cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)))
  return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * cross


def test_identical_sets_are_at_distance_zero_and_a_shift_costs_its_square():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
  assert abs(generation.frechet_distance_of(features, features)) < 1e-6
  # Fewer images than features: a singular covariance.
  few = features[:5]
  assert abs(generation.frechet_distance_of(few, few)) < 1e-6
  # A dead unit (a ReLU feature always 0): SciPy finds the product singular, and the
  # regularised retry still gives 0 (TTUR's eps inside the root only would give -2 eps F).
  dead = features.copy()
  dead[:, 3] = 0.0
  assert abs(generation.frechet_distance_of(dead, dead)) < 1e-9
  # The same covariance: only the means' squared distance remains.
  shift = rng.normal(size=8)
  np.testing.assert_allclose(generation.frechet_distance_of(features, features + shift),
                             np.sum(shift ** 2), rtol=1e-6)
  mu, sigma = generation.feature_statistics(features)
  np.testing.assert_allclose(mu, features.mean(0), rtol=1e-12)
  centred = features - features.mean(0)
  np.testing.assert_allclose(sigma, centred.T @ centred / (len(features) - 1), rtol=1e-10)
  assert mu.dtype == sigma.dtype == np.float64


def test_commuting_covariances_give_the_closed_form():
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
  s1, s2 = rng.uniform(0.2, 3.0, 4), rng.uniform(0.2, 3.0, 4)
  closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  np.testing.assert_allclose(generation.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)),
                             closed, rtol=1e-9)
  # Rotated together (same eigenvectors, still commuting): the same distance.
  q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  np.testing.assert_allclose(
      generation.frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2,
                                  q @ np.diag(s2) @ q.T), closed, rtol=1e-9)


def test_general_covariances_symmetric_and_non_negative():
  rng = np.random.default_rng(2)
  for dim in (1, 3, 6):
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = _random_covariance(rng, dim), _random_covariance(rng, dim)
    forward = generation.frechet_distance(mu1, sigma1, mu2, sigma2)
    np.testing.assert_allclose(forward, _reference_distance(mu1, sigma1, mu2, sigma2),
                               rtol=1e-8)
    assert forward == pytest.approx(generation.frechet_distance(mu2, sigma2, mu1, sigma1),
                                    rel=1e-9)
    assert forward > 0
    # Same means: only the covariances differ, and the distance stays >= 0.
    assert generation.frechet_distance(mu1, sigma1, mu1, sigma2) >= -1e-9


def test_large_samples_of_a_shifted_gaussian_approach_the_closed_form():
  rng = np.random.default_rng(3)
  std1, std2 = np.array([1.0, 0.5, 2.0]), np.array([1.5, 0.5, 1.0])
  shift = np.array([1.0, -2.0, 0.5])
  closed = np.sum(shift ** 2) + np.sum((std1 - std2) ** 2)  # sqrt of a variance: the std
  real = rng.normal(size=(20000, 3)) * std1
  fake = rng.normal(size=(20000, 3)) * std2 + shift
  assert generation.frechet_distance_of(real, fake) == pytest.approx(closed, rel=0.02)
  small = generation.frechet_distance_of(real[:20], fake[:20])
  assert abs(small - closed) > 0.05 * closed  # 20 samples are not enough: the test can fail


def test_classifier_score_by_hand():
  k = 4
  assert generation.classifier_score(np.eye(k)) == pytest.approx(k)  # one-hot, even classes
  assert generation.classifier_score(np.tile(np.eye(k), (3, 1))) == pytest.approx(k)
  assert generation.classifier_score(np.full((5, k), 1 / k)) == pytest.approx(1.0)
  assert generation.classifier_score(np.tile([[0.7, 0.2, 0.1, 0.0]], (6, 1))) == (
      pytest.approx(1.0))
  # p(y) = (3/4, 1/4): KL rows log(4/3) and (1/2) log(2/3) + (1/2) log 2 = (1/2) log(4/3).
  probs = np.array([[1.0, 0.0], [0.5, 0.5]])
  assert generation.classifier_score(probs) == pytest.approx((4 / 3) ** 0.75, rel=1e-12)
  # Two splits: each part scored against its own p(y), then averaged: (2 + 1) / 2.
  halves = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7], [0.3, 0.7]])
  assert generation.classifier_score(halves, splits=2) == pytest.approx(1.5)
  assert generation.classifier_score(halves) != pytest.approx(1.5)


def test_gam_on_two_toy_models():
  # Real test images: D1 calls 1 of 4 fake, D2 calls 1 of 4 fake (a logit of 0 is "fake").
  d1_test = np.array([2.0, 1.0, -1.0, 3.0])
  d2_test = np.array([1.0, 0.0, 0.5, 2.0])
  # Samples: D1 takes 1 of G2's 5 for real (0 is not > 0), D2 takes 3 of G1's 5.
  d1_on_g2 = np.array([-1.0, 2.0, -3.0, -1.0, 0.0])
  d2_on_g1 = np.array([1.0, 1.0, -1.0, 0.5, -2.0])
  result = generation.gam(d1_test, d2_test, d1_on_g2, d2_on_g1)
  assert result["r_test"] == pytest.approx(1.0)
  assert result["r_sample"] == pytest.approx((1 / 5) / (3 / 5))
  assert result["winner"] == 1  # G1 fooled D2 more often than G2 fooled D1
  assert (result["d1_test_error"], result["d2_test_error"]) == (0.25, 0.25)
  assert (result["d1_on_g2_error"], result["d2_on_g1_error"]) == (0.2, 0.6)
  # The same battle seen from the other side.
  swapped = generation.gam(d2_test, d1_test, d2_on_g1, d1_on_g2)
  assert swapped["r_sample"] == pytest.approx(3.0) and swapped["winner"] == 2
  # D2 now errs on half the real test images: r_test = 1/2, no winner unless tolerated.
  worse = np.array([1.0, -1.0, -0.5, 2.0])
  tie = generation.gam(d1_test, worse, d1_on_g2, d2_on_g1)
  assert tie["r_test"] == pytest.approx(0.5) and tie["winner"] == 0
  assert generation.gam(d1_test, worse, d1_on_g2, d2_on_g1, tolerance=0.5)["winner"] == 1
  # Zero denominators: 0 / 0 = 1, x / 0 = inf.
  perfect = np.array([1.0, 2.0, 3.0, 4.0])
  never_fooled = -np.ones(5)
  edge = generation.gam(perfect, perfect, d1_on_g2, never_fooled)
  assert edge["r_test"] == 1.0 and edge["r_sample"] == np.inf and edge["winner"] == 2
  equal = generation.gam(perfect, perfect, never_fooled, never_fooled)
  assert equal["r_sample"] == 1.0 and equal["winner"] == 0


def test_two_sample_accuracy_chance_for_one_distribution_and_one_for_separable_sets():
  rng = np.random.default_rng(4)
  options = {"widths": (4,), "hidden": 8, "num_steps": 40, "batch_size": 32,
             "learning_rate": 1e-2}
  real = rng.uniform(size=(100, 6, 6, 1)).astype(np.float32)
  fake = rng.uniform(size=(100, 6, 6, 1)).astype(np.float32)
  same = generation.two_sample_accuracy(real, fake, seed=0, **options)
  assert abs(same - 0.5) < 0.12
  assert generation.two_sample_accuracy(real, fake, seed=0, **options) == same  # seeded
  zeros, ones = np.zeros((40, 6, 6, 1), np.float32), np.ones((40, 6, 6, 1), np.float32)
  assert generation.two_sample_accuracy(ones, zeros, seed=1, **options) == 1.0


def test_the_digit_classifier_is_trained_once_then_read_from_the_cache(tmp_path, monkeypatch):
  calls = []
  real_fit = judge_lib.fit

  def counting_fit(*args, **kwargs):
    calls.append(kwargs["seed"])
    return real_fit(*args, **kwargs)

  monkeypatch.setattr(judge_lib, "fit", counting_fit)
  rng = np.random.default_rng(5)
  images = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 3, 16)
  train = lambda seed: generation.train_digit_classifier(
      images, labels, seed=seed, cache_dir=str(tmp_path), num_classes=3, widths=(4,),
      hidden=8, num_steps=2, batch_size=4)
  net, trained = train(0)
  assert calls == [0]
  assert isinstance(net, judge_lib.ConvNet) and net.num_classes == 3 and net.hidden == 8
  again_net, read = train(0)
  assert calls == [0]  # read back, not retrained
  assert again_net == net
  chex.assert_trees_all_equal(read, trained)
  train(1)
  assert calls == [0, 1]  # another seed, another classifier


def test_features_and_probs_do_not_depend_on_the_batch_size():
  net = judge_lib.ConvNet((4,), 3, hidden=8)
  images = np.random.default_rng(6).uniform(size=(7, 8, 8, 1)).astype(np.float32)
  params = jax.jit(net.init)(jax.random.PRNGKey(0), images[:1])["params"]
  features = generation.classifier_features(net, params, images, batch_size=7)
  assert features.shape == (7, 8)
  np.testing.assert_allclose(
      features, net.apply({"params": params}, images, method=judge_lib.ConvNet.features),
      rtol=1e-5, atol=1e-6)
  for batch_size in (3, 100):  # a padded last batch; one batch smaller than batch_size
    np.testing.assert_allclose(
        generation.classifier_features(net, params, images, batch_size=batch_size), features,
        rtol=1e-5, atol=1e-6)
  probs = generation.classifier_probs(net, params, images, batch_size=3)
  np.testing.assert_allclose(probs, jax.nn.softmax(net.apply({"params": params}, images)),
                             rtol=1e-5, atol=1e-6)


def test_scene_judge_features_and_first_digit_probs():
  windows = (((0, 0),), ((12, 0), (12, 12)))
  judge = judge_lib.SceneJudge(windows=windows, window_size=12, num_classes=3, widths=(4,))
  images = np.random.default_rng(7).uniform(size=(5, 24, 24, 1)).astype(np.float32)
  params = jax.jit(judge.init)(jax.random.PRNGKey(0), images[:1],
                               np.zeros(1, np.int32))["params"]
  apply = jax.jit(judge.apply, static_argnames="method")
  features = generation.classifier_features(judge, params, images, batch_size=2)
  np.testing.assert_allclose(
      features, apply({"params": params}, images, method=judge_lib.SceneJudge.features),
      rtol=1e-5, atol=1e-6)
  assert features.shape == (5, 2 * 128)
  layouts = np.argmax(apply({"params": params}, images,
                            method=judge_lib.SceneJudge.layout_logits), -1)
  first = apply({"params": params}, images, layouts,
                method=judge_lib.SceneJudge.object_logits)[:, 0]
  np.testing.assert_allclose(generation.classifier_probs(judge, params, images, batch_size=2),
                             jax.nn.softmax(first), rtol=1e-5, atol=1e-6)
  scores = generation.sample_quality(judge, params, images, images[::-1], batch_size=2)
  assert abs(scores["frechet_distance"]) < 1e-4  # the same images in another order
  assert scores["classifier_score"] == pytest.approx(scores["real_classifier_score"])


def test_bad_arguments_are_named():
  features = np.zeros((4, 3))
  with pytest.raises(ValueError, match=r"features must have shape \[N, F\], got \(3,\)"):
    generation.feature_statistics(np.zeros(3))
  with pytest.raises(ValueError, match=r"features must hold N >= 2 rows"):
    generation.feature_statistics(np.zeros((1, 3)))
  with pytest.raises(ValueError, match=r"features must be finite"):
    generation.feature_statistics(np.full((2, 3), np.nan))
  with pytest.raises(ValueError, match=r"mu1, mu2 must share one shape \[F\]"):
    generation.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match=r"sigma2 must have shape \[F, F\] = \(3, 3\).*\(2, 2\)"):
    generation.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
  with pytest.raises(ValueError, match=r"must have a real square root"):
    generation.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match=r"real_features and fake_features must have the same F"):
    generation.frechet_distance_of(features, np.zeros((4, 2)))
  with pytest.raises(ValueError, match=r"probs must hold distributions"):
    generation.classifier_score(np.full((2, 3), 0.5))
  with pytest.raises(ValueError, match=r"splits must be an int in \[1, 2\], got 3"):
    generation.classifier_score(np.eye(2), splits=3)
  with pytest.raises(ValueError, match=r"d1_test_logits, d2_test_logits must share one shape"):
    generation.gam(np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(2))
  with pytest.raises(ValueError, match=r"d2_on_g1_logits must hold one or more finite"):
    generation.gam(np.zeros(3), np.zeros(3), np.zeros(2), np.array([np.inf]))
  with pytest.raises(ValueError, match=r"tolerance must be a finite float >= 0.0"):
    generation.gam(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(2), tolerance=-1.0)
  with pytest.raises(ValueError, match=r"real, fake must share one shape \[N, H, W, C\]"):
    generation.two_sample_accuracy(np.zeros((4, 6, 6, 1)), np.zeros((3, 6, 6, 1)), seed=0)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes\) = \[0, 3\)"):
    generation.train_digit_classifier(np.zeros((2, 8, 8, 1)), np.array([0, 3]), seed=0,
                                      num_classes=3)
  with pytest.raises(ValueError, match=r"labels must be an int array \[N\] = \(2,\)"):
    generation.train_digit_classifier(np.zeros((2, 8, 8, 1)), np.zeros(2), seed=0)
  net = judge_lib.ConvNet((4,), 3)
  with pytest.raises(ValueError, match=r"images must have shape \[N, H, W, C\], got \(8, 8\)"):
    generation.classifier_features(net, {}, np.zeros((8, 8)))
  with pytest.raises(ValueError, match=r"net must be a judge.ConvNet or a judge.SceneJudge"):
    generation.classifier_probs(object(), {}, np.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
    generation.classifier_features(net, {}, np.zeros((1, 8, 8, 1)), batch_size=0)
