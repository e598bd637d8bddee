"""Visual question answering: the naive CNN+LSTM model, stacked attention networks (Yang et al.
2016) and end-to-end memory networks over image regions (Sukhbaatar et al. 2015), on
Sort-of-CLEVR (Santoro et al. 2017), digit-scene QA over captioned digits, or CLEVR.

Quickstart (offline; Sort-of-CLEVR is generated, digit QA uses the scikit-learn digits):
  python -m experiments.vqa --workdir=/tmp/vqa_san
  python -m experiments.vqa --workdir=/tmp/vqa_naive --config.model=naive
  python -m experiments.vqa --workdir=/tmp/vqa_mem --config.model=memnet
  python -m experiments.vqa --workdir=/tmp/dqa_san --config.dataset=digit_qa
Logs per split `accuracy`, `nll` and one `accuracy_<type>` per question type
(`accuracy_non_relational` / `accuracy_relational` and per subtype on Sort-of-CLEVR;
`accuracy_relation`, `_position`, `_count`, `_exists` on digit QA, whose `novel` split holds
only scenes never trained on); draws samples/vqa_<split>_<step>.png (image, question,
answer, every attention layer / hop). The README lists the measured numbers.

CLEVR, for users who have it prepared by TFDS (a GPU run):
  python -m experiments.vqa --workdir=runs/clevr --config.dataset=clevr \
      --config.data.dir=DIR --config.data.clevr_image_size=128 --config.max_len=48

Anchors: Sort-of-CLEVR relational questions, CNN+MLP about 63 %, relation network 94 %
(Santoro et al. 2017, Sec. 5.3); SAN on VQA v1 test-standard 58.9 % (Yang et al. 2016).
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart",)


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (the only one)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  del config.model  # a name here, not the model's keyword arguments (`config.<model>`)
  config.model = "san"            # naive | san | memnet
  config.dataset = "sort_of_clevr"  # sort_of_clevr | digit_qa | clevr
  # show_attend_tell.Encoder (backbone convnet | vgg16 | vgg19): 3x3 convolutions and 2x2
  # max-pools; 75x75 Sort-of-CLEVR -> a 9x9 grid of L = 81 regions, 60x60 digits -> 7x7.
  encoder = {"backbone": "convnet", "widths": (24, 24, 24)}
  # Keyword arguments of `models.vqa.NaiveVQA`, `StackedAttention`, `MemoryNetwork` (the
  # vocabulary and answer sizes come from the data).
  config.naive = ml_collections.ConfigDict({
      "encoder": dict(encoder),
      "embed_dim": 64,            # word embeddings of the question LSTM
      "hidden_size": 128,         # the LSTM and both modalities' vectors
      "fusion": "product",        # product (Antol et al. 2015) | concat
      "mlp_sizes": (256,),
      "dropout_rate": 0.0,
  })
  config.san = ml_collections.ConfigDict({
      "encoder": dict(encoder),
      "embed_dim": 64,
      "hidden_size": 128,         # d: v_Q, v_I and u
      "attention_dim": 64,        # k: h_A
      "num_layers": 2,            # K attention layers (the paper's best)
      "dropout_rate": 0.0,
      # Each region's grid (row, column) appended to its features (the relation network's
      # tagging; not in the paper): the attended sum otherwise loses where things are.
      "region_coordinates": True,
  })
  config.memnet = ml_collections.ConfigDict({
      "encoder": dict(encoder),
      "embed_dim": 128,           # d: memories, the query u
      "hops": 3,                  # K (the paper's)
      "tying": "adjacent",        # adjacent | layerwise
      "question_encoding": "position",  # position (PE, Sec. 4.1) | bow
      "location_encoding": True,  # a learned embedding per region (temporal encoding's analogue)
  })
  config.max_len = 16             # question ids incl. <eos> (Sort-of-CLEVR's longest: 13)
  config.num_samples = 6          # questions in samples/vqa_*.png

  # Sort-of-CLEVR: images per split (Santoro et al.'s generator: 9,800 train, 200 test).
  config.data.num_train = 9800
  config.data.num_validation = 500
  config.data.num_test = 1000
  config.data.copies = 1          # digit_qa: scenes per training digit
  config.data.novel_size = 500    # digit_qa: scenes of held-out digit/layout combinations
  config.data.clevr_image_size = 128  # clevr: square RGB side the images are resized to

  config.train.num_steps = 1000  # the README's Sort-of-CLEVR runs (6-17 min on 2 cores)
  config.train.batch_size = 64
  config.train.learning_rate = 1e-3
  config.train.log_every = 100
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000

  config.eval.batch_size = 500
  return config
