"""Neural style: content and Gram-matrix style losses, per example.

Gatys, Ecker & Bethge, "A neural algorithm of artistic style", arXiv 1508.06576 (2015),
Methods. A layer ``l`` with ``N_l`` filters and maps of ``M_l = h w`` positions holds the
responses ``F^l`` ([N_l, M_l] in the paper; here [B, h, w, N_l], channels last). With ``p``
the photograph, ``a`` the artwork and ``x`` the generated image, ``P^l`` and ``F^l`` the
responses of ``p`` and ``x``:

    L_content(p, x, l) = 1/2 sum_ij (F^l_ij - P^l_ij)^2                       (eq. 1)
    G^l_ij = sum_k F^l_ik F^l_jk                   (the Gram matrix, eq. 3; no normalisation)
    E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2    (A^l: the Gram of a; eq. 4)
    L_style(a, x) = sum_l w_l E_l                                               (eq. 5)
    L_total(p, a, x) = alpha L_content(p, x) + beta L_style(a, x)              (eq. 7)

The paper matches the content at ``conv4_2`` and the style at ``conv1_1``, ``conv2_1``,
``conv3_1``, ``conv4_1`` and ``conv5_1`` with ``w_l = 1/5`` (zero elsewhere) of VGG-19 with
average pooling (``models.vgg.VGGFeatures(19, pooling="avg")`` with ``layers=``; a layer name
is its ReLU's output). Its Fig. 2 uses ``alpha / beta = 1e-3`` (B, C, D) and ``1e-4`` (E, F);
Fig. 3's columns sweep ``1e-5`` to ``1e-2``.

``M_l`` in eq. 4 is the generated image's; ``A^l`` sums over the artwork's own positions, so
an artwork of another size than ``x`` scales ``A^l`` by the ratio of the sizes (resize the
artwork to the generated image's size to keep the paper's weights meaningful). The targets
``P^l`` and ``A^l`` are constants of the optimisation: each loss stops their gradient.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_rank

PAPER_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
PAPER_CONTENT_LAYER = "conv4_2"
PAPER_STYLE_WEIGHTS = types.MappingProxyType({name: 1 / 5 for name in PAPER_STYLE_LAYERS})
PAPER_ALPHA_BETA_RATIOS = (1e-3, 1e-4)  # Fig. 2 B-D and E-F


def gram_matrix(features: jax.Array) -> jax.Array:
  """The Gram matrix of each example's responses (eq. 3), unnormalised as in the paper.

  Args:
    features: [B, h, w, N] float, ``F^l`` with ``M = h w`` positions.

  Returns:
    [B, N, N] float, ``G_ij = sum_k F_ik F_jk`` over the ``M`` positions ``k``.
  """
  check_rank("features", features, "[B, h, w, N]")
  return jnp.einsum("bhwi,bhwj->bij", features, features, precision=jax.lax.Precision.HIGHEST)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
  """``1/2 sum (F - P)^2`` per example (eq. 1).

  Args:
    features: [B, h, w, N] float, ``F^l`` of the generated images.
    target: [B or 1, h, w, N] float, ``P^l`` of the content image(s); gradient stopped.

  Returns:
    [B] float.

  Raises:
    ValueError: for a target of another shape (content and generated images of different
      sizes give different ``h, w``).
  """
  check_rank("features", features, "[B, h, w, N]")
  _check_target("target", target, "[B or 1, h, w, N]", features.shape[1:], len(features))
  diff = features - jax.lax.stop_gradient(target)
  return 0.5 * jnp.sum(jnp.square(diff), axis=(1, 2, 3))


def style_layer_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
  """``E_l = 1 / (4 N^2 M^2) sum (G - A)^2`` per example (eq. 4).

  Args:
    features: [B, h, w, N] float, ``F^l`` of the generated images (``M = h w``).
    target_gram: [B or 1, N, N] float, ``A^l`` of the style image(s); gradient stopped.

  Returns:
    [B] float.
  """
  check_rank("features", features, "[B, h, w, N]")
  batch, h, w, n = features.shape
  _check_target("target_gram", target_gram, "[B or 1, N, N]", (n, n), batch)
  diff = (gram_matrix(features) - jax.lax.stop_gradient(target_gram)) / (2.0 * n * h * w)
  return jnp.sum(jnp.square(diff), axis=(1, 2))


def style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
               weights: Mapping[str, float] = PAPER_STYLE_WEIGHTS) -> jax.Array:
  """``L_style = sum_l w_l E_l`` per example (eq. 5), over the layers ``weights`` names.

  Args:
    features: ``{layer: [B, h, w, N_l]}`` of the generated images; may hold other layers.
    target_grams: ``{layer: [B or 1, N_l, N_l]}``, ``A^l`` of the style image(s).
    weights: ``{layer: w_l}``, non-negative; the paper's 1/5 on ``PAPER_STYLE_LAYERS``.

  Returns:
    [B] float.

  Raises:
    ValueError: for no weights, a negative weight, or a weighted layer missing from
      ``features`` or ``target_grams``.
  """
  if not weights:
    raise ValueError(f"weights must name at least one layer, got {dict(weights)!r}.")
  for source, mapping in (("features", features), ("target_grams", target_grams)):
    missing = [name for name in weights if name not in mapping]
    if missing:
      raise ValueError(f"weights names layers {missing} that {source} lacks; {source} holds "
                       f"{sorted(mapping)}.")
  total = 0.0
  for name, weight in weights.items():
    weight = check_float(f"weights[{name!r}]", weight, low=0.0)
    total = total + weight * style_layer_loss(features[name], target_grams[name])
  return total


def total_loss(features: Mapping[str, jax.Array], *, content_target: jax.Array,
               style_grams: Mapping[str, jax.Array],
               content_layer: str = PAPER_CONTENT_LAYER,
               style_weights: Mapping[str, float] = PAPER_STYLE_WEIGHTS,
               alpha: float = 1.0, beta: float = 1e3) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``alpha L_content + beta L_style`` per example (eq. 7).

  Args:
    features: ``{layer: [B, h, w, N_l]}`` of the generated images, holding ``content_layer``
      and every layer of ``style_weights``.
    content_target: [B or 1, h, w, N], ``P^l`` of the content image(s) at ``content_layer``.
    style_grams: ``{layer: [B or 1, N_l, N_l]}``, ``A^l`` of the style image(s).
    content_layer: the layer of eq. 1 (the paper's ``conv4_2``).
    style_weights: ``{layer: w_l}`` of eq. 5 (the paper's 1/5 on conv1_1 ... conv5_1).
    alpha, beta: the non-negative weights of eq. 7 (floats, or arrays, unchecked, to vary them
      under ``jax.jit``); the default ratio 1e-3 is Fig. 2 B-D's.

  Returns:
    ``(loss [B], {"content": [B] L_content, "style": [B] L_style})``, unweighted parts.

  Raises:
    ValueError: for a content layer missing from ``features``, a content target of another
      shape than its features (content and generated images of different sizes), and the
      errors of ``style_loss``.
  """
  for name, value in (("alpha", alpha), ("beta", beta)):
    if not isinstance(value, jax.Array):
      check_float(name, value, low=0.0)
  if content_layer not in features:
    raise ValueError(f"content_layer must be a layer of features {sorted(features)}, got "
                     f"{content_layer!r}.")
  generated = features[content_layer]
  check_rank(f"features[{content_layer!r}]", generated, "[B, h, w, N]")
  if np.shape(content_target)[1:] != generated.shape[1:]:
    raise ValueError(f"content_target ({content_layer} of the content image) must match "
                     f"features[{content_layer!r}] (of the generated image) in [h, w, N]: "
                     f"the two images must have one size, got {np.shape(content_target)} and "
                     f"{generated.shape}.")
  parts = {"content": content_loss(generated, content_target),
           "style": style_loss(features, style_grams, weights=style_weights)}
  return alpha * parts["content"] + beta * parts["style"], parts


@dataclasses.dataclass(frozen=True, eq=False)
class StyleObjective:
  """eq. 7 as a function of the generated images, the feature network and targets bound.

  ``features_fn(images [B, H, W, 3], *, layers) -> {layer: [B, h, w, N_l]}``, e.g.
  ``functools.partial(VGGFeatures(19, pooling="avg").apply, {"params": params})``: a frozen
  network (its parameters are closed over, not optimised). Build with ``from_images``; call
  on the generated images for ``(loss [B], {"content": [B], "style": [B]})``. Hashable by
  identity, so it can be a static argument of ``jax.jit``.

  Attributes:
    features_fn: the network, as above.
    content_target: [1 or B, h, w, N], ``P^l`` at ``content_layer``.
    style_grams: ``{layer: [1 or B, N_l, N_l]}``, ``A^l`` for each layer of
      ``style_weights``.
    content_layer, style_weights, alpha, beta: as in ``total_loss``.
  """

  features_fn: Callable[..., Mapping[str, jax.Array]]
  content_target: jax.Array
  style_grams: Mapping[str, jax.Array]
  content_layer: str = PAPER_CONTENT_LAYER
  style_weights: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: PAPER_STYLE_WEIGHTS)
  alpha: float = 1.0
  beta: float = 1e3

  @property
  def layers(self) -> tuple[str, ...]:
    """The layers ``features_fn`` is asked for: the content layer, then the style layers."""
    return tuple(dict.fromkeys((self.content_layer, *self.style_weights)))

  @classmethod
  def from_images(cls, features_fn: Callable[..., Mapping[str, jax.Array]], *,
                  content_images: jax.Array, style_images: jax.Array,
                  content_layer: str = PAPER_CONTENT_LAYER,
                  style_weights: Mapping[str, float] = PAPER_STYLE_WEIGHTS,
                  alpha: float = 1.0, beta: float = 1e3) -> StyleObjective:
    """The objective of ``content_images`` ([1 or B, H, W, 3], the generated images' size)
    in the style of ``style_images`` ([1 or B, H', W', 3]; module docstring on sizes)."""
    check_rank("content_images", content_images, "[B, H, W, C]")
    check_rank("style_images", style_images, "[B, H, W, C]")
    content = features_fn(content_images, layers=(content_layer,))[content_layer]
    style = features_fn(style_images, layers=tuple(style_weights))
    return cls(features_fn, content_target=jax.lax.stop_gradient(content),
               style_grams={name: jax.lax.stop_gradient(gram_matrix(style[name]))
                            for name in style_weights},
               content_layer=content_layer, style_weights=style_weights, alpha=alpha,
               beta=beta)

  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, H, W, 3] generated images -> ``(loss [B], {"content": [B], "style": [B]})``."""
    check_rank("images", images, "[B, H, W, C]")
    return total_loss(self.features_fn(images, layers=self.layers),
                      content_target=self.content_target, style_grams=self.style_grams,
                      content_layer=self.content_layer, style_weights=self.style_weights,
                      alpha=self.alpha, beta=self.beta)


def _check_target(name: str, target: Any, layout: str, shape: tuple[int, ...],
                  batch: int) -> None:
  """A ValueError unless ``target`` is [1 or batch, *shape]."""
  got = tuple(np.shape(target))
  if len(got) != len(shape) + 1 or got[0] not in (1, batch) or got[1:] != tuple(shape):
    raise ValueError(f"{name} must have shape {layout} = [1 or {batch}, "
                     f"{', '.join(map(str, shape))}], got {got}.")
