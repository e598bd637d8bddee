"""An eager PyTorch port of `models.show_attend_tell.Decoder` with soft attention, for benchmarks.

The same equations and parameters as the Flax decoder (Xu et al. 2015, eq. 1-7 and 14 as
`models/show_attend_tell.py` writes them), over precomputed annotations `a` [B, L, D]:
`c_0`, `h_0` from `f_init,c`, `f_init,h` of `mean_i a_i` (ReLU layers, then tanh), additive
attention `e_ti = w^T tanh(W_a a_i + W_h h_{t-1})` with `W_a a_i` computed once per image,
the optional gate `beta_t = sigmoid(f_beta(h_{t-1}))` (a scalar per example), the LSTM
(`torch.nn.LSTMCell`) fed `[E y_{t-1}; z_t]`, dropout on `h_t`, and the linear deep output
`L_o(E y_{t-1} + L_h h_t + L_z z_t)`. The decoder runs as a Python loop over time steps, one
kernel launch per operation, as an eager PyTorch implementation does; `torch.compile(model)`
compiles the same module. Only the decoder is ported: the benchmark trains it on fixed
annotations, as the paper does with its frozen VGG features (Sec. 4.3).

`load_flax_params` copies a Flax `Decoder`'s parameters in, and `loss` is the batch mean of
`objectives.show_attend_tell.soft_attention_loss`, so that with dropout off both compute the
same function (tests/experiments/test_show_attend_tell_peer.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from experiments.peers import flax_weights
from vislang_jax.data.vocabulary import BOS_ID


class _InitMLP(nn.Module):
  """`f_init`: ReLU layers of widths `hidden`, then a tanh layer of `features` units."""

  def __init__(self, in_features: int, hidden: Sequence[int], features: int):
    super().__init__()
    widths = [in_features, *hidden, features]
    self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for layer in self.layers[:-1]:
      x = torch.relu(layer(x))
    return torch.tanh(self.layers[-1](x))


class SoftAttentionDecoder(nn.Module):
  """`Decoder(attention="soft")` with its sizes; `annotation_dim` is `D`, which Flax infers.

  Parameter names follow the Flax module's: `embed` (`E`), `init_c`, `init_h`,
  `att_annotations` (`W_a`, with a bias), `att_hidden` (`W_h`), `att_score` (`w`), `gate`
  (`f_beta`, only with `gating`), `lstm`, `out_hidden` (`L_h`), `out_context` (`L_z`),
  `out_logits` (`L_o`).
  """

  def __init__(self, *, vocab_size: int, annotation_dim: int, embed_dim: int, hidden_size: int,
               attention_dim: int, init_hidden: Sequence[int] = (), gating: bool = True,
               dropout_rate: float = 0.5):
    super().__init__()
    self.gating = gating
    self.embed = nn.Embedding(vocab_size, embed_dim)
    self.init_c = _InitMLP(annotation_dim, init_hidden, hidden_size)
    self.init_h = _InitMLP(annotation_dim, init_hidden, hidden_size)
    self.att_annotations = nn.Linear(annotation_dim, attention_dim)
    self.att_hidden = nn.Linear(hidden_size, attention_dim, bias=False)
    self.att_score = nn.Parameter(torch.randn(attention_dim) / attention_dim ** 0.5)
    if gating:
      self.gate = nn.Linear(hidden_size, 1)
    self.lstm = nn.LSTMCell(embed_dim + annotation_dim, hidden_size)
    self.dropout = nn.Dropout(dropout_rate)
    self.out_hidden = nn.Linear(hidden_size, embed_dim)
    self.out_context = nn.Linear(annotation_dim, embed_dim, bias=False)
    self.out_logits = nn.Linear(embed_dim, vocab_size)

  def forward(self, annotations: torch.Tensor,
              tokens_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced unroll: `a` [B, L, D], `tokens_in` [B, T] (`<bos>`, then the caption
    shifted right) -> (logits [B, T, K], alpha [B, T, L])."""
    mean = annotations.mean(1)
    cell, hidden = self.init_c(mean), self.init_h(mean)
    projected = self.att_annotations(annotations)  # W_a a_i, once per image
    embedded = self.embed(tokens_in)
    logits, alphas = [], []
    for t in range(tokens_in.shape[1]):
      scores = torch.tanh(self.att_hidden(hidden)[:, None] + projected) @ self.att_score  # (4)
      alpha = torch.softmax(scores, -1)  # (5)
      context = torch.einsum("bl,bld->bd", alpha, annotations)
      z = torch.sigmoid(self.gate(hidden)) * context if self.gating else context  # (6)
      hidden, cell = self.lstm(torch.cat([embedded[:, t], z], -1), (hidden, cell))
      logits.append(self.out_logits(embedded[:, t] + self.out_hidden(self.dropout(hidden))
                                    + self.out_context(z)))  # (7)
      alphas.append(alpha)
    return torch.stack(logits, 1), torch.stack(alphas, 1)


def load_flax_params(model: SoftAttentionDecoder, params: dict) -> None:
  """Copies a Flax `Decoder`'s parameters (`params["decoder"]` of a `ShowAttendTell`) in.

  The layouts of `flax_weights` (LSTM gates stacked, `bias_ih` 0); the score vector's kernel
  [A, 1] becomes `att_score` [A].

  Raises:
    ValueError: when the parameter names do not match `model`'s (e.g. gating differs).
  """
  state = {"embed.weight": flax_weights.tensor(params["embed"]["embedding"]),
           "att_score": flax_weights.tensor(params["att_score"]["kernel"])[:, 0]}
  dense = {name: params[name] for name in ("att_annotations", "att_hidden", "gate",
                                           "out_hidden", "out_context", "out_logits")
           if name in params}
  for mlp in ("init_c", "init_h"):
    for i in range(len(params[mlp])):
      dense[f"{mlp}.layers.{i}"] = params[mlp][f"Dense_{i}"]
  for name, layer in dense.items():
    state.update(flax_weights.linear(name, layer))
  state.update(flax_weights.lstm_cell("lstm", params["lstm"]))
  flax_weights.load(model, state, expected="a show_attend_tell.Decoder's with the model's "
                    "gating and init_hidden")


def loss(model: nn.Module, annotations: torch.Tensor, tokens: torch.Tensor,
         lengths: torch.Tensor, *, penalty: float = 1.0, bos_id: int = BOS_ID) -> torch.Tensor:
  """The batch mean of `soft_attention_loss` (eq. 14): `-log p(y | a) + lambda sum_i (1 -
  sum_t alpha_ti)^2`, both over each caption's real steps.

  Args:
    model: a `SoftAttentionDecoder` (or its `torch.compile`d module).
    annotations: [B, L, D] float.
    tokens: [B, T] int, the targets `y_1..y_T` (`<eos>` included, then padding).
    lengths: [B] int, the real tokens of each caption.
    penalty: `lambda`.
    bos_id: the id fed at the first step.

  Returns:
    [] float.
  """
  tokens_in = torch.cat([torch.full_like(tokens[:, :1], bos_id), tokens[:, :-1]], 1)
  logits, alpha = model(annotations, tokens_in)
  mask = (torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]).float()
  nll = (F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none") * mask).sum(1)
  attention_penalty = ((1.0 - torch.einsum("bt,btl->bl", mask, alpha)) ** 2).sum(1)
  return (nll + penalty * attention_penalty).mean()


def make_optimizer(model: nn.Module, *, learning_rate: float) -> torch.optim.Optimizer:
  """Adam with optax.adam's defaults (b1 0.9, b2 0.999, eps 1e-8), as `train.optimizers`."""
  return torch.optim.Adam(model.parameters(), lr=learning_rate)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, *,
               penalty: float = 1.0) -> torch.Tensor:
  """One Adam step on `loss` with dropout on (`model.train()`); returns the loss.

  `batch`: "annotations" [B, L, D] float, "tokens" [B, T] int64, "length" [B] int64, as the
  JAX experiment's batches (annotations in place of images).
  """
  model.train()
  optimizer.zero_grad(set_to_none=True)
  value = loss(model, batch["annotations"], batch["tokens"], batch["length"], penalty=penalty)
  value.backward()
  optimizer.step()
  return value.detach()
