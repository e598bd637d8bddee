"""Semantic segmentation with FCN (Long et al. 2015) and the deconvolution network (Noh et al.
2015) on digit scenes labelled per pixel, or Pascal VOC 2012 from a local copy.

Quickstart (offline, scikit-learn digits, 1-3 digits on a 64x64 canvas; minutes on 2 cores):
  python -m experiments.segmentation --workdir=/tmp/fcn8s
  python -m experiments.segmentation --workdir=/tmp/fcn32s --config.model=fcn32s
  python -m experiments.segmentation --workdir=/tmp/deconv --config.model=deconvnet
Logs per split `mean_iou`, `pixel_accuracy`, `mean_accuracy`, `frequency_weighted_iou`,
`iou_<class>` and the teacher-free `loss`; writes samples/segmentation_<split>_<step>.png
(input / truth / prediction). Anchors (VOC 2012 test mean IoU): FCN-8s 62.2, DeconvNet 70.5
(72.5 with a CRF).
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart", "voc")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (digits, default) or "voc" (`_voc`)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  del config.model  # a name here; the models' keyword arguments are config.fcn, config.deconvnet
  config.model = "fcn8s"          # fcn32s | fcn16s | fcn8s | deconvnet
  # `models.fcn.FCN` keyword arguments (the variant comes from config.model).
  config.fcn = ml_collections.ConfigDict({"backbone": "convnet",
                                          "widths": (16, 32, 64, 64, 64)})
  # `models.fcn.DeconvNet` keyword arguments. Batch norm (the paper's) needs running averages
  # the harness's evaluators do not see: off here.
  config.deconvnet = ml_collections.ConfigDict({"widths": (16, 32, 64), "convs_per_block": 2,
                                                "use_batch_norm": False})
  config.data.dataset = "digits"  # digits | voc
  config.data.layout = "multi"    # multi (1-3 digits) | cluttered (one digit and clutter)
  config.data.canvas_size = 64
  config.data.copies = 2
  config.data.voc_dir = ""        # dataset=voc: the VOCdevkit/VOC2012 folder
  config.data.image_size = 320    # dataset=voc: central square, a multiple of 32
  config.num_samples = 6          # images in samples/segmentation_*.png
  config.train.num_steps = 2000
  config.train.batch_size = 16
  config.train.learning_rate = 1e-3
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.eval.batch_size = 64
  return _voc(config) if preset == "voc" else config


def _voc(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Pascal VOC 2012 (train / val of a local VOCdevkit/VOC2012 folder, `data.voc_dir`) with
  the VGG-16 backbone (load ImageNet weights with `models.vgg.vgg_params_from_torch`). The
  paper's solver and its extra SBD labels are not reproduced (not checked here): a starting
  point for a GPU run, not the paper's settings."""
  config.data.dataset = "voc"
  config.fcn.backbone = "vgg16"
  config.train.batch_size = 8
  config.train.learning_rate = 1e-4
  config.train.num_steps = 20000
  config.eval.batch_size = 16
  return config
