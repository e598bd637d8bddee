"""Show, Attend and Tell on captioned digits (Xu et al. 2015; data of Mansimov et al. 2016).

Quickstart (offline, scikit-learn digits on 60x60 canvases, a few minutes on a 2-core CPU):
  python -m experiments.show_attend_tell --workdir=/tmp/sat_soft
  python -m experiments.show_attend_tell --workdir=/tmp/sat_hard --config.attention=hard
Logs per split (validation, test, novel): teacher-forced `nll_per_token` and `token_accuracy`,
beam-search `bleu1`..`bleu4`, `rouge_l`, `cider` and `attention_in_box` (attention mass in
the named digit's box when a digit word is generated; `box_share` is the box's share of the
image, what uniform attention would give). The README lists the measured numbers.

Paper anchors (COCO, VGG features): BLEU-4 24.3 soft / 25.0 hard, METEOR 23.90 / 23.04.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  config.attention = "soft"       # soft | hard
  # Keyword arguments of `models.show_attend_tell.Encoder` and `Decoder` (the vocabulary
  # size comes from the training captions).
  config.model.encoder = ml_collections.ConfigDict({
      "widths": (16, 32, 32),     # 60x60 -> a 7x7 grid of L = 49 annotations
  })
  config.model.decoder = ml_collections.ConfigDict({
      "embed_dim": 64,
      "hidden_size": 128,
      "attention_dim": 64,
      "dropout_rate": 0.2,
      "expectation_prob": 0.5,    # hard attention: p(use the expected context), Sec. 4.1
  })
  config.penalty = 1.0            # lambda of the doubly stochastic penalty (eq. 14)
  config.entropy_weight = 0.01    # lambda_e of hard attention (Sec. 4.1)
  config.max_len = 12             # caption ids incl. <eos>; the longest caption has 11 words
  config.num_samples = 4          # images in samples/attention_*.png

  config.data.copies = 4        # captioned canvases per training digit
  config.data.novel_size = 300  # examples of held-out digit/position combinations

  config.train.num_steps = 1500
  config.train.batch_size = 32
  config.train.learning_rate = 2e-3
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500

  config.eval.batch_size = 150
  config.eval.beam_size = 3
  config.eval.meteor = False    # True needs java (15 s per evaluation)
  # Beam-search captions (BLEU, CIDEr, attention_in_box) on validation every this many steps;
  # None: train.eval_every (as the teacher-forced metrics); 0: only at the end.
  config.eval.caption_every = config_dict.placeholder(int)
  return config
