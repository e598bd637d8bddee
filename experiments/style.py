"""Neural style transfer (Gatys, Ecker, Bethge 2015): an image optimised to match the content
of one image and the style of another in a frozen VGG-19.

  python -m experiments.style --workdir=DIR [--config.weights_path=vgg19.pth] ...

The content loss on `config.content_layer` (eq. 1), the style loss on the Gram matrices of
`config.style_layers` with w_l = 1 / len (eq. 4-5), `alpha L_content + beta L_style` (eq. 7)
minimised over the image's pixels by `config.optimizer` (L-BFGS or Adam, `train.num_steps`
steps in one jitted loop, `train.image_optimization.optimize_image`), from white noise or the
content image, once per content/style ratio `alpha / beta` in `config.ratios` (alpha = the
ratio, beta = 1). Without `config.weights_path` the network is VGG-19 with fixed random
weights (seed `config.seed`): random features still carry texture, so the experiment runs
offline. Logs per ratio (split `ratio_<i>`): `content_loss_relative`, `style_loss_relative`
(final / initial), `total_loss`, `seconds` (compilation included); writes result.png (the
`config.ratio` result next to its content and style images), grid.png (one result per
ratio) and losses.png (every run's loss curve).
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from vislang_jax.checks import check_choice
from vislang_jax.models.vgg import (IMAGENET_MEAN, IMAGENET_STD, VGGFeatures,
                                    vgg_params_from_torch)
from vislang_jax.objectives import style
from vislang_jax.train import cli, precision
from vislang_jax.train.image_optimization import optimize_image
from vislang_jax.train.loop import check_workdir
from vislang_jax.train.metrics import MetricWriter
from vislang_jax.viz import style as style_figures


def load_image(path: str, *, size: int, default: str,
               shape: tuple[int, int] | None = None) -> np.ndarray:
  """[H, W, 3] float32 in [0, 1]: the shorter side `size`, or exactly `shape` (H, W) when
  given (`default`: a scikit-learn sample image, "china.jpg" or "flower.jpg", for an empty
  `path`)."""
  if not path:
    from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top
    picture = Image.fromarray(load_sample_image(default))
  else:
    if not os.path.isfile(path):
      raise ValueError(f"image path must be an image file, got {path!r} (no such file).")
    picture = Image.open(path).convert("RGB")
  if shape is None:
    scale = size / min(picture.size)
    shape = (max(1, round(picture.size[1] * scale)), max(1, round(picture.size[0] * scale)))
  resized = picture.resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
  return np.asarray(resized, np.float32) / 255.0


def load_vgg_params(config: ml_collections.ConfigDict, network: VGGFeatures,
                    image: np.ndarray) -> dict:
  """The network's parameters: a torchvision state dict, or random ones (seed)."""
  if config.weights_path:
    import torch  # pylint: disable=g-import-not-at-top
    state = torch.load(config.weights_path, map_location="cpu", weights_only=True)
    return vgg_params_from_torch(state, depth=config.model.depth)
  return network.init(jax.random.key(config.seed), jnp.asarray(image[None]))["params"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Stylises the content image at every ratio; returns the metrics per ratio."""
  workdir = check_workdir(workdir)
  check_choice("optimizer", config.optimizer, ("lbfgs", "adam"))
  check_choice("init", config.init, ("noise", "content"))
  precision.compute_dtype(config.train.compute_dtype)
  content = load_image(config.content_path, size=config.image_size, default="china.jpg")
  # The style image at the content image's size: the Gram matrices are not normalised by the
  # number of positions M_l (eq. 3-4), so A^l of another size would weigh differently.
  style_image = load_image(config.style_path, size=config.image_size, default="flower.jpg",
                           shape=content.shape[:2])
  network = VGGFeatures(depth=config.model.depth, pooling=config.model.pooling)
  params = load_vgg_params(config, network, content)
  layers = (config.content_layer, *config.style_layers)
  weights = {layer: 1.0 / len(config.style_layers) for layer in config.style_layers}

  def features(image):
    normalised = (image - IMAGENET_MEAN) / IMAGENET_STD
    return network.apply({"params": params}, normalised[None], layers=layers)

  content_target = features(jnp.asarray(content))[config.content_layer]
  style_grams = {layer: style.gram_matrix(value)
                 for layer, value in features(jnp.asarray(style_image)).items()
                 if layer in weights}
  if config.init == "noise":
    start = jax.random.uniform(jax.random.key(config.seed + 1), content.shape)
  else:
    start = jnp.asarray(content)
  writer = MetricWriter(workdir)
  results, images, curves = {}, [], []
  for index, ratio in enumerate(config.ratios):

    @functools.partial(precision.with_compute_dtype, name=config.train.compute_dtype)
    def objective(image, alpha=ratio):
      loss, parts = style.total_loss(
          features(image), content_target=content_target, style_grams=style_grams,
          content_layer=config.content_layer, style_weights=weights, alpha=alpha, beta=1.0)
      return loss[0], {k: v[0] for k, v in parts.items()}

    began = time.perf_counter()
    image, history = optimize_image(
        objective, start, optimizer=config.optimizer, num_steps=config.train.num_steps,
        learning_rate=config.train.learning_rate if config.optimizer == "adam" else None,
        clip=(0.0, 1.0))
    image = np.asarray(jax.block_until_ready(image))
    seconds = time.perf_counter() - began
    first, last = history["aux"], history["final_aux"]
    metrics = {"ratio": ratio,
               "content_loss_relative": float(last["content"] / first["content"][0]),
               "style_loss_relative": float(last["style"] / first["style"][0]),
               "total_loss": float(history["final_loss"]), "seconds": seconds}
    writer.write(config.train.num_steps, f"ratio_{index}", metrics)
    results[f"ratio_{index}"] = metrics
    images.append(image)
    curves.append(np.append(np.asarray(history["loss"]), float(history["final_loss"])))
  writer.close()
  if jax.process_index() == 0:
    chosen = int(np.argmin(np.abs(np.log(np.asarray(config.ratios)) - np.log(config.ratio))))
    style_figures.save_style_result(os.path.join(workdir, "result.png"), content,
                                    style_image, images[chosen])
    style_figures.save_ratio_grid(os.path.join(workdir, "grid.png"), images, config.ratios)
    style_figures.save_loss_curves(os.path.join(workdir, "losses.png"), curves, config.ratios)
  return results


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "style.py"))
