"""An eager PyTorch port of `models.seq2seq.Seq2Seq(attention=True)` (RNNsearch), for benchmarks.

The same equations (Bahdanau et al. 2015, Appendix A, as `models/seq2seq.py` writes them):
a bidirectional LSTM encoder reading each sentence within its length (`torch.nn.LSTM` on a
packed sequence), `s_0 = tanh(W_s h_1^bwd)`, additive attention `e_ij = v_a^T tanh(W_a s_{i-1}
+ U_a h_j)` masked over padding (eq. 5-6), the decoder `torch.nn.LSTMCell` fed `[E y_{i-1};
c_i]` (eq. 4) and the maxout deep output `W_o max(U_o s_{i-1} + V_o E y_{i-1} + C_o c_i)`.
The decoder runs as a Python loop over time steps, one kernel launch per operation, as an
eager PyTorch implementation does. `load_flax_params` copies a Flax model's parameters in,
so both compute the same function (tests/experiments/test_seq2seq_peer.py).

The training steps mirror `objectives.sequence`: `xent_loss` (teacher forcing, the summed
NLL of each sentence) and `mixer_loss` (the first `s` tokens teacher-forced and trained by
XENT, the rest sampled and trained by REINFORCE with the sentence-BLEU reward, computed on
the host by sacrebleu as eager implementations do, and a per-step linear baseline on the
detached decoder state). `beam_search` keeps `K` live beams and a pool of the `K` best
finished ones, as `decoding.beam_search` (without its early stop).
"""

from __future__ import annotations

import numpy as np
import sacrebleu
import torch
from torch import nn
from torch.nn import functional as F

from experiments.peers import flax_weights


class AttentionSeq2Seq(nn.Module):
  """RNNsearch with the sizes of `Seq2Seq` (`embed_dim` m, `hidden_size` n, ...)."""

  def __init__(self, *, source_vocab_size: int, target_vocab_size: int, embed_dim: int,
               hidden_size: int, attention_dim: int, maxout_dim: int):
    super().__init__()
    self.maxout_dim = maxout_dim
    self.source_embed = nn.Embedding(source_vocab_size, embed_dim)
    self.target_embed = nn.Embedding(target_vocab_size, embed_dim)
    self.encoder = nn.LSTM(embed_dim, hidden_size, batch_first=True, bidirectional=True)
    self.init_state = nn.Linear(hidden_size, hidden_size)
    self.att_keys = nn.Linear(2 * hidden_size, attention_dim)
    self.att_query = nn.Linear(hidden_size, attention_dim, bias=False)
    self.att_v = nn.Parameter(torch.zeros(attention_dim))
    self.decoder = nn.LSTMCell(embed_dim + 2 * hidden_size, hidden_size)
    self.out_state = nn.Linear(hidden_size, 2 * maxout_dim)
    self.out_embed = nn.Linear(embed_dim, 2 * maxout_dim, bias=False)
    self.out_context = nn.Linear(2 * hidden_size, 2 * maxout_dim, bias=False)
    self.out_logits = nn.Linear(maxout_dim, target_vocab_size)

  def encode(self, source: torch.Tensor, source_length: torch.Tensor) -> dict:
    """The decoder's state before step 1: `(cell, hidden, annotations, keys, mask)`."""
    packed = nn.utils.rnn.pack_padded_sequence(self.source_embed(source), source_length.cpu(),
                                               batch_first=True, enforce_sorted=False)
    outputs, (h_n, _) = self.encoder(packed)
    annotations, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True,
                                                      total_length=source.shape[1])
    hidden = torch.tanh(self.init_state(h_n[1]))  # h_1^bwd: the backward pass's last state
    mask = torch.arange(source.shape[1], device=source.device) < source_length[:, None]
    return {"cell": torch.zeros_like(hidden), "hidden": hidden, "annotations": annotations,
            "keys": self.att_keys(annotations), "mask": mask}

  def step(self, embedded: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """One decoder step fed `E y_{i-1}` [N, m] -> (logits [N, K], state)."""
    previous = state["hidden"]
    scores = torch.tanh(self.att_query(previous)[:, None] + state["keys"]) @ self.att_v
    alignment = torch.softmax(scores.masked_fill(~state["mask"], -torch.inf), dim=-1)
    context = torch.einsum("ns,nsd->nd", alignment, state["annotations"])
    hidden, cell = self.decoder(torch.cat([embedded, context], -1),
                                (previous, state["cell"]))
    pre = self.out_state(previous) + self.out_embed(embedded) + self.out_context(context)
    features = pre.view(*pre.shape[:-1], self.maxout_dim, 2).amax(-1)
    return self.out_logits(features), dict(state, cell=cell, hidden=hidden)

  def forward(self, source: torch.Tensor, source_length: torch.Tensor,
              target_in: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits [B, T, K] of `target_in` [B, T] (`<bos>`, target shifted)."""
    state = self.encode(source, source_length)
    embedded = self.target_embed(target_in)
    logits = []
    for t in range(target_in.shape[1]):
      step_logits, state = self.step(embedded[:, t], state)
      logits.append(step_logits)
    return torch.stack(logits, 1)


def load_flax_params(model: AttentionSeq2Seq, params: dict) -> None:
  """Copies a `Seq2Seq(attention=True)`'s Flax parameters into `model` (in place).

  The layouts of `flax_weights` (LSTM gates stacked, `bias_ih` 0).
  """
  state = {"source_embed.weight": flax_weights.tensor(params["source_embed"]["embedding"]),
           "target_embed.weight": flax_weights.tensor(params["target_embed"]["embedding"]),
           "att_v": flax_weights.tensor(params["att_v"])}
  for name in ("init_state", "att_keys", "att_query", "out_state", "out_embed", "out_context",
               "out_logits"):
    state.update(flax_weights.linear(name, params[name]))
  for suffix, flax_name in (("_l0", "encoder_fwd"), ("_l0_reverse", "encoder_bwd")):
    state.update(flax_weights.lstm_cell("encoder", params[flax_name]["cell"], suffix=suffix))
  state.update(flax_weights.lstm_cell("decoder", params["decoder"]))
  flax_weights.load(model, state, expected="a Seq2Seq(attention=True)'s")


def xent_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  """`-sum_t mask_t log p(y_t | y_<t)` per sentence [B] (`objectives.sequence.xent_loss`)."""
  nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
  return (nll * mask).sum(1)


def sentence_bleu(tokens: np.ndarray, lengths: np.ndarray, references: np.ndarray,
                  reference_lengths: np.ndarray, *, eos_id: int) -> np.ndarray:
  """sacrebleu's sentence BLEU-4 / 100 of id sequences, `<eos>` excluded (host, per sentence)."""
  def words(ids, length):
    return " ".join(str(i) for i in ids[:int(length)] if i != eos_id)

  return np.array([sacrebleu.sentence_bleu(words(h, n), [words(r, m)], tokenize="none").score
                   / 100 for h, n, r, m in zip(tokens, lengths, references,
                                               reference_lengths)], np.float32)


class PerStepBaseline(nn.Module):
  """`b_t = w_t . h_t + c_t`, one regressor per step (`objectives.sequence.linear_baseline`).

  Initialised as `init_linear_baseline` (and the released code): weights 0, biases 0.01.
  """

  def __init__(self, *, max_len: int, features: int):
    super().__init__()
    self.weight = nn.Parameter(torch.zeros(max_len, features))
    self.bias = nn.Parameter(torch.full((max_len,), 0.01))

  def forward(self, features: torch.Tensor) -> torch.Tensor:
    """[B, T, n] states -> [B, T] values."""
    return torch.einsum("btn,tn->bt", features, self.weight) + self.bias


def mixer_loss(model: AttentionSeq2Seq, baseline: PerStepBaseline, source: torch.Tensor,
               source_length: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *,
               xent_steps: int, bos_id: int, eos_id: int) -> torch.Tensor:
  """MIXER's batch-mean loss: XENT on `t < s`, REINFORCE with a baseline from `s` on.

  The baseline reads the detached decoder state `s_t` of each step (`objectives.sequence`:
  the state that produced the step's logits) and is trained by its squared error.
  """
  batch, steps = targets.shape
  state = model.encode(source, source_length)
  inputs = model.target_embed(torch.full((batch,), bos_id, device=targets.device))
  logits, tokens, hidden = [], [], []
  for t in range(steps):
    step_logits, state = model.step(inputs, state)
    if t < xent_steps:
      token = targets[:, t]
    else:
      token = torch.multinomial(torch.softmax(step_logits.detach(), -1), 1)[:, 0]
    logits.append(step_logits)
    tokens.append(token)
    hidden.append(state["hidden"])
    inputs = model.target_embed(token)
  logits, tokens = torch.stack(logits, 1), torch.stack(tokens, 1)
  is_eos = tokens == eos_id
  lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, steps)
  reward = torch.as_tensor(sentence_bleu(
      tokens.cpu().numpy(), lengths.cpu().numpy(), targets.cpu().numpy(),
      mask.sum(1).cpu().numpy(), eos_id=eos_id), device=targets.device)
  b = baseline(torch.stack(hidden, 1).detach())  # [B, T]
  log_p = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
  position = torch.arange(steps, device=targets.device)
  sampled = (position >= xent_steps) & (position < lengths[:, None])
  teacher = (position < xent_steps) & mask.bool()
  advantage = (reward[:, None] - b).detach()
  surrogate = -(advantage * log_p * sampled).sum(1)
  baseline_loss = 0.5 * ((b - reward[:, None]) ** 2 * sampled).sum(1)
  return (-(log_p * teacher).sum(1) + surrogate + baseline_loss).mean()


@torch.no_grad()
def beam_search(model: AttentionSeq2Seq, source: torch.Tensor, source_length: torch.Tensor, *,
                bos_id: int, eos_id: int, max_len: int, beam_size: int) -> torch.Tensor:
  """The best finished hypothesis of each sentence, [B, max_len] (pad 0 after its end)."""
  batch, k = source.shape[0], beam_size
  state = {key: value.repeat_interleave(k, 0) for key, value in
           model.encode(source, source_length).items()}
  device = source.device
  live_scores = torch.full((batch, k), -torch.inf, device=device)
  live_scores[:, 0] = 0.0
  live_tokens = torch.zeros((batch, k, max_len), dtype=torch.long, device=device)
  pool_scores = torch.full((batch, k), -torch.inf, device=device)
  pool_tokens = torch.zeros_like(live_tokens)
  inputs = torch.full((batch * k,), bos_id, dtype=torch.long, device=device)
  rows = torch.arange(batch, device=device)[:, None]
  for t in range(max_len):
    logits, state = model.step(model.target_embed(inputs), state)
    vocab = logits.shape[-1]
    scores = (live_scores[..., None] + torch.log_softmax(logits, -1).view(batch, k, vocab)
              ).view(batch, k * vocab)
    ending = torch.arange(k * vocab, device=device) % vocab == eos_id
    if t == max_len - 1:
      ending[:] = True

    def extend(candidates):
      best_scores, best = candidates.topk(k, dim=1)
      parents, chosen = best // vocab, best % vocab
      tokens = live_tokens[rows, parents]
      tokens[:, :, t] = chosen
      return best_scores, tokens, parents, chosen

    ended_scores, ended_tokens, _, _ = extend(scores.masked_fill(~ending, -torch.inf))
    merged_scores = torch.cat([pool_scores, ended_scores], 1)
    keep = merged_scores.topk(k, dim=1).indices
    pool_scores = merged_scores[rows, keep]
    pool_tokens = torch.cat([pool_tokens, ended_tokens], 1)[rows, keep]
    live_scores, live_tokens, parents, chosen = extend(scores.masked_fill(ending, -torch.inf))
    state = {key: value[(rows * k + parents).view(-1)] for key, value in state.items()}
    inputs = chosen.view(-1)
  return pool_tokens[:, 0]
