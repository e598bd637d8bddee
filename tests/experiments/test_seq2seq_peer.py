"""The eager PyTorch port of RNNsearch computes what `models.seq2seq.Seq2Seq` computes.

Same (converted) weights, same padded batch: the teacher-forced logits and the per-sentence
XENT loss agree to float32 tolerance, and so do the parameter gradients of the summed loss
(through the encoder, attention and deep output). With one beam the torch beam search is
greedy decoding, which `vislang_jax.decoding.greedy` on the Flax model must reproduce.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments.peers import seq2seq_torch
from vislang_jax import decoding
from vislang_jax.models.seq2seq import Seq2Seq
from vislang_jax.objectives.sequence import xent_loss
from vislang_jax.ops.sequence import length_mask

# XLA's backend optimisations off: for this tiny model compilation is nearly all the time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SIZES = dict(embed_dim=6, hidden_size=7, attention_dim=5, maxout_dim=4)
SV, TV, B, S, T, BOS, EOS = 11, 13, 3, 6, 5, 1, 2


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  source = rng.integers(3, SV, size=(B, S)).astype(np.int32)
  source_length = np.array([6, 3, 1], np.int32)
  source[np.arange(S) >= source_length[:, None]] = 0
  target = rng.integers(3, TV, size=(B, T)).astype(np.int32)
  target_length = np.array([5, 4, 2], np.int32)
  target[np.arange(T)[None] == target_length[:, None] - 1] = EOS
  target[np.arange(T) >= target_length[:, None]] = 0
  target_in = np.concatenate([np.full((B, 1), BOS, np.int32), target[:, :-1]], 1)
  model = Seq2Seq(source_vocab_size=SV, target_vocab_size=TV, **SIZES)
  params = _jit(model.init)(jax.random.key(0), source, source_length, target_in)["params"]
  params = jax.tree.map(lambda x: x * 2.0, params)  # larger weights: sharper attention
  peer = seq2seq_torch.AttentionSeq2Seq(source_vocab_size=SV, target_vocab_size=TV, **SIZES)
  seq2seq_torch.load_flax_params(peer, params)
  batch = dict(source=source, source_length=source_length, target=target,
               target_length=target_length, target_in=target_in)
  return model, params, peer, batch


def _jax_loss(model, params, batch):
  logits, _ = model.apply({"params": params}, batch["source"], batch["source_length"],
                          batch["target_in"])
  mask = length_mask(batch["target_length"], T)
  return xent_loss(logits, batch["target"], mask), logits


def _torch_loss(peer, batch):
  as_long = {k: torch.as_tensor(v, dtype=torch.long) for k, v in batch.items()}
  logits = peer(as_long["source"], as_long["source_length"], as_long["target_in"])
  mask = (torch.arange(T) < as_long["target_length"][:, None]).float()
  return seq2seq_torch.xent_loss(logits, as_long["target"], mask), logits


def test_same_logits_and_loss_on_converted_weights(setup):
  model, params, peer, batch = setup
  loss, logits = _jit(_jax_loss, static_argnums=0)(model, params, batch)
  torch_loss, torch_logits = _torch_loss(peer, batch)
  np.testing.assert_allclose(torch_logits.detach().numpy(), logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(torch_loss.detach().numpy(), loss, rtol=1e-5)
  assert float(jnp.std(logits)) > 0.1  # not a trivially flat model


def test_same_gradients(setup):
  model, params, peer, batch = setup
  grads = _jit(jax.grad(lambda p: jnp.sum(_jax_loss(model, p, batch)[0])))(params)
  peer.zero_grad()
  _torch_loss(peer, batch)[0].sum().backward()
  torch_grads = {name: p.grad.numpy() for name, p in peer.named_parameters()}
  # The converted gradient: the same map as the weights (load_flax_params is linear).
  converted = seq2seq_torch.AttentionSeq2Seq(source_vocab_size=SV, target_vocab_size=TV,
                                             **SIZES)
  seq2seq_torch.load_flax_params(converted, grads)
  for name, expected in converted.state_dict().items():
    if "bias_ih" in name:  # PyTorch's extra LSTM bias: its gradient is bias_hh's
      expected = converted.state_dict()[name.replace("bias_ih", "bias_hh")]
    np.testing.assert_allclose(torch_grads[name], expected.numpy(), rtol=1e-4, atol=1e-6,
                               err_msg=name)


def test_one_beam_is_greedy_decoding(setup):
  model, params, peer, batch = setup
  state = model.init_decode_state(params, batch["source"], batch["source_length"])
  greedy = _jit(lambda p, s: decoding.greedy(functools.partial(model.decode_step, p), s,
                                              bos_id=BOS, eos_id=EOS, max_len=8))(params, state)
  best = seq2seq_torch.beam_search(
      peer, torch.as_tensor(batch["source"], dtype=torch.long),
      torch.as_tensor(batch["source_length"], dtype=torch.long), bos_id=BOS, eos_id=EOS,
      max_len=8, beam_size=1)
  np.testing.assert_array_equal(best.numpy(), greedy.tokens)


def test_sentence_bleu_is_the_jitted_reward():
  from vislang_jax.objectives.sequence import bleu_reward
  tokens = np.array([[5, 6, 7, 8, 2, 0], [5, 6, 9, 8, 7, 2], [4, 2, 0, 0, 0, 0]], np.int32)
  lengths = np.array([5, 6, 2], np.int32)
  references = np.array([[5, 6, 7, 8, 9, 2], [5, 6, 7, 8, 2, 0], [4, 4, 2, 0, 0, 0]], np.int32)
  reference_lengths = np.array([6, 5, 3], np.int32)
  expected = bleu_reward(tokens, lengths, references[:, None], reference_lengths[:, None],
                         eos_id=EOS)
  np.testing.assert_allclose(seq2seq_torch.sentence_bleu(
      tokens, lengths, references, reference_lengths, eos_id=EOS), expected, rtol=1e-5)
