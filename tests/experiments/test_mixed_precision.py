"""Every experiment's train loss under bfloat16 is within a stated tolerance of float32.

`config.train.compute_dtype` (`vislang_jax.train.precision`) runs the matmuls and convolutions
of a train step in bfloat16 and everything else in float32. For each experiment that trains
through `train.loop.fit` (`experiments.task_capture`: its task and first batch as `fit` gets
them, small sizes from its own end-to-end test, scikit-learn digits), one step in float32 and
one in bfloat16 from the same initial state on the same batch: every loss (`loss`, and each
player's `<name>/loss` of the adversarial games) agrees within the model's tolerance in
`TOLERANCES`, differs (so bfloat16 ran), and parameters and optimizer state stay float32.
`experiments.style` optimises an image without `fit`: its objective at the same start image,
float32 against bfloat16.

Relative tolerances: a bfloat16 operand keeps 8 significant bits (rounding error up to 2^-9,
about 2e-3, per operand); the losses are float32 reductions over examples and tokens, where
such errors mostly cancel (measured differences are 10 to 1000 times below these bounds).
"""

import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import (align_draw, dcc, densecap, draw, draw_classify, gan, mixer, retrieval,
                         rnn_lm, segmentation, seq2seq, show_attend_tell, stn, stn_addition,
                         style, task_capture, vqa, vse_caption)
from experiments.configs import align_draw as align_draw_config
from experiments.configs import dcc as dcc_config
from experiments.configs import densecap as densecap_config
from experiments.configs import draw as draw_config
from experiments.configs import draw_classify as draw_classify_config
from experiments.configs import gan as gan_config
from experiments.configs import mixer as mixer_config
from experiments.configs import retrieval as retrieval_config
from experiments.configs import rnn_lm as rnn_lm_config
from experiments.configs import segmentation as segmentation_config
from experiments.configs import seq2seq as seq2seq_config
from experiments.configs import show_attend_tell as show_attend_tell_config
from experiments.configs import stn as stn_config
from experiments.configs import stn_addition as stn_addition_config
from experiments.configs import style as style_config
from experiments.configs import vqa as vqa_config
from experiments.configs import vse_caption as vse_caption_config
from vislang_jax.train import image_optimization

_XENT = "softmax cross-entropy of logits from bf16 layers: about one bf16 rounding (2^-8)"
_TOKENS = "per-token NLL summed over the caption: roundings of the logits add up, and cancel"
_HINGE = "hinge ranking over the batch's pairs: a rounded score can cross the margin"
_GAN = "each player's binary cross-entropy on bf16 discriminator logits"
_DRAW = ("Bernoulli NLL of a canvas summed from float32 filterbank writes: roundings of the "
         "LSTM and write layers average out over 784 pixels and the glimpses")
# name: (relative tolerance of every loss, why).
TOLERANCES = {
    "stn": (4e-3, _XENT),
    "stn_addition": (4e-3, _XENT),
    "draw": (1e-4, _DRAW),
    "draw_classify": (4e-3, _XENT + " of the last glimpse's LSTM state"),
    "align_draw": (1e-4, _DRAW + " and the caption's alignment"),
    "show_attend_tell_soft": (4e-3, _TOKENS + "; plus the doubly stochastic penalty"),
    "show_attend_tell_hard": (4e-3, _TOKENS + "; plus the REINFORCE and entropy terms"),
    "semantic_attention": (4e-3, _TOKENS + "; plus the attribute detector's cross-entropy"),
    "mixer": (4e-3, _TOKENS + " (the first step is MIXER's XENT phase)"),
    "seq2seq": (4e-3, _TOKENS),
    "retrieval_vse": (1e-2, _HINGE),
    "retrieval_dvsa": (1e-2, _HINGE + " (and region-word max over fragments)"),
    "vse_caption_scnlm": (1e-2, _TOKENS + "; plus the VSE's " + _HINGE),
    "vse_caption_mrnn": (1e-2, _TOKENS + "; plus the DVSA's " + _HINGE),
    "rnn_lm": (4e-3, _TOKENS),
    "gan_dcgan": (4e-3, _GAN),
    "gan_gan_cls": (1e-2, _GAN + "; the style encoder's " + _HINGE),
    "gan_gan_int": (1e-2, _GAN + "; the style encoder's " + _HINGE),
    "gan_gan_int_cls": (1e-2, _GAN + "; the style encoder's " + _HINGE),
    "gan_lapgan": (4e-3, _GAN + ", summed over the pyramid's levels"),
    "gan_gran": (4e-3, _GAN + " (canvas summed over steps in float32)"),
    "vqa_naive": (4e-3, _XENT + " over the answers"),
    "vqa_san": (4e-3, _XENT + " over the answers"),
    "vqa_memnet": (4e-3, _XENT + " over the answers"),
    "densecap": (4e-3, _TOKENS + "; plus the RPN's objectness and box regression"),
    "dcc": (4e-3, _XENT + " (stage one: the multi-label concept classifier)"),
    "segmentation_fcn32s": (4e-3, _XENT + " per pixel (compared at step 2: see WARM_START)"),
    "segmentation_fcn8s": (4e-3, _XENT + " per pixel (compared at step 2: see WARM_START)"),
    "segmentation_deconvnet": (4e-3, _XENT + " per pixel"),
    "style": (4e-3, "squared errors of bf16 VGG features and their Gram matrices"),
}
# FCN's score layers start at zero (Long et al.): every first-step loss is log(num_classes)
# in any precision; DeconvNet's first logits are as close to zero (its unpooled maps are sparse
# and small), so both dtypes round to the same loss. These compare the second step, from the
# state after one float32 step.
WARM_START = ("segmentation_fcn32s", "segmentation_fcn8s", "segmentation_deconvnet")
# The gradients' global norms (`grad_norm`, `<player>/grad_norm`) agree within a tenth:
# rounding alone moves them by 1e-4 to 4e-2 (measured); a gradient that bfloat16 breaks, more.
GRAD_NORM_RTOL = 0.1


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _stn(data_dir):
  config = stn_config.get_config()
  config.data.update(dir=data_dir, copies=1)
  config.distortion = "none"
  config.train.batch_size = 8
  return stn, config


def _stn_addition(data_dir):
  config = stn_addition_config.get_config()
  config.data.update(dir=data_dir, copies=1)
  config.model.out_hw = (14, 14)
  config.train.batch_size = 8
  return stn_addition, config


def _draw(data_dir):
  config = draw_config.get_config()
  config.model.update(glimpses=3, read_n=2, write_n=3, z_size=4, enc_size=16, dec_size=16)
  config.update(iwae_samples=2, num_samples=4)
  config.data.dir = data_dir
  config.classifier.update(num_steps=1, widths=(8, 8))
  config.train.batch_size = 8
  return draw, config


def _draw_classify(data_dir):
  config = draw_classify_config.get_config()
  config.model.update(glimpses=2, read_n=6, hidden_size=32)
  config.data.update(dir=data_dir, copies=1, canvas_size=40, num_clutter=2)
  config.train.batch_size = 8
  return draw_classify, config


def _align_draw(data_dir):
  config = align_draw_config.get_config()
  config.model.update(glimpses=4, z_size=4, read_n=3, write_n=3, enc_size=32, gen_size=32,
                      lang_size=16, embed_size=16, align_size=16)
  config.data.update(dir=data_dir, copies=1, novel_size=20)
  config.judge.update(num_steps=1, widths=(8, 8, 8))
  config.train.batch_size = 8
  return align_draw, config


def _show_attend_tell(data_dir, *, model="show_attend_tell", attention="soft"):
  config = show_attend_tell_config.get_config()
  config.model, config.attention = model, attention
  config.encoder.widths = (8, 16, 16)
  config.decoder.update(embed_dim=16, hidden_size=32, attention_dim=16)
  config.semantic.decoder.update(embed_dim=16, input_dim=16, hidden_size=32)
  config.semantic.update(top_k=3, feature_dim=16)
  config.data.update(dir=data_dir, copies=1, novel_size=20)
  config.train.batch_size = 8
  return show_attend_tell, config


def _mixer(data_dir):
  config = mixer_config.get_config()
  config.model.encoder.widths = (4, 8, 8)
  config.model.decoder.update(embed_dim=8, hidden_size=16, attention_dim=8, dropout_rate=0.0)
  config.data.update(dir=data_dir, copies=1, novel_size=10)
  config.objective.update(xent_steps=2, mixed_steps=2, delta=4, anneal_steps=4, feed_end=0.5)
  config.train.update(num_steps=6, batch_size=8)
  return mixer, config


def _seq2seq(data_dir):
  config = seq2seq_config.get_config()
  config.network.update(embed_dim=8, hidden_size=16, attention_dim=16, maxout_dim=8)
  config.data.update(dir=data_dir, train_size=200, validation_size=20, test_size=20,
                     max_clauses=1, max_words=8, max_len=9)
  config.eval.length_buckets = (4, 6)
  config.train.batch_size = 8
  return seq2seq, config


def _retrieval(data_dir, *, model):
  config = retrieval_config.get_config()
  config.model = model
  config.vse.update(embed_dim=16, word_dim=8, encoder={"widths": (4, 8, 8)})
  config.dvsa.update(embed_dim=16, word_dim=8, hidden_size=16, crop_size=(14, 14),
                     encoder={"widths": (4, 8)})
  config.data.update(dir=data_dir, copies=1, novel_size=20)
  config.train.batch_size = 8
  return retrieval, config


def _vse_caption(data_dir, *, model):
  config = vse_caption_config.get_config()
  config.model = model
  config.vse.update(embed_dim=16, word_dim=8, encoder={"widths": (4, 8, 8)})
  config.dvsa.update(embed_dim=16, word_dim=8, hidden_size=16, crop_size=(14, 14),
                     encoder={"widths": (4, 8)})
  config.scnlm.update(word_dim=8, hidden=8, factors=8, structure_dim=4)
  config.mrnn.update(word_dim=8, hidden_size=16, encoder={"widths": (4, 8)})
  config.data.update(dir=data_dir, copies=1, novel_size=20)
  config.train.batch_size = 8
  return vse_caption, config


def _rnn_lm(data_dir):
  config = rnn_lm_config.get_config()
  config.model.update(embed_dim=16, hidden_size=32, dropout_rate=0.0)
  config.data.update(dir=data_dir, copies=1, novel_size=20)
  config.train.batch_size = 8
  return rnn_lm, config


def _gan(data_dir, *, model):
  config = gan_config.get_config()
  config.model = model
  config.data.update(dir=data_dir, novel_size=20)
  config.classifier.update(num_steps=1, widths=(8, 8))
  config.judge.update(num_steps=1, widths=(8, 8, 8))
  config.text_encoder.update(num_steps=1, embed_dim=8, word_dim=8,
                             encoder={"backbone": "convnet", "widths": (4,)})
  config.dcgan.generator.update(features=8, z_size=8, cond_dim=8)
  config.dcgan.discriminator.update(features=8, cond_dim=8)
  config.gran.update(features=8, z_size=8, steps=2)
  config.lapgan.generator.update(features=8, coarse_features=16, z_size=8)
  config.lapgan.discriminator.update(features=8, coarse_features=16)
  config.lapgan.num_classes = 10
  config.train.batch_size = 8
  return gan, config


def _vqa(data_dir, *, model):
  config = vqa_config.get_config()
  config.model = model
  config.dataset = "digit_qa"
  encoder = {"widths": (4, 8, 8)}
  config.naive.update(encoder=encoder, embed_dim=8, hidden_size=16, mlp_sizes=(16,))
  config.san.update(encoder=encoder, embed_dim=8, hidden_size=16, attention_dim=8)
  config.memnet.update(encoder=encoder, embed_dim=16, hops=2)
  config.data.update(dir=data_dir, num_train=30, num_validation=6, num_test=8, novel_size=12)
  config.train.batch_size = 8
  return vqa, config


def _densecap(data_dir):
  config = densecap_config.get_config()
  config.model.update(widths=(4, 8, 8), rpn_filters=8, region_dim=16, embed_dim=8,
                      hidden_size=16, sampler_batch_size=16, max_proposals=12)
  config.data.update(dir=data_dir, max_digits=3, novel_size=6)
  config.max_regions = 4
  config.train.batch_size = 4
  return densecap, config


def _dcc(data_dir):
  config = dcc_config.get_config()
  config.held_out = (3, 7)
  config.model.encoder.widths = (8, 8, 8)
  config.model.update(feature_dim=16, classifier_hidden=0, embed_dim=8, hidden_dim=16)
  config.data.update(dir=data_dir, copies=1)
  config.train.batch_size = 8
  return dcc, config


def _segmentation(data_dir, *, model):
  config = segmentation_config.get_config()
  config.model = model
  config.fcn.widths = (4, 8, 8, 8, 8)
  config.deconvnet.widths = (4, 8)
  config.data.update(dir=data_dir, copies=1, canvas_size=32)
  config.train.batch_size = 8
  return segmentation, config


CASES = {
    "stn": _stn,
    "stn_addition": _stn_addition,
    "draw": _draw,
    "draw_classify": _draw_classify,
    "align_draw": _align_draw,
    "show_attend_tell_soft": _show_attend_tell,
    "show_attend_tell_hard": functools.partial(_show_attend_tell, attention="hard"),
    "semantic_attention": functools.partial(_show_attend_tell, model="semantic_attention"),
    "mixer": _mixer,
    "seq2seq": _seq2seq,
    "retrieval_vse": functools.partial(_retrieval, model="vse"),
    "retrieval_dvsa": functools.partial(_retrieval, model="dvsa"),
    "vse_caption_scnlm": functools.partial(_vse_caption, model="scnlm"),
    "vse_caption_mrnn": functools.partial(_vse_caption, model="mrnn"),
    "rnn_lm": _rnn_lm,
    **{f"gan_{m}": functools.partial(_gan, model=m)
       for m in ("dcgan", "gan_cls", "gan_int", "gan_int_cls", "lapgan", "gran")},
    **{f"vqa_{m}": functools.partial(_vqa, model=m) for m in ("naive", "san", "memnet")},
    "densecap": _densecap,
    "dcc": _dcc,
    **{f"segmentation_{m}": functools.partial(_segmentation, model=m)
       for m in ("fcn32s", "fcn8s", "deconvnet")},
}


def _step(captured, compute_dtype, state, batch):
  """One step of `fit`'s train step in `compute_dtype`; `state` is kept (not donated)."""
  step = task_capture.train_step(captured, compute_dtype, donate=False)
  return step(state, batch)


def _named(metrics, name):
  """`metrics[name]` and each player's `metrics["<player>/<name>"]`, as floats."""
  return {k: float(v) for k, v in metrics.items() if k == name or k.endswith("/" + name)}


def _floating_dtypes(tree):
  return {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def _assert_close_and_not_equal(name, float32, bfloat16):
  rtol, reason = TOLERANCES[name]
  assert float32.keys() == bfloat16.keys() and float32
  for key in float32:
    f32, bf16 = float32[key], bfloat16[key]
    assert np.isfinite(f32) and bf16 == pytest.approx(f32, rel=rtol), (key, reason)
    assert bf16 != f32, f"{key}: bfloat16 gave float32's value {f32}: did it run in bfloat16?"


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_bfloat16_step_loses_what_float32_loses(name, data_dir, tmp_path):
  experiment, config = CASES[name](data_dir)
  captured = task_capture.capture(experiment, config, str(tmp_path))
  batch = task_capture.first_batch(captured)
  state = task_capture.initial_state(captured)
  if name in WARM_START:
    state, _ = _step(captured, "float32", state, batch)
  metrics = {}
  for compute_dtype in ("float32", "bfloat16"):
    new_state, metrics[compute_dtype] = _step(captured, compute_dtype, state, batch)
  _assert_close_and_not_equal(name, *(_named(metrics[d], "loss") for d in metrics))
  # the bfloat16 step's new parameters (and batch statistics) and optimizer state
  assert _floating_dtypes((new_state.params, new_state.opt_state)) == {jnp.dtype(jnp.float32)}
  norms = {d: _named(metrics[d], "grad_norm") for d in metrics}
  off = {k: (f32, norms["bfloat16"][k]) for k, f32 in norms["float32"].items()
         if norms["bfloat16"][k] != pytest.approx(f32, rel=GRAD_NORM_RTOL)}
  assert norms["float32"] and not off, f"gradient norms (float32, bfloat16): {off}"


def test_style_objective_in_bfloat16_is_within_tolerance_of_float32(tmp_path):
  """experiments.style at its start image (white noise, the same for both), one Adam step."""
  losses, images, returned = {}, {}, []

  def optimize_image(*args, **kwargs):
    returned.append(image_optimization.optimize_image(*args, **kwargs))
    return returned[-1]

  for compute_dtype in ("float32", "bfloat16"):
    config = style_config.get_config()
    config.update(image_size=32, ratios=(1e-3,), ratio=1e-3, optimizer="adam",
                  content_layer="conv2_1", style_layers=("conv1_1", "conv2_1"))
    config.train.update(num_steps=1, compute_dtype=compute_dtype)
    with mock.patch.object(style, "optimize_image", optimize_image):
      style.train_and_evaluate(config, str(tmp_path / compute_dtype))
    images[compute_dtype], history = returned[-1]
    losses[compute_dtype] = {"loss": float(history["loss"][0]),
                             **{k: float(v[0]) for k, v in history["aux"].items()}}
  _assert_close_and_not_equal("style", losses["float32"], losses["bfloat16"])
  assert images["bfloat16"].dtype == jnp.float32
