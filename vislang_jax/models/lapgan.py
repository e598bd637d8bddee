"""LAPGAN: a Laplacian pyramid of adversarial networks (Denton et al., 2015).

Denton, Chintala, Szlam, Fergus, "Deep Generative Image Models using a Laplacian Pyramid of
Adversarial Networks", NeurIPS 2015, Sec. 3.2 and 4. With the pyramid of ``ops.pyramid``
(``I_{k+1} = d(I_k)``, ``h_k = I_k - u(I_{k+1})``, levels ``k = 0`` (full size) to ``K``):

* level ``K`` (coarsest) is an ordinary GAN on ``I_K``: ``I~_K = G_K(z_K)``;
* every level ``k < K`` is a conditional GAN on the band-pass image: with the low-pass
  ``l_k = u(I_{k+1})``, ``G_k(z_k, l_k)`` returns a band ``h~_k`` and ``D_k`` scores
  ``h + l_k`` for ``h = h_k`` (real) or ``h~_k`` (generated);
* sampling runs coarse to fine, ``I~_k = u(I~_{k+1}) + G_k(z_k, u(I~_{k+1}))`` (eq. 3):
  exactly ``ops.pyramid.reconstruct([h~_0, ..., h~_{K-1}, I~_K])``.

Training (Sec. 3.2): each level's pair is trained on its own, ``G_k`` conditioned on the
*real* ``l_k`` of a training image: ``training_targets(images, levels=K)`` gives the real
bands and lows, ``LAPGANGenerator(...)(lows)`` the generated bands for the same lows, and
``LAPGANDiscriminator(...)(bands, lows)`` one logit per level. No level's output depends on
another level's inputs or parameters, so summing the per-level GAN losses trains every
level's players independently, as the paper does.

Class-conditional LAPGAN (CC-LAPGAN, Sec. 4, ``num_classes``): the one-hot class ``c``
enters every ``G_k`` and ``D_k``. As in the released code (facebook/eyescream,
``cifar/scripts/train_cifar_classcond.lua`` and ``train_cifar_coarse_to_fine_classcond.lua``)
the coarse MLPs concatenate ``c`` to their input vector, and the convolutional levels turn
``c`` into one extra input plane, ``ReLU(Linear(c))`` reshaped to ``H_k x W_k``.

Architectures, after eyescream's CIFAR-10 models (its README's gist for the 8x8 level,
``cifar/scripts/train_cifar_coarse_to_fine.lua`` for the others), sizes configurable:

* ``G_K``: ``z_K`` (``z_size`` = 100, uniform in [-1, 1]) -> Dense(1200) ReLU -> Dense(1200)
  ReLU -> Dense(H_K W_K C). The gist's second hidden layer is a sigmoid; we take the ReLU of
  the class-conditional script, ``train_cifar_classcond.lua``.
* ``G_k``: ``[z_k, l_k]`` (the noise is one extra input plane, uniform in [-1, 1], "a 4th
  colour plane", Sec. 4) -> Conv 7x7 (128) ReLU -> Conv 7x7 (128) ReLU -> Conv 5x5 (C),
  all "same" convolutions as eyescream's ``SpatialConvolutionUpsample(..., factor 1)``.
* ``D_K``: flattened ``I_K`` -> Dense(600) ReLU Dropout -> Dense(600) ReLU Dropout -> Dense(1).
* ``D_k``: ``h + l_k`` (eyescream's ``CAddTable``; Sec. 3.2: "explicitly added ... before
  the first conv layer") -> Conv 5x5 (128) ReLU -> Conv 5x5 stride 2 (128) ReLU -> Dropout
  -> Dense(1). Eyescream's convolutions here are "valid"; ours are "same", so that small
  levels (4x4 and below) work.

Where we depart, and why (house conventions for images in [0, 1]):

* outputs are bounded: ``G_K`` gives ``(tanh(a) + 1) / 2`` in [0, 1] and ``G_k`` gives
  ``tanh(a)`` in [-1, 1], the range of real bands of images in [0, 1] (``ops.pyramid``);
  eyescream's outputs are linear (its data is mean/std normalised). A zero ``G_k`` adds
  nothing.
* inputs in [0, 1] (``l_k``, ``h + l_k``, ``I_K``) are mapped to [-1, 1] inside.
* the returned sample is clipped to [0, 1]; the levels ``I~_k`` in ``aux`` are not (a sum of
  bounded bands can leave [0, 1] slightly), so that they are the exact reconstruction.
* eyescream's CIFAR models have no batch norm (its LSUN models put it after the ReLUs of
  ``G``); ``LAPGANGenerator(batch_norm=True)`` adds ``BatchNorm`` after each hidden ReLU of
  every ``G_k`` (collection ``batch_stats``; ``train`` picks batch or running statistics).
  ``D`` never has batch norm; its dropout (rate 0.5, eyescream's ``nn.Dropout()``) draws
  from the ``"dropout"`` rng stream when ``train=True``.

Randomness: the noise of every level comes from one draw of the ``"noise"`` rng stream
(``rngs={"params": k1, "noise": k2}`` at init, ``rngs={"noise": k}`` at apply), split into
one key per level, so that ``__call__``, ``sample`` and ``sharpen`` with the same key use the
same ``z_k``.

alignDRAW's sharpening (Mansimov, Parisotto, Ba, Salakhutdinov, "Generating Images from
Captions with Attention", ICLR 2016, Sec. 5): alignDRAW's samples are blurry, and an
adversarial network trained on the residuals of a Laplacian pyramid sharpens them.
``sharpen`` treats an alignDRAW sample ``x`` [B, H, W, C] in [0, 1] as the low-pass image
of the finest level, ``l_0 = x`` (the role ``u(I_1)``, a blurred image, plays in training),
and returns ``clip(x + G_0(z_0, x), 0, 1)``: one LAPGAN level, no coarser ones. The paper
conditions its sharpener on the caption's sentence vector; here ``G_0`` is conditioned on a
class when built with ``num_classes`` and on nothing else.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_float, check_positive_int, concrete, is_int
from vislang_jax.ops import pyramid


def level_shapes(*, height: int, width: int, channels: int,
                 levels: int) -> list[tuple[int, int, int]]:
  """``(H_k, W_k, C)`` for ``k = 0 .. K``: ``H_k = height / 2**k``, ``W_k = width / 2**k``."""
  return [(height // 2**k, width // 2**k, channels) for k in range(levels + 1)]


def training_targets(images: jax.Array, *,
                     levels: int) -> tuple[list[jax.Array], list[jax.Array | None]]:
  """The real per-level inputs of LAPGAN's players (Sec. 3.2).

  Args:
    images: [B, H, W, C] float in [0, 1], ``2**levels`` dividing H and W.
    levels: ``K >= 1``.

  Returns:
    ``(bands, lows)``: ``bands = [h_0, ..., h_{K-1}, I_K]`` (``ops.pyramid``'s Laplacian
    pyramid; ``h_k`` [B, H_k, W_k, C] in [-1, 1], ``I_K`` in [0, 1]) and
    ``lows = [u(I_1), ..., u(I_K), None]`` (``lows[k]`` [B, H_k, W_k, C] in [0, 1]; the
    coarsest level has none), so that ``bands[k] + lows[k] = I_k``.

  Raises:
    ValueError: as ``ops.pyramid.gaussian_pyramid``.
  """
  gaussian = pyramid.gaussian_pyramid(images, levels=levels)
  lows = [pyramid.upsample(coarse) for coarse in gaussian[1:]]
  bands = [fine - low for fine, low in zip(gaussian[:-1], lows)] + [gaussian[-1]]
  return bands, lows + [None]


def _check_config(module: nn.Module, sizes: Sequence[str]) -> None:
  """The attributes both LAPGAN modules share: sizes, ``levels`` and ``num_classes``."""
  for name in ("height", "width", "channels") + tuple(sizes):
    check_positive_int(name, getattr(module, name))
  pyramid.check_levels(module.levels, height=module.height, width=module.width)
  if module.num_classes is not None:
    check_positive_int("num_classes", module.num_classes)


def _one_hot(module: nn.Module, labels: Any, batch: int, name: str = "labels"
             ) -> jax.Array | None:
  """[B, num_classes] one-hot ``labels``, or None for a model without ``num_classes``.

  Raises:
    ValueError: for labels given to a model built without ``num_classes``, missing labels
      for one built with it, or labels that are not [B] integers in [0, num_classes)
      (values checked when concrete).
  """
  num_classes = module.num_classes
  if num_classes is None:
    if labels is not None:
      raise ValueError(f"{name} must be None for a model built without num_classes, got "
                       f"{type(labels).__name__} of shape {np.shape(labels)}.")
    return None
  expected = f"[B] = ({batch},) ints in [0, num_classes) = [0, {num_classes})"
  if labels is None:
    raise ValueError(f"{name} must be {expected} for a model built with num_classes="
                     f"{num_classes}, got None.")
  dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
  values = concrete(labels)
  if (np.shape(labels) != (batch,) or not np.issubdtype(dtype, np.integer)
      or (values is not None and values.size
          and (values.min() < 0 or values.max() >= num_classes))):
    found = "" if values is None or not values.size else f" in [{values.min()}, {values.max()}]"
    raise ValueError(f"{name} must be {expected}, got {dtype} {np.shape(labels)}{found}.")
  return jax.nn.one_hot(labels, num_classes)


def _check_levels_list(name: str, arrays: Any, shapes: Sequence[tuple[int, int, int]], *,
                       last_none: bool, batch: int | None = None) -> int:
  """``arrays``, one [B, H_k, W_k, C] array per level (the last one None if ``last_none``),
  all with one batch size ``B`` (``batch`` when given); returns ``B``."""
  levels = len(shapes) - 1
  layout = "[u(I_1), ..., u(I_K), None]" if last_none else "[h_0, ..., h_(K-1), I_K]"
  if not isinstance(arrays, Sequence) or len(arrays) != levels + 1:
    found = len(arrays) if isinstance(arrays, Sequence) else None
    raise ValueError(f"{name} must be a list of K + 1 = {levels + 1} entries {layout}, got "
                     f"{type(arrays).__name__} of length {found}.")
  if last_none and arrays[levels] is not None:
    raise ValueError(f"{name}[{levels}] must be None (the coarsest level has no low-pass "
                     f"input), got shape {np.shape(arrays[levels])}.")
  if batch is None:
    batch = np.shape(arrays[0])[0] if np.ndim(arrays[0]) == 4 else -1
  for k in range(levels if last_none else levels + 1):
    expected = (batch,) + tuple(shapes[k])
    if tuple(np.shape(arrays[k])) != expected:
      raise ValueError(f"{name}[{k}] must have shape [B, H_k, W_k, C] = {expected}, got "
                       f"{tuple(np.shape(arrays[k]))}.")
  return batch


def _class_plane(onehot: jax.Array | None, height: int, width: int) -> list[jax.Array]:
  """``[ReLU(Linear(c))]`` reshaped to one [B, H, W, 1] plane, or ``[]`` without a class."""
  if onehot is None:
    return []
  plane = nn.relu(nn.Dense(height * width, name="class_plane")(onehot))
  return [plane.reshape(onehot.shape[0], height, width, 1)]


class CoarseGenerator(nn.Module):
  """``G_K``: an MLP from ``z_K`` (and the class) to the coarsest image ``I~_K``.

  Attributes:
    height, width, channels: ``(H_K, W_K, C)``.
    features: hidden units of its two ReLU layers.
    batch_norm: BatchNorm after each hidden ReLU.
  """

  height: int
  width: int
  channels: int
  features: int = 1200
  batch_norm: bool = False

  @nn.compact
  def __call__(self, z: jax.Array, onehot: jax.Array | None, *, train: bool) -> jax.Array:
    """[B, Z] noise, [B, N] one-hot or None -> [B, H_K, W_K, C] in [0, 1]."""
    x = z if onehot is None else jnp.concatenate([z, onehot], axis=-1)
    for _ in range(2):
      x = nn.relu(nn.Dense(self.features)(x))
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.Dense(self.height * self.width * self.channels)(x)
    x = x.reshape(z.shape[0], self.height, self.width, self.channels)
    return (jnp.tanh(x) + 1.0) / 2.0


class BandGenerator(nn.Module):
  """``G_k``, ``k < K``: a convnet from ``[z_k, l_k]`` (and the class) to the band ``h~_k``.

  Attributes:
    channels: ``C``.
    features: channels of its two hidden 7x7 convolutions.
    batch_norm: BatchNorm after each hidden ReLU.
  """

  channels: int
  features: int = 128
  batch_norm: bool = False

  @nn.compact
  def __call__(self, z: jax.Array, low: jax.Array, onehot: jax.Array | None, *,
               train: bool) -> jax.Array:
    """[B, H_k, W_k, 1] noise, [B, H_k, W_k, C] ``l_k`` in [0, 1], [B, N] or None ->
    [B, H_k, W_k, C] ``h~_k`` in [-1, 1]."""
    _, height, width, _ = low.shape
    x = jnp.concatenate([z, 2.0 * low - 1.0] + _class_plane(onehot, height, width), axis=-1)
    for _ in range(2):
      x = nn.relu(nn.Conv(self.features, (7, 7), padding="SAME")(x))
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return jnp.tanh(nn.Conv(self.channels, (5, 5), padding="SAME")(x))


class CoarseDiscriminator(nn.Module):
  """``D_K``: an MLP scoring the coarsest image (and the class).

  Attributes:
    features: hidden units of its two ReLU layers.
    dropout_rate: dropout after each hidden layer when ``train``.
  """

  features: int = 600
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, image: jax.Array, onehot: jax.Array | None, *, train: bool) -> jax.Array:
    """[B, H_K, W_K, C] in [0, 1], [B, N] or None -> [B] logits."""
    x = (2.0 * image - 1.0).reshape(image.shape[0], -1)
    if onehot is not None:
      x = jnp.concatenate([x, onehot], axis=-1)
    for _ in range(2):
      x = nn.relu(nn.Dense(self.features)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(1)(x)[:, 0]


class BandDiscriminator(nn.Module):
  """``D_k``, ``k < K``: a convnet scoring ``h + l_k`` (and the class).

  Attributes:
    features: channels of its two 5x5 convolutions.
    dropout_rate: dropout before the output layer when ``train``.
  """

  features: int = 128
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, band: jax.Array, low: jax.Array, onehot: jax.Array | None, *,
               train: bool) -> jax.Array:
    """[B, H_k, W_k, C] ``h``, [B, H_k, W_k, C] ``l_k``, [B, N] or None -> [B] logits."""
    batch, height, width, _ = band.shape
    x = 2.0 * (band + low) - 1.0
    x = jnp.concatenate([x] + _class_plane(onehot, height, width), axis=-1)
    x = nn.relu(nn.Conv(self.features, (5, 5), padding="SAME")(x))
    x = nn.relu(nn.Conv(self.features, (5, 5), strides=(2, 2), padding="SAME")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.reshape(batch, -1))
    return nn.Dense(1)(x)[:, 0]


class LAPGANGenerator(nn.Module):
  """All of LAPGAN's generators ``G_0, ..., G_K`` (module docstring).

  Parameters: ``band_generators_k`` (``G_k``, ``k < K``) and ``coarse_generator`` (``G_K``).

  Attributes:
    height, width, channels: the full-size image ``(H, W, C)``.
    levels: ``K >= 1``; ``2**K`` must divide ``height`` and ``width``.
    features: hidden channels of every ``G_k``, ``k < K`` (eyescream: 128).
    coarse_features: hidden units of ``G_K`` (eyescream: 1200).
    z_size: size of ``G_K``'s noise vector (eyescream: 100).
    num_classes: None, or ``N`` for CC-LAPGAN (labels required).
    batch_norm: BatchNorm after every hidden ReLU (eyescream's LSUN models; off as in its
      CIFAR ones).
  """

  height: int
  width: int
  channels: int = 1
  levels: int = 2
  features: int = 128
  coarse_features: int = 1200
  z_size: int = 100
  num_classes: int | None = None
  batch_norm: bool = False

  def __post_init__(self):
    _check_config(self, ("features", "coarse_features", "z_size"))
    super().__post_init__()

  def setup(self):
    self.shapes = level_shapes(height=self.height, width=self.width,
                               channels=self.channels, levels=self.levels)
    self.band_generators = [BandGenerator(self.channels, self.features, self.batch_norm)
                            for _ in range(self.levels)]
    coarse_height, coarse_width, _ = self.shapes[-1]
    self.coarse_generator = CoarseGenerator(coarse_height, coarse_width, self.channels,
                                            self.coarse_features, self.batch_norm)

  def _noise(self, batch: int) -> list[jax.Array]:
    """``[z_0, ..., z_K]``: ``z_k`` [B, H_k, W_k, 1] for ``k < K``, ``z_K`` [B, z_size],
    uniform in [-1, 1] (eyescream), one ``"noise"`` draw split into one key per level."""
    keys = jax.random.split(self.make_rng("noise"), self.levels + 1)
    noise = [jax.random.uniform(keys[k], (batch,) + self.shapes[k][:2] + (1,),
                                minval=-1.0, maxval=1.0) for k in range(self.levels)]
    return noise + [jax.random.uniform(keys[-1], (batch, self.z_size), minval=-1.0,
                                       maxval=1.0)]

  def __call__(self, lows: Sequence[jax.Array | None], labels: jax.Array | None = None, *,
               train: bool) -> list[jax.Array]:
    """Every level's generated output for given low-pass images (training).

    Args:
      lows: ``[l_0, ..., l_{K-1}, None]``, ``l_k`` [B, H_k, W_k, C] in [0, 1]: the real
        ``u(I_{k+1})`` of ``training_targets`` when training.
      labels: [B] ints in [0, num_classes) for CC-LAPGAN, else None.
      train: batch statistics (and their update) instead of running ones, with batch_norm.

    Returns:
      ``[h~_0, ..., h~_{K-1}, I~_K]``: ``h~_k = G_k(z_k, l_k)`` [B, H_k, W_k, C] in [-1, 1],
      ``I~_K = G_K(z_K)`` [B, H_K, W_K, C] in [0, 1].

    Raises:
      ValueError: for lows of the wrong number or shapes, or labels that do not fit
        ``num_classes``.
    """
    batch = _check_levels_list("lows", lows, self.shapes, last_none=True)
    onehot = _one_hot(self, labels, batch)
    noise = self._noise(batch)
    bands = [self.band_generators[k](noise[k], lows[k], onehot, train=train)
             for k in range(self.levels)]
    return bands + [self.coarse_generator(noise[-1], onehot, train=train)]

  def sample(self, num_or_labels: int | jax.Array, *, train: bool = False
             ) -> tuple[jax.Array, dict[str, list[jax.Array]]]:
    """Coarse-to-fine samples, ``I~_k = u(I~_{k+1}) + G_k(z_k, u(I~_{k+1}))`` (eq. 3).

    Args:
      num_or_labels: the number of samples ``B`` (a model without ``num_classes``), or
        their [B] int labels (CC-LAPGAN).
      train: as in ``__call__`` (running statistics by default).

    Returns:
      ``(images, aux)``: ``images`` [B, H, W, C], ``I~_0`` clipped to [0, 1];
      ``aux["levels"]``: ``[I~_K, ..., I~_0]`` coarse to fine (unclipped), ``I~_k``
      [B, H_k, W_k, C]; ``aux["bands"]``: ``[h~_0, ..., h~_{K-1}, I~_K]``, the generated
      Laplacian pyramid (``ops.pyramid.reconstruct`` of it is ``I~_0``).
    """
    if self.num_classes is None:
      batch = check_positive_int("num_or_labels", num_or_labels)
      onehot = None
    elif is_int(num_or_labels):
      raise ValueError(f"num_or_labels must be [B] int labels for a model built with "
                       f"num_classes={self.num_classes}, got the int {num_or_labels}.")
    else:
      batch = np.shape(num_or_labels)[0] if np.ndim(num_or_labels) == 1 else -1
      onehot = _one_hot(self, num_or_labels, batch, name="num_or_labels")
    noise = self._noise(batch)
    image = self.coarse_generator(noise[-1], onehot, train=train)
    levels, bands = [image], [image]
    for k in range(self.levels - 1, -1, -1):
      low = pyramid.upsample(image)
      band = self.band_generators[k](noise[k], low, onehot, train=train)
      image = low + band
      levels.append(image)
      bands.insert(0, band)
    return jnp.clip(image, 0.0, 1.0), {"levels": levels, "bands": bands}

  def sharpen(self, images: jax.Array, labels: jax.Array | None = None, *,
              train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """alignDRAW's sharpening step with ``G_0`` (module docstring).

    Args:
      images: [B, H, W, C] float in [0, 1], e.g. alignDRAW's (blurry) samples: the low-pass
        image ``l_0`` of the finest level.
      labels: [B] ints for CC-LAPGAN, else None.
      train: as in ``__call__``.

    Returns:
      ``(sharpened, aux)``: ``clip(images + G_0(z_0, images), 0, 1)`` [B, H, W, C] and
      ``aux["band"]``, the added ``G_0(z_0, images)`` [B, H, W, C].
    """
    if tuple(np.shape(images)[1:]) != self.shapes[0] or np.ndim(images) != 4:
      raise ValueError(f"images must have shape [B, H, W, C] with (H, W, C) = "
                       f"{self.shapes[0]}, got {tuple(np.shape(images))}.")
    batch = images.shape[0]
    onehot = _one_hot(self, labels, batch)
    band = self.band_generators[0](self._noise(batch)[0], images, onehot, train=train)
    return jnp.clip(images + band, 0.0, 1.0), {"band": band}


class LAPGANDiscriminator(nn.Module):
  """All of LAPGAN's discriminators ``D_0, ..., D_K`` (module docstring).

  Parameters: ``band_discriminators_k`` (``D_k``, ``k < K``) and ``coarse_discriminator``.

  Attributes:
    height, width, channels: the full-size image ``(H, W, C)``.
    levels: ``K >= 1``; ``2**K`` must divide ``height`` and ``width``.
    features: channels of every ``D_k``, ``k < K`` (eyescream: 128).
    coarse_features: hidden units of ``D_K`` (eyescream: 600).
    num_classes: None, or ``N`` for CC-LAPGAN (labels required).
    dropout_rate: eyescream's 0.5; dropout draws from the ``"dropout"`` rng stream when
      ``train``.
  """

  height: int
  width: int
  channels: int = 1
  levels: int = 2
  features: int = 128
  coarse_features: int = 600
  num_classes: int | None = None
  dropout_rate: float = 0.5

  def __post_init__(self):
    _check_config(self, ("features", "coarse_features"))
    check_float("dropout_rate", self.dropout_rate, low=0.0, below=1.0)
    super().__post_init__()

  def setup(self):
    self.shapes = level_shapes(height=self.height, width=self.width,
                               channels=self.channels, levels=self.levels)
    self.band_discriminators = [BandDiscriminator(self.features, self.dropout_rate)
                                for _ in range(self.levels)]
    self.coarse_discriminator = CoarseDiscriminator(self.coarse_features, self.dropout_rate)

  def __call__(self, bands: Sequence[jax.Array], lows: Sequence[jax.Array | None],
               labels: jax.Array | None = None, *, train: bool) -> list[jax.Array]:
    """One logit per level and example.

    Args:
      bands: ``[h_0, ..., h_{K-1}, I_K]``, real (``training_targets``) or generated
        (``LAPGANGenerator``), ``bands[k]`` [B, H_k, W_k, C].
      lows: ``[l_0, ..., l_{K-1}, None]``, the low-pass images the bands belong to.
      labels: [B] ints in [0, num_classes) for CC-LAPGAN, else None.
      train: dropout on (``"dropout"`` rng stream).

    Returns:
      ``K + 1`` logit arrays [B]: ``D_k(bands[k] + lows[k])`` for ``k < K``, then
      ``D_K(bands[K])``; level ``k``'s logits depend on ``bands[k]``, ``lows[k]`` and the
      labels only.

    Raises:
      ValueError: for bands or lows of the wrong number or shapes, or labels that do not
        fit ``num_classes``.
    """
    batch = _check_levels_list("bands", bands, self.shapes, last_none=False)
    _check_levels_list("lows", lows, self.shapes, last_none=True, batch=batch)
    onehot = _one_hot(self, labels, batch)
    logits = [self.band_discriminators[k](bands[k], lows[k], onehot, train=train)
              for k in range(self.levels)]
    return logits + [self.coarse_discriminator(bands[-1], onehot, train=train)]


def sharpen(generator: LAPGANGenerator, variables: Any, images: jax.Array, key: jax.Array,
            *, labels: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """alignDRAW's sharpening with a trained LAPGAN's finest level (module docstring).

  Args:
    generator: the ``LAPGANGenerator`` the variables belong to.
    variables: its variables (``{"params": ...}``, plus ``"batch_stats"`` with batch_norm).
    images: [B, H, W, C] float in [0, 1], e.g. alignDRAW samples, taken as ``l_0``.
    key: PRNG key of the noise ``z_0``.
    labels: [B] ints for CC-LAPGAN, else None.

  Returns:
    ``(clip(images + G_0(z_0, images), 0, 1), {"band": G_0(z_0, images)})``, both
    [B, H, W, C] (running batch-norm statistics).
  """
  return generator.apply(variables, images, labels, method=LAPGANGenerator.sharpen,
                         rngs={"noise": key})
