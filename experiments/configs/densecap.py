"""DenseCap (Johnson, Karpathy, Fei-Fei 2016): the fully convolutional localisation network
proposes regions of an image, reads each by bilinear interpolation and describes it in words.

Quickstart (offline: dense digit scenes over the scikit-learn digits, 64-pixel canvases):
  python -m experiments.densecap --workdir=/tmp/densecap
On MNIST's 10,000 test digits:
  python -m experiments.densecap --workdir=/tmp/densecap_mnist \
      --config.data.source=mnist_test --config.data.mnist_dir=../shared/data/mnist
Logs per split (validation, test, and `novel`: attribute-digit combinations never rendered in
training) `map` (the dense-captioning mAP, METEOR thresholds when Java is present, exact
phrases otherwise: `similarity_meteor` is 1 or 0), `detection_ap50`, the phrase metrics of the
regions localised at IoU >= 0.5 (`recall50`, `phrase_exact`, `phrase_bleu4`, `phrase_cider`),
region retrieval by phrase (`retrieval_map`, `retrieval_p_at_1`, `retrieval_p_at_5`), the
validation losses; draws samples/densecap_<split>_<step>.png (predicted boxes and phrases)
and samples/retrieval_<split>_<step>.png. The README lists the measured numbers.

Visual Genome (a GPU run, the paper's model; `data.vg_dir` holds region_descriptions.json,
image_data.json, VG_100K/ and VG_100K_2/, `data.vg_split_file` DenseCap's split):
  python -m experiments.densecap --workdir=runs/densecap_vg \
      --config=experiments/configs/densecap.py:paper --config.data.vg_dir=DIR
Anchor: Visual Genome mAP 5.39 (DenseCap FCLN, Johnson et al. 2016; jcjohnson/densecap's
README: "the mAP of 5.39 that we report in the paper"; the table number was not checked;
its released model reaches 5.70 with 1000 proposals per image).
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (dense digit scenes, CPU) or "paper" (Visual Genome, VGG-16)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  config.dataset = "dense_digits"  # dense_digits | visual_genome
  # Keyword arguments of `models.densecap.DenseCap` (the vocabulary size comes from the data).
  config.model = ml_collections.ConfigDict({
      "trunk": "convnet",
      # Stride 4: a 16x16 feature map of a 64-pixel canvas (stride 8's 8x8 map, (16, 32, 64),
      # reads a small digit through a cell or two: test mAP 43.3 -> 50.5, whole phrases
      # right 8% -> 33% of the found regions with this one, README).
      "widths": (32, 64),
      # k = 7 anchors per cell (w, h): small / medium / large digits (ink 10-28 pixels,
      # larger when tilted) and wide / tall pairs.
      "anchor_sizes": ((12, 14), (18, 20), (26, 28), (40, 24), (24, 40), (56, 30), (30, 56)),
      "rpn_filters": 64,
      "pool_size": (7, 7),
      "region_dim": 256,
      "embed_dim": 64,
      "hidden_size": 128,
      "dropout_rate": 0.0,
      "sampler_batch_size": 64,
      "positive_fraction": 0.5,
      "high_threshold": 0.7,
      "low_threshold": 0.3,
      "max_proposals": 50,
      "proposal_nms_threshold": 0.7,
      "final_nms_threshold": 0.3,
      "box_gradients": True,
      "freeze_trunk": False,
  })
  # `objectives.densecap.densecap_loss`'s weights (train_opts.lua's defaults).
  config.loss = ml_collections.ConfigDict({
      "mid_box_reg_weight": 0.05,
      "mid_objectness_weight": 0.1,
      "end_box_reg_weight": 0.1,
      "end_objectness_weight": 0.1,
      "captioning_weight": 1.0,
      "box_reg_decay": 5e-5,  # the code's pull of every anchor's offsets towards 0
  })
  config.max_len = 8                 # phrase ids incl. <eos> (dense digits' longest: 7)
  config.min_count = 1               # vocabulary: rarer words become <unk>
  config.max_regions = 10            # M, detections kept per image at test time
  config.num_samples = 6             # scenes in samples/densecap_*.png

  config.data.canvas_size = 64
  config.data.max_digits = 5
  config.data.max_pairs = 2
  config.data.copies = 1             # scenes per training digit
  config.data.novel_size = 300       # scenes of held-out attribute-digit combinations
  config.data.vg_dir = ""            # visual_genome: the folder of the official JSON + images
  config.data.vg_split_file = ""     # visual_genome: DenseCap's split JSON ("" = hash split)
  config.data.image_size = 720       # visual_genome: the longer side (the paper's)
  config.data.vg_max_regions = 50    # visual_genome: regions kept per image

  config.eval.batch_size = 50
  config.eval.count = 300            # images scored per split (the mAP, phrase metrics)
  config.eval.similarity = "auto"    # auto (METEOR with Java, else exact) | meteor | exact
  config.retrieval = ml_collections.ConfigDict({
      "pool": 200,                   # images searched per split
      "num_queries": 10,             # the split's most frequent phrases among them
      "top_k": 4,                    # retrieved (image, box) pairs drawn per query
      "figure_queries": 4,
  })

  config.train.num_steps = 3000
  config.train.batch_size = 8
  config.train.learning_rate = 1e-3
  config.train.grad_clip_norm = 10.0
  config.train.log_every = 100
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000

  if preset == "paper":
    _paper(config)
  return config


def _paper(config: ml_collections.ConfigDict) -> None:
  """Johnson et al. 2016 as its released code (jcjohnson/densecap) trains it: Visual Genome,
  VGG-16, one image a step.

  Sources: the values come from the code (train_opts.lua, preprocess.py,
  LocalizationLayer.lua, DenseCapModel.lua, BoxSampler.lua), each named below. The paper's
  own text (Sec. 3-4) could not be read when this was checked (only its abstract was
  available), so where the paper may state a different value (e.g. its optimiser settings)
  that is not reflected here.
  """
  config.dataset = "visual_genome"
  config.model.update({
      "trunk": "vgg16",           # DenseCapModel.lua: cnn_name 'vgg-16'
      # LocalizationLayer.lua build_rpn: 12 (w, h) anchors, 3 aspect ratios x 4 scales.
      "anchor_sizes": ((45, 90), (90, 45), (64, 64), (90, 180), (180, 90), (128, 128),
                       (181, 362), (362, 181), (256, 256), (362, 724), (724, 362), (512, 512)),
      "rpn_filters": 256,         # LocalizationLayer.lua: rpn_num_filters default 256
      "region_dim": 4096,         # DenseCapModel.lua: fc_dim 4096 (VGG fc6/fc7)
      "embed_dim": 512,           # train_opts.lua: -input_encoding_size 512
      "hidden_size": 512,         # train_opts.lua: -rnn_size 512
      "dropout_rate": 0.5,        # train_opts.lua: -drop_prob 0.5
      "sampler_batch_size": 256,  # train_opts.lua: -sampler_batch_size 256
      # positive_fraction 0.5 (base config): BoxSampler.lua, num_pos = min(B/2, #pos).
      # high/low thresholds 0.7 / 0.3 (base config): train_opts.lua -sampler_high_thresh
      # 0.7, -sampler_low_thresh 0.3 (BoxSampler counts IoU > 0.7, strictly, as positive).
      # proposal / final NMS 0.7 / 0.3 (base config): train_opts.lua
      # -test_rpn_nms_thresh 0.7, -test_final_nms_thresh 0.3.
      "max_proposals": 300,       # train_opts.lua: -test_num_proposals 300
      # The code never backpropagates into VGG's conv1-2 and fine-tunes conv3_1..conv5_3
      # only after -finetune_cnn_after iterations (train_opts.lua default -1: never), so by
      # default the whole trunk stays at its ImageNet weights.
      "freeze_trunk": True,
  })
  # preprocess.py: --max_token_length 15 (longer phrases dropped), + <eos>.
  config.max_len = 16
  config.min_count = 15              # preprocess.py: --min_token_instances 15 (<UNK> below)
  config.max_regions = 300           # detections kept per image: the 300 proposals after NMS
  config.data.image_size = 720       # preprocess.py: --image_size 720 (longest side)
  config.train.batch_size = 1        # the code: "Only minibatches with N = 1 are supported"
  config.train.learning_rate = 1e-5  # train_opts.lua: -learning_rate 1e-5, Adam (0.9, 0.999)
  config.train.grad_clip_norm = 0.0  # train_opts.lua has no gradient-clipping option
  config.train.weight_decay = 1e-6   # train_opts.lua: -weight_decay 1e-6
  config.train.num_steps = 1_000_000  # the code's -max_iters is -1 (run until stopped)
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 10_000
  config.eval.batch_size = 1
  config.eval.count = 5000           # the test split (5,000 images per data.visual_genome)
