"""Spatial Transformer Networks (Jaderberg, Simonyan, Zisserman, Kavukcuoglu, NIPS 2015).

A spatial transformer (Sec. 3, Fig. 2) has three parts: a *localisation network*
regresses transformation parameters theta from the input feature map U (Sec. 3.1),
a *grid generator* maps a regular output grid G through T_theta (Sec. 3.2, Eq. 1),
and a *sampler* reads U at the transformed points with a bilinear kernel
(Sec. 3.3, Eq. 5). The grid generator and sampler are the parameter-free ops of
`vislang_jax.ops.sampling`; this file holds the learned parts and the paper's
MNIST classifiers (Sec. 4.1, Appendix A).

Coordinates follow `vislang_jax.ops.sampling`: normalised (x, y) in [-1, 1], theta
mapping *output* coordinates to *input* (source) coordinates (Eq. 1). Images are NHWC.
`align_corners` picks where -1 and +1 lie, for the grid generator and the sampler
together (so the identity transform returns its input either way):
  False (default)  on the outer edges of the image (PyTorch's default);
  True             on the centres of the corner pixels, as in the Torch reference
                   qassemoquab/stnbhwd: its AffineGridGeneratorBHWD.lua builds the target
                   grid as -1 + (i-1)/(height-1)*2 and its BilinearSamplerBHWD reads source
                   pixel (x+1)*(width-1)/2. (Checked on the copies of both files in the
                   code index: ankurhanda/gvnn's AffineGridGeneratorBHWD.lua and a C port
                   of the sampler; the paper itself only says -1..1 spans the image.)
The two differ by a scale of (n-1)/n about the centre, so a theta learned under one
convention is a slightly different warp under the other.

Transformations (Sec. 3.2, Sec. 4.1 "Aff", "Proj", "TPS"):
  affine      6 parameters, theta [B, 2, 3]; identity [1, 0, 0, 0, 1, 0].
  projective  8 parameters, h [B, 3, 3] with h33 = 1; identity [1,0,0, 0,1,0, 0,0].
  tps         2K parameters, offsets [B, K, 2] of K = g*g control points on a g x g
              grid; identity = zeros. Sec. 4.1 uses "a 16-point thin plate spline",
              so the default is g = 4.

Identity initialisation: the final regression layer of every localisation network
has a zero kernel and a bias equal to the identity parameters, so at
initialisation every transformer returns its input resampled by the identity
(exactly its input when out_hw equals the input size), and training starts from
"look at the whole image" instead of a random warp.

Architectures (my reading of Sec. 4.1 and Appendix A; every size is a field):
  Sec. 4.1: "all with three weight layers in the classification network", ReLU,
  softmax classifier, "The CNN models include two max-pooling layers".
  FCN       two hidden fully connected layers (128 units each) + linear output.
  CNN       conv[32, 9x9] - max[2x2] - conv[32, 7x7] - max[2x2] - FC[num_classes].
  localisation "fc"    FCN with two hidden layers of 32 units + regression layer.
  localisation "conv"  conv[20, 5x5] - max[2x2] - conv[20, 5x5] - max[2x2] - FC[20]
                        + regression layer.
  The paper does not state convolution padding; "SAME" is the default so the
  downsampled transformer outputs (e.g. 14x14 from 28x28) stay valid inputs for
  the 9x9/7x7 CNN; `padding="VALID"` gives unpadded Torch-style layers.

Several transformers (Sec. 3.4 places them in parallel or at increasing depths):
`ParallelTransformers` applies N transformers to the same input and concatenates
their outputs on channels, like the 2x/4x ST-CNN of the CUB birds experiment
(Sec. 4.3); here each transformer has its own localisation network.
`SerialTransformers` chains them, each localisation network seeing the previous
transformer's output.

Every model returns `(output, aux)`; aux holds what a notebook plots.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import (check_choice, check_hw, check_int, check_positive_int,
                                check_rank)
from vislang_jax.ops import sampling

TRANSFORMS = ("affine", "projective", "tps")
LOCALISATIONS = ("fc", "conv")
CLASSIFIERS = ("fcn", "cnn", "st_fcn", "st_cnn")
ARRANGEMENTS = ("parallel", "serial")


def num_transform_params(transform: str, *, tps_grid_size: int = 4) -> int:
  """Number of parameters a localisation network regresses for `transform`."""
  check_choice("transform", transform, TRANSFORMS)
  if transform == "affine":
    return 6
  if transform == "projective":
    return 8
  check_int("tps_grid_size", tps_grid_size, low=2)
  return 2 * tps_grid_size * tps_grid_size


def identity_transform_params(transform: str, *, tps_grid_size: int = 4
                              ) -> tuple[float, ...]:
  """The flat parameter vector [P] of the identity transform.

  affine: theta = [[1, 0, 0], [0, 1, 0]] (Eq. 1 with A_theta = [I | 0]);
  projective: h = I with h33 = 1 fixed, so the 8 free entries are
  [1, 0, 0, 0, 1, 0, 0, 0]; tps: zero control-point offsets.
  """
  check_choice("transform", transform, TRANSFORMS)
  if transform == "affine":
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
  if transform == "projective":
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
  return (0.0,) * num_transform_params("tps", tps_grid_size=tps_grid_size)


def params_to_grid(params: jax.Array, transform: str, out_hw: tuple[int, int],
                   *, tps_grid_size: int = 4, align_corners: bool = False
                   ) -> tuple[jax.Array, jax.Array]:
  """Turns regressed parameters into the transform and its sampling grid.

  Args:
    params: [B, P] float, the localisation network's output (P from
      `num_transform_params`).
    transform: "affine", "projective" or "tps".
    out_hw: (Ho, Wo) of the output grid.
    tps_grid_size: g, the TPS control points lie on a g x g grid.
    align_corners: the normalisation of the target grid (module docstring).

  Returns:
    theta: the structured transform, [B, 2, 3] (affine), [B, 3, 3] with
      theta[:, 2, 2] == 1 (projective), or [B, g*g, 2] (dx, dy) offsets of
      the source control points, ordered as `sampling.tps_control_points(g)`
      (row-major, y outer) (tps).
    grid: [B, Ho, Wo, 2] normalised (x, y) source coordinates (Sec. 3.2).
  """
  num_params = num_transform_params(transform, tps_grid_size=tps_grid_size)
  if params.ndim != 2 or params.shape[-1] != num_params:
    raise ValueError(
        f"params must be [B, {num_params}] for transform={transform!r}; "
        f"got shape {tuple(params.shape)}.")
  batch = params.shape[0]
  if transform == "affine":
    theta = params.reshape(batch, 2, 3)
    return theta, sampling.affine_grid(theta, out_hw, align_corners=align_corners)
  if transform == "projective":
    ones = jnp.ones((batch, 1), params.dtype)
    theta = jnp.concatenate([params, ones], axis=-1).reshape(batch, 3, 3)
    return theta, sampling.projective_grid(theta, out_hw, align_corners=align_corners)
  # The default control points of tps_grid are tps_control_points(tps_grid_size).
  theta = params.reshape(batch, tps_grid_size * tps_grid_size, 2)
  return theta, sampling.tps_grid(theta, out_hw, align_corners=align_corners)


def _identity_bias_init(identity: Sequence[float]):
  def init(key, shape, dtype=jnp.float32):
    del key
    bias = jnp.asarray(identity, dtype)
    if bias.shape != tuple(shape):
      raise ValueError(
          f"identity_params has {bias.shape[0]} entries; the regression layer "
          f"has shape {tuple(shape)}.")
    return bias
  return init


class LocalisationNet(nn.Module):
  """Regresses flat transform parameters from an image (Sec. 3.1).

  The final ("regressor") layer has a zero kernel and bias `identity_params`, so
  at initialisation the output is the identity transform for every input.

  Attributes:
    identity_params: [P] the identity parameter vector; P is the output size.
    kind: "fc" (fully connected, ST-FCN) or "conv" (convolutional, ST-CNN).
    fc_features: hidden widths of the "fc" variant (Appendix A: 2 x 32).
    conv_features: filters of the "conv" variant's conv layers (2 x 20).
    conv_kernel: kernel size of those conv layers (5).
    conv_dense: width of the "conv" variant's hidden FC layer (20).
    padding: padding of the conv layers.
  """
  identity_params: Sequence[float]
  kind: str = "conv"
  fc_features: Sequence[int] = (32, 32)
  conv_features: Sequence[int] = (20, 20)
  conv_kernel: int = 5
  conv_dense: int = 20
  padding: str = "SAME"

  def __post_init__(self):
    check_choice("localisation", self.kind, LOCALISATIONS)
    if len(self.identity_params) == 0:
      raise ValueError("identity_params must be non-empty; got ().")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """images: [B, H, W, C] float -> params: [B, P] float."""
    check_rank("images", images, "[B, H, W, C]")
    x = images
    if self.kind == "conv":
      for i, features in enumerate(self.conv_features):
        x = nn.Conv(features, (self.conv_kernel, self.conv_kernel),
                    padding=self.padding, name=f"conv_{i}")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
      x = x.reshape(x.shape[0], -1)
      x = nn.relu(nn.Dense(self.conv_dense, name="dense")(x))
    else:
      x = x.reshape(x.shape[0], -1)
      for i, features in enumerate(self.fc_features):
        x = nn.relu(nn.Dense(features, name=f"dense_{i}")(x))
    return nn.Dense(len(self.identity_params), name="regressor",
                    kernel_init=nn.initializers.zeros,
                    bias_init=_identity_bias_init(self.identity_params))(x)


class SpatialTransformer(nn.Module):
  """One spatial transformer: localisation net, grid generator, sampler (Fig. 2).

  The localisation network sees the input image and the sampler samples the
  input image, so `out_hw` smaller than the input downsamples (Sec. 3.4).

  Attributes:
    transform: "affine", "projective" or "tps".
    out_hw: (Ho, Wo) of the output; None keeps the input's (H, W).
    localisation: "fc" or "conv" (see `LocalisationNet`).
    tps_grid_size: g for "tps": g x g control points (Sec. 4.1: 16 points).
    fc_features, conv_features, conv_kernel, conv_dense: localisation sizes.
    padding_mode: the sampler's out-of-image value ("zeros" as in the paper).
    align_corners: where -1 and +1 lie, for the grid and the sampler alike (module
      docstring): the outer image edges (False) or the corner pixel centres (True, the
      Torch reference stnbhwd).
  """
  transform: str = "affine"
  out_hw: tuple[int, int] | None = None
  localisation: str = "conv"
  tps_grid_size: int = 4
  fc_features: Sequence[int] = (32, 32)
  conv_features: Sequence[int] = (20, 20)
  conv_kernel: int = 5
  conv_dense: int = 20
  padding_mode: str = "zeros"
  align_corners: bool = False

  def __post_init__(self):
    check_choice("transform", self.transform, TRANSFORMS)
    check_choice("localisation", self.localisation, LOCALISATIONS)
    check_int("tps_grid_size", self.tps_grid_size, low=2)
    object.__setattr__(self, "out_hw", check_hw("out_hw", self.out_hw, allow_none=True))
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Transforms a batch of images.

    Args:
      images: [B, H, W, C] float.

    Returns:
      transformed: [B, Ho, Wo, C] float.
      aux: {"theta": the structured transform (see `params_to_grid`),
            "grid": [B, Ho, Wo, 2] normalised (x, y) sampling points}.
    """
    check_rank("images", images, "[B, H, W, C]")
    out_hw = self.out_hw or (images.shape[1], images.shape[2])
    identity = identity_transform_params(self.transform,
                                         tps_grid_size=self.tps_grid_size)
    params = LocalisationNet(
        identity_params=identity, kind=self.localisation,
        fc_features=self.fc_features, conv_features=self.conv_features,
        conv_kernel=self.conv_kernel, conv_dense=self.conv_dense,
        name="localisation")(images)
    theta, grid = params_to_grid(params, self.transform, out_hw,
                                 tps_grid_size=self.tps_grid_size,
                                 align_corners=self.align_corners)
    transformed = sampling.bilinear_sample(images, grid, padding_mode=self.padding_mode,
                                           align_corners=self.align_corners)
    return transformed, {"theta": theta, "grid": grid}


class _TransformerGroup(nn.Module):
  """Several transformers, each `images -> (out, aux)` with its own parameters.

  Attributes:
    transformers: the transformers (at least one).
  """
  transformers: Sequence[nn.Module]

  def __post_init__(self):
    if len(self.transformers) == 0:
      raise ValueError("transformers must hold at least one transformer; got ().")
    super().__post_init__()


class ParallelTransformers(_TransformerGroup):
  """N transformers on the same input, outputs concatenated on channels.

  Each transformer has its own localisation network (cf. the 2x/4x ST-CNN of
  Sec. 4.3); all must produce the same (Ho, Wo).
  """

  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """images: [B, H, W, C] -> ([B, Ho, Wo, N*C], {"branches": (aux_1..aux_N)})."""
    check_rank("images", images, "[B, H, W, C]")
    outputs, auxes = zip(*(t(images) for t in self.transformers))
    sizes = [o.shape[1:3] for o in outputs]
    if len(set(sizes)) != 1:
      raise ValueError(
          f"transformers must share one output size (Ho, Wo); got {sizes}.")
    return jnp.concatenate(outputs, axis=-1), {"branches": tuple(auxes)}


class SerialTransformers(_TransformerGroup):
  """Transformers in series: each one transforms the previous one's output, so
  each localisation network sees the previous transformer's output."""

  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """images: [B, H, W, C] -> ([B, Ho, Wo, C] of the last, {"stages": (aux_1..aux_N)})."""
    check_rank("images", images, "[B, H, W, C]")
    x, auxes = images, []
    for transformer in self.transformers:
      x, aux = transformer(x)
      auxes.append(aux)
    return x, {"stages": tuple(auxes)}


class FCN(nn.Module):
  """Fully connected baseline (Sec. 4.1): hidden ReLU layers, linear output.

  Attributes:
    num_classes: number of logits.
    features: hidden widths (two hidden layers: three weight layers in all).
  """
  num_classes: int = 10
  features: Sequence[int] = (128, 128)

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """images: [B, H, W, C] float -> (logits [B, num_classes], {})."""
    check_rank("images", images, "[B, H, W, C]")
    x = images.reshape(images.shape[0], -1)
    for i, features in enumerate(self.features):
      x = nn.relu(nn.Dense(features, name=f"dense_{i}")(x))
    return nn.Dense(self.num_classes, name="logits")(x), {}


class CNN(nn.Module):
  """Convolutional baseline (Sec. 4.1, Appendix A).

  conv[32, 9x9] - ReLU - max[2x2] - conv[32, 7x7] - ReLU - max[2x2] - FC[classes]:
  three weight layers and two max-pooling layers.

  Attributes:
    num_classes: number of logits.
    features: filters per conv layer.
    kernel_sizes: kernel size per conv layer.
    padding: conv padding ("SAME" default, see the module docstring).
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 32)
  kernel_sizes: Sequence[int] = (9, 7)
  padding: str = "SAME"

  def __post_init__(self):
    if len(self.features) != len(self.kernel_sizes):
      raise ValueError(
          f"features and kernel_sizes must have the same length; got "
          f"{len(self.features)} and {len(self.kernel_sizes)}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """images: [B, H, W, C] float -> (logits [B, num_classes], {})."""
    check_rank("images", images, "[B, H, W, C]")
    x = images
    for i, (features, k) in enumerate(zip(self.features, self.kernel_sizes)):
      x = nn.Conv(features, (k, k), padding=self.padding, name=f"conv_{i}")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes, name="logits")(x), {}


class STClassifier(nn.Module):
  """A transformer in front of a classifier head: ST-FCN, ST-CNN (Sec. 4.1).

  The head is fed the *transformed* image.

  Attributes:
    transformer: `images -> (transformed, aux)`: a `SpatialTransformer`,
      `ParallelTransformers` or `SerialTransformers`.
    head: `images -> (logits, aux)`: `FCN` or `CNN`.
  """
  transformer: nn.Module
  head: nn.Module

  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """images: [B, H, W, C] float -> (logits [B, num_classes], aux).

    aux: the transformer's aux ("theta", "grid" for one transformer;
    "branches" / "stages" for several) plus "transformed" [B, Ho, Wo, C'].
    """
    check_rank("images", images, "[B, H, W, C]")
    transformed, aux = self.transformer(images)
    logits, _ = self.head(transformed)
    return logits, {**aux, "transformed": transformed}


def make_classifier(name: str, *, transform: str = "affine",
                    num_classes: int = 10,
                    out_hw: tuple[int, int] | None = None,
                    localisation: str | None = None,
                    tps_grid_size: int = 4,
                    num_transformers: int = 1,
                    arrangement: str = "parallel",
                    padding_mode: str = "zeros",
                    align_corners: bool = False) -> nn.Module:
  """Builds one of the paper's MNIST classifiers (Sec. 4.1, Table 1).

  Args:
    name: "fcn", "cnn", "st_fcn" or "st_cnn".
    transform: "affine", "projective" or "tps" (ST models only).
    num_classes: number of logits.
    out_hw: the transformer's output size; None keeps the input size.
    localisation: "fc" or "conv"; None picks the paper's pairing, an FC
      localisation net for ST-FCN and a convolutional one for ST-CNN.
    tps_grid_size: g for transform="tps" (g*g control points).
    num_transformers: how many spatial transformers (ST models only).
    arrangement: "parallel" (channel concat) or "serial", for
      num_transformers > 1.
    padding_mode: the sampler's out-of-image value.
    align_corners: the grid and sampler convention (see `SpatialTransformer`).

  Returns:
    A module `images [B, H, W, C] -> (logits [B, num_classes], aux)`.
  """
  check_choice("name", name, CLASSIFIERS)
  check_choice("transform", transform, TRANSFORMS)
  if localisation is not None:
    check_choice("localisation", localisation, LOCALISATIONS)
  check_choice("arrangement", arrangement, ARRANGEMENTS)
  check_positive_int("num_classes", num_classes)
  check_positive_int("num_transformers", num_transformers)
  head = FCN(num_classes) if name in ("fcn", "st_fcn") else CNN(num_classes)
  if name in ("fcn", "cnn"):
    return head
  if localisation is None:
    localisation = "fc" if name == "st_fcn" else "conv"
  transformers = tuple(
      SpatialTransformer(transform=transform, out_hw=out_hw,
                         localisation=localisation, tps_grid_size=tps_grid_size,
                         padding_mode=padding_mode, align_corners=align_corners)
      for _ in range(num_transformers))
  if num_transformers == 1:
    transformer = transformers[0]
  elif arrangement == "parallel":
    transformer = ParallelTransformers(transformers)
  else:
    transformer = SerialTransformers(transformers)
  return STClassifier(transformer=transformer, head=head)
