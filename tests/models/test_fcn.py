"""Tests for vislang_jax.models.fcn: transposed convolutions against their strided
convolutions (adjoint identity) and torch (output size rule), bilinear initialisation against
bilinear resizing, the FCN skip architecture against a lax reference written from the paper's
Fig. 3, and the deconvolution network's shapes, gradients and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vislang_jax.models import fcn
from vislang_jax.ops.unpooling import bilinear_kernel, bilinear_upsample

DN = ("NHWC", "HWIO", "NHWC")
WIDTHS = (3, 4, 4, 5, 6)


def _random_like(tree, seed, scale=0.3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.normal(size=x.shape), jnp.float32), tree)


def _pixel_loss(logits, labels):
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1))


@pytest.mark.parametrize("in_features, features, factor", [(3, 3, 2), (2, 5, 2), (3, 3, 4)])
def test_transposed_conv_is_the_adjoint_of_its_strided_conv(in_features, features, factor):
  # <A y, x> = <y, A^T x>: A the stride-f "SAME" convolution with the layer's kernel
  # [k, k, features, in_features] (HWIO of A), A^T the transposed convolution.
  k = 2 * factor - factor % 2
  layer = nn.ConvTranspose(features, (k, k), strides=(factor, factor), padding="SAME",
                          transpose_kernel=True, use_bias=False)
  kx, ky, kk = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, 3, 5, in_features))
  y = jax.random.normal(ky, (2, 3 * factor, 5 * factor, features))
  kernel = jax.random.normal(kk, (k, k, features, in_features))
  transposed = layer.apply({"params": {"kernel": kernel}}, x)
  assert transposed.shape == y.shape
  strided = jax.lax.conv_general_dilated(y, kernel, (factor, factor), "SAME",
                                         dimension_numbers=DN)
  np.testing.assert_allclose(jnp.vdot(strided, x), jnp.vdot(y, transposed), rtol=1e-5)


def test_fixed_bilinear_upsample_is_the_adjoint_of_its_strided_conv():
  x = jax.random.normal(jax.random.key(1), (1, 4, 3, 2))
  y = jax.random.normal(jax.random.key(2), (1, 32, 24, 2))
  kernel = jnp.asarray(bilinear_kernel(16, 2))
  strided = jax.lax.conv_general_dilated(y, kernel, (8, 8), "SAME", dimension_numbers=DN)
  np.testing.assert_allclose(jnp.vdot(strided, x), jnp.vdot(y, bilinear_upsample(x, factor=8)),
                             rtol=1e-5)


def test_output_size_rule_matches_torch():
  # The lecture's example: a 2 x 2 input, 3 x 3 kernel, stride 2, pad 1 -> 4 x 4. torch's
  # rule out = (n - 1) s - 2 p + k + output_padding needs output_padding=1 to reach 4.
  # In lax's terms torch's transposed convolution pads the stride-dilated input by
  # (k - 1 - p, k - 1 - p + output_padding) = (1, 2) on each axis; Flax's "SAME" for k = 3
  # pads (2, 1): the same 4 x 4 size, shifted by one pixel.
  n, k, s, p, op = 2, 3, 2, 1, 1
  assert (n - 1) * s - 2 * p + k + op == 4
  torch.manual_seed(0)
  layer = torch.nn.ConvTranspose2d(2, 3, k, stride=s, padding=p, output_padding=op, bias=False)
  x = torch.randn(1, 2, n, n)
  with torch.no_grad():
    ref = layer(x).numpy().transpose(0, 2, 3, 1)
  assert ref.shape == (1, 4, 4, 3)
  # torch's weight [in, out, k, k] is the kernel of the strided convolution it is the adjoint
  # of, OIHW with O = its input; HWIO of that convolution is (2, 3, 1, 0).
  kernel = jnp.asarray(layer.weight.detach().numpy().transpose(2, 3, 1, 0))
  x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
  pad = (k - 1 - p, k - 1 - p + op)
  out = jax.lax.conv_transpose(x_nhwc, kernel, (s, s), (pad, pad), dimension_numbers=DN,
                               transpose_kernel=True)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  same = jax.lax.conv_transpose(x_nhwc, kernel, (s, s), "SAME", dimension_numbers=DN,
                                transpose_kernel=True)
  shifted = jax.lax.conv_transpose(x_nhwc, kernel, (s, s), ((2, 1), (2, 1)),
                                   dimension_numbers=DN, transpose_kernel=True)
  assert same.shape == (1, 4, 4, 3)
  np.testing.assert_allclose(same, shifted, rtol=1e-6)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_initialisation_is_bilinear_resizing_away_from_the_border(factor):
  x = jax.random.normal(jax.random.key(3), (2, 5, 6, 3))
  layer = fcn.bilinear_upsampling(3, factor, name="up")
  params = layer.init(jax.random.key(4), x)
  resized = jax.image.resize(x, (2, 5 * factor, 6 * factor, 3), "bilinear", antialias=False)
  inner = (slice(None), slice(factor, -factor), slice(factor, -factor))
  out = layer.apply(params, x)
  assert out.shape == resized.shape
  np.testing.assert_allclose(out[inner], resized[inner], rtol=1e-5, atol=1e-5)


# --- A reference FCN written with lax ops from the parameters (paper Fig. 3, net.py). ---

def _conv(x, p, padding="SAME"):
  return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), padding,
                                      dimension_numbers=DN) + p["bias"]


def _pool(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _up2(x, p):
  return jax.lax.conv_transpose(x, p["kernel"], (2, 2), "SAME", dimension_numbers=DN,
                                transpose_kernel=True)


def _reference(params, images, variant):
  x, pools = images, []
  for i in range(5):
    x = _pool(jax.nn.relu(_conv(x, params[f"stage_{i}"])))
    pools.append(x)
  scores = _conv(pools[4], params["score_fr"])
  if variant != "32s":
    scores = _up2(scores, params["upscore2"]) + _conv(pools[3], params["score_pool4"])
  if variant == "8s":
    scores = _up2(scores, params["upscore_pool4"]) + _conv(pools[2], params["score_pool3"])
  return bilinear_upsample(scores, factor=fcn.FINAL_STRIDES[variant])


@pytest.mark.parametrize("variant", fcn.VARIANTS)
def test_fcn_against_the_reference(variant):
  model = fcn.FCN(num_classes=4, variant=variant, widths=WIDTHS)
  images = jax.random.uniform(jax.random.key(5), (2, 32, 64, 1))
  params = jax.jit(model.init)(jax.random.key(6), images)["params"]
  params = _random_like(params, 7)  # zero score layers would hide the skips
  logits, aux = jax.jit(model.apply)({"params": params}, images)
  assert logits.shape == (2, 32, 64, 4)
  assert aux["coarse_scores"].shape == (2, 1, 2, 4)
  reference = jax.jit(_reference, static_argnums=2)(params, images, variant)
  np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-5)


def test_fcn_initialisation():
  model = fcn.FCN(num_classes=3, variant="8s", widths=WIDTHS)
  params = jax.jit(model.init)(jax.random.key(8), jnp.zeros((1, 32, 32, 1)))["params"]
  assert set(params) == {*(f"stage_{i}" for i in range(5)), "score_fr", "score_pool4",
                         "score_pool3", "upscore2", "upscore_pool4"}
  for name in ("score_fr", "score_pool4", "score_pool3"):
    assert not np.any(params[name]["kernel"]) and not np.any(params[name]["bias"])
  for name in ("upscore2", "upscore_pool4"):
    assert set(params[name]) == {"kernel"}  # no bias, as net.py's bias_term=False
    np.testing.assert_array_equal(params[name]["kernel"], bilinear_kernel(4, 3))
  assert set(jax.eval_shape(fcn.FCN(num_classes=3, variant="32s", widths=WIDTHS).init,
                            jax.random.key(8), jnp.zeros((1, 32, 32, 1)))["params"]) == {
          *(f"stage_{i}" for i in range(5)), "score_fr"}


def test_fcn_vgg16_backbone():
  model = fcn.FCN(num_classes=5, variant="8s", backbone="vgg16", fc_width=8)
  images = jax.random.uniform(jax.random.key(9), (1, 32, 32, 3))
  params = jax.eval_shape(model.init, jax.random.key(10), images)["params"]
  assert params["vgg"]["features_28"]["kernel"].shape == (3, 3, 512, 512)  # conv5_3
  assert params["fc6"]["kernel"].shape == (7, 7, 512, 8)
  assert params["fc7"]["kernel"].shape == (1, 1, 8, 8)
  assert params["score_pool3"]["kernel"].shape == (1, 1, 256, 5)
  # Zero weights but fc7's bias, the scores and the upsampling (cheaper than VGG's random
  # init): dropout then acts on relu(fc7's bias).
  params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), params)
  params["fc7"]["bias"] = jnp.ones(8)
  params["score_fr"] = _random_like(params["score_fr"], 11)
  for name in ("upscore2", "upscore_pool4"):
    params[name]["kernel"] = jnp.asarray(bilinear_kernel(4, 5))
  apply = jax.jit(model.apply, static_argnames="train")
  logits, _ = apply({"params": params}, images)
  assert logits.shape == (1, 32, 32, 5)
  dropped, _ = apply({"params": params}, images, train=True,
                     rngs={"dropout": jax.random.key(12)})
  assert dropped.shape == logits.shape and not np.allclose(dropped, logits)


def test_fcn_first_gradient_reaches_only_the_zero_score_layers():
  model = fcn.FCN(num_classes=3, variant="8s", widths=WIDTHS)
  images = jax.random.uniform(jax.random.key(13), (2, 32, 32, 1))
  labels = jax.random.randint(jax.random.key(14), (2, 32, 32), 0, 3)
  params = jax.jit(model.init)(jax.random.key(15), images)["params"]

  def loss(p):
    return _pixel_loss(model.apply({"params": p}, images)[0], labels)

  grads = jax.jit(jax.grad(loss))(params)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  # The score layers' inputs are nonzero, their outputs zero: only they move at first
  # (upscore layers see zero maps too). Later gradients: test_adam_lowers_the_pixel_loss.
  for name in ("score_fr", "score_pool4", "score_pool3"):
    assert np.any(grads[name]["kernel"]), name
  for name in ("stage_0", "stage_4", "upscore2", "upscore_pool4"):
    assert not np.any(grads[name]["kernel"]), name


def test_deconvnet_shapes_and_batch_norm():
  model = fcn.DeconvNet(num_classes=4, widths=(4, 6, 8))
  images = jax.random.uniform(jax.random.key(17), (2, 16, 24, 1))
  variables = jax.jit(model.init)(jax.random.key(18), images)
  assert variables["params"]["dec_0_1"]["kernel"].shape == (3, 3, 4, 4)
  assert variables["params"]["dec_2_1"]["kernel"].shape == (3, 3, 6, 8)  # narrows to widths[1]
  (logits, aux), state = jax.jit(lambda v: model.apply(v, images, train=True,
                                                       mutable=["batch_stats"]))(variables)
  assert logits.shape == (2, 16, 24, 4)
  assert [s.shape for s in aux["switches"]] == [(2, 8, 12, 4), (2, 4, 6, 6), (2, 2, 3, 8)]
  assert all(s.dtype == jnp.int32 for s in aux["switches"])
  assert set(state["batch_stats"]) == set(variables["batch_stats"])
  evaluated, _ = jax.jit(model.apply)(variables, images)
  assert evaluated.shape == logits.shape
  plain = fcn.DeconvNet(num_classes=4, widths=(4, 6, 8), use_batch_norm=False)
  assert set(jax.eval_shape(plain.init, jax.random.key(18), images)) == {"params"}


def _torch_deconvnet(params, images, levels):
  """DeconvNet (no batch norm, one convolution per block) in torch, from Flax's parameters."""
  def t(a):
    return torch.from_numpy(np.array(a))

  def conv(x, p):
    return torch.nn.functional.conv2d(x, t(p["kernel"]).permute(3, 2, 0, 1), t(p["bias"]),
                                      padding=p["kernel"].shape[0] // 2)

  x, indices, sizes = t(images).permute(0, 3, 1, 2), [], []
  for i in range(levels):
    x = torch.relu(conv(x, params[f"enc_{i}_0"]))
    sizes.append(x.shape[2:])
    x, index = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
    indices.append(index)
  for i in reversed(range(levels)):
    x = torch.nn.functional.max_unpool2d(x, indices[i], 2, 2, output_size=sizes[i])
    # Flax's [k, k, out, in] transposed-convolution kernel is torch's [in, out, k, k].
    p = params[f"dec_{i}_0"]
    x = torch.relu(torch.nn.functional.conv_transpose2d(
        x, t(p["kernel"]).permute(3, 2, 0, 1), t(p["bias"]), padding=1))
  return conv(x, params["score"]).permute(0, 2, 3, 1).numpy()


def test_deconvnet_against_torch():
  model = fcn.DeconvNet(num_classes=3, widths=(3, 4), convs_per_block=1, use_batch_norm=False)
  images = jax.random.normal(jax.random.key(21), (2, 8, 12, 2))
  params = jax.jit(model.init)(jax.random.key(22), images)["params"]
  params = _random_like(params, 23)
  logits, _ = jax.jit(model.apply)({"params": params}, images)
  with torch.no_grad():
    reference = _torch_deconvnet(params, images, 2)
  np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-5)


def test_adam_lowers_the_pixel_loss(check_adam_training):
  # Label each pixel by whether it is bright: learnable by both networks in a few steps.
  images = jax.random.uniform(jax.random.key(24), (2, 32, 32, 1))
  labels = (images[..., 0] > 0.5).astype(jnp.int32)
  model = fcn.FCN(num_classes=2, variant="8s", widths=WIDTHS)
  # Perturbed: with the zero score layers only they would get a first gradient.
  params = _random_like(jax.jit(model.init)(jax.random.key(25), images)["params"], 26)
  check_adam_training(lambda p: _pixel_loss(model.apply({"params": p}, images)[0], labels),
                      params, steps=15)
  deconvnet = fcn.DeconvNet(num_classes=2, widths=(4, 6), convs_per_block=1)
  variables = jax.jit(deconvnet.init)(jax.random.key(27), images)

  def deconvnet_loss(p):
    (logits, _), _ = deconvnet.apply(dict(variables, params=p), images, train=True,
                                     mutable=["batch_stats"])
    return _pixel_loss(logits, labels)

  check_adam_training(deconvnet_loss, variables["params"], steps=15)


def test_errors():
  images = jnp.zeros((1, 32, 32, 1))
  with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
    fcn.FCN(num_classes=0)
  with pytest.raises(ValueError, match=r"variant must be one of \('32s', '16s', '8s'\), got '4s'"):
    fcn.FCN(num_classes=2, variant="4s")
  with pytest.raises(ValueError, match="backbone must be one of"):
    fcn.FCN(num_classes=2, backbone="resnet")
  with pytest.raises(ValueError, match="widths must hold 5 stage widths"):
    fcn.FCN(num_classes=2, widths=(4, 4))
  with pytest.raises(ValueError, match=r"widths\[2\] must be a positive int, got 0"):
    fcn.FCN(num_classes=2, widths=(4, 4, 0, 4, 4))
  with pytest.raises(ValueError, match=r"dropout_rate must be a finite float in \[0.0, 1.0\)"):
    fcn.FCN(num_classes=2, dropout_rate=1.0)
  with pytest.raises(ValueError, match=r"shape must be \[k, k, C, C\]"):
    fcn.bilinear_init(None, (4, 4, 2, 3))
  with pytest.raises(ValueError, match="divisible by 32 .*got image size 48 x 32"):
    fcn.FCN(num_classes=2).init(jax.random.key(0), jnp.zeros((1, 48, 32, 1)))
  with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
    fcn.DeconvNet(num_classes=0)
  with pytest.raises(ValueError, match="widths must hold at least one"):
    fcn.DeconvNet(num_classes=2, widths=())
  with pytest.raises(ValueError, match="divisible by 8 .*got image size 32 x 12"):
    fcn.DeconvNet(num_classes=2).init(jax.random.key(0), jnp.zeros((1, 32, 12, 1)))
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
    fcn.DeconvNet(num_classes=2).init(jax.random.key(0), images[0])
