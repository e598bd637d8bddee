"""Tests for vislang_jax.train.image_optimization: the closed-form minimum of a quadratic,
L-BFGS against Adam, clipping, a tiny neural-style problem on a random VGG, one trace."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.models import vgg
from vislang_jax.objectives import style
from vislang_jax.train.image_optimization import optimize_image

_RNG = np.random.default_rng(0)
_Q = np.linalg.qr(_RNG.normal(size=(8, 8)))[0]
_A = (_Q * np.geomspace(0.1, 10.0, 8)) @ _Q.T  # SPD, condition number 100
_B = _RNG.normal(size=8)
_X_STAR = np.linalg.solve(_A, _B)  # the closed-form minimiser
_F_STAR = -0.5 * _B @ _X_STAR  # and minimum


def _quadratic(image):
  """0.5 x^T A x - b^T x of the flattened [2, 2, 2] "image", with x's norm as aux."""
  x = image.reshape(8)
  a, b = jnp.asarray(_A, jnp.float32), jnp.asarray(_B, jnp.float32)
  return 0.5 * x @ a @ x - b @ x, {"norm": jnp.linalg.norm(x)}


def test_lbfgs_reaches_the_minimum_of_a_quadratic_and_beats_adam():
  x0 = jnp.zeros((2, 2, 2))
  image, history = optimize_image(_quadratic, x0, optimizer="lbfgs", num_steps=20)
  assert image.shape == x0.shape and image.dtype == x0.dtype
  assert history["loss"].shape == (20,) and history["aux"]["norm"].shape == (20,)
  np.testing.assert_allclose(image.reshape(8), _X_STAR, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(history["final_loss"], _F_STAR, rtol=1e-5)
  # History: loss[0] and aux[0] at the start, a line search never goes up.
  assert history["loss"][0] == 0 and history["aux"]["norm"][0] == 0
  assert np.all(np.diff(history["loss"]) <= 1e-6)
  np.testing.assert_allclose(history["final_aux"]["norm"], np.linalg.norm(_X_STAR), rtol=1e-3)
  _, adam = optimize_image(_quadratic, x0, optimizer="adam", num_steps=20, learning_rate=0.1)
  assert adam["final_loss"] < adam["loss"][0]
  assert history["final_loss"] < adam["final_loss"] - 0.1 * abs(_F_STAR)


def test_clip_keeps_the_image_in_range():
  # The unconstrained minimiser leaves [-0.5, 0.5]: the clipped result sits on the boundary.
  assert np.abs(_X_STAR).max() > 0.5
  for optimizer, rate in (("lbfgs", None), ("adam", 0.1)):
    image, history = optimize_image(_quadratic, jnp.zeros((2, 2, 2)), optimizer=optimizer,
                                    num_steps=15, learning_rate=rate, clip=(-0.5, 0.5))
    assert np.abs(image).max() == 0.5
    assert history["final_loss"] < history["loss"][0]


def test_loop_is_traced_once_whatever_the_number_of_steps():
  traces = []

  def counted(image):
    traces.append(1)
    return _quadratic(image)

  for optimizer, rate in (("lbfgs", None), ("adam", 0.1)):
    counts, fresh = [], [lambda x: counted(x), lambda x: counted(x)]  # new jit cache keys
    for loss_fn, num_steps in ((fresh[0], 2), (fresh[1], 7), (fresh[1], 7)):
      optimize_image(loss_fn, jnp.zeros((2, 2, 2)), optimizer=optimizer, num_steps=num_steps,
                     learning_rate=rate)
      counts.append(len(traces))
      traces.clear()
    # As many traces for 7 steps as for 2 (the scan body is traced once: the line search's
    # loops add a fixed number), none when the same loss_fn is run again.
    assert counts[0] == counts[1] <= 6 and counts[2] == 0, (optimizer, counts)


def test_both_optimizers_reduce_a_style_loss_on_a_random_vgg():
  model = vgg.VGGFeatures(16, pooling="avg")
  key_c, key_s, key_x = jax.random.split(jax.random.key(1), 3)
  content = jax.random.uniform(key_c, (1, 8, 8, 3))
  params = model.init(jax.random.key(0), content, layers=("conv2_1",))  # the layers used
  # beta makes both terms count for this random network (at the start content ~1.3, beta *
  # style ~3).
  objective = style.StyleObjective.from_images(
      functools.partial(model.apply, params), content_images=content,
      style_images=jax.random.uniform(key_s, (1, 8, 8, 3)), content_layer="conv2_1",
      style_weights={"conv1_1": 0.5, "conv2_1": 0.5}, beta=1e5)

  def loss_fn(image):
    loss, parts = objective(image)
    return loss.sum(), parts

  noise = jax.random.uniform(key_x, (1, 8, 8, 3))
  for optimizer, rate in (("lbfgs", None), ("adam", 0.05)):
    image, history = optimize_image(loss_fn, noise, optimizer=optimizer, num_steps=10,
                                    learning_rate=rate, clip=(0.0, 1.0))
    assert history["loss"].shape == (10,) and history["aux"]["style"].shape == (10, 1)
    assert history["final_loss"] < 0.5 * history["loss"][0], optimizer
    for part in ("content", "style"):
      assert history["final_aux"][part][0] < history["aux"][part][0, 0], (optimizer, part)
    assert 0 <= image.min() and image.max() <= 1
    np.testing.assert_allclose(history["final_loss"], loss_fn(image)[0], rtol=1e-5)


def test_bad_arguments_raise_value_errors_naming_them():
  x0 = jnp.zeros((2, 2, 2))
  cases = [
      (dict(optimizer="sgd"), r"optimizer must be one of \('lbfgs', 'adam'\), got 'sgd'"),
      (dict(optimizer="adam"), r"learning_rate must be a positive float for optimizer='adam'"),
      (dict(num_steps=0), r"num_steps must be a positive int, got 0"),
      (dict(clip=(1.0,)), r"clip must be None or a pair \(low, high\), got \(1.0,\)"),
      (dict(clip=(1.0, 0.0)), r"clip\[1\] must be a finite float >= 1.0, got 0.0"),
      (dict(learning_rate=-1.0), r"learning_rate must be a finite float >= 0.0, got -1.0"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError, match=message):
      optimize_image(_quadratic, x0, **{"num_steps": 3, **kwargs})
  with pytest.raises(ValueError, match=r"loss_fn's loss must be a scalar \(sum a per-example "
                                       r"loss\), got shape \(2,\)"):
    optimize_image(lambda x: (x.reshape(2, 4).sum(1), None), x0, num_steps=3)
  with pytest.raises(ValueError, match=r"loss_fn must return a pair \(scalar loss, aux\), got "
                                       r"ShapeDtypeStruct"):
    optimize_image(lambda x: x.sum(), x0, num_steps=3)
  with pytest.raises(ValueError, match=r"init_image must be a float array, got dtype int32"):
    optimize_image(_quadratic, jnp.zeros((2, 2, 2), jnp.int32), num_steps=3)
