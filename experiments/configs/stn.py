"""Spatial Transformer Networks on distorted digits (Jaderberg et al. 2015, Sec. 4.1).

Quickstart (offline, scikit-learn digits, a few minutes on a 2-core CPU):
  python -m experiments.stn --workdir=/tmp/stn_rts_st_cnn
  python -m experiments.stn --workdir=/tmp/stn_rts_cnn --config.model.name=cnn
Measured (1,000 steps, seed 0, jax 0.10.2): ST-CNN test error 7.4% (22 of 297), validation
2.7%; CNN test 19.9% (59 of 297), validation 18.0%; about 4 min each on an idle 2-core CPU.
On MNIST's own test digits (--config.data.source=mnist_test --config.data.mnist_dir=DIR: 7,200
train / 800 validation / 2,000 test), same settings: ST-CNN test 4.25% (85 of 2,000),
validation 6.6%; CNN test 10.25% (205), validation 10.25%.

Paper scale (full MNIST in `data.mnist_dir`, or tfds with a network):
  python -m experiments.stn --workdir=/tmp/stn_paper \
      --config=experiments/configs/stn.py:paper \
      --config.data.mnist_dir=/path/to/mnist --config.distortion=RTS \
      --config.model.name=st_cnn --config.model.transform=tps
Table 1 of the paper (% error, R / RTS / P / E): CNN 1.2 / 0.8 / 1.5 / 1.4,
ST-CNN (TPS) 0.7 / 0.5 / 0.8 / 1.1; cluttered 60x60: CNN 3.5, ST-CNN 1.7.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common

PRESETS = ("quickstart", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default) or "paper"."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  # Keyword arguments of `models.stn.make_classifier`.
  config.model.name = "st_cnn"        # fcn | cnn | st_fcn | st_cnn
  config.model.transform = "affine"   # affine | projective | tps
  config.model.localisation = config_dict.placeholder(str)  # fc | conv; None: the paper's
  # pairing (fc for ST-FCN, conv for ST-CNN)
  config.model.tps_grid_size = 4      # 16 control points (Sec. 4.1)
  config.model.out_hw = config_dict.placeholder(tuple)  # transformer output; None: input size
  # Grid and sampler: -1/+1 on the outer image edges (False) or on the corner pixel centres
  # (True), as the Torch reference qassemoquab/stnbhwd samples (models/stn.py docstring).
  config.model.align_corners = False
  config.distortion = "RTS"    # none | R | RTS | P | E | cluttered
  config.num_samples = 8       # rows of samples/transforms_*.png

  config.data.copies = 4       # distorted copies of each training digit
  config.data.canvas_size = 60   # cluttered only
  config.data.num_clutter = 4    # cluttered only
  config.data.clutter_size = 6   # cluttered only

  config.train.num_steps = 1000
  config.train.log_every = 50
  config.train.eval_every = 250
  config.train.checkpoint_every = 250

  if preset == "paper":
    # Sec. 4.1 (checked against the paper's text): "backpropagation, SGD, scheduled learning
    # rate decrease, with a multinomial cross entropy loss"; no momentum is stated there (nor
    # in A.1), so this preset runs plain SGD: momentum 0, where common.base_config's sgd
    # default is 0.9. Batch 256, 150k iterations, base rate 0.01 divided by 10 every 50k
    # (Appendix A.4): unverified, A.4's text was not found in the search index.
    paper_training(config)
  return config


def paper_training(config: ml_collections.ConfigDict) -> None:
  """The paper's MNIST data and training schedule (Sec. 4.1 / A.4, see `get_config`'s
  :paper), set in place: one copy of MNIST, plain SGD, batch 256, 150k steps, rate 0.01
  divided by 10 at 1/3 and 2/3 of training."""
  config.data.source = "mnist"
  config.data.copies = 1
  config.train.num_steps = 150_000
  config.train.batch_size = 256
  config.train.optimizer = "sgd"
  config.train.momentum = 0.0
  config.train.learning_rate = 0.01
  config.train.schedule = "step"
  config.train.decay_at = (1 / 3, 2 / 3)
  config.train.log_every = 500
  config.train.eval_every = 5000
  config.train.checkpoint_every = 5000
