"""Sequence-level training (Ranzato et al. 2016): XENT, DAD, E2E, REINFORCE and MIXER.

Quickstart (offline: the Show-Attend-Tell captioner on scikit-learn digits, 60x60 canvases):
  python -m experiments.mixer --workdir=/tmp/mixer_xent --config.regime=xent
  python -m experiments.mixer --workdir=/tmp/mixer --config.regime=mixer
Logs per split (validation, test, novel) corpus BLEU-4 (coco-caption) of greedy and of beam
(5) decoding, `bleu4_greedy` and `bleu4_beam`, and while training `xent` (nats per sequence),
`reward` (sentence BLEU-4 of the sampled sequences), `baseline_error` (the baseline's mean
squared error), `xent_steps` (MIXER's `s`) and `feed_probability` (DAD / E2E's `p`).

Measured (scikit-learn digits, seed 0, 1,500 steps, about 2.5 min per run on 2 busy cores),
test BLEU-4 greedy / beam: XENT 0.791 / 0.794, MIXER 0.727 / 0.727, DAD 0.786 / 0.794, E2E
0.788 / 0.790, REINFORCE from scratch 0.287 / 0.287; greedy over seeds 0, 1, 2: XENT 0.791,
0.808, 0.816 (mean 0.805), MIXER 0.727, 0.738, 0.779 (mean 0.748).
3,000 steps (`--config.train.num_steps=3000`, MIXER with `--config.objective.xent_steps=2400`):
XENT 0.862 / 0.857, MIXER 0.826 / 0.825; with the rate cut 10x at step 2,400
(`--config.train.schedule=step --config.train.decay_at=(0.8,)`): XENT 0.852 / 0.844, MIXER
0.836 / 0.838 (validation 0.846 / 0.843 vs 0.847 / 0.855). MIXER does not beat XENT on test
on these captions: all are 11 words with the digit names at fixed positions, so each drop of
`s` hands the hardest words (the second digit's name first) from XENT to REINFORCE while
XENT is still improving. MNIST test digits (`--config.data.source=mnist_test`): XENT 0.812,
MIXER 0.779 (greedy, 1,500 steps).

The translation task (`--config=experiments/configs/mixer.py:translation`): the attention
encoder-decoder (`models.seq2seq`) on the synthetic SVO -> verb-final corpus
(`data.translation`), one-clause sentences of up to 15 words: every regime but REINFORCE from
scratch (0.0) reaches test BLEU-4 1.000 in 1,500 steps (XENT also with 3 clauses, max_len 31).

Paper anchors (as the issue quotes them; greedy decoding): IWSLT14 de-en BLEU 20.73 MIXER vs
17.74 XENT; COCO BLEU-4 29.16 vs 27.8.

`:paper`: the released code's MIXER schedule and optimiser (see `_paper`).
"""

import ml_collections

from experiments.configs import common
from experiments.configs import show_attend_tell

PRESETS = ("quickstart", "translation", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (captioning, default), "translation" or "paper" (`_paper`)."""
  common.check_preset(preset, PRESETS)
  captioner = show_attend_tell.get_config()
  config = common.base_config()
  config.task = "captioning"      # captioning | translation
  config.regime = "mixer"         # xent | dad | e2e | reinforce | mixer
  config.max_len = 12             # ids per sequence incl. <eos> (captions: up to 11 words)
  config.attention = "soft"       # the captioner's soft attention (experiments.show_attend_tell)
  # Keyword arguments of `models.show_attend_tell.Encoder` / `Decoder` (captioning) and of
  # `models.seq2seq.Seq2Seq` (translation; the vocabulary sizes come from the corpus).
  config.model.encoder = captioner.encoder
  config.model.decoder = captioner.decoder
  config.model.translation = ml_collections.ConfigDict({
      "attention": True, "embed_dim": 64, "hidden_size": 128, "attention_dim": 64,
      "maxout_dim": 64, "dropout_rate": 0.0})

  # objectives.sequence's schedules and options. `unit`: "steps", or "epochs" of the training
  # split (converted with train.batch_size) for xent_steps, mixed_steps and anneal_steps.
  config.objective = ml_collections.ConfigDict({
      "unit": "steps",
      # MIXER (Algorithm 1): N_XENT steps of XENT, then s = T - Delta, T - 2 Delta, ... for
      # N_XE+R steps each, down to 0. 1,500 quickstart steps: s = 12 until 900, 10, 8, 6,
      # 4, 2 for 100 steps each, 0 (pure REINFORCE) for the last 100.
      "xent_steps": 900,
      "mixed_steps": 100,
      "delta": 2,
      # DAD / E2E: p(feed the model's choice), linear from start to end over anneal_steps.
      "feed_start": 0.0,
      "feed_end": 0.25,
      "anneal_steps": 1000,
      "top_k": 5,                 # E2E's k
  })

  config.data.copies = 4          # captioned canvases per training digit
  config.data.novel_size = 300    # examples of held-out digit/position combinations
  # Translation (data.translation.build_from_config; data.dir is shared with captioning).
  config.data.corpus = "synthetic"
  config.data.train_size = 20_000
  config.data.validation_size = 500
  config.data.test_size = 500
  config.data.max_clauses = 1
  config.data.max_words = 15

  config.train.num_steps = 1500
  config.train.batch_size = 32
  config.train.learning_rate = 2e-3
  config.train.grad_clip_norm = 10.0
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500

  config.eval.batch_size = 150
  config.eval.beam_size = 5
  if preset == "translation":
    config.task = "translation"
    config.max_len = 16
  return _paper(config) if preset == "paper" else config


def _paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The released code's MIXER run on the translation task.

  The paper's own text (its Sec. 5 and appendix, where the schedule's values are given) was
  not reachable here: the search tool found its abstract, Algorithm 1 (in a transcription)
  and the released code, facebookarchive/MIXER, whose README says `main.lua`'s defaults
  generate "MIXER's entry for machine translation (see table in fig.5)". These are those
  defaults (`main.lua`, `Mixer.lua`, `ReinforceCriterion.lua`).
  """
  config.task = "translation"
  config.max_len = 25                     # -bptt 25: T, the unrolled steps
  config.objective.update({
      "unit": "epochs",
      "xent_steps": 25,                   # -epoch_xent 25: N_XENT
      "mixed_steps": 5,                   # -nepochs 5: N_XE+R
      "delta": 3,                         # -deltasteps 3: Delta
      "anneal_steps": 25,                 # DAD / E2E only (not the code's): N_XENT epochs
  })
  config.model.translation.hidden_size = 256  # -nhid 256
  config.train.batch_size = 32            # -bsz 32
  config.train.optimizer = "sgd"          # plain SGD (Mixer:_updateParams)
  config.train.momentum = 0.0
  config.train.learning_rate = 0.2        # -lr 0.2
  config.train.grad_clip_norm = 10.0      # -gparamclip 10 (utils.scale_clip of the gradient)
  # N_XENT + 9 stages of N_XE+R (s = 22, 19, ..., 1, then 0) = 70 epochs of the 20,000
  # training pairs at 625 steps each.
  config.train.num_steps = 70 * 625
  config.train.eval_every = 5 * 625
  config.train.checkpoint_every = 5 * 625
  # Not applied here: after the XENT stage the code weighs XENT and REINFORCE 0.5 each
  # (`set_xent_weight(0.5)`, the criterion's weight 1 - 0.5): the same 1:1 ratio as
  # objectives.sequence, so under plain SGD a halved learning rate from the second stage on;
  # the baseline's gradient is weighted 0.01 (`weight_predictive_reward`); its last stage
  # (s = 1) runs 100 epochs; the model is its own attention LSTM (`model_factory.lua`), not
  # RNNsearch.
  return config
