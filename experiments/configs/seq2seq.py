"""Translation with and without attention (Bahdanau et al. 2015, RNNsearch vs. RNNencdec).

Quickstart (offline: the synthetic SVO -> verb-final corpus of `data.translation`, sentences
of 1-3 clauses, up to 30 words; prepared once under `data.dir`):
  python -m experiments.seq2seq --workdir=/tmp/s2s_attention
  python -m experiments.seq2seq --workdir=/tmp/s2s_plain --config.model=no_attention
Logs per split (validation, test) teacher-forced `nll_per_token` / `token_accuracy` and the
corpus BLEU-4 of greedy and beam-search translations, `bleu4_greedy` / `bleu4_beam`, overall
and per source-length bucket (`bleu4_greedy_len_1_10`, `..._len_11_20`, `..._len_21_up`).

Measured (seed 0, 2,400 steps, one core pinned with `taskset -c 1` on a shared 2-core machine;
test split, 500 sentences: 151 / 196 / 153 of 1-10 / 11-20 / 21-30 source words):
  model          bleu4_greedy (1-10 / 11-20 / 21-30)   bleu4_beam   nll/token  wall
  attention      1.000 (1.000 / 1.000 / 1.000)          1.000        0.00005    6m55s
  no_attention   0.000 (0.000 / 0.000 / 0.000)          0.000        2.55       2m02s
Attention has solved the corpus by step 1,600 (validation BLEU 0.993 at 800); the model
without attention is still learning (teacher-forced token accuracy 0.32). Given 10,000 steps
(`--config.train.num_steps=10000`, 7 minutes) it reaches test greedy BLEU 0.042 (0.061 /
0.047 / 0.033: falling with the length), beam 0.008 (0.090 / 0.006 / 0.000), nll/token 1.68;
with Sutskever et al.'s reversed source (`--config.network.reverse_source=True`, 10,000 steps,
7.5 minutes) greedy 0.273 (0.849 / 0.285 / 0.121), beam 0.236 (0.872 / 0.298 / 0.028),
nll/token 0.83: short sentences are translated, long ones fall apart (Bahdanau et al. Fig. 2).

Other corpora: `--config.data.corpus=iwslt14 --config.data.iwslt_dir=DIR` (fairseq's
prepare-iwslt14.sh word-level files `{train,valid,test}.{de,en}`) or
`--config.data.corpus=tfds --config.data.tfds_name=ted_hrlr_translate/pt_to_en`, with
`data.max_len` and `data.vocab_size` to match.

Paper anchors (WMT'14 en-fr, 30k words, Table 1, all sentences): RNNsearch-50 BLEU 26.75,
RNNencdec-50 17.82; Fig. 2: RNNencdec falls with the sentence length, RNNsearch-50 does not.
The paper's sizes are `Seq2Seq`'s defaults (m = 620, n = n' = 1000, l = 500).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (the only one)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  del config.model  # a name here, not the model's keyword arguments (`config.network`)
  config.model = "attention"      # attention (RNNsearch) | no_attention (RNNencdec)
  # Keyword arguments of `models.seq2seq.Seq2Seq` (vocabulary sizes come from the corpus).
  config.network = ml_collections.ConfigDict({
      "embed_dim": 64,
      "hidden_size": 128,
      "attention_dim": 128,
      "maxout_dim": 64,
      "dropout_rate": 0.0,
      "reverse_source": False,    # no_attention only: Sutskever et al.'s reversed source
  })
  # `data.translation.build_from_config`'s fields (CONFIG_FIELDS).
  del config.data  # not the digits' sources: a translation corpus
  config.data = ml_collections.ConfigDict({
      "corpus": "synthetic",      # synthetic | iwslt14 | tfds
      "dir": "",                  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
      "max_len": 31,              # ids per side, <eos> included
      "vocab_size": config_dict.placeholder(int),  # words kept per language; None: all
      "min_count": 1,
      "train_too_long": "filter",
      "eval_too_long": "error",
      # synthetic
      "train_size": 20_000,
      "validation_size": 500,
      "test_size": 500,
      "max_clauses": 3,
      "max_words": 30,
      # iwslt14 / tfds
      "iwslt_dir": config_dict.placeholder(str),
      "tfds_name": config_dict.placeholder(str),
      "source_lang": config_dict.placeholder(str),
      "target_lang": config_dict.placeholder(str),
  })
  config.num_alignments = 4       # sentences in samples/alignment_*.png

  config.train.num_steps = 2400
  config.train.batch_size = 32
  config.train.learning_rate = 1e-3
  config.train.grad_clip_norm = 1.0
  config.train.log_every = 100
  config.train.eval_every = 800
  config.train.checkpoint_every = 800

  config.eval.batch_size = 100
  config.eval.beam_size = 5
  config.eval.length_penalty = 0.0
  # Upper edges of the source-length buckets (words); the last bucket is open-ended.
  config.eval.length_buckets = (10, 20)
  # Greedy / beam BLEU on validation every this many steps; None: train.eval_every; 0: only
  # at the end.
  config.eval.translate_every = config_dict.placeholder(int)
  return config
