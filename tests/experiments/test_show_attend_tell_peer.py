"""The PyTorch Show-Attend-Tell decoders: the port computes what the Flax decoder computes,
and the tutorial's decoder computes the loss its shrinking, sorted batch stands for.

Port: on the same (converted) weights and padded batch, with dropout off, the soft-attention
loss of eq. (14) (NLL plus the doubly stochastic penalty, gate on) agrees with
`models.show_attend_tell.Decoder` + `objectives.show_attend_tell.soft_attention_loss` to
float32 tolerance, and so do the parameter gradients; the `torch.compile`d port gives the same
loss. Tutorial decoder: its sorted, per-step shrinking batch gives the loss of a plain masked
computation over the unsorted batch (with the same submodules), and Adam lowers it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments.peers import captioning_tutorial_torch as tutorial
from experiments.peers import show_attend_tell_torch as port
from vislang_jax.data.vocabulary import BOS_ID
from vislang_jax.models.show_attend_tell import Decoder
from vislang_jax.objectives.show_attend_tell import soft_attention_loss
from vislang_jax.ops.sequence import length_mask, shift_right

# XLA's backend optimisations off: for this tiny model compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SIZES = dict(embed_dim=6, hidden_size=7, attention_dim=5, init_hidden=(4,), gating=True)
K, B, L, D, T, PENALTY = 13, 3, 4, 6, 5, 0.7


def _batch():
  rng = np.random.default_rng(0)
  lengths = np.array([3, 5, 1], np.int64)  # unsorted, and one caption of <eos> alone
  tokens = rng.integers(4, K, size=(B, T))
  tokens[np.arange(B), lengths - 1] = 2  # <eos>
  tokens[np.arange(T) >= lengths[:, None]] = 0
  return {"annotations": rng.normal(size=(B, L, D)).astype(np.float32), "tokens": tokens,
          "length": lengths}


def _torch(batch):
  return {k: torch.as_tensor(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def setup():
  batch = _batch()
  model = Decoder(vocab_size=K, dropout_rate=0.5, **SIZES)
  tokens_in = shift_right(batch["tokens"], bos_id=BOS_ID)
  params = _jit(functools.partial(model.init, deterministic=True))(
      jax.random.key(0), batch["annotations"], tokens_in)["params"]
  params = jax.tree.map(lambda x: x * 2.0, params)  # larger weights: sharper attention
  peer = port.SoftAttentionDecoder(vocab_size=K, annotation_dim=D, dropout_rate=0.5, **SIZES)
  port.load_flax_params(peer, params)
  peer.eval()  # no dropout
  return model, params, peer, batch


def _jax_loss(model, params, batch):
  logits, aux = model.apply({"params": params}, batch["annotations"],
                            shift_right(batch["tokens"], bos_id=BOS_ID), deterministic=True)
  loss, metrics = soft_attention_loss(logits, batch["tokens"], length_mask(batch["length"], T),
                                      aux["alpha"], penalty=PENALTY)
  return jnp.mean(loss), metrics


def _port_loss(peer, batch):
  b = _torch(batch)
  return port.loss(peer, b["annotations"], b["tokens"], b["length"], penalty=PENALTY)


def test_same_loss_on_converted_weights(setup):
  model, params, peer, batch = setup
  loss, metrics = _jit(_jax_loss, static_argnums=0)(model, params, batch)
  np.testing.assert_allclose(_port_loss(peer, batch).detach().numpy(), loss, rtol=1e-5)
  # Both terms matter at this tolerance: neither is negligible next to the other.
  assert float(jnp.mean(metrics["attention_penalty"])) * PENALTY > 1e-3 * float(loss)


def test_same_gradients(setup):
  model, params, peer, batch = setup
  grads = _jit(jax.grad(lambda p: _jax_loss(model, p, batch)[0]))(params)
  peer.zero_grad()
  _port_loss(peer, batch).backward()
  converted = port.SoftAttentionDecoder(vocab_size=K, annotation_dim=D, **SIZES)
  port.load_flax_params(converted, grads)  # linear: the gradient maps as the weights do
  expected = converted.state_dict()
  for name, p in peer.named_parameters():
    want = expected[name.replace("bias_ih", "bias_hh")]  # LSTM's extra bias: the same grad
    np.testing.assert_allclose(p.grad.numpy(), want.numpy(), rtol=1e-4, atol=1e-6,
                               err_msg=name)


def test_compiled_port_gives_the_same_loss(setup):
  _, _, peer, batch = setup
  try:
    with torch.no_grad():  # the forward graph only: compiling the backward too takes longer
      compiled = _port_loss(torch.compile(peer), batch)
  except Exception as error:  # noqa: BLE001 (no working compiler toolchain here)
    pytest.skip(f"torch.compile failed: {type(error).__name__}: {error}")
  np.testing.assert_allclose(compiled.detach().numpy(), _port_loss(peer, batch).detach().numpy(),
                             rtol=1e-5)


def test_port_train_step_lowers_the_loss(setup):
  *_, batch = setup
  torch.manual_seed(0)
  peer = port.SoftAttentionDecoder(vocab_size=K, annotation_dim=D, dropout_rate=0.0, **SIZES)
  optimizer = port.make_optimizer(peer, learning_rate=0.05)
  losses = [float(port.train_step(peer, optimizer, _torch(batch), penalty=PENALTY))
            for _ in range(10)]
  assert losses[-1] < 0.7 * losses[0]


TUTORIAL_SIZES = dict(attention_dim=5, embed_dim=6, decoder_dim=7, vocab_size=K, encoder_dim=D)


def _masked_tutorial_loss(model, batch, *, alpha_c):
  """The tutorial's loss without its sort, shrinking batch or packing: every caption runs all
  T steps in the given order and a mask drops the steps past each caption's end."""
  b = _torch(batch)
  annotations, tokens = b["annotations"], b["tokens"]
  tokens_in = torch.cat([torch.full_like(tokens[:, :1], BOS_ID), tokens[:, :-1]], 1)
  mean = annotations.mean(1)
  h, c = model.init_h(mean), model.init_c(mean)
  nll, alphas = [], []
  for t in range(T):
    energy = model.attention.full_att(torch.relu(model.attention.encoder_att(annotations)
                                                 + model.attention.decoder_att(h)[:, None]))
    alpha = torch.softmax(energy[..., 0], 1)
    context = torch.sigmoid(model.f_beta(h)) * torch.einsum("bl,bld->bd", alpha, annotations)
    h, c = model.decode_step(torch.cat([model.embedding(tokens_in[:, t]), context], 1), (h, c))
    nll.append(-torch.log_softmax(model.fc(h), 1)[torch.arange(B), tokens[:, t]])
    alphas.append(alpha)
  mask = (torch.arange(T) < b["length"][:, None]).float()
  cross_entropy = (torch.stack(nll, 1) * mask).sum() / mask.sum()
  attention = torch.einsum("bt,btl->bl", mask, torch.stack(alphas, 1))
  return cross_entropy + alpha_c * ((1.0 - attention) ** 2).mean()


def test_tutorial_loss_is_the_masked_loss():
  batch = _batch()
  torch.manual_seed(0)
  model = tutorial.DecoderWithAttention(dropout=0.5, **TUTORIAL_SIZES).eval()
  for p in model.parameters():  # larger weights than the tutorial's init: sharper attention
    p.data.mul_(3.0)
  value, scores, targets = tutorial.loss(model, _torch(batch), alpha_c=0.7)
  assert scores.shape == (batch["length"].sum(), K) and targets.shape == scores.shape[:1]
  np.testing.assert_allclose(value.detach().numpy(), _masked_tutorial_loss(
      model, batch, alpha_c=0.7).detach().numpy(), rtol=1e-5)


def test_tutorial_train_step_lowers_the_loss():
  batch = _torch(_batch())
  torch.manual_seed(0)
  model = tutorial.DecoderWithAttention(dropout=0.0, **TUTORIAL_SIZES)
  optimizer = tutorial.make_optimizer(model, learning_rate=0.05)
  metrics = [tutorial.train_step(model, optimizer, batch) for _ in range(10)]
  # At init the scores are nearly flat (fc's small uniform weights): about log K, plus the
  # penalty of nearly uniform attention, (1 - n / L)^2 for a caption of n steps.
  uniform_penalty = np.mean((1.0 - batch["length"].numpy() / L) ** 2)
  assert metrics[0]["loss"] == pytest.approx(np.log(K) + uniform_penalty, abs=0.05)
  assert metrics[-1]["loss"] < 0.7 * metrics[0]["loss"]
  assert metrics[-1]["top5_accuracy"] == 1.0
