"""The most-used PyTorch Show-Attend-Tell decoder, re-implemented for benchmarks.

A re-implementation (not a copy) of `DecoderWithAttention` and its training step from Sagar
Vinodababu's "a-PyTorch-Tutorial-to-Image-Captioning" (github.com/sgrvinod/a-PyTorch-Tutorial-
to-Image-Captioning, `models.py` and `train.py`), run as its author runs it, so that a benchmark
times the decoder people use rather than our port of our own model
(`show_attend_tell_torch.py`). What the tutorial does, and this module with it:

* the batch is sorted by decreasing caption length, and at step `t` only the
  `batch_size_t` captions still running are computed (`h[:batch_size_t]`, ...);
* attention `alpha = softmax(full_att(relu(encoder_att(a_i) + decoder_att(h_{t-1}))))`, with
  `encoder_att(a_i)` recomputed at every step on the running rows, the context `sum_i alpha_i
  a_i` times the gate `sigmoid(f_beta(h_{t-1}))` (one gate per annotation channel);
* `h_0 = init_h(mean_i a_i)`, `c_0 = init_c(mean_i a_i)` (one linear layer each), an
  `LSTMCell` fed `[E y_{t-1}; z_t]`, scores `fc(dropout(h_t))` (dropout 0.5), written into a
  zero [B, T, K] tensor;
* the loss: cross-entropy over the packed real steps (`pack_padded_sequence`) plus the doubly
  stochastic regulariser `alpha_c * mean_{b,i} (1 - sum_t alpha_bti)^2` (alpha_c = 1); Adam
  (decoder learning rate 4e-4), gradients clipped elementwise to [-5, 5], top-5 accuracy and
  `loss.item()` logged every step.

Embeddings and `fc` weights start uniform in [-0.1, 0.1], `fc`'s bias at 0, as the tutorial's
`init_weights`. The encoder (a ResNet-101 there) is not part of it: the decoder reads
precomputed annotations [B, L, D] (or [B, h, w, D]), `encoder_dim` = `D`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from vislang_jax.data.vocabulary import BOS_ID


class TutorialAttention(nn.Module):
  """The tutorial's additive attention with a ReLU (its `Attention`)."""

  def __init__(self, *, encoder_dim: int, decoder_dim: int, attention_dim: int):
    super().__init__()
    self.encoder_att = nn.Linear(encoder_dim, attention_dim)
    self.decoder_att = nn.Linear(decoder_dim, attention_dim)
    self.full_att = nn.Linear(attention_dim, 1)

  def forward(self, encoder_out: torch.Tensor,
              hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`a` [N, L, D], `h` [N, n] -> (context [N, D], alpha [N, L])."""
    energy = self.full_att(torch.relu(self.encoder_att(encoder_out)
                                      + self.decoder_att(hidden)[:, None]))[..., 0]
    alpha = torch.softmax(energy, 1)
    return (encoder_out * alpha[..., None]).sum(1), alpha


class DecoderWithAttention(nn.Module):
  """The tutorial's decoder with its sizes (`decoder_dim` is the LSTM's width)."""

  def __init__(self, *, attention_dim: int, embed_dim: int, decoder_dim: int, vocab_size: int,
               encoder_dim: int = 2048, dropout: float = 0.5):
    super().__init__()
    self.vocab_size = vocab_size
    self.attention = TutorialAttention(encoder_dim=encoder_dim, decoder_dim=decoder_dim,
                                       attention_dim=attention_dim)
    self.embedding = nn.Embedding(vocab_size, embed_dim)
    self.dropout = nn.Dropout(dropout)
    self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)
    self.init_h = nn.Linear(encoder_dim, decoder_dim)
    self.init_c = nn.Linear(encoder_dim, decoder_dim)
    self.f_beta = nn.Linear(decoder_dim, encoder_dim)
    self.fc = nn.Linear(decoder_dim, vocab_size)
    nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
    nn.init.uniform_(self.fc.weight, -0.1, 0.1)
    nn.init.zeros_(self.fc.bias)

  def forward(self, encoder_out: torch.Tensor, captions: torch.Tensor,
              caption_lengths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """Teacher-forced scores of the sorted batch.

    Args:
      encoder_out: [B, L, D] or [B, h, w, D] float annotations.
      captions: [B, T + 1] int, `<start>`, the caption, `<end>`, padding.
      caption_lengths: [B] int, each caption's length with `<start>` and `<end>`.

    Returns:
      `(scores [B, T', K], sorted captions [B, T + 1], decode_lengths, alphas [B, T', L],
      sort_ind [B])` in the order of decreasing length, `T' = max(decode_lengths)`,
      `decode_lengths` = `caption_lengths - 1`; scores and alphas are 0 past each caption.
    """
    batch, dim = encoder_out.shape[0], encoder_out.shape[-1]
    encoder_out = encoder_out.reshape(batch, -1, dim)
    caption_lengths, sort_ind = caption_lengths.sort(descending=True)
    encoder_out, captions = encoder_out[sort_ind], captions[sort_ind]
    embeddings = self.embedding(captions)
    mean = encoder_out.mean(1)
    h, c = self.init_h(mean), self.init_c(mean)
    decode_lengths = (caption_lengths - 1).tolist()
    steps = max(decode_lengths)
    scores = torch.zeros(batch, steps, self.vocab_size, device=encoder_out.device)
    alphas = torch.zeros(batch, steps, encoder_out.shape[1], device=encoder_out.device)
    for t in range(steps):
      running = sum(length > t for length in decode_lengths)  # the tutorial's batch_size_t
      context, alpha = self.attention(encoder_out[:running], h[:running])
      context = torch.sigmoid(self.f_beta(h[:running])) * context
      h, c = self.decode_step(torch.cat([embeddings[:running, t], context], 1),
                              (h[:running], c[:running]))
      scores[:running, t] = self.fc(self.dropout(h))
      alphas[:running, t] = alpha
    return scores, captions, decode_lengths, alphas, sort_ind


def loss(model: DecoderWithAttention, batch: dict, *, alpha_c: float = 1.0,
         bos_id: int = BOS_ID) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
  """The tutorial's loss of `batch` (`train_step`'s format): `(loss [], packed scores [N, K],
  packed targets [N])`, `N` the real tokens."""
  tokens = batch["tokens"]
  captions = torch.cat([torch.full_like(tokens[:, :1], bos_id), tokens], 1)
  scores, captions, decode_lengths, alphas, _ = model(batch["annotations"], captions,
                                                      batch["length"] + 1)
  scores = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
  targets = pack_padded_sequence(captions[:, 1:], decode_lengths, batch_first=True).data
  value = F.cross_entropy(scores, targets) + alpha_c * ((1.0 - alphas.sum(1)) ** 2).mean()
  return value, scores, targets


def make_optimizer(model: nn.Module, *, learning_rate: float = 4e-4) -> torch.optim.Optimizer:
  """The tutorial's decoder optimizer: Adam over the trainable parameters."""
  return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)


def train_step(model: DecoderWithAttention, optimizer: torch.optim.Optimizer, batch: dict, *,
               alpha_c: float = 1.0, grad_clip: float = 5.0) -> dict[str, float]:
  """One step of the tutorial's `train()` loop on precomputed annotations.

  Args:
    model: the decoder (set to training mode: dropout on).
    optimizer: `make_optimizer(model)`.
    batch: "annotations" [B, L, D] float, "tokens" [B, T] int64 (the caption `y_1..y_T`,
      `<eos>` included, then padding: no `<start>`, which this step prepends), "length" [B]
      int64 (the real tokens of each caption): the format of the JAX experiment and of
      `show_attend_tell_torch.train_step`.
    alpha_c: the doubly stochastic regulariser's weight.
    grad_clip: each gradient element is clipped to [-grad_clip, grad_clip].

  Returns:
    {"loss", "top5_accuracy"} of the step (read with `.item()`, as the tutorial logs them).
  """
  model.train()
  value, scores, targets = loss(model, batch, alpha_c=alpha_c)
  optimizer.zero_grad()
  value.backward()
  nn.utils.clip_grad_value_(model.parameters(), grad_clip)
  optimizer.step()
  top5 = (scores.topk(5, 1).indices == targets[:, None]).any(1).float().mean()
  return {"loss": value.item(), "top5_accuracy": top5.item()}
