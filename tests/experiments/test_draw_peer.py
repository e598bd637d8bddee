"""The eager PyTorch port of DRAW computes the loss `experiments/draw.py` trains.

Same (converted) weights, and the same binary batch and noise as the experiment's
`per_example` draws from its key (the binarization key's bits, the `"sample"` stream's eps):
the torch loss and its parts equal the Flax model's to float32 tolerance, with attention
(non-square images, different read and write grids) and without; so do the gradients of every
parameter, and the parameters and losses after Adam steps. `torch.compile` of the port (whole or
glimpse by glimpse, each graph traced whole, the backward through AOTAutograd) gives the same
loss and gradients.
"""

import functools

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
import torch

from experiments import draw as experiment
from experiments.peers import draw_torch
from vislang_jax.models import draw
from vislang_jax.ops.binarize import binarize
from vislang_jax.train.step import mean_loss

# XLA's backend optimisations off: for this tiny model compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
B, H, W, T, Z, LR = 3, 8, 9, 3, 4, 1e-2
SIZES = dict(height=H, width=W, glimpses=T, read_n=3, write_n=4, z_size=Z, enc_size=5,
             dec_size=6)


def _scale(path, x):
  """Larger weights: attention kernels 20 times theirs (4 times the usual variance, not 1e-2)
  and their biases as they are, so that glimpses move with the example and the step (some
  centres fall outside the image); every other parameter 3 times, for a canvas that varies."""
  name = jax.tree_util.keystr(path)
  if "attention" in name:
    return x * 20.0 if "kernel" in name else x
  return x * 3.0


@pytest.fixture(scope="module", params=[True, False], ids=["attention", "no_attention"])
def setup(request):
  sizes = dict(SIZES, read_attention=request.param, write_attention=request.param)
  model = draw.DRAW(**sizes)
  images = np.random.default_rng(0).uniform(size=(B, H, W, 1)).astype(np.float32)
  params = _jit(model.init)({"params": jax.random.key(0), "sample": jax.random.key(1)},
                            images)["params"]
  params = jax.tree_util.tree_map_with_path(_scale, params)
  key = jax.random.key(2)
  # The experiment's per_example splits its key: bits of the images, then the model's eps
  # from its "sample" stream (`draw.latent_noise`).
  binarize_key, sample_key = jax.random.split(key)
  x = binarize(binarize_key, images)
  noise = nn.apply(lambda module: draw.latent_noise(module, None, (T, B, Z)), model)(
      {"params": params}, rngs={"sample": sample_key})
  loss_fn = mean_loss(experiment.make_per_example(model))  # the experiment's training loss
  optimizer = optax.adam(LR)

  @_jit
  def step(params, opt_state):
    """The loss, its parts and gradient at `params`, and the Adam step from there."""
    (loss, metrics), grads = jax.value_and_grad(
        lambda p: loss_fn(p, {"image": images}, key, None)[:2], has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return loss, metrics, grads, optax.apply_updates(params, updates), opt_state

  return dict(sizes=sizes, params=params, step=step, opt_state=optimizer.init(params),
              x=torch.tensor(np.asarray(x)), noise=torch.tensor(np.asarray(noise)),
              peer=_converted(sizes, params))


def _converted(sizes, params):
  """A port with `params` (or gradients: the same linear map converts them) loaded."""
  peer = draw_torch.DRAW(**sizes)
  draw_torch.load_flax_params(peer, params)
  return peer


def test_same_loss_as_the_experiment_on_converted_weights(setup):
  s = setup
  loss, metrics, *_ = s["step"](s["params"], s["opt_state"])
  torch_loss, torch_metrics = draw_torch.loss(s["peer"], s["x"], s["noise"])
  np.testing.assert_allclose(torch_loss.item(), loss, rtol=1e-5)
  for name, value in metrics.items():
    np.testing.assert_allclose(torch_metrics[name].item(), value, rtol=1e-5, err_msg=name)
  assert float(metrics["kl_nats"]) > 1.0  # the latent term is not negligible
  logits = s["peer"](s["x"], s["noise"])[0].detach()
  assert float(logits.std()) > 0.3  # not a trivially flat canvas


def test_same_gradients(setup):
  s = setup
  grads = s["step"](s["params"], s["opt_state"])[2]
  s["peer"].zero_grad()
  draw_torch.loss(s["peer"], s["x"], s["noise"])[0].backward()
  expected = _converted(s["sizes"], grads).state_dict()
  for name, parameter in s["peer"].named_parameters():
    if not parameter.requires_grad:  # the LSTMs' frozen zero bias_ih
      assert parameter.grad is None and not parameter.any(), name
      continue
    np.testing.assert_allclose(parameter.grad.numpy(), expected[name].numpy(), rtol=1e-4,
                               atol=1e-5, err_msg=name)


def test_adam_steps_keep_them_equal(setup):
  s = setup
  params, opt_state = s["params"], s["opt_state"]
  peer = _converted(s["sizes"], params)
  optimizer = draw_torch.make_optimizer(peer, LR)
  for _ in range(2):
    loss, _, _, params, opt_state = s["step"](params, opt_state)
    torch_loss = draw_torch.train_step(peer, optimizer, s["x"], s["noise"])
    np.testing.assert_allclose(torch_loss.item(), loss, rtol=1e-5)
  expected = _converted(s["sizes"], params).state_dict()
  for name, value in peer.state_dict().items():
    # Adam divides by the gradient's scale: a near-zero gradient's float32 error shows in its
    # update, so the parameters agree to a hundredth of a step.
    np.testing.assert_allclose(value.numpy(), expected[name].numpy(), rtol=1e-5,
                               atol=LR / 100, err_msg=name)


def test_params_of_the_other_attention_are_refused(setup):
  s = setup
  attention = not s["sizes"]["read_attention"]
  other = draw_torch.DRAW(**dict(s["sizes"], read_attention=attention,
                                 write_attention=attention))
  with pytest.raises(ValueError, match="mismatched names"):
    draw_torch.load_flax_params(other, s["params"])


def test_compiled_port_gives_the_same_loss_and_gradients():
  if not hasattr(torch, "compile"):
    pytest.skip("this PyTorch has no torch.compile")
  torch.manual_seed(0)
  peer = draw_torch.DRAW(**SIZES)
  x = torch.bernoulli(torch.full((B, H, W, 1), 0.5))
  noise = torch.randn(T, B, Z)
  # Dynamo captures the forward as one graph and AOTAutograd its backward; the benchmark's
  # default "inductor" backend only adds code generation (minutes cold on 2 CPU cores), so the
  # test stops before it. Compiled whole (the unrolled glimpses), then glimpse by glimpse.
  compile_ = functools.partial(torch.compile, backend="aot_eager", fullgraph=True)
  results = []
  for variant in ("eager", "whole", "glimpse"):
    model = compile_(peer) if variant == "whole" else peer
    if variant == "glimpse":
      peer.glimpse = compile_(peer.glimpse)
    peer.zero_grad()
    loss, _ = draw_torch.loss(model, x, noise)
    loss.backward()
    results.append((variant, loss.item(), {name: p.grad.clone() for name, p in
                                           peer.named_parameters() if p.requires_grad}))
  _, loss, eager = results[0]
  for variant, compiled_loss, compiled_grads in results[1:]:
    np.testing.assert_allclose(compiled_loss, loss, rtol=1e-6, err_msg=variant)
    for name, grad in eager.items():
      np.testing.assert_allclose(compiled_grads[name].numpy(), grad.numpy(), rtol=1e-5,
                                 atol=1e-7, err_msg=f"{variant}: {name}")
