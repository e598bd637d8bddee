"""Captions generated from joint image-text embeddings on captioned digits: the SC-NLM of Kiros et
al. 2014 and the multimodal RNN of Karpathy & Fei-Fei 2015 (whole images and regions).

Quickstart (offline, scikit-learn digits on 60x60 canvases, a few minutes on a 2-core CPU):
  python -m experiments.vse_caption --workdir=/tmp/scnlm
  python -m experiments.vse_caption --workdir=/tmp/mrnn --config.model=mrnn
Logs per split (validation, test, novel) the beam-search captions' `bleu1`..`bleu4`,
`rouge_l`, `cider` and the generator's teacher-forced `nll_per_token`; `mrnn` adds
`region_digit_accuracy` (a caption generated for a digit's box names that digit and no
other) and `region_caption_words` (their mean length). The README lists the measured numbers.
"""

import ml_collections

from experiments.configs import common
from experiments.configs import retrieval

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (the only one)."""
  common.check_preset(preset, PRESETS)
  config = retrieval.get_config()  # the embeddings' sizes, data, margin, MRF and schedule
  config.model = "scnlm"          # scnlm (with VSE) | mrnn (with DVSA)
  # Keyword arguments of `models.vse.SCNLM` (vocabulary size from the captions;
  # `num_structure` from `structure`).
  config.scnlm = ml_collections.ConfigDict({
      "word_dim": 32,
      "context_size": 3,          # n - 1 previous words
      "structure_window": 2,      # k: the classes of the predicted word and the 2 after it
      "structure_dim": 16,
      "hidden": 64,               # G, the size of u
      "factors": 64,              # F
  })
  # The SC-NLM's structure variables: "classes" (the caption templates' word classes,
  # `data.captioned_digits.caption_structure`; generation tries every training template and
  # keeps the likeliest caption) | "none" (content only).
  config.structure = "classes"
  # Keyword arguments of `models.dvsa.MultimodalRNN` (its encoder reads `dvsa.crop_size`).
  config.mrnn = ml_collections.ConfigDict({
      "word_dim": 32,
      "hidden_size": 128,
      "encoder": {"widths": (16, 32)},
      "dropout_rate": 0.0,
  })
  config.caption_weight = 1.0     # the generator's NLL per token next to the ranking loss
  config.region_weight = 1.0      # mrnn: the region snippets' NLL next to the whole images'
  config.eval.beam_size = 3
  config.eval.meteor = False      # True needs java
  config.train.num_steps = 3000
  return config
