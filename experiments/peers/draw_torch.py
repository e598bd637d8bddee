"""An eager PyTorch port of `models.draw.DRAW` and the DRAW training step, for benchmarks.

The same equations (Gregor et al. 2015, as `models/draw.py` and `ops/filterbank.py` write
them): per glimpse `x^_t = x - sigmoid(c_{t-1})` (eq. 3), the read (eq. 4: the whole of `x` and
`x^`, or `gamma F_Y x F_X^T` of each, eq. 27), the encoder LSTM fed `[r_t, h^dec_{t-1}]`
(eq. 5), `z_t = mu_t + exp(log sigma_t) eps_t` (eq. 6), the decoder LSTM fed `z_t` (eq. 7) and
`c_t = c_{t-1} + write(h^dec_t)` (eq. 8: a linear map to the whole canvas, or
`(1 / gamma) F_Y^T w_t F_X`, eq. 29). The attention parameters are a linear function of
`h^dec` mapped to pixel units as eq. 21-22, and each Gaussian filter is normalised by a softmax
over the image axis after subtracting the nearest pixel's term (eq. 19-20, 25-26), as
`ops/filterbank.py` does. The LSTMs are `torch.nn.LSTMCell`s (gates i, f, g, o, as Flax's);
Flax's `OptimizedLSTMCell` has one bias per gate, on its hidden kernels, so `bias_ih` is held
at zero and frozen. The glimpses run as a Python loop, one kernel launch per operation, as an
eager PyTorch implementation does. The noise `eps` [T, B, Z] is passed in, so that a test can
feed the one the Flax model drew. `load_flax_params` copies a Flax model's parameters in, so
both compute the same function (tests/experiments/test_draw_peer.py).

Images are [B, H, W, C], as the Flax model takes them; inside, the canvas is [B, C, H, W], so
that the filterbank products are batched matrix products over the channel axis.

`loss` is the batch mean of `objectives.draw.draw_loss` (eq. 12) on binary `x`, the loss
`experiments/draw.py` trains; `train_step` is one Adam step on it (`make_optimizer`).

Compiled (inductor, also on CPU), the optimizer built on `model` either way:
  * whole: `train_step(torch.compile(model), optimizer, x, noise)`; the compiled module shares
    `model`'s parameters. Dynamo unrolls the T glimpses into one graph (forward and backward),
    so compilation grows with T: 6 min cold for the quickstart's T = 10 on 2 busy CPU cores.
  * per glimpse: `model.glimpse = torch.compile(model.glimpse)`, then `train_step(model, ...)`:
    one glimpse's graph, compiled once and run T times, autograd chaining their backwards.
The loss reduction and Adam stay eager.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from experiments.peers import flax_weights


def _filterbank(g: torch.Tensor, sigma2: torch.Tensor, delta: torch.Tensor, i: torch.Tensor,
                a: torch.Tensor) -> torch.Tensor:
  """[B] centre, variance and stride, `i` = 1..N, `a` = 1..size -> [B, N, size] filters along
  one image axis (eq. 19-20, 25-26)."""
  mu = g[:, None] + (i - i.shape[0] / 2 - 0.5) * delta[:, None]  # [B, N], eq. (19)-(20)
  # As ops/filterbank.py: subtract the nearest pixel a*'s (a* - mu)^2, a constant per filter.
  nearest = torch.round(mu).clamp(1, a.shape[0])[..., None]
  excess = (a - nearest) * (a + nearest - 2 * mu[..., None])
  return torch.softmax(-excess / (2 * sigma2[:, None, None]), dim=-1)


class Attention(nn.Module):
  """`h^dec` -> the Gaussian filterbanks `F_Y` [B, N, H], `F_X` [B, N, W] and `gamma` [B]."""

  def __init__(self, *, dec_size: int, height: int, width: int, n: int):
    super().__init__()
    self.height, self.width = height, width
    self.scale = (max(height, width) - 1) / max(n - 1, 1)  # delta = scale exp(log delta~)
    self.linear = nn.Linear(dec_size, 5)  # (g~x, g~y, log sigma^2, log delta~, log gamma)
    for name, size in (("i", n), ("rows", height), ("columns", width)):
      self.register_buffer(name, torch.arange(1, size + 1, dtype=torch.float32),
                           persistent=False)

  def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gx_tilde, gy_tilde, log_sigma2, log_delta_tilde, log_gamma = self.linear(h).unbind(-1)
    sigma2 = torch.exp(log_sigma2)  # eq. (22)
    delta = self.scale * torch.exp(log_delta_tilde)
    fx = _filterbank((self.width + 1) / 2 * (gx_tilde + 1), sigma2, delta, self.i, self.columns)
    fy = _filterbank((self.height + 1) / 2 * (gy_tilde + 1), sigma2, delta, self.i, self.rows)
    return fy, fx, torch.exp(log_gamma)


class DRAW(nn.Module):
  """DRAW with the sizes of `models.draw.DRAW` (the same keyword arguments and defaults)."""

  def __init__(self, *, height: int, width: int, channels: int = 1, glimpses: int = 10,
               read_n: int = 2, write_n: int = 5, z_size: int = 10, enc_size: int = 256,
               dec_size: int = 256, read_attention: bool = True, write_attention: bool = True):
    super().__init__()
    self.shape = (height, width, channels)
    self.glimpses, self.z_size, self.write_n = glimpses, z_size, write_n
    self.read_attention, self.write_attention = read_attention, write_attention
    read_size = 2 * channels * (read_n * read_n if read_attention else height * width)
    self.encoder = nn.LSTMCell(read_size + dec_size, enc_size)
    self.decoder = nn.LSTMCell(z_size, dec_size)
    for cell in (self.encoder, self.decoder):
      nn.init.zeros_(cell.bias_ih)
      cell.bias_ih.requires_grad_(False)
    self.q_mu = nn.Linear(enc_size, z_size)
    self.q_logsigma = nn.Linear(enc_size, z_size)
    if read_attention:
      self.read_att = Attention(dec_size=dec_size, height=height, width=width, n=read_n)
    if write_attention:
      self.write_att = Attention(dec_size=dec_size, height=height, width=width, n=write_n)
      self.write_patch = nn.Linear(dec_size, write_n * write_n * channels)
    else:
      self.write_canvas = nn.Linear(dec_size, height * width * channels)

  def read(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
    """Eq. (4), (27): [B, C, H, W] x and x^, [B, dec] h^dec -> [B, 2 N N C] or [B, 2 H W C],
    flattened in the Flax model's order (row, column, channel; x's channels before x^'s)."""
    both = torch.cat([x, x_hat], dim=1)
    if self.read_attention:
      fy, fx, gamma = self.read_att(h_dec)
      both = gamma[:, None, None, None] * (fy[:, None] @ both @ fx[:, None].transpose(-1, -2))
    return both.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

  def write(self, h_dec: torch.Tensor) -> torch.Tensor:
    """Eq. (8)'s write(h^dec_t), (28)-(29): [B, dec] -> [B, C, H, W] canvas update."""
    height, width, channels = self.shape
    if not self.write_attention:
      return self.write_canvas(h_dec).view(-1, height, width, channels).permute(0, 3, 1, 2)
    n = self.write_n
    patch = self.write_patch(h_dec).view(-1, n, n, channels).permute(0, 3, 1, 2)
    fy, fx, gamma = self.write_att(h_dec)
    return (fy[:, None].transpose(-1, -2) @ patch @ fx[:, None]) / gamma[:, None, None, None]

  def forward(self, x: torch.Tensor, noise: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encodes and redraws binary `x` [B, H, W, C] over T glimpses with `noise` [T, B, Z].

    Returns `(logits [B, H, W, C] = c_T, mu [T, B, Z], logsigma [T, B, Z])`.
    """
    batch = x.shape[0]
    if tuple(x.shape[1:]) != self.shape or tuple(noise.shape) != (
        self.glimpses, batch, self.z_size):
      raise ValueError(f"x and noise must have shapes [B, H, W, C] = [B, {self.shape}] and "
                       f"[T, B, Z] = {(self.glimpses, batch, self.z_size)}, got "
                       f"{tuple(x.shape)} and {tuple(noise.shape)}.")
    x = x.permute(0, 3, 1, 2)
    canvas = torch.zeros_like(x)
    enc = tuple(x.new_zeros(batch, self.encoder.hidden_size) for _ in "hc")
    dec = tuple(x.new_zeros(batch, self.decoder.hidden_size) for _ in "hc")
    mus, logsigmas = [], []
    for t in range(self.glimpses):
      canvas, enc, dec, mu, logsigma = self.glimpse(x, canvas, enc, dec, noise[t])
      mus.append(mu)
      logsigmas.append(logsigma)
    return canvas.permute(0, 2, 3, 1), torch.stack(mus), torch.stack(logsigmas)

  def glimpse(self, x: torch.Tensor, canvas: torch.Tensor, enc: tuple, dec: tuple,
              eps: torch.Tensor) -> tuple:
    """Eq. (3)-(8): one glimpse of [B, C, H, W] `x` with `eps` [B, Z].

    Returns the new `(canvas, (h^enc, c^enc), (h^dec, c^dec))` and `(mu, logsigma)` [B, Z].
    """
    x_hat = x - torch.sigmoid(canvas)  # eq. (3)
    r = self.read(x, x_hat, dec[0])
    enc = self.encoder(torch.cat([r, dec[0]], dim=-1), enc)  # eq. (5)
    mu, logsigma = self.q_mu(enc[0]), self.q_logsigma(enc[0])
    z = mu + torch.exp(logsigma) * eps  # eq. (6), reparameterised
    dec = self.decoder(z, dec)  # eq. (7)
    return canvas + self.write(dec[0]), enc, dec, mu, logsigma  # eq. (8)


def load_flax_params(model: DRAW, params: dict) -> None:
  """Copies a `models.draw.DRAW`'s Flax parameters into `model` (in place; the layouts of
  `flax_weights`: LSTM gates stacked, `bias_ih` 0).

  Raises:
    ValueError: if `params` is not that of a DRAW with `model`'s attention switches.
  """
  state = {}
  for name in ("encoder", "decoder"):
    state.update(flax_weights.lstm_cell(name, params[name]))
  dense = {"q_mu": ("q_mu",), "q_logsigma": ("q_logsigma",),
           "read_att.linear": ("reader", "attention", "Dense_0"),
           "write_att.linear": ("writer", "attention", "Dense_0"),
           "write_patch": ("writer", "patch"), "write_canvas": ("write_canvas",)}
  for name, path in dense.items():
    layer = params
    for key in path:
      layer = layer.get(key, {})
    if layer:
      state.update(flax_weights.linear(name, layer))
  flax_weights.load(model, state, expected=(
      f"those of a models.draw.DRAW with read_attention={model.read_attention} and "
      f"write_attention={model.write_attention}"))


def loss(model: nn.Module, x: torch.Tensor, noise: torch.Tensor
         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  """The batch mean of `L = L^x + L^z` (eq. 12, `objectives.draw.draw_loss`) on binary `x`.

  Args:
    model: a `DRAW`, or `torch.compile` of one.
    x: [B, H, W, C] binary images.
    noise: [T, B, Z] standard normal `eps`.

  Returns:
    `(loss, {"recon_nats": batch mean L^x, "kl_nats": batch mean L^z})`, scalars.
  """
  logits, mu, logsigma = model(x, noise)
  recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
  kl = 0.5 * (mu.square() + torch.exp(2 * logsigma) - 2 * logsigma - 1).sum((0, 2))
  return (recon + kl).mean(), {"recon_nats": recon.detach().mean(),
                               "kl_nats": kl.detach().mean()}


def make_optimizer(model: DRAW, lr: float) -> torch.optim.Adam:
  """Adam at `lr` with optax's defaults (b1 0.9, b2 0.999, eps 1e-8) on the trained parameters
  (not the frozen zero `bias_ih`), as `train.optimizers.make_optimizer` for "adam"."""
  return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               noise: torch.Tensor, *, grad_clip_norm: float = 0.0) -> torch.Tensor:
  """One Adam step on `loss`; returns the (detached) loss before the step.

  Args:
    model: a `DRAW`, or `torch.compile` of one (`optimizer` built on the `DRAW`).
    optimizer: from `make_optimizer`.
    x: [B, H, W, C] binary images (the JAX step binarizes inside; `torch.bernoulli`).
    noise: [T, B, Z] standard normal `eps` (the JAX step draws it inside; `torch.randn`).
    grad_clip_norm: clip the gradient's global norm to this before the step (0 = off), as
      `config.train.grad_clip_norm`.
  """
  optimizer.zero_grad(set_to_none=True)
  value, _ = loss(model, x, noise)
  value.backward()
  if grad_clip_norm:
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip_norm)
  optimizer.step()
  return value.detach()
