"""Tests for vislang_jax.models.dcgan (DCGAN, Radford et al. 2016; GAN-CLS, Reed et al. 2016).

The transposed convolution is checked against a NumPy float64 scatter written from the strided
convolution's definition and through ``<A x, y> = <x, A^T y>``; the models against their
parts, invariants (center crop, per-example outputs at evaluation, where the conditioning
enters) and batch norm's update rule.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vislang_jax.models import dcgan

B, Z, COND, COND_DIM, F = 3, 5, 6, 4, 2


@functools.lru_cache(maxsize=None)
def _jitted(model, method="__call__", mutable=False):
  """``model.apply`` jitted once per model (eager convolutions are slow on CPU)."""
  return jax.jit(functools.partial(model.apply, method=method, mutable=mutable),
                 static_argnames="train")


@functools.lru_cache(maxsize=None)
def _variables(model, *arg_shapes, seed=0):
  """Variables of ``model``'s shapes drawn by NumPy (params N(0, 0.3^2), running variances
  in [0.5, 1.5]): tracing ``init`` instead of running it keeps the test fast."""
  args = [jax.ShapeDtypeStruct(s, jnp.float32) if s is not None else None for s in arg_shapes]
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = jax.tree_util.keystr(path)
    if "var" in name:
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
    return jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _normal(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _leaky(x):
  return np.where(x > 0, x, 0.2 * x)


def _uniform(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _generator(height=28, width=28, channels=1, num_upsamples=2, cond_size=None, **kwargs):
  model = dcgan.Generator(height, width, channels, z_size=Z, features=F,
                          num_upsamples=num_upsamples, cond_size=cond_size, cond_dim=COND_DIM,
                          **kwargs)
  variables = _variables(model, (B, Z), None if cond_size is None else (B, cond_size))
  return model, variables


def _discriminator(cond_size=None, num_downsamples=2, image_shape=(B, 16, 16, 1)):
  model = dcgan.Discriminator(features=F, num_downsamples=num_downsamples, cond_size=cond_size,
                              cond_dim=COND_DIM)
  variables = _variables(model, image_shape, None if cond_size is None else (B, cond_size))
  return model, variables


# ------------------------------------------------------------ the transposed convolution


def _strided_conv_np(x, kernel):
  """A: the stride-2 "SAME" convolution by its definition, NumPy float64.

  ``x`` [H, W, I] (H, W even), ``kernel`` [k, k, I, O] -> [H/2, W/2, O];
  ``(A x)[i, j] = sum_{a, b} x[2i + a - p, 2j + b - p] kernel[a, b]`` with ``p = (k - 2) // 2``
  (TF/XLA "SAME": the total padding k - 2, the odd one at the end) and zeros outside ``x``.
  """
  k = kernel.shape[0]
  p = (k - 2) // 2
  h, w = x.shape[0] // 2, x.shape[1] // 2
  out = np.zeros((h, w, kernel.shape[3]))
  for i in range(h):
    for j in range(w):
      for a in range(k):
        for b in range(k):
          r, c = 2 * i + a - p, 2 * j + b - p
          if 0 <= r < x.shape[0] and 0 <= c < x.shape[1]:
            out[i, j] += x[r, c] @ kernel[a, b]
  return out


def _strided_conv_transpose_np(y, kernel):
  """A^T: every ``y[i, j]`` scattered back through the taps that A gathered it from."""
  k = kernel.shape[0]
  p = (k - 2) // 2
  out = np.zeros((2 * y.shape[0], 2 * y.shape[1], kernel.shape[2]))
  for i in range(y.shape[0]):
    for j in range(y.shape[1]):
      for a in range(k):
        for b in range(k):
          r, c = 2 * i + a - p, 2 * j + b - p
          if 0 <= r < out.shape[0] and 0 <= c < out.shape[1]:
            out[r, c] += kernel[a, b] @ y[i, j]
  return out


def _lax_strided_conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("k", [4, 5])
def test_transposed_conv_is_the_adjoint_of_the_strided_conv(k):
  """The generator's layer (``dcgan.transposed_conv``, ``transpose_kernel=True``) is A^T for
  A the stride-2 "SAME" convolution with the same kernel: equal to a NumPy scatter of A's
  definition, to ``jax.vjp`` of A, and ``<A x, y> = <x, A^T y>`` in float64."""
  c_img, c_map, h, w = 2, 3, 6, 8  # A: [6, 8, 2] -> [3, 4, 3]
  kernel = np.random.default_rng(k).normal(size=(k, k, c_img, c_map)).astype(np.float32)
  x, y = _normal((1, h, w, c_img), 1), _normal((1, h // 2, w // 2, c_map), 2)
  layer = dcgan.transposed_conv(c_img, k)
  # The same parameter layout as the generator's layers: [k, k, C_out, C_in] = A's HWIO kernel.
  assert jax.eval_shape(layer.init, jax.random.key(0), y)["params"]["kernel"].shape == (
      kernel.shape)
  at_y = np.asarray(layer.apply({"params": {"kernel": kernel}}, y), np.float64)[0]

  k64 = kernel.astype(np.float64)
  x64, y64 = np.asarray(x, np.float64)[0], np.asarray(y, np.float64)[0]
  a_x = _strided_conv_np(x64, k64)
  np.testing.assert_allclose(np.asarray(_lax_strided_conv(x, kernel))[0], a_x, rtol=1e-5,
                             atol=1e-5)  # A as defined
  np.testing.assert_allclose(at_y, _strided_conv_transpose_np(y64, k64), rtol=1e-5, atol=1e-5)
  _, vjp = jax.vjp(lambda v: _lax_strided_conv(v, kernel), x)
  np.testing.assert_allclose(at_y, np.asarray(vjp(y)[0])[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.vdot(a_x, y64), np.vdot(x64, at_y), rtol=1e-5)
  # The identity is not automatic: A^T of an unflipped kernel (Flax's default) breaks it.
  default = nn.ConvTranspose(c_img, (k, k), strides=(2, 2), padding="SAME", use_bias=False)
  wrong = np.asarray(default.apply({"params": {"kernel": kernel.swapaxes(2, 3)}}, y),
                     np.float64)[0]
  assert abs(np.vdot(x64, wrong) - np.vdot(a_x, y64)) > 1e-2 * np.abs(a_x).sum()


def test_transposed_conv_matches_torch():
  """Reed's ``SpatialFullConvolution(4, 4, 2, 2, 1, 1)`` is torch's ``conv_transpose2d`` with
  stride 2 and padding 1, the adjoint of ``conv2d`` with the same weight [C_map, C_img, 4, 4]:
  the generator's layer with that weight as its [4, 4, C_img, C_map] kernel gives the same."""
  kernel = np.random.default_rng(7).normal(size=(4, 4, 2, 3)).astype(np.float32)
  y = _normal((2, 3, 5, 3), 8)
  layer = dcgan.transposed_conv(2, 4)
  ours = layer.apply({"params": {"kernel": kernel}}, y)
  theirs = torch.nn.functional.conv_transpose2d(
      torch.from_numpy(np.array(y).transpose(0, 3, 1, 2)),
      torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), stride=2, padding=1)
  np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [4, 5])
def test_flax_default_transposed_conv_flips_and_swaps_the_kernel(k):
  """``nn.ConvTranspose`` with Flax's default ``transpose_kernel=False`` and kernel ``K``
  [k, k, C_in, C_out] is the adjoint of the strided convolution whose HWIO kernel is ``K``
  flipped in space with its channel axes swapped."""
  c_img, c_map = 2, 3
  kernel = np.random.default_rng(10 + k).normal(size=(k, k, c_map, c_img)).astype(np.float32)
  y, x = _normal((2, 3, 4, c_map), 3), _normal((2, 6, 8, c_img), 4)
  default = nn.ConvTranspose(c_img, (k, k), strides=(2, 2), padding="SAME", use_bias=False)
  out = default.apply({"params": {"kernel": kernel}}, y)
  flipped = jnp.asarray(kernel[::-1, ::-1].swapaxes(2, 3))
  _, vjp = jax.vjp(lambda v: _lax_strided_conv(v, flipped), x)
  np.testing.assert_allclose(out, vjp(y)[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ generator


@pytest.mark.parametrize("height, width, channels, num_upsamples, start", [
    (28, 28, 1, 2, (7, 7)),    # 7 -> 14 -> 28 exactly
    (60, 60, 3, 4, (4, 4)),    # 4 -> 64, cropped to 60
    (20, 36, 2, 3, (3, 5)),    # 24 x 40, cropped
])
def test_generator_shapes_and_range(height, width, channels, num_upsamples, start):
  model, variables = _generator(height, width, channels, num_upsamples)
  z = _normal((B, Z), 0)
  images, aux = _jitted(model)(variables, z, train=False)
  assert images.shape == (B, height, width, channels) and aux == {}
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  widest = F * 2**(num_upsamples - 1)
  assert variables["params"]["decoder"]["project"]["kernel"].shape == (
      Z, start[0] * start[1] * widest)
  # The output is (tanh(a) + 1) / 2 of the decoder's map a, and saturates inside [0, 1].
  decoder = dcgan.UpsamplingDecoder(height, width, channels, F, num_upsamples)
  a = _jitted(decoder)({"params": variables["params"]["decoder"],
                        "batch_stats": variables["batch_stats"]["decoder"]}, z, train=False)
  np.testing.assert_allclose(images, (np.tanh(np.float64(a)) + 1) / 2, atol=1e-6)
  for sign, bound in ((1e3, 1.0), (-1e3, 0.0)):
    params = jax.tree.map(lambda v: v, variables["params"])
    params["decoder"][f"deconv_{num_upsamples - 1}"]["bias"] = jnp.full((channels,), sign)
    saturated, _ = _jitted(model)({**variables, "params": params}, z, train=False)
    np.testing.assert_allclose(saturated, bound, atol=1e-6)


def _batch_norm_np(x, params, stats):
  return (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]


@pytest.mark.parametrize("k", [4, 5])
def test_generator_numpy_reference(k):
  """DCGAN's generator in NumPy float64 at evaluation: projection, batch norm, ReLU, the
  transposed convolutions as A^T scatters, center crop (12 x 12 -> 10 x 12: one row off the
  top and bottom) and ``(tanh + 1) / 2``."""
  model, variables = _generator(10, 12, 2, 2, kernel_size=k)
  z = _normal((B, Z), 5)
  images, _ = _jitted(model)(variables, z, train=False)
  p, stats = _f64(variables["params"]["decoder"]), _f64(variables["batch_stats"]["decoder"])
  h = np.float64(z) @ p["project"]["kernel"]
  h = np.maximum(_batch_norm_np(h, p["project_bn"], stats["project_bn"]), 0.0)
  h = h.reshape(B, 3, 3, 2 * F)
  h = np.stack([_strided_conv_transpose_np(x, p["deconv_0"]["kernel"]) for x in h])
  h = np.maximum(_batch_norm_np(h, p["deconv_bn_0"], stats["deconv_bn_0"]), 0.0)
  h = np.stack([_strided_conv_transpose_np(x, p["deconv_1"]["kernel"]) for x in h])
  a = h[:, 1:11] + p["deconv_1"]["bias"]
  np.testing.assert_allclose(images, (np.tanh(a) + 1) / 2, rtol=1e-4, atol=1e-5)


def test_generator_crops_the_center_of_the_upsampled_map():
  """60 x 60 and 64 x 64 generators share their parameters' shapes (both start at 4 x 4);
  the 60 x 60 images are the central window (2 pixels off each side) of the 64 x 64 ones."""
  big, variables = _generator(64, 64, 1, 4)
  small = dcgan.Generator(60, 60, 1, z_size=Z, features=F, num_upsamples=4, cond_dim=COND_DIM)
  z = _normal((B, Z), 1)
  full, _ = _jitted(big)(variables, z, train=False)
  cropped, _ = _jitted(small)(variables, z, train=False)
  np.testing.assert_array_equal(cropped, full[:, 2:62, 2:62])
  x = jnp.arange(2 * 5 * 4).reshape(1, 5, 4, 2)
  np.testing.assert_array_equal(dcgan.center_crop(x, 2, 3), x[:, 1:3, 0:3])


def test_generator_conditioning():
  model, variables = _generator(cond_size=COND)
  z, cond = _normal((B, Z), 0), _normal((B, COND), 1)
  apply = _jitted(model)
  images, _ = apply(variables, z, cond, train=False)
  other, _ = apply(variables, z, cond.at[0].add(1.0), train=False)
  assert float(jnp.abs(other[0] - images[0]).max()) > 1e-3  # example 0's text changed
  np.testing.assert_array_equal(other[1:], images[1:])  # running averages: per example
  # The compressed text, leaky_relu(W phi + b, 0.2), is concatenated after z.
  p = variables["params"]
  w = np.float64(p["compress"]["Dense_0"]["kernel"])
  pre = np.float64(cond) @ w + np.float64(p["compress"]["Dense_0"]["bias"])
  compressed = np.where(pre > 0, pre, 0.2 * pre)
  decoder = dcgan.UpsamplingDecoder(28, 28, 1, F, 2)
  a = _jitted(decoder)({"params": p["decoder"], "batch_stats": variables["batch_stats"]["decoder"]},
                       jnp.concatenate([z, jnp.asarray(compressed, jnp.float32)], -1), train=False)
  np.testing.assert_allclose(images, (np.tanh(np.float64(a)) + 1) / 2, atol=1e-5)


def test_generator_errors():
  model, variables = _generator(cond_size=COND)
  z, cond = _normal((B, Z), 0), _normal((B, COND), 1)
  with pytest.raises(ValueError, match=r"cond must have shape \[B, cond_size\] = \(3, 6\).*None"):
    model.apply(variables, z, train=False)
  with pytest.raises(ValueError, match=r"cond must have shape .* = \(3, 6\), got \(3, 7\)"):
    model.apply(variables, z, _normal((B, COND + 1), 1), train=False)
  with pytest.raises(ValueError, match=r"cond must have shape .* = \(3, 6\), got \(2, 6\)"):
    model.apply(variables, z, cond[:2], train=False)
  with pytest.raises(ValueError, match=r"z must have shape \[B, Z\] with Z = z_size = 5, got "
                                       r"\(3, 4\)"):
    model.apply(variables, z[:, :4], cond, train=False)
  unconditional, variables = _generator()
  with pytest.raises(ValueError, match=r"cond must be None .* got an array of shape \(3, 6\)"):
    unconditional.apply(variables, z, cond, train=False)
  with pytest.raises(ValueError, match="num_upsamples must be a positive int, got 0"):
    dcgan.Generator(28, 28, 1, num_upsamples=0)
  with pytest.raises(ValueError, match="kernel_size must be an int >= 2, got 1"):
    dcgan.Generator(28, 28, 1, kernel_size=1)
  with pytest.raises(ValueError, match="cond_size must be a positive int, got 0"):
    dcgan.Generator(28, 28, 1, cond_size=0)


def test_generator_batch_norm_state():
  """``train=True`` normalises with the batch and moves the running averages
  (``0.9 old + 0.1 batch``; the projection has no bias, so its batch statistics are those of
  ``z W``); ``train=False`` reads them and treats every example on its own."""
  model, variables = _generator()
  z = _normal((B, Z), 2)
  (images, _), updates = _jitted(model, mutable=("batch_stats",))(variables, z, train=True)
  pre = np.float64(z) @ np.float64(variables["params"]["decoder"]["project"]["kernel"])
  old = variables["batch_stats"]["decoder"]["project_bn"]
  new = updates["batch_stats"]["decoder"]["project_bn"]
  np.testing.assert_allclose(new["mean"], 0.9 * np.float64(old["mean"]) + 0.1 * pre.mean(0),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["var"], 0.9 * np.float64(old["var"]) + 0.1 * pre.var(0),
                             rtol=1e-4, atol=1e-6)
  for name in ("deconv_bn_0",):
    assert not np.allclose(updates["batch_stats"]["decoder"][name]["mean"],
                           variables["batch_stats"]["decoder"][name]["mean"])
  # Training: example 0's image depends on its batch companions.
  alone, _ = _jitted(model, mutable=("batch_stats",))(variables, z.at[1:].multiply(-2.0),
                                                      train=True)
  assert float(jnp.abs(alone[0][0] - images[0]).max()) > 1e-3
  # Evaluation: deterministic, per example (vmap of single-example batches), and jittable.
  apply = _jitted(model)
  first, _ = apply(variables, z, train=False)
  again, _ = apply(variables, z, train=False)
  np.testing.assert_array_equal(first, again)
  one_by_one = jax.vmap(lambda zi: apply(variables, zi[None], train=False)[0][0])(z)
  np.testing.assert_allclose(one_by_one, first, atol=1e-6)
  eager, _ = model.apply(variables, z[:1], train=False)
  np.testing.assert_allclose(eager, first[:1], atol=1e-5)


# -------------------------------------------------------------------------- discriminator


def test_discriminator_structure_and_logits():
  """Unconditional: the trunk on ``2 x - 1`` (no batch norm after the first convolution),
  flattened, then one dense layer to a logit per example."""
  model, variables = _discriminator()
  images = _uniform((B, 16, 16, 1), 0)
  logits, aux = _jitted(model)(variables, images, train=False)
  assert logits.shape == (B,) and aux["features"].shape == (B, 4 * 4 * 2 * F)
  trunk = variables["params"]["trunk"]
  assert set(trunk) == {"conv_0", "conv_1", "bn_1"}  # no bn_0: DCGAN's input layer
  assert "bias" in trunk["conv_0"] and "bias" not in trunk["conv_1"]
  features = dcgan.ConvTrunk(F, 2).apply(
      {"params": trunk, "batch_stats": variables["batch_stats"]["trunk"]}, 2 * images - 1,
      train=False).reshape(B, -1)
  np.testing.assert_allclose(aux["features"], features, atol=1e-5)
  score = variables["params"]["score"]
  np.testing.assert_allclose(
      logits, np.float64(features) @ np.float64(score["kernel"])[:, 0] + score["bias"][0],
      rtol=1e-5, atol=1e-5)
  one_by_one = jax.vmap(lambda x: _jitted(model)(variables, x[None], train=False)[0][0])(images)
  np.testing.assert_allclose(one_by_one, logits, atol=1e-5)


def test_discriminator_conditioning_enters_at_the_last_stage():
  """The compressed text is replicated over the 4 x 4 map and concatenated before a 1 x 1
  convolution: the logits move with ``cond``, and stop moving when the 1 x 1 convolution's
  text rows are zero."""
  model, variables = _discriminator(cond_size=COND)
  images, cond = _uniform((B, 16, 16, 1), 0), _normal((B, COND), 1)
  apply = _jitted(model)
  logits, aux = apply(variables, images, cond, train=False)
  assert logits.shape == (B,) and aux["features"].shape == (B, 4 * 4 * 2 * F)
  joint = variables["params"]["joint_conv"]["kernel"]
  assert joint.shape == (1, 1, 2 * F + COND_DIM, 2 * F)  # the 4 x 4 map's channels + text
  moved, _ = apply(variables, images, cond.at[0].multiply(-1.0), train=False)
  assert abs(float(moved[0] - logits[0])) > 1e-4
  np.testing.assert_array_equal(moved[1:], logits[1:])
  params = jax.tree.map(lambda v: v, variables["params"])
  params["joint_conv"]["kernel"] = joint.at[:, :, 2 * F:].set(0.0)
  blind = {**variables, "params": params}
  np.testing.assert_array_equal(apply(blind, images, cond, train=False)[0],
                                apply(blind, images, 3.0 * cond, train=False)[0])
  # NumPy reference of the last stage, from the trunk's map.
  p, stats = _f64(variables["params"]), _f64(variables["batch_stats"])
  trunk = np.float64(dcgan.ConvTrunk(F, 2).apply(
      {"params": variables["params"]["trunk"], "batch_stats": variables["batch_stats"]["trunk"]},
      2 * images - 1, train=False))  # [B, 4, 4, 2F]
  text = _leaky(np.float64(cond) @ p["compress"]["Dense_0"]["kernel"]
                + p["compress"]["Dense_0"]["bias"])
  joint = np.concatenate([trunk, np.broadcast_to(text[:, None, None], (B, 4, 4, COND_DIM))], -1)
  joint = joint @ p["joint_conv"]["kernel"][0, 0]
  bn = p["joint_bn"]
  joint = _leaky((joint - stats["joint_bn"]["mean"]) / np.sqrt(stats["joint_bn"]["var"] + 1e-5)
                 * bn["scale"] + bn["bias"])
  features = joint.reshape(B, -1)
  np.testing.assert_allclose(aux["features"], features, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logits, features @ p["score"]["kernel"][:, 0] + p["score"]["bias"][0],
                             rtol=1e-4, atol=1e-5)


def test_discriminator_errors_and_batch_norm():
  model, variables = _discriminator(cond_size=COND)
  images, cond = _uniform((B, 16, 16, 1), 0), _normal((B, COND), 1)
  with pytest.raises(ValueError, match=r"cond must have shape \[B, cond_size\].*got None"):
    model.apply(variables, images, train=False)
  with pytest.raises(ValueError, match=r"cond must have shape .* got \(3, 5\)"):
    model.apply(variables, images, cond[:, :5], train=False)
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\], got \(16, 16\)"):
    model.apply(variables, images[0, ..., 0], cond, train=False)
  (_, _), updates = _jitted(model, mutable=("batch_stats",))(variables, images, cond,
                                                             train=True)
  assert set(updates["batch_stats"]) == {"trunk", "joint_bn"}
  assert not np.allclose(updates["batch_stats"]["joint_bn"]["mean"],
                         variables["batch_stats"]["joint_bn"]["mean"])


def test_discriminator_takes_60x60():
  model, variables = _discriminator(num_downsamples=4, image_shape=(B, 60, 60, 3))
  logits, aux = _jitted(model)(variables, _uniform((B, 60, 60, 3), 0), train=False)
  assert logits.shape == (B,) and aux["features"].shape == (B, 4 * 4 * 8 * F)


# -------------------------------------------------------------------------- style encoder


def test_style_encoder():
  model = dcgan.StyleEncoder(z_size=Z, features=F, num_downsamples=2)
  variables = _variables(model, (B, 16, 16, 1))
  images = _uniform((B, 16, 16, 1), 0)
  z_hat = _jitted(model)(variables, images, train=False)
  assert z_hat.shape == (B, Z)
  trunk = dcgan.ConvTrunk(F, 2).apply(
      {"params": variables["params"]["trunk"], "batch_stats": variables["batch_stats"]["trunk"]},
      2 * images - 1, train=False).reshape(B, -1)
  dense = variables["params"]["z"]
  np.testing.assert_allclose(z_hat, np.float64(trunk) @ np.float64(dense["kernel"])
                             + dense["bias"], rtol=1e-5, atol=1e-5)
  # Reed's style transfer: G(S(x), phi(t)) composes under jit.
  generator, g_vars = _generator(16, 16, 1, 2, cond_size=COND)
  images, _ = _jitted(generator)(g_vars, z_hat, _normal((B, COND), 1), train=False)
  assert images.shape == (B, 16, 16, 1)
