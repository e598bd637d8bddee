"""The convolutional feature stacks of VGG-16 and VGG-19, laid out as torchvision's.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015: configurations "D" (16 weight layers: 13 convolutions) and "E" (19: 16
convolutions), of which ``VGGFeatures`` is the convolutional part (torchvision's
``vgg16().features`` / ``vgg19().features``, without the fully connected classifier).
Show, Attend and Tell reads its annotation vectors from the 14 x 14 x 512 map of VGG-19 at
``conv5_4``, before the last max-pool, for 224 x 224 inputs (Xu et al. 2015, Sec. 4.3);
``include_final_pool=False`` (the default) stops there (``conv5_3`` for VGG-16).

Layout: an int of ``VGG_CONFIGS[depth]`` is a 3x3 convolution of that many output channels
(padding 1) followed by a ReLU, ``"M"`` a 2x2 max-pool of stride 2 (torchvision's ``cfgs["D"]``
and ``cfgs["E"]`` in ``torchvision/models/vgg.py``, built by its ``make_layers`` as
``Conv2d, ReLU`` pairs and ``MaxPool2d``). The layer at index ``i`` of torchvision's
``features`` Sequential is the Flax submodule ``features_{i}``, so
``vgg_params_from_torch`` maps an ImageNet ``state_dict`` one to one; ``vgg_layer_names``
gives the paper's names (``conv5_4`` is ``features_34`` of VGG-19, ``conv5_3`` is
``features_28`` of VGG-16).

Inputs are what torchvision's ImageNet weights expect: RGB in [0, 1], normalised by the mean
(0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225), channels last.

Neural style (Gatys, Ecker & Bethge, "A neural algorithm of artistic style", 2015, Methods)
reads VGG-19's responses at named layers (``layers=("conv4_2", ...)``) and replaces the
max-pools by average pools (``pooling="avg"``, torch's ``AvgPool2d(2, 2)``) for better
gradient flow. A layer's name means its output after the ReLU, as in the paper, whose Caffe
model applies each ReLU in place on the convolution's output.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_choice, check_rank

VGG_CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}
DEPTHS = tuple(VGG_CONFIGS)
# The input normalisation torchvision's ImageNet weights expect (module docstring), per RGB channel.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
POOLINGS = ("max", "avg")


def _layers(depth: int) -> tuple[tuple[int, int | str], ...]:
  """``(torchvision features index, config item)`` of every convolution and pool."""
  layers, index = [], 0
  for item in VGG_CONFIGS[depth]:
    layers.append((index, item))
    index += 1 if item == "M" else 2  # MaxPool2d; Conv2d, ReLU
  return tuple(layers)


def vgg_layer_names(depth: int) -> dict[int, str]:
  """torchvision ``features`` index -> the paper's name, for every convolution and pool.

  Convolutions are ``conv{block}_{k}`` (``conv1_1`` ... ``conv5_4``), pools ``pool{block}``;
  the ReLU after convolution ``i`` sits at index ``i + 1``.

  Args:
    depth: 16 or 19.

  Returns:
    ``{index: name}`` in layer order, e.g. ``{0: "conv1_1", 2: "conv1_2", 4: "pool1", ...}``.
  """
  check_choice("depth", depth, DEPTHS)
  names, block, k = {}, 1, 1
  for index, item in _layers(depth):
    if item == "M":
      names[index] = f"pool{block}"
      block, k = block + 1, 1
    else:
      names[index] = f"conv{block}_{k}"
      k += 1
  return names


VGG_CONV_INDICES = {depth: tuple(i for i, item in _layers(depth) if item != "M")
                    for depth in DEPTHS}
# VGG_CONV_INDICES[16] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# VGG_CONV_INDICES[19] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


class VGGFeatures(nn.Module):
  """torchvision's ``vgg{depth}().features``: [B, H, W, 3] -> [B, H / 16, W / 16, 512].

  3x3 convolutions (padding 1) with ReLUs and 2x2 pools of stride 2 (module docstring);
  the last pool only with ``include_final_pool`` (then [B, H / 32, W / 32, 512]). Sizes are
  floored at each pool, as in torch: 224 -> 14 (7 with the final pool). Parameters:
  ``{"features_{i}": {"kernel": [3, 3, I, O], "bias": [O]}}`` for ``i`` in
  ``VGG_CONV_INDICES[depth]`` (initialise without ``layers`` to create them all).

  Attributes:
    depth: 16 (configuration "D") or 19 ("E").
    include_final_pool: apply the last pool (torchvision's ``features[30]`` for VGG-16,
      ``features[36]`` for VGG-19). Without it (the default) the output is the ReLU of
      ``conv5_3`` (VGG-16) or ``conv5_4`` (VGG-19), the map Show, Attend and Tell uses.
    pooling: "max" (torchvision's ``MaxPool2d(2, 2)``) or "avg" (``AvgPool2d(2, 2)``, the
      neural style paper's choice for image synthesis; the weights are the same).
  """

  depth: int = 16
  include_final_pool: bool = False
  pooling: str = "max"

  def __post_init__(self):
    check_choice("depth", self.depth, DEPTHS)
    check_choice("pooling", self.pooling, POOLINGS)
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, *,
               layers: Sequence[str] | None = None) -> jax.Array | dict[str, jax.Array]:
    """[B, H, W, C] float images (C = 3 for ImageNet weights) -> the feature map(s).

    Args:
      images: [B, H, W, C] float.
      layers: None for the feature map (class docstring), or names of
        ``vgg_layer_names(depth)`` ("conv1_1" ... , "pool1" ...; a convolution's name is its
        output after the ReLU). Layers after the deepest one named are not computed;
        ``include_final_pool`` does not apply ("pool5" is returned when named).

    Returns:
      [B, h, w, C'] without ``layers``; else ``{name: [B, h, w, C'] activation}`` for each
      name in ``layers``.

    Raises:
      ValueError: for an unknown layer name, listing the valid ones.
    """
    check_rank("images", images, "[B, H, W, C]")
    names = vgg_layer_names(self.depth)
    if layers is not None:
      layers = _check_layer_names(layers, names.values())
    pool = nn.max_pool if self.pooling == "max" else nn.avg_pool
    x = jnp.asarray(images, jnp.float32)
    found, all_layers = {}, _layers(self.depth)
    for index, item in all_layers:
      if item != "M":
        x = nn.relu(nn.Conv(item, (3, 3), padding=((1, 1), (1, 1)),
                            name=f"features_{index}")(x))
      elif layers is not None or index < all_layers[-1][0] or self.include_final_pool:
        x = pool(x, (2, 2), strides=(2, 2), padding="VALID")
      if layers is not None and names[index] in layers:
        found[names[index]] = x
        if len(found) == len(set(layers)):
          break
    return x if layers is None else found


def _check_layer_names(layers: Any, valid: Sequence[str]) -> tuple[str, ...]:
  """``layers`` as a tuple of names, or a ValueError naming the valid ones."""
  valid = tuple(valid)
  if isinstance(layers, str) or not layers or any(name not in valid for name in layers):
    raise ValueError(f"layers must be a non-empty sequence of names from {valid}, "
                     f"got {layers!r}.")
  return tuple(layers)


def vgg_params_from_torch(state_dict: Any, *, depth: int) -> dict[str, dict[str, jax.Array]]:
  """torchvision VGG convolution weights -> ``VGGFeatures(depth)`` parameters.

  Accepts ``torchvision.models.vgg{depth}(weights=...).state_dict()`` (keys
  ``features.{i}.weight`` and ``features.{i}.bias``; the ``classifier.*`` keys are ignored)
  or the state dict of ``.features`` alone (keys ``{i}.weight``). Kernels go from torch's
  OIHW to Flax's HWIO; torch's convolution is a cross-correlation, like ``lax.conv``, so no
  kernel flip is needed.

  Args:
    state_dict: a mapping from those keys to torch tensors or arrays; weights [O, I, 3, 3],
      biases [O].
    depth: 16 or 19, the configuration the weights are of.

  Returns:
    ``{"features_{i}": {"kernel": [3, 3, I, O], "bias": [O]}}`` float32, the ``params`` of
    ``VGGFeatures(depth)``.

  Raises:
    ValueError: naming the keys, for missing keys, keys of another architecture (another
      depth, vgg*_bn's batch-norm layers) or a weight or bias of the wrong shape.
  """
  check_choice("depth", depth, DEPTHS)
  names = vgg_layer_names(depth)
  indices = VGG_CONV_INDICES[depth]
  features = {key.removeprefix("features."): value for key, value in state_dict.items()
              if not key.startswith("classifier.")}
  keys = {d: {f"{i}.{part}" for i in VGG_CONV_INDICES[d] for part in ("weight", "bias")}
          for d in DEPTHS}
  missing, unexpected = sorted(keys[depth] - set(features)), sorted(set(features) - keys[depth])
  if missing or unexpected:
    layers = sorted({names[int(key.split(".")[0])] for key in missing})
    other = [d for d in DEPTHS if d != depth and set(features) == keys[d]]
    hint = f" (these are vgg{other[0]}'s: pass depth={other[0]})" if other else ""
    raise ValueError(f"state_dict must hold the weight and bias of vgg{depth}'s features at "
                     f"indices {indices}; missing {missing} (layers {layers}), unexpected "
                     f"{unexpected}{hint}.")
  params, in_channels = {}, 3
  for index, out_channels in _layers(depth):
    if out_channels == "M":
      continue
    arrays = {}
    for part, shape in (("weight", (out_channels, in_channels, 3, 3)),
                        ("bias", (out_channels,))):
      arrays[part] = _to_numpy(features[f"{index}.{part}"])
      if arrays[part].shape != shape:
        raise ValueError(f"state_dict['features.{index}.{part}'] ({names[index]} of "
                         f"vgg{depth}) must have shape {shape}, got {arrays[part].shape}.")
    params[f"features_{index}"] = {"kernel": jnp.asarray(arrays["weight"].transpose(2, 3, 1, 0)),
                                   "bias": jnp.asarray(arrays["bias"])}
    in_channels = out_channels
  return params


def _to_numpy(value: Any) -> np.ndarray:
  """A torch tensor (torch is not imported here) or array-like as float32 NumPy."""
  if hasattr(value, "detach"):
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)
