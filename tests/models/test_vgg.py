"""Tests for vislang_jax.models.vgg against the same layers in torch, with random weights.

The torch reference is torchvision's ``make_layers`` over its ``cfgs["D"]`` / ``cfgs["E"]``
(torchvision/models/vgg.py), written out here from plain ``torch.nn`` layers, so torchvision
(and any download) is not needed; its ``state_dict`` has torchvision's keys.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vislang_jax.models import vgg

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# torchvision's cfgs, copied independently of vgg.VGG_CONFIGS.
TORCHVISION_CFGS = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def _torch_features(depth, seed=0, pool=torch.nn.MaxPool2d):
  """torchvision's ``vgg{depth}().features`` (make_layers, batch_norm=False), torch's init."""
  torch.manual_seed(seed)
  layers, in_channels = [], 3
  for item in TORCHVISION_CFGS[depth]:
    if item == "M":
      layers.append(pool(kernel_size=2, stride=2))
    else:
      layers += [torch.nn.Conv2d(in_channels, item, kernel_size=3, padding=1),
                 torch.nn.ReLU(inplace=True)]
      in_channels = item
  return torch.nn.Sequential(*layers).eval()


@pytest.mark.parametrize("depth, last_conv", [(16, (28, "conv5_3")), (19, (34, "conv5_4"))])
def test_features_match_torch(depth, last_conv):
  features = _torch_features(depth)
  convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
  assert convs == list(vgg.VGG_CONV_INDICES[depth])
  assert len(convs) == depth - 3  # VGG-n: n - 3 convolutions and 3 fully connected layers
  assert vgg.vgg_layer_names(depth)[last_conv[0]] == last_conv[1]
  pools = [i for i, m in enumerate(features) if isinstance(m, torch.nn.MaxPool2d)]
  assert pools == [i for i, n in vgg.vgg_layer_names(depth).items() if n.startswith("pool")]
  # A torchvision-style full state dict: "features." prefix, classifier weights to skip.
  state_dict = {f"features.{k}": v for k, v in features.state_dict().items()}
  state_dict["classifier.0.weight"] = torch.zeros(4, 4)
  params = vgg.vgg_params_from_torch(state_dict, depth=depth)
  assert sorted(params) == sorted(f"features_{i}" for i in convs)
  for i in convs:
    weight = features[i].weight.detach().numpy()
    np.testing.assert_array_equal(params[f"features_{i}"]["kernel"], weight.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[f"features_{i}"]["bias"], features[i].bias.detach())
  # The state dict of .features alone converts to the same parameters.
  jax.tree.map(np.testing.assert_array_equal,
               vgg.vgg_params_from_torch(features.state_dict(), depth=depth), params)

  x = np.random.default_rng(depth).normal(size=(2, 3, 32, 32)).astype(np.float32)
  x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
  for include_final_pool, stop, side in ((False, last_conv[0] + 2, 2),
                                         (True, len(features), 1)):
    with torch.no_grad():  # up to the ReLU after conv5_3/conv5_4, or through the last pool
      expected = features[:stop](torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(_jit(vgg.VGGFeatures(depth, include_final_pool).apply)(
        {"params": params}, x_nhwc))
    assert got.shape == expected.shape == (2, side, side, 512)
    scale = np.abs(expected).max()
    assert scale > 0 and (expected > 0).mean() > 0.2  # not a dead network
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("depth", vgg.DEPTHS)
def test_shapes_and_parameter_layout(depth):
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  for include_final_pool, side in ((False, 14), (True, 7)):  # the paper's 14 x 14 x 512
    model = vgg.VGGFeatures(depth=depth, include_final_pool=include_final_pool)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, side, side, 512)
  # init's parameter tree is the converter's, shape for shape.
  converted = vgg.vgg_params_from_torch(_torch_features(depth).state_dict(), depth=depth)
  shapes = jax.tree.map(lambda a: a.shape, variables["params"])
  assert shapes == jax.tree.map(lambda a: a.shape, converted)
  assert shapes[f"features_{vgg.VGG_CONV_INDICES[depth][-1]}"]["kernel"] == (3, 3, 512, 512)
  assert shapes["features_0"] == {"kernel": (3, 3, 3, 64), "bias": (64,)}
  # Floors at each pool as torch does: 33 -> 16 -> 8 -> 4 -> 2 (-> 1).
  odd = jax.ShapeDtypeStruct((1, 33, 47, 3), jnp.float32)
  model = vgg.VGGFeatures(depth=depth)
  assert jax.eval_shape(model.apply, variables, odd).shape == (1, 2, 2, 512)


def test_named_layers_with_average_pooling_match_torch():
  """The paper's style/content layers of VGG-19 with AvgPool2d, read off torch's Sequential."""
  features = _torch_features(19, seed=1, pool=torch.nn.AvgPool2d)
  params = vgg.vgg_params_from_torch(features.state_dict(), depth=19)
  # The paper's names, counted by hand: conv{block}_{k} is the ReLU after the k-th conv of a
  # block, pool{block} the block's pool.
  by_hand, block, k = {}, 1, 1
  for i, module in enumerate(features):
    if isinstance(module, torch.nn.ReLU):
      by_hand[f"conv{block}_{k}"], k = i, k + 1
    elif isinstance(module, torch.nn.AvgPool2d):
      by_hand[f"pool{block}"], block, k = i, block + 1, 1
  wanted = ("conv4_2", "conv1_1", "pool2", "conv5_1", "conv2_1", "conv3_1", "conv4_1", "pool5")
  x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
  expected, h = {}, torch.from_numpy(x)
  with torch.no_grad():
    for i, module in enumerate(features):
      h = module(h)
      for name in wanted:
        if by_hand[name] == i:
          expected[name] = h.numpy().transpose(0, 2, 3, 1)
  model = vgg.VGGFeatures(19, pooling="avg")
  got = _jit(functools.partial(model.apply, layers=wanted))(
      {"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert sorted(got) == sorted(wanted)
  sides = {"conv1_1": 32, "conv2_1": 16, "pool2": 8, "conv3_1": 8, "conv4_1": 4, "conv4_2": 4,
           "conv5_1": 2, "pool5": 1}
  for name in wanted:
    assert got[name].shape == expected[name].shape == (2, sides[name], sides[name],
                                                       expected[name].shape[-1])
    scale = np.abs(expected[name]).max()
    assert scale > 0
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5 * scale)
  # Average and max pooling differ (the option is not ignored); layers=None is the old output.
  max_out = vgg.VGGFeatures(19).apply({"params": params}, jnp.asarray(
      x.transpose(0, 2, 3, 1)), layers=("pool2",))["pool2"]
  assert not np.allclose(max_out, got["pool2"])
  whole = vgg.VGGFeatures(19, include_final_pool=True, pooling="avg").apply(
      {"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(whole, got["pool5"], rtol=1e-5, atol=1e-6)


def test_named_layers_stop_after_the_deepest():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  model = vgg.VGGFeatures(19)
  variables = jax.eval_shape(functools.partial(model.init, layers=("conv2_1", "conv1_2")),
                             jax.random.key(0), x)
  assert sorted(variables["params"]) == ["features_0", "features_2", "features_5"]
  full = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(functools.partial(model.apply, layers=("pool1", "pool1")), full, x)
  assert {k: v.shape for k, v in out.items()} == {"pool1": (1, 16, 16, 64)}


def test_bad_arguments_raise_value_errors_naming_them():
  state_dict = _torch_features(19).state_dict()
  with pytest.raises(ValueError, match=r"missing \['34.bias'\] \(layers \['conv5_4'\]\), "
                                       r"unexpected \[\]\.$"):
    vgg.vgg_params_from_torch({k: v for k, v in state_dict.items() if k != "34.bias"},
                              depth=19)
  with pytest.raises(ValueError, match=r"state_dict\['features.2.weight'\] \(conv1_2 of vgg19\) "
                                       r"must have shape \(64, 64, 3, 3\), got \(64, 32, 3, 3\)"):
    vgg.vgg_params_from_torch({**state_dict, "2.weight": torch.zeros(64, 32, 3, 3)}, depth=19)
  with pytest.raises(ValueError, match=r"state_dict\['features.34.bias'\] \(conv5_4 of vgg19\)"):
    vgg.vgg_params_from_torch({**state_dict, "features.34.bias": torch.zeros(3)}, depth=19)
  with pytest.raises(ValueError, match=r"unexpected \['1.running_mean'\]"):  # a vgg19_bn key
    vgg.vgg_params_from_torch({**state_dict, "1.running_mean": torch.zeros(64)}, depth=19)
  # VGG-16's weights are not VGG-19's: conv3_4 (16) and 5 more are missing, 17 is no conv.
  with pytest.raises(ValueError, match=r"vgg19's features .* missing \['16.bias', '16.weight'"
                                       r".*\(layers \['conv3_4', 'conv4_3', 'conv4_4', "
                                       r"'conv5_2', 'conv5_3', 'conv5_4'\]\), unexpected "
                                       r"\['17.bias', '17.weight'.* \(these are vgg16's: pass "
                                       r"depth=16\)"):
    vgg.vgg_params_from_torch(_torch_features(16).state_dict(), depth=19)
  with pytest.raises(ValueError, match=r"\(these are vgg19's: pass depth=19\)"):
    vgg.vgg_params_from_torch(state_dict, depth=16)
  for call in (lambda: vgg.VGGFeatures(depth=11), lambda: vgg.vgg_layer_names(13),
               lambda: vgg.vgg_params_from_torch(state_dict, depth=18)):
    with pytest.raises(ValueError, match=r"depth must be one of \(16, 19\), got"):
      call()
  with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
    vgg.VGGFeatures().init(jax.random.key(0), jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match=r"pooling must be one of \('max', 'avg'\), got 'mean'"):
    vgg.VGGFeatures(pooling="mean")
  x = jnp.zeros((1, 32, 32, 3))
  for bad in (("conv1_1", "conv5_4"), "conv1_1", (), ("relu1_1",)):  # VGG-16 has no conv5_4
    with pytest.raises(ValueError, match=r"layers must be a non-empty sequence of names "
                                         r"from \('conv1_1', 'conv1_2', 'pool1', .*'conv5_3', "
                                         r"'pool5'\)"):
      vgg.VGGFeatures(16).init(jax.random.key(0), x, layers=bad)
