"""A word-level RNN language model (the lecture's vanilla tanh RNN or an LSTM) on text.

Quickstart (offline: the captions of the captioned scikit-learn digits, about a minute on a
2-core CPU):
  python -m experiments.rnn_lm --workdir=/tmp/rnn_lm
  python -m experiments.rnn_lm --workdir=/tmp/rnn_lm_vanilla --config.model.cell=vanilla
Any text file, one sentence per line (the last `data.heldout_fraction` of the lines is the
test split, the same share before it validation):
  python -m experiments.rnn_lm --workdir=/tmp/lm --config.data.text_file=corpus.txt
or one file per split (`data.train_file`, `data.validation_file`, `data.test_file`).

Logs per split `perplexity`, `nll_per_token` (the split's summed NLL over its tokens, `<eos>`
included, so `perplexity = exp(nll_per_token)`) and `token_accuracy`; writes the greedy
sentence, beam-search sentences, samples and prefix completions to
DIR/samples/generations_<split>_<step>.txt.

Measured (quickstart, seed 0, 1,500 steps; 95 s / 68 s of CPU time): test perplexity 1.607
(LSTM) / 1.607 (vanilla), validation 1.613 / 1.617, novel 1.660 / 1.685, token accuracy on
test 0.784 / 0.787. Every caption has 11 words and `<eos>`; the empirical distribution of the
5,400 training captions (428 distinct) has 0.458 nats per token, perplexity 1.58: the floor
a model of these captions can reach. Both cells are there by step 500 (LSTM validation 1.612);
samples read like the captions ("the digit six is at the bottom right of the image").
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (the only one)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  # Keyword arguments of `models.rnn_lm.RNNLM` (the vocabulary size comes from the data).
  config.model = ml_collections.ConfigDict({
      "cell": "lstm",           # lstm | vanilla (h_t = tanh(W_hh h_{t-1} + W_xh x_t + b))
      "embed_dim": 64,
      "hidden_size": 128,
      "num_layers": 1,
      "dropout_rate": 0.2,
  })
  config.max_len = 12           # ids per sentence, <eos> included

  # Text: `text_file`, or all three per-split files; neither: the captioned digits'
  # captions (`data.source`, `data.mnist_dir`, `data.dir`, `copies`, `novel_size`).
  config.data.text_file = ""
  config.data.train_file = ""
  config.data.validation_file = ""
  config.data.test_file = ""
  config.data.heldout_fraction = 0.1  # text_file: the share of lines of validation and of test
  config.data.vocab_size = 0    # the most frequent training words kept (0: all), rest <unk>
  config.data.min_count = 1     # rarer training words are <unk>
  config.data.truncate = False  # cut longer text lines to max_len - 1 words (else an error)
  config.data.copies = 4        # captions: captioned canvases per training digit
  config.data.novel_size = 300  # captions: held-out digit/position combinations

  config.train.num_steps = 1500
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.grad_clip_norm = 5.0  # Zaremba et al. 2014 clip the norm at 5
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500

  config.eval.batch_size = 256
  config.eval.beam_size = 4        # beam-search sentences written
  config.eval.num_samples = 8      # sampled sentences written
  config.eval.temperature = 1.0    # of the samples
  config.eval.num_prefixes = 4     # the split's first sentences, completed greedily ...
  config.eval.prefix_words = 3     # ... from their first words ("the digit three")
  return config
