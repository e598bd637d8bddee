"""Adversarial generators on digits: DCGAN, GAN-CLS / GAN-INT / GAN-INT-CLS with the style
encoder (Reed et al. 2016) on captioned digits, LAPGAN (Denton et al. 2015), GRAN (Im et al.
2016).

Quickstart (offline, scikit-learn digits, a few minutes each on a 2-core CPU):
  python -m experiments.gan --workdir=/tmp/dcgan
  python -m experiments.gan --workdir=/tmp/lapgan --config.model=lapgan
  python -m experiments.gan --workdir=/tmp/gran --config.model=gran
  python -m experiments.gan --workdir=/tmp/gan_int_cls --config.model=gan_int_cls
Real MNIST digits: add --config.data.source=mnist_test --config.data.mnist_dir=../shared/data/mnist.
Logs per split `frechet_distance`, `classifier_score`, `classifier_score_real`, for the text
models `consistency` (test, novel), and `two_sample_accuracy` on test at the end; the
README's generator table lists the measured numbers next to DRAW's and alignDRAW's.
"""

import ml_collections

from experiments.configs import common

PRESETS = ("quickstart", "paper")


def get_config(preset: str = "quickstart") -> ml_collections.ConfigDict:
  """`preset`: "quickstart" (default) or "paper" (`paper_settings`: GAN-INT-CLS as Reed et
  al.'s released CUB run, on the captioned digits)."""
  common.check_preset(preset, PRESETS)
  config = common.base_config()
  del config.model  # a name here, not the model's keyword arguments
  config.model = "dcgan"  # dcgan | gan_cls | gan_int | gan_int_cls | lapgan | gran

  config.gan = ml_collections.ConfigDict({
      "loss": "non_saturating",     # the generator's: non_saturating | minimax (saturating)
      "discriminator_steps": 1,     # k discriminator updates per generator update
      "wrong_weight": 0.5,          # GAN-CLS: weight of the (real image, wrong text) term
      "interpolation_beta": 0.5,    # GAN-INT: t_int = beta t1 + (1 - beta) t2
      "interpolation_weight": 1.0,  # GAN-INT: weight of the interpolated term in G's loss
      "style_encoder": True,        # text models: train S alongside (Sec. 4.4)
  })
  # Keyword arguments of `models.dcgan.Generator` / `Discriminator` (sizes from the data):
  # 28x28 digits use 2 stride-2 stages (7 -> 14 -> 28), 60x60 canvases 4 (4 -> 64, cropped).
  config.dcgan = ml_collections.ConfigDict({
      "generator": {"z_size": 64, "features": 32, "cond_dim": 64},
      "discriminator": {"features": 32, "cond_dim": 64},
      "digit_upsamples": 2,
      "canvas_upsamples": 4,
  })
  # `models.gran.GRAN` (its discriminator is `config.dcgan.discriminator`'s).
  config.gran = ml_collections.ConfigDict({
      "steps": 3, "z_size": 64, "features": 32, "num_upsamples": 2, "noise": "same"})
  # `models.lapgan.LAPGANGenerator` / `LAPGANDiscriminator`: 28 -> 14 -> 7 (levels 2);
  # num_classes 10 for the class-conditional CC-LAPGAN (Sec. 4.2), None otherwise.
  config.lapgan = ml_collections.ConfigDict({
      "levels": 2,
      "num_classes": ml_collections.config_dict.placeholder(int),
      # eyescream's CIFAR levels have 128 channels and 1,200 / 600 coarse units: 16 keeps
      # a CPU step near DCGAN's (64 channels took ~3 s a step on 2 busy cores)
      "generator": {"features": 16, "coarse_features": 600, "z_size": 64},
      "discriminator": {"features": 16, "coarse_features": 300},
  })
  # phi(t) of the text models: a VSE (`models.vse.VSE`) trained on the training captions.
  config.text_encoder = ml_collections.ConfigDict({
      "embed_dim": 64, "word_dim": 64, "encoder": {"backbone": "convnet", "widths": (16, 32, 32)},
      "margin": 0.2, "num_steps": 1500, "batch_size": 64, "learning_rate": 2e-3})
  # The digit classifier of the Frechet distance and classifier score (28x28 digits).
  config.classifier = common.classifier_config()
  # The scene judge of the canvases (alignDRAW's; same settings, so the cache is shared).
  config.judge = ml_collections.ConfigDict({
      "num_steps": 400, "batch_size": 64, "learning_rate": 2e-3, "widths": (16, 32, 32)})
  config.max_len = 12             # caption ids incl. <eos>
  config.num_samples = 8          # text models: images per caption and interpolation row;
                                  # lapgan / gran: samples in the pyramid / canvas figures

  config.data.copies = 1          # captioned canvases per training digit
  config.data.novel_size = 300    # canvases of held-out digit/layout combinations

  config.train.num_steps = 2000
  config.train.batch_size = 64
  config.train.learning_rate = 2e-4  # Radford et al. 2016 Sec. 4 (Adam, beta_1 0.5)
  config.train.b1 = 0.5
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000

  config.eval.batch_size = 250
  config.eval.count = 1000        # records (one sample each) of the generation metrics
  config.eval.two_sample_steps = 300
  config.eval.figure_captions = 4
  config.eval.grid_samples = 64   # samples_*.png of the unconditional models
  if preset == "paper":
    paper_settings(config)
  return config


def paper_settings(config: ml_collections.ConfigDict) -> None:
  """Reed et al. 2016's GAN-INT-CLS settings, in place, from the released code
  (reedscot/icml2016: the `opt` table of `main_cls_int.lua` and `scripts/train_cub.sh`,
  read through the code index): batch 64, `nz` 100 (normal noise), `nt` 128 (the compressed
  text), `ngf` 128 (the last transposed convolution's width: our generator `features`),
  `ndf` 64, Adam with rate 2e-4 and beta_1 0.5, `cls_weight` 0.5, `interp_weight` 1.0,
  `niter` 600 epochs with the rate halved every 100 (`lr_decay` 0.5, `decay_every` 100).

  Where this differs: the epochs are of our captioned digits (MNIST's test digits: 7,200
  training canvases, 112 steps of 64; 600 epochs = 67,500 steps), 60x60 grey canvases (their
  64x64 colour birds and flowers), `phi(t)` our VSE (their char-CNN-RNN, 1,024 dimensions),
  and the generator has no residual blocks (module docstring of `models.dcgan`).
  """
  config.model = "gan_int_cls"
  config.dcgan.generator.update(z_size=100, features=128, cond_dim=128)
  config.dcgan.discriminator.update(features=64, cond_dim=128)
  config.gan.update(wrong_weight=0.5, interpolation_weight=1.0, interpolation_beta=0.5)
  config.train.update(batch_size=64, learning_rate=2e-4, b1=0.5, num_steps=67_500,
                      schedule="step", decay_at=(1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6),
                      decay_factor=0.5, eval_every=5_000, checkpoint_every=5_000)
