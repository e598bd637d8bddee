"""Tests for vislang_jax.models.stn (Spatial Transformer Networks, Jaderberg et al. 2015)."""

import functools

import chex
import flax
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vislang_jax.models import stn
from vislang_jax.ops import sampling

B, H, W = 4, 16, 16
TRANSFORMS = ("affine", "projective", "tps")
# The "rbg" PRNG compiles far faster on CPU than threefry; initial values are irrelevant here.
KEY = jax.random.key(0, impl="rbg")


def _init(model, x):
  return model.init(KEY, x)["params"]


@functools.lru_cache(maxsize=None)
def _classifier(name, transform):
  """The model and its initial params, built once per configuration for all tests."""
  model = stn.make_classifier(name, transform=transform)
  return model, _init(model, _images())


def _images(c=1, h=H, w=W, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(B, h, w, c)), jnp.float32)


def _set_bias(params, path, bias):
  """Returns params with the regressor bias at `path` replaced by `bias`."""
  params = flax.core.unfreeze(params)
  node = params
  for key in path:
    node = node[key]
  node["regressor"]["bias"] = jnp.asarray(bias, jnp.float32)
  return params


def _perturbed(transform, tps_grid_size=4):
  """A non-identity parameter vector: a zoom and shift, a tilt, a TPS warp."""
  if transform == "affine":
    return np.array([0.5, 0.1, 0.2, -0.1, 0.6, -0.3])
  if transform == "projective":
    return np.array([0.7, 0.1, 0.1, 0.0, 0.8, -0.2, 0.3, -0.2])
  rng = np.random.default_rng(0)
  return 0.15 * rng.standard_normal(2 * tps_grid_size ** 2)


def _pixel_centres(n):
  return (2.0 * np.arange(n) + 1.0) / n - 1.0


# --- identity at initialisation; the classifier is fed the transformed image -------------


def _head(name):
  return stn.FCN(num_classes=10) if name == "st_fcn" else stn.CNN(num_classes=10)


def _grid(transform, params, out_hw):
  """The ops' grid for flat parameters [B, P], built without `stn.params_to_grid`."""
  if transform == "affine":
    return sampling.affine_grid(params.reshape(-1, 2, 3), out_hw)
  if transform == "projective":
    h = jnp.concatenate([params, jnp.ones((params.shape[0], 1))], -1)
    return sampling.projective_grid(h.reshape(-1, 3, 3), out_hw)
  return sampling.tps_grid(params.reshape(params.shape[0], -1, 2), out_hw,
                           control_points=sampling.tps_control_points(4))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", ("st_fcn", "st_cnn"))
def test_identity_at_init(name, transform):
  x = _images()
  model, params = _classifier(name, transform)
  regressor = params["transformer"]["localisation"]["regressor"]
  np.testing.assert_array_equal(regressor["kernel"], 0.0)
  np.testing.assert_array_equal(regressor["bias"], stn.identity_transform_params(transform))

  # The spatial transformer alone returns its input exactly.
  localisation = "fc" if name == "st_fcn" else "conv"
  transformer = stn.SpatialTransformer(transform=transform, localisation=localisation)
  y, aux = transformer.apply({"params": params["transformer"]}, x)
  np.testing.assert_allclose(y, x, atol=1e-5)
  # Its grid is the pixel centres (2i + 1) / n - 1 (align_corners=False).
  gy, gx = np.meshgrid(_pixel_centres(H), _pixel_centres(W), indexing="ij")
  np.testing.assert_allclose(aux["grid"], np.broadcast_to(np.stack([gx, gy], -1), (B, H, W, 2)),
                             atol=1e-6)

  # The classifier's logits are those of its head on the input image.
  logits, aux = model.apply({"params": params}, x)
  head_logits, _ = _head(name).apply({"params": params["head"]}, x)
  assert logits.shape == (B, 10)
  np.testing.assert_allclose(logits, head_logits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(aux["transformed"], x, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", ("st_fcn", "st_cnn"))
def test_classifier_is_fed_the_transformed_image(name, transform):
  x = _images()
  model, params = _classifier(name, transform)
  bias = _perturbed(transform)
  params = _set_bias(params, ("transformer", "localisation"), bias)
  logits, aux = model.apply({"params": params}, x)

  # Independent path: the ops applied to the perturbed parameters, then the head.
  flat = jnp.broadcast_to(jnp.asarray(bias, jnp.float32), (B, bias.size))
  warped = sampling.bilinear_sample(x, _grid(transform, flat, (H, W)))
  head = _head(name)
  expected, _ = head.apply({"params": params["head"]}, warped)
  np.testing.assert_allclose(aux["transformed"], warped, atol=1e-5)
  np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
  # ...and not the untransformed image.
  unwarped, _ = head.apply({"params": params["head"]}, x)
  assert np.abs(np.asarray(logits) - np.asarray(unwarped)).max() > 1e-3


def test_identity_params_and_counts():
  assert stn.num_transform_params("affine") == 6
  assert stn.num_transform_params("projective") == 8
  assert stn.num_transform_params("tps") == 32  # Sec. 4.1: 16-point TPS.
  assert stn.num_transform_params("tps", tps_grid_size=3) == 18
  for transform, expected in (("affine", np.eye(2, 3)), ("projective", np.eye(3)),
                              ("tps", np.zeros((16, 2)))):
    identity = jnp.tile(jnp.asarray(stn.identity_transform_params(transform)), (B, 1))
    theta, _ = stn.params_to_grid(identity, transform, (H, W))
    np.testing.assert_array_equal(theta, np.broadcast_to(expected, (B, *expected.shape)))


def test_downsampling_identity_is_two_by_two_mean():
  # Output pixel centre i of 8 maps to input pixel coordinate 2i + 0.5 of 16: bilinear
  # sampling there averages each 2x2 block.
  x = _images()
  model = stn.SpatialTransformer(transform="affine", localisation="fc", out_hw=(8, 8))
  y, aux = model.apply({"params": _init(model, x)}, x)
  assert y.shape == (B, 8, 8, 1)
  assert aux["grid"].shape == (B, 8, 8, 2)
  expected = np.asarray(x).reshape(B, 8, 2, 8, 2, 1).mean(axis=(2, 4))
  np.testing.assert_allclose(y, expected, atol=1e-5)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(h=st.integers(5, 40), w=st.integers(5, 40), c=st.integers(1, 3),
                  ho=st.integers(1, 40), wo=st.integers(1, 40),
                  transform=st.sampled_from(TRANSFORMS),
                  localisation=st.sampled_from(("fc", "conv")))
def test_output_shapes(h, w, c, ho, wo, transform, localisation):
  x = jax.ShapeDtypeStruct((2, h, w, c), jnp.float32)
  model = stn.SpatialTransformer(transform=transform, localisation=localisation,
                                 out_hw=(ho, wo))
  variables = jax.eval_shape(model.init, KEY, x)
  y, aux = jax.eval_shape(model.apply, variables, x)
  assert y.shape == (2, ho, wo, c)
  assert aux["grid"].shape == (2, ho, wo, 2)
  assert aux["theta"].shape == {"affine": (2, 2, 3), "projective": (2, 3, 3),
                                "tps": (2, 16, 2)}[transform]


def test_plain_classifiers_have_empty_aux():
  x = _images()
  for name, cls in (("fcn", stn.FCN), ("cnn", stn.CNN)):
    model = stn.make_classifier(name, num_classes=7)
    assert isinstance(model, cls)
    logits, aux = jax.eval_shape(model.apply, jax.eval_shape(model.init, KEY, x), x)
    assert logits.shape == (B, 7)
    assert aux == {}


def test_paper_layer_sizes():
  x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
  shapes = lambda m: jax.tree.map(jnp.shape, jax.eval_shape(m.init, KEY, x)["params"])
  cnn = shapes(stn.CNN())
  assert cnn["conv_0"]["kernel"] == (9, 9, 1, 32)
  assert cnn["conv_1"]["kernel"] == (7, 7, 32, 32)
  fcn = shapes(stn.FCN())
  assert fcn["dense_0"]["kernel"] == (28 * 28, 128)
  assert fcn["dense_1"]["kernel"] == (128, 128)
  assert fcn["logits"]["kernel"] == (128, 10)
  loc = shapes(stn.make_classifier("st_cnn"))["transformer"]["localisation"]
  assert loc["conv_0"]["kernel"] == (5, 5, 1, 20)
  assert loc["conv_1"]["kernel"] == (5, 5, 20, 20)
  assert loc["dense"]["kernel"] == (7 * 7 * 20, 20)
  assert loc["regressor"]["kernel"] == (20, 6)
  loc = shapes(stn.make_classifier("st_fcn", transform="tps"))["transformer"]["localisation"]
  assert loc["dense_0"]["kernel"] == (28 * 28, 32)
  assert loc["dense_1"]["kernel"] == (32, 32)
  assert loc["regressor"]["kernel"] == (32, 32)


# --- align_corners: the Torch reference's convention ------------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("align_corners", (False, True))
def test_identity_returns_the_input_in_both_conventions(transform, align_corners):
  x = _images()
  model = stn.SpatialTransformer(transform=transform, localisation="fc",
                                 align_corners=align_corners)
  y, aux = model.apply({"params": _init(model, x)}, x)
  np.testing.assert_allclose(y, x, atol=1e-5)
  # The identity grid: stnbhwd's -1 + (i-1)/(n-1)*2 (corner centres) or the edge
  # convention's (2i + 1)/n - 1.
  centres = (lambda n: np.linspace(-1.0, 1.0, n)) if align_corners else _pixel_centres
  gy, gx = np.meshgrid(centres(H), centres(W), indexing="ij")
  np.testing.assert_allclose(aux["grid"][0], np.stack([gx, gy], -1), atol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_align_corners_reaches_grid_and_sampler(transform):
  x = _images()
  bias = _perturbed(transform)
  flat = jnp.broadcast_to(jnp.asarray(bias, jnp.float32), (B, bias.size))
  outputs = {}
  for align_corners in (False, True):
    model = stn.SpatialTransformer(transform=transform, localisation="fc", out_hw=(12, 10),
                                   align_corners=align_corners)
    params = _set_bias(_init(model, x), ("localisation",), bias)
    y, aux = model.apply({"params": params}, x)
    # The ops with the same convention, called directly.
    if transform == "affine":
      grid = sampling.affine_grid(flat.reshape(B, 2, 3), (12, 10), align_corners=align_corners)
    elif transform == "projective":
      h = jnp.concatenate([flat, jnp.ones((B, 1))], -1).reshape(B, 3, 3)
      grid = sampling.projective_grid(h, (12, 10), align_corners=align_corners)
    else:
      grid = sampling.tps_grid(flat.reshape(B, 16, 2), (12, 10), align_corners=align_corners)
    np.testing.assert_allclose(aux["grid"], grid, atol=1e-6)
    np.testing.assert_allclose(
        y, sampling.bilinear_sample(x, grid, align_corners=align_corners), atol=1e-5)
    outputs[align_corners] = np.asarray(y)
  # The conventions are different warps for the same theta.
  assert np.abs(outputs[True] - outputs[False]).max() > 1e-2


def test_make_classifier_passes_align_corners_to_every_transformer():
  model = stn.make_classifier("st_cnn", num_transformers=2, align_corners=True)
  assert all(t.align_corners for t in model.transformer.transformers)
  assert not stn.make_classifier("st_fcn").transformer.align_corners
  with pytest.raises(ValueError, match="align_corners must be a bool, got 'yes'"):
    jax.eval_shape(stn.SpatialTransformer(align_corners="yes").init, KEY, _images())


# --- several transformers ---------------------------------------------------------------


def test_parallel_transformers_concatenate_channels():
  x = _images(c=2)
  model = stn.ParallelTransformers((
      stn.SpatialTransformer(transform="affine", out_hw=(8, 8)),
      stn.SpatialTransformer(transform="tps", localisation="fc", out_hw=(8, 8))))
  params = _init(model, x)
  assert set(params) == {"transformers_0", "transformers_1"}  # own localisation nets
  params = _set_bias(params, ("transformers_0", "localisation"), _perturbed("affine"))
  y, aux = model.apply({"params": params}, x)
  assert y.shape == (B, 8, 8, 4)
  assert aux["branches"][0]["theta"].shape == (B, 2, 3)
  assert aux["branches"][1]["theta"].shape == (B, 16, 2)
  grid = sampling.affine_grid(
      jnp.broadcast_to(jnp.asarray(_perturbed("affine"), jnp.float32).reshape(2, 3),
                       (B, 2, 3)), (8, 8))
  np.testing.assert_allclose(y[..., :2], sampling.bilinear_sample(x, grid), atol=1e-5)
  mean_pool = np.asarray(x).reshape(B, 8, 2, 8, 2, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(y[..., 2:], mean_pool, atol=1e-5)


def test_parallel_transformers_need_one_output_size():
  model = stn.ParallelTransformers((stn.SpatialTransformer(out_hw=(8, 8)),
                                    stn.SpatialTransformer(out_hw=(6, 6))))
  with pytest.raises(ValueError, match="output size"):
    jax.eval_shape(model.init, KEY, _images())


def test_serial_transformers_compose():
  x = _images()
  first = stn.SpatialTransformer(transform="affine")
  second = stn.SpatialTransformer(transform="projective", localisation="fc", out_hw=(8, 8))
  model = stn.SerialTransformers((first, second))
  params = _init(model, x)
  params = _set_bias(params, ("transformers_0", "localisation"), _perturbed("affine"))
  params = _set_bias(params, ("transformers_1", "localisation"), _perturbed("projective"))
  y, aux = model.apply({"params": params}, x)
  assert y.shape == (B, 8, 8, 1)
  assert len(aux["stages"]) == 2
  # The second transformer (its localisation net included) sees the first one's output.
  mid, _ = first.apply({"params": params["transformers_0"]}, x)
  expected, _ = second.apply({"params": params["transformers_1"]}, mid)
  np.testing.assert_allclose(y, expected, atol=1e-6)


@pytest.mark.parametrize("arrangement,channels", (("parallel", 2), ("serial", 1)))
def test_make_classifier_with_two_transformers(arrangement, channels):
  x = _images()
  model = stn.make_classifier("st_cnn", num_transformers=2, arrangement=arrangement,
                              out_hw=(8, 8))
  variables = jax.eval_shape(model.init, KEY, x)
  assert len(variables["params"]["transformer"]) == 2
  logits, aux = jax.eval_shape(model.apply, variables, x)
  assert logits.shape == (B, 10)
  assert aux["transformed"].shape == (B, 8, 8, channels)


# --- gradients, jit -------------------------------------------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_gradients_reach_the_localisation_net(transform):
  # At init the regressor kernel is zero, so a non-zero gradient for it shows the loss
  # reaches the localisation net through head, sampler and grid generator. (The ST-CNN
  # gets the same check from its training run below.)
  x = _images()
  labels = jnp.arange(B) % 10
  model, params = _classifier("st_fcn", transform)

  def loss_fn(p):
    logits, _ = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  grads = jax.jit(jax.grad(loss_fn))(params)["transformer"]["localisation"]
  assert np.abs(grads["regressor"]["kernel"]).max() > 1e-6
  assert np.abs(grads["regressor"]["bias"]).max() > 1e-6
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_jit_matches_eager_and_traces_once():
  x = _images()
  model, params = _classifier("st_cnn", "tps")
  variables = {"params": params}

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(v, images):
    return model.apply(v, images)

  eager, _ = model.apply(variables, x)
  jitted, aux = forward(variables, x)
  forward(variables, x + 1.0)
  np.testing.assert_allclose(jitted, eager, atol=1e-5, rtol=1e-5)
  assert aux["transformed"].shape == (B, H, W, 1)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("build,match", (
    (lambda: stn.make_classifier("resnet"), r"name must be one of .*'resnet'"),
    (lambda: stn.make_classifier("st_cnn", transform="similarity"),
     r"transform must be one of .*'similarity'"),
    (lambda: stn.make_classifier("st_cnn", localisation="rnn"),
     r"localisation must be one of .*'rnn'"),
    (lambda: stn.make_classifier("st_cnn", arrangement="diagonal"),
     r"arrangement must be one of .*'diagonal'"),
    (lambda: stn.make_classifier("st_cnn", num_transformers=0), r"num_transformers.*0"),
    (lambda: stn.make_classifier("cnn", num_classes=0), r"num_classes.*0"),
    (lambda: stn.SpatialTransformer(out_hw=(0, 4)), r"out_hw must be .*\(0, 4\)"),
    (lambda: stn.SpatialTransformer(out_hw=(4,)), r"out_hw must be .*\(4,\)"),
    (lambda: stn.SpatialTransformer(out_hw=(4.0, 4)), r"out_hw must be .*4\.0"),
    (lambda: stn.SpatialTransformer(transform="tps", tps_grid_size=1),
     r"tps_grid_size must be .*>= 2.*1"),
    (lambda: stn.num_transform_params("shear"), r"transform must be one of"),
    (lambda: stn.LocalisationNet((1.0,), kind="rnn"), r"localisation must be one of"),
    (lambda: stn.ParallelTransformers(()), r"transformers must hold"),
    (lambda: stn.SerialTransformers(()), r"transformers must hold"),
    (lambda: stn.params_to_grid(jnp.zeros((2, 5)), "affine", (4, 4)),
     r"params must be \[B, 6\].*\(2, 5\)"),
))
def test_bad_arguments_raise(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize("name", stn.CLASSIFIERS)
def test_non_4d_images_raise(name):
  model = stn.make_classifier(name)
  with pytest.raises(ValueError,
                     match=r"images must have shape \[B, H, W, C\], got \(4, 16, 16\)"):
    model.init(KEY, jnp.zeros((4, 16, 16)))


# --- a short training run -------------------------------------------------------------


def _quadrant_squares(n=32, size=16, side=4, seed=0):
  """A bright side x side square anywhere in one quadrant; the label is the quadrant."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, n)
  images = np.zeros((n, size, size, 1), np.float32)
  half = size // 2
  for i, label in enumerate(labels):
    top = (label // 2) * half + rng.integers(0, half - side + 1)
    left = (label % 2) * half + rng.integers(0, half - side + 1)
    images[i, top:top + side, left:left + side] = 1.0
  return jnp.asarray(images), jnp.asarray(labels)


def test_st_cnn_training_reduces_loss():
  images, labels = _quadrant_squares()
  model = stn.make_classifier("st_cnn", num_classes=4, out_hw=(8, 8))
  params = _init(model, images[:B])
  optimizer = optax.sgd(0.1)  # Sec. 4.1 trains with SGD; it also compiles faster than Adam.

  def loss_fn(p):
    logits, _ = model.apply({"params": p}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = optimizer.init(params)
  losses = []
  for _ in range(20):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.5 * losses[0], losses
  # The localisation net trained too: its regressor kernel left zero.
  regressor = params["transformer"]["localisation"]["regressor"]
  assert np.abs(regressor["kernel"]).max() > 1e-4
