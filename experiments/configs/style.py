"""Neural style transfer by image optimisation (Gatys, Ecker, Bethge 2015).

Quickstart (offline: scikit-learn's two bundled photographs, china.jpg as the content and
flower.jpg as the style, 96 pixels, a fixed random-weight VGG-19; minutes on a 2-core CPU):
  python -m experiments.style --workdir=/tmp/style
With ImageNet weights (a torchvision `vgg19` state dict saved with `torch.save`) and images:
  python -m experiments.style --workdir=/tmp/style --config.weights_path=vgg19.pth \
      --config.content_path=photo.jpg --config.style_path=painting.jpg --config=...:paper
Logs `content_loss_relative`, `style_loss_relative` (final / initial) and `seconds` per
content/style ratio; writes result.png, grid.png (one result per ratio) and losses.png.
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default) or "paper" (`_paper`)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  config.content_path = ""        # "" = scikit-learn's china.jpg
  config.style_path = ""          # "" = scikit-learn's flower.jpg
  config.weights_path = ""        # torchvision vgg19 state dict; "" = random weights (seed)
  config.image_size = 96          # the shorter side, both images
  config.model.depth = 19
  config.model.pooling = "avg"    # avg (the paper's suggestion) | max
  config.content_layer = "conv4_2"
  config.style_layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
  # alpha / beta of the figure grid; `ratio` is the one written to result.png.
  config.ratios = (1e-1, 1e-2, 1e-3, 1e-4)
  config.ratio = 1e-3
  config.init = "noise"           # noise (the paper: white noise) | content
  config.optimizer = "lbfgs"      # lbfgs | adam
  config.train.num_steps = 100
  config.train.learning_rate = 0.02  # adam only
  return _paper(config) if preset == "paper" else config


def _paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's settings (arXiv 1508.06576, Methods, Fig. 2-3; `objectives.style`): VGG-19
  with average pooling, content on conv4_2, style on conv1_1 ... conv5_1 with w_l = 1/5, from
  white noise; alpha / beta = 1e-3 for the result (Fig. 2 B-D) and Fig. 3's sweep 1e-5 ... 1e-2
  for the grid. Not in the paper's text (unverified): L-BFGS (the optimiser of the authors'
  CVPR 2016 version and of the reimplementations) and 512 pixels (the paper gives no size)."""
  config.image_size = 512
  config.ratios = (1e-5, 1e-4, 1e-3, 1e-2)
  config.ratio = 1e-3
  config.train.num_steps = 1000
  return config
