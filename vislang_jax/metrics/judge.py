"""Consistency judges: small classifiers, trained on real images, that read generated ones.

A generator conditioned on a description (alignDRAW on captions, Mansimov et al. 2016) is
consistent when a classifier trained on real images reads back what was asked for. Here:

* `SceneJudge`: a scene's layout from the whole image, then each object's class from the
  window of that layout where the object lies (the windows come from the dataset, e.g.
  `data.digit_scenes.WINDOWS`), one classifier shared by every window: it never sees where
  an object is, so a held-out (object, position) pair is no harder for it than a seen one.
  Targets and readings are `[B, 1 + S]` int: the layout id, then one class per slot,
  `num_classes` in the slots a layout does not have.
* `fit`: Adam on minibatches of host arrays, for any judge's loss.
* `load_or_fit`: a judge trained once per content (configuration, seed, training arrays),
  cached under `<cache_dir>/<sha256>.msgpack`, written atomically by process 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any, Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vislang_jax.checks import (check_float, check_int, check_positive_int, check_rank,
                                check_same_shape, is_int)


class ConvNet(nn.Module):
  """Stride-2 3x3 convolutions (ReLU), a `hidden` ReLU layer and `num_classes` logits.

  The layers are named `Conv_0`, `Conv_1`, ..., `Dense_0` (hidden), `Dense_1` (logits), the
  names Flax's compact form gives them, so parameters trained and cached by either form load
  into the other.
  """

  widths: tuple[int, ...]
  num_classes: int
  hidden: int = 128

  def setup(self):
    for i, width in enumerate(self.widths):
      setattr(self, f"Conv_{i}", nn.Conv(width, (3, 3), strides=(2, 2)))
    self.Dense_0 = nn.Dense(self.hidden)  # pylint: disable=invalid-name
    self.Dense_1 = nn.Dense(self.num_classes)  # pylint: disable=invalid-name

  def features(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, hidden]: the ReLU layer under the logits (penultimate features)."""
    h = images
    for i in range(len(self.widths)):
      h = nn.relu(getattr(self, f"Conv_{i}")(h))
    return nn.relu(self.Dense_0(h.reshape(h.shape[0], -1)))

  def __call__(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, num_classes]."""
    return self.Dense_1(self.features(images))


class SceneJudge(nn.Module):
  """Reads a scene: its layout from the whole image, each object from its layout's window.

  Attributes:
    windows: per layout, the (row, column) of each of its objects' `window_size` square
      windows, in slot order; a layout has 1 to S windows (S the most of any layout).
    window_size: the side of every window, in pixels.
    num_classes: object classes (e.g. 10 digits); also the id of an absent slot.
    widths: the convolutions' channels, for both classifiers.
  """

  windows: tuple[tuple[tuple[int, int], ...], ...]
  window_size: int
  num_classes: int = 10
  widths: tuple[int, ...] = (16, 32, 32)

  def __post_init__(self):
    check_positive_int("window_size", self.window_size)
    check_int("num_classes", self.num_classes, low=2)
    corner = lambda rc: len(rc) == 2 and all(is_int(v) and v >= 0 for v in rc)
    if not self.windows or not all(w and all(map(corner, w)) for w in self.windows):
      raise ValueError(f"windows must hold, per layout, one or more (row, column) pairs of "
                       f"ints >= 0, got {self.windows!r}.")
    super().__post_init__()

  @property
  def slots(self) -> int:
    """S, the most objects of any layout."""
    return max(len(w) for w in self.windows)

  def window_table(self) -> tuple[np.ndarray, np.ndarray]:
    """[L, S, 2] window corners (a layout's missing slots repeat its first) and [L, S] real."""
    corners = np.array([list(w) + [w[0]] * (self.slots - len(w)) for w in self.windows],
                       np.int32)
    real = np.array([[s < len(w) for s in range(self.slots)] for w in self.windows])
    return corners, real

  def setup(self):
    self.layout_net = ConvNet(self.widths, len(self.windows))
    self.object_net = ConvNet(self.widths, self.num_classes)

  def __call__(self, images: jax.Array, layouts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images [B, H, W, C], layouts [B] ids whose windows to read ->
    (layout logits [B, L], object logits [B, S, num_classes])."""
    return self.layout_logits(images), self.object_logits(images, layouts)

  def layout_logits(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, L]."""
    check_rank("images", images, "[B, H, W, C]")
    return self.layout_net(images)

  def object_logits(self, images: jax.Array, layouts: jax.Array) -> jax.Array:
    """[B, H, W, C] images, [B] layout ids -> [B, S, num_classes], one row per window."""
    crops = self._crops(images, layouts)
    logits = self.object_net(crops.reshape((-1,) + crops.shape[2:]))
    return logits.reshape(crops.shape[:2] + (self.num_classes,))

  def features(self, images: jax.Array) -> jax.Array:
    """A scene's features for distances between image sets (`metrics.generation`).

    [B, H, W, C] -> [B, 2 * hidden]: the layout classifier's penultimate features, then the
    object classifier's penultimate features averaged over the windows of the layout the
    judge reads (its most likely one, as `read_scenes`; only the layout's real slots). The
    first half says where objects are, the second what they look like, in the two networks
    that learned those questions on real images.
    """
    layouts = jnp.argmax(self.layout_logits(images), -1)
    crops = self._crops(images, layouts)
    objects = self.object_net.features(crops.reshape((-1,) + crops.shape[2:]))
    objects = objects.reshape(crops.shape[:2] + objects.shape[-1:])  # [B, S, hidden]
    real = jnp.asarray(self.window_table()[1], objects.dtype)[layouts]  # [B, S]
    mean = jnp.einsum("bsf,bs->bf", objects, real) / jnp.sum(real, -1, keepdims=True)
    return jnp.concatenate([self.layout_net.features(images), mean], axis=-1)

  def _crops(self, images: jax.Array, layouts: jax.Array) -> jax.Array:
    """[B, H, W, C] images, [B] layout ids -> [B, S, w, w, C], each slot's window."""
    check_rank("images", images, "[B, H, W, C]")
    corners, _ = self.window_table()
    size = self.window_size
    if corners[..., 0].max() + size > images.shape[1] or (
        corners[..., 1].max() + size > images.shape[2]):
      raise ValueError(f"windows must lie inside the images: {size}x{size} windows at "
                       f"{self.windows} need images of at least "
                       f"{corners[..., 0].max() + size}x{corners[..., 1].max() + size}, "
                       f"got {images.shape}.")
    crop = lambda image, rc: jax.lax.dynamic_slice(image, (rc[0], rc[1], 0),
                                                   (size, size, image.shape[-1]))
    where = jnp.asarray(corners)[layouts]  # [B, S, 2]
    return jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(images, where)


def judge_loss(judge: SceneJudge, params: Any, images: jax.Array,
               targets: jax.Array) -> jax.Array:
  """The layout's cross-entropy plus the mean cross-entropy of the present objects.

  Objects are read in their TRUE layout's windows (teacher forcing); absent slots
  (`targets == num_classes`) are not scored.

  Args:
    judge, params: the judge and its `params` collection.
    images: [B, H, W, C] float in [0, 1].
    targets: [B, 1 + S] int (module docstring).

  Returns:
    The scalar loss.
  """
  layout_logits, object_logits = judge.apply({"params": params}, images, targets[:, 0])
  objects = targets[:, 1:]
  present = objects != judge.num_classes
  object_ce = optax.softmax_cross_entropy_with_integer_labels(
      object_logits, jnp.where(present, objects, 0))
  layout_ce = optax.softmax_cross_entropy_with_integer_labels(layout_logits, targets[:, 0])
  return jnp.mean(layout_ce) + jnp.sum(jnp.where(present, object_ce, 0.0)) / jnp.maximum(
      jnp.sum(present), 1)


def read_scenes(judge: SceneJudge, params: Any, images: jax.Array) -> jax.Array:
  """What the judge reads: [B, H, W, C] -> [B, 1 + S] int, the most likely layout, then the
  most likely class in each of its windows (`num_classes` in the slots it does not have)."""
  _, real = judge.window_table()
  layouts = jnp.argmax(judge.apply({"params": params}, images,
                                   method=SceneJudge.layout_logits), -1)
  objects = jnp.argmax(judge.apply({"params": params}, images, layouts,
                                   method=SceneJudge.object_logits), -1)
  objects = jnp.where(jnp.asarray(real)[layouts], objects, judge.num_classes)
  return jnp.concatenate([layouts[:, None], objects], axis=-1).astype(jnp.int32)


def agreement(readings: np.ndarray, targets: np.ndarray) -> float:
  """The fraction of images read exactly as their targets (layout and every slot)."""
  readings, targets = np.asarray(readings), np.asarray(targets)
  check_same_shape("[B, 1 + S]", readings=readings, targets=targets)
  return float(np.mean(np.all(readings == targets, axis=1)))


def fit(loss_fn: Callable[[Any, dict[str, jax.Array]], jax.Array], params: Any,
        arrays: Mapping[str, np.ndarray], *, num_steps: int, batch_size: int,
        learning_rate: float, seed: int) -> Any:
  """Adam on `loss_fn` over minibatches drawn with replacement from host arrays.

  Args:
    loss_fn: (params, batch) -> scalar, `batch` holding rows of every array.
    params: the initial parameters.
    arrays: {name: [N, ...]} training data, one row per example.
    num_steps, batch_size, learning_rate: the schedule (a constant rate).
    seed: draws the minibatches (`np.random.default_rng(seed)`).

  Returns:
    The trained parameters.
  """
  check_positive_int("num_steps", num_steps)
  check_positive_int("batch_size", batch_size)
  check_float("learning_rate", learning_rate, low=0.0)
  sizes = {name: len(a) for name, a in arrays.items()}
  if not sizes or len(set(sizes.values())) != 1 or 0 in sizes.values():
    raise ValueError(f"arrays must hold rows of one non-zero length N, got lengths {sizes}.")
  optimizer = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state, batch):
    grads = jax.grad(loss_fn)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  rng = np.random.default_rng(seed)
  num = next(iter(sizes.values()))
  for _ in range(num_steps):
    rows = rng.integers(0, num, batch_size)
    params, opt_state = step(params, opt_state, {k: a[rows] for k, a in arrays.items()})
  return params


def content_hash(config: Mapping[str, Any], seed: int,
                 arrays: Mapping[str, np.ndarray]) -> str:
  """sha256 (hex) of a JSON-serialisable configuration, a seed and arrays (names, dtypes,
  shapes and bytes): what a trained judge is a deterministic function of."""
  digest = hashlib.sha256()
  digest.update(json.dumps({"config": config, "seed": int(seed)}, sort_keys=True).encode())
  for name in sorted(arrays):
    array = np.ascontiguousarray(arrays[name])
    digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def load_or_fit(fit_fn: Callable[[], Any], *, template: Any, cache_dir: str | None,
                config: Mapping[str, Any], seed: int,
                arrays: Mapping[str, np.ndarray]) -> Any:
  """`fit_fn()`'s parameters, read from the cache when this content was trained before.

  Args:
    fit_fn: () -> params, the training (deterministic given config, seed and arrays).
    template: a pytree of the params' structure, to read the cached bytes into.
    cache_dir: where `<content_hash>.msgpack` files live; None: no cache.
    config, seed, arrays: everything the training depends on (`content_hash`).

  Returns:
    The parameters. Every process trains (or reads) them; process 0 writes the file, to a
    temporary name first, then renames it, so no reader ever sees half a file.
  """
  if cache_dir is None:
    return fit_fn()
  path = os.path.join(cache_dir, content_hash(config, seed, arrays) + ".msgpack")
  if os.path.exists(path):
    with open(path, "rb") as f:
      return flax.serialization.from_bytes(template, f.read())
  params = fit_fn()
  if jax.process_index() == 0:
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=cache_dir, suffix=".tmp", delete=False) as f:
      f.write(flax.serialization.to_bytes(params))
    os.chmod(f.name, 0o644)  # a temporary file is private; the cache is shared
    os.replace(f.name, path)
  return params


def train_scene_judge(judge: SceneJudge, images: np.ndarray, targets: np.ndarray, *,
                      num_steps: int, batch_size: int, learning_rate: float, seed: int,
                      cache_dir: str | None = None) -> Any:
  """`judge`'s params, trained with `judge_loss` on real images (or read from the cache).

  Args:
    judge: the SceneJudge to train.
    images: [N, H, W, C] float in [0, 1]; targets: [N, 1 + S] int, their scenes.
    num_steps, batch_size, learning_rate, seed: as `fit`; `seed` also initialises.
    cache_dir: `load_or_fit`'s cache; None trains without one.

  Returns:
    The `params` collection.
  """
  images, targets = np.asarray(images, np.float32), np.asarray(targets, np.int32)
  check_rank("images", images, "[N, H, W, C]")
  if targets.shape != (len(images), 1 + judge.slots):
    raise ValueError(f"targets must have shape [N, 1 + S] = ({len(images)}, "
                     f"{1 + judge.slots}), got {targets.shape}.")
  template = judge.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + images.shape[1:]),
                        jnp.zeros((1,), jnp.int32))["params"]
  options = {"num_steps": num_steps, "batch_size": batch_size,
             "learning_rate": learning_rate}
  config = {"judge": type(judge).__name__, "windows": judge.windows,
            "window_size": judge.window_size, "num_classes": judge.num_classes,
            "widths": list(judge.widths), **options}
  arrays = {"images": images, "targets": targets}
  loss = lambda params, batch: judge_loss(judge, params, batch["images"], batch["targets"])
  return load_or_fit(lambda: fit(loss, template, arrays, seed=seed, **options),
                     template=template, cache_dir=cache_dir, config=config, seed=seed,
                     arrays=arrays)

