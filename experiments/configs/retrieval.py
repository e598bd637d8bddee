"""Joint image-text embeddings on captioned digits or a Karpathy-split corpus: VSE (Kiros et
al. 2014) or DVSA (Karpathy & Fei-Fei 2015), evaluated by bidirectional retrieval.

Quickstart (offline, scikit-learn digits on 60x60 canvases, a few minutes on a 2-core CPU):
  python -m experiments.retrieval --workdir=/tmp/vse
  python -m experiments.retrieval --workdir=/tmp/dvsa --config.model=dvsa
Logs per split (validation, test, novel) `i2t_r1`, `i2t_r5`, `i2t_r10`, `t2i_r1`, `t2i_r5`,
`t2i_r10`, `i2t_median_rank`, `t2i_median_rank` (and mean ranks) over pools of
`eval.pool` images (the papers' 1,000-image protocol, averaged over the split's folds; the
whole split when smaller), every caption with the query's exact words counting as a hit;
`dvsa` adds `alignment_accuracy` (digit words whose best region is their digit's box) and
`mrf_alignment_accuracy` (the same after the chain MRF); `vse` adds `arithmetic_r1` /
`arithmetic_r5` (image - "seven" + "three" retrieves the three in the seven's place). The
README lists the measured numbers.

Real images, for users with Karpathy's split JSON and the images (a GPU run; VGG from
scratch, see experiments/retrieval.py for ImageNet weights):
  python -m experiments.retrieval --workdir=runs/f30k --config.data.source=karpathy \
      --config.data.karpathy_json=DIR/dataset_flickr30k.json \
      --config.data.image_dir=DIR/flickr30k-images --config.data.image_size=224 \
      --config.max_len=32 --config.vse.encoder.backbone=vgg19 --config.vse.pool=mean
(`--config.model=dvsa --config.dvsa.encoder.backbone=vgg16 --config.dvsa.crop_size=(224,224)`
for DVSA, whose proposals there are the whole image and the `grid` cells). Splits: train
(+ restval), validation, test; retrieval over each image once with its
`data.captions_per_image` captions, in folds of `eval.pool` = 1,000 images (COCO's 5k test
set: 5 folds); the digit-only metrics are not reported.

Paper anchors (Flickr30k, 1,000 test images, R@1 image-to-text): 23.0 (Kiros et al., VGG),
22.2 (Karpathy & Fei-Fei, BRNN).
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (the only one)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  del config.model  # a name here, not the model's keyword arguments (`config.vse` / `.dvsa`)
  config.model = "vse"            # vse | dvsa
  # Keyword arguments of `models.vse.VSE` (the vocabulary size comes from the captions).
  config.vse = ml_collections.ConfigDict({
      "embed_dim": 64,            # K, the joint space
      "word_dim": 32,             # W_T
      # show_attend_tell.Encoder: backbone convnet | vgg16 | vgg19 (widths: convnet only)
      "encoder": {"backbone": "convnet", "widths": (16, 32, 32)},  # 60x60 -> 7x7x32
      "pool": "flatten",          # the encoder's grid flattened (then W_I) | mean (for VGG)
  })
  # Keyword arguments of `models.dvsa.DVSA`.
  config.dvsa = ml_collections.ConfigDict({
      "embed_dim": 64,            # h, the multimodal space
      "word_dim": 32,             # W_w
      "hidden_size": 64,          # the BRNN's states
      "crop_size": (28, 28),      # every region (and the whole image) resampled to this
      # 28x28 crop -> 7x7x32, flattened, then W_m; backbone as VSE's
      "encoder": {"backbone": "convnet", "widths": (16, 32)},
  })
  # Region proposals beside the whole image: the digits' boxes, then a rows x cols grid
  # (() for none).
  config.grid = (2, 2)
  # The whole image as a region (Karpathy & Fei-Fei's 20 regions include it); False leaves
  # only the proposals.
  config.whole_image = True
  # alpha of the hinge: VSE's 0.2 (Kiros et al.'s released code), DVSA's 1 (eq. 9);
  # None: the model's own.
  config.margin = ml_collections.config_dict.placeholder(float)
  config.hardest = False          # VSE++'s hardest negative instead of the sum (Faghri 2018)
  config.beta = 1.0               # the chain MRF's smoothness weight (DVSA Sec. 3.1.4)
  config.max_len = 12             # caption ids incl. <eos> (karpathy: longer ones truncated)
  config.num_samples = 4          # queries in samples/retrieval_*.png and alignment_*.png
  config.top_k = 5                # retrieved items drawn per query

  # data.source: a digit source (common.data_config) | karpathy (the fields below)
  config.data.copies = 4          # digits: captioned canvases per training digit
  config.data.novel_size = 300    # digits: examples of held-out digit/position combinations
  config.data.karpathy_json = ""  # karpathy: dataset_flickr30k.json / _coco.json / _flickr8k.json
  config.data.image_dir = ""      # karpathy: the images (COCO: holding train2014/, val2014/)
  config.data.image_size = 64     # karpathy: square RGB side (64 a CPU smoke test; 224 VGG)
  config.data.vocab_size = 10000  # karpathy: the training captions' most frequent words
  config.data.captions_per_image = 5  # karpathy: records (image, caption k) per image

  config.train.num_steps = 2000
  config.train.batch_size = 64
  config.train.learning_rate = 2e-3
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500

  config.eval.batch_size = 250
  config.eval.pool = 1000         # images per retrieval pool (the papers' 1k protocol)
  return config
