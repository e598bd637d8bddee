"""Show, Attend and Tell on captioned digits (Xu et al. 2015; data of Mansimov et al. 2016).

Quickstart (offline, scikit-learn digits on 60x60 canvases, a few minutes on a 2-core CPU):
  python -m experiments.show_attend_tell --workdir=/tmp/sat_soft
  python -m experiments.show_attend_tell --workdir=/tmp/sat_hard --config.attention=hard
  python -m experiments.show_attend_tell --workdir=/tmp/sem --config.model=semantic_attention
Logs per split (validation, test, novel): teacher-forced `nll_per_token` and `token_accuracy`,
beam-search `bleu1`..`bleu4`, `rouge_l`, `cider`, `attention_in_box` (attention mass in
the named digit's box when a digit word is generated), `phrase_attention_in_box` (the same
over the phrase "the digit three") and `box_share` (the box's share of the image, what
uniform attention would give). The README lists the measured numbers.

Paper anchors (COCO, VGG features): BLEU-4 24.3 soft / 25.0 hard, METEOR 23.90 / 23.04;
semantic attention (You et al. 2016): BLEU-4 30.4. Measured here (test BLEU-4, 1,500 steps):
soft 0.776, semantic attention 0.836 on the scikit-learn digits (docs/novel_captioning.md).

`:paper`: the authors' COCO soft-attention model (arctic-captions `evaluate_coco.py` defaults,
`capgen.py`, `optimizers.py`; Xu et al. 2015 Sec. 4.3), every value checked there; see
`get_config`.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common

PRESETS = ("quickstart", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default) or "paper" (`_paper`)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  # show_attend_tell (Xu et al. 2015) | semantic_attention (You et al. 2016: the decoder
  # attends to detected attribute words instead of image locations)
  del config.model  # a name here; the models' keyword arguments are config.encoder, ...
  config.model = "show_attend_tell"
  config.attention = "soft"       # soft | hard (show_attend_tell)
  # Keyword arguments of `models.show_attend_tell.Encoder` (both models) and `Decoder` (the
  # vocabulary size comes from the training captions).
  config.encoder = ml_collections.ConfigDict({
      "widths": (16, 32, 32),     # 60x60 -> a 7x7 grid of L = 49 annotations
  })
  config.decoder = ml_collections.ConfigDict({
      "embed_dim": 64,
      "hidden_size": 128,
      "attention_dim": 64,
      "dropout_rate": 0.2,
      # beta_t of Sec. 4.2.1, arctic-captions' `selector` (train()'s default False; True in
      # evaluate_coco.py and :paper). Off here: with it the quickstart reads the digit at
      # "the", keeps it in the LSTM and closes the gate at the digit word (beta 0.08), whose
      # attention is then unused and diffuse (0.18 in the box, below the box's 0.24 share);
      # without it z_t always reaches the word (eq. 7's L_z z_t): 0.40 on mnist_test (README).
      "gating": False,
      "expectation_prob": 0.5,    # hard attention: p(use the expected context), Sec. 4.1
  })
  # semantic_attention: `models.semantic_attention.SemanticAttentionDecoder`'s sizes, the
  # attribute detector (one sigmoid per content word of the vocabulary, on the mean of the
  # encoder's annotations), the K attributes fed to the decoder, and the loss weights of the
  # detector and of the attention regulariser g(alpha) + g(beta) (Sec. 3.4).
  config.semantic = ml_collections.ConfigDict({
      "decoder": {"embed_dim": 64, "input_dim": 64, "hidden_size": 128},
      "attributes": (),             # the detector's words; () = the content words
      "top_k": 5,
      # The image feature v of the detector and of the decoder's first step
      # (`models.show_attend_tell.ImageFeature`): a 128-unit fully connected layer over the
      # 7x7 grid (as the paper's CNN feature; the mean annotation, feature_dim=0, loses where
      # the digits are: test BLEU-4 0.708 against 0.776 for soft attention, sklearn digits).
      "feature_dim": 128,
      "detector_hidden": 0,
      "detector_weight": 1.0,
      "regularizer_weight": 0.01,
      "p": 2.0,
      "q": 0.5,
  })
  config.penalty = 1.0            # lambda of the doubly stochastic penalty (eq. 14)
  config.entropy_weight = 0.01    # lambda_e of hard attention (Sec. 4.1)
  # lambda_r of hard attention's score-function term: arctic-captions' `/10.` (capgen.py,
  # objectives.show_attend_tell.hard_attention_loss), with its per-token reward.
  config.reinforce_weight = 0.1
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
  return _paper(config) if preset == "paper" else config


def _paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The released COCO soft-attention settings on the quickstart's data and harness.

  Checked in kelvinxu/arctic-captions: `evaluate_coco.py` (its `defaults`, "should more or
  less reproduce the soft alignment model for the MS COCO dataset", and its `train(...)`
  call), `capgen.py` (`train`, `build_model`, `init_params`, `lstm_cond_layer`) and
  `optimizers.py` (`adam`). Unverified (the paper's text was not at hand, only the issue's
  and the model docstring's citations of it): the encoder and BLEU early stopping.
  """
  # Sec. 4.3 (unverified): the 14x14x512 map of VGG-19 before its last max-pool, conv5_4 for
  # 224x224 inputs, ImageNet weights, not finetuned (the released code takes precomputed
  # features). The captioned digits are 60x60 grey images: random VGG-19 weights, 3x3 grid.
  config.encoder = ml_collections.ConfigDict({
      "backbone": "vgg19", "include_final_pool": False})
  config.decoder.update({
      "embed_dim": 512,           # dim-word 512
      "hidden_size": 1800,        # dim 1800
      "attention_dim": 512,       # ctx-dim 512: Wc_att / Wd_att project to the context width
      "init_hidden": (512,),      # n-layers-init 2: one rectifier layer ctx_dim -> ctx_dim
      "gating": True,             # selector True
      "dropout_rate": 0.5,        # use-dropout True: dropout_layer keeps units with p = 0.5
  })
  # alpha-c 1.0, but capgen.py adds alpha_c * ((1 - alphas.sum(0))**2).sum(0).mean(): summed
  # over the batch, averaged over the L = 196 locations, next to the batch-mean NLL, i.e.
  # lambda = alpha_c * B / L = 64 / 196 per example in eq. (14) as objectives writes it.
  config.penalty = 64 / 196
  # With attention=hard: capgen.py train()'s alpha_entropy_c 0.002, RL_sumCost True and the
  # known_grads' /10., added per example to the batch-mean NLL's gradient, i.e. B / 10 and
  # 0.002 B in hard_attention_loss's per-example convention (see its docstring);
  # semi_sampling_p 0.5 is the decoder's expectation_prob.
  config.reinforce_weight = 64 / 10
  config.entropy_weight = 0.002 * 64
  config.train.batch_size = 64    # batch_size=64
  config.train.optimizer = "adam"  # optimizer adam
  # optimizers.adam ignores `learning-rate` (0.01, "used only for SGD"): lr0 = 0.0002,
  # b1 = 0.1, b2 = 0.001 in its convention (optax's b1 = 0.9, b2 = 0.999), e = 1e-8.
  config.train.learning_rate = 2e-4
  # Not applied by this experiment (recorded for a COCO run):
  config.paper = ml_collections.ConfigDict({
      # n-words 10000: the vocabulary's 10k most frequent words (the captioned digits have
      # about 25 words; the Vocabulary here keeps every training word).
      "vocab_size": 10000,
      # The paper early-stops on BLEU (unverified); the released train() keeps the
      # parameters of the best validation log-likelihood and stops after `patience` = 10
      # validations (validFreq 2000) without improvement. The harness has no early stopping
      # or best-checkpoint selection: pick the checkpoint of the best validation `bleu4` in
      # metrics.jsonl (keep enough checkpoints: train.keep_checkpoints).
      "select_checkpoint_by": "bleu4",
      "patience": 10,
      # n-layers-att 2 (an extra tanh layer on W_a a_i) is not modelled here.
      "n_layers_att": 2,
  })
  return config
