"""DRAW's read attention as a classifier of cluttered MNIST (Gregor et al., 2015, section 4.1).

Gregor, Danihelka, Graves, Rezende, Wierstra, "DRAW: A Recurrent Neural Network For Image
Generation", ICML 2015. Section 4.1 tests the selective attention of section 3.2 for
classification on 100 x 100 cluttered translated MNIST (Mnih et al., 2014): a recurrent
network with no decoder reads the image through the N x N Gaussian filterbank and classifies
after the last glimpse (Table 1, "Differentiable RAM": 8 glimpses of 12 x 12, 3.36% error).
One glimpse ``t = 1..T``:

    (gx, gy, sigma^2, delta, gamma)_t = attention(W h_{t-1} + b)       (21)-(22)
    r_t = gamma F_Y x F_X^T                                            (27)
    h_t = LSTM(h_{t-1}, g(r_t))
    p(y | x) = softmax(W_y h_T + b_y)

with ``h_0`` and the LSTM cell zero, so the first glimpse comes from the attention layer's
bias alone: a grid centred on the image and spanning it (``models.draw.AttentionLayer``).
``g`` flattens the glimpse and, when ``glimpse_features > 0``, applies a Dense layer and a
ReLU (a "glimpse network" as in RAM; the paper's text does not specify one, so the default
feeds the flattened glimpse to the LSTM directly).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vislang_jax.checks import check_int, check_positive_int
from vislang_jax.models.draw import AttentionLayer
from vislang_jax.ops import filterbank


class _GlimpseStep(nn.Module):
  """One glimpse: attend from ``h_{t-1}``, read (eq. 27), update the LSTM."""

  height: int
  width: int
  read_n: int
  hidden_size: int
  glimpse_features: int

  @nn.compact
  def __call__(self, state: tuple[jax.Array, jax.Array],
               images: jax.Array) -> tuple[tuple[jax.Array, jax.Array], dict[str, Any]]:
    """``state`` = (cell, h) each [B, hidden]; ``images`` [B, H, W, C] -> (state, outputs)."""
    h_prev = state[1]
    att, fy, fx = AttentionLayer(self.height, self.width, self.read_n, name="attention")(h_prev)
    glimpse = filterbank.read(images, fy, fx, att.gamma)  # [B, N, N, C]
    features = glimpse.reshape(glimpse.shape[0], -1)
    if self.glimpse_features:
      features = nn.relu(nn.Dense(self.glimpse_features, name="glimpse_net")(features))
    state, _ = nn.OptimizedLSTMCell(self.hidden_size, name="lstm")(state, features)
    return state, {"read": att, "glimpses": glimpse}


class RecurrentAttentionClassifier(nn.Module):
  """An LSTM that reads ``glimpses`` N x N filterbank glimpses, then classifies (section 4.1).

  The steps are unrolled with ``nn.scan`` (one set of parameters for all steps). The image
  size is taken from the input, so one module classifies any size it is given.

  Attributes:
    num_classes: classes of the softmax output.
    glimpses: ``T``, the number of glimpses (paper: 8).
    read_n: ``N``, the side of each glimpse in filters (paper: 12); at most ``min(H, W)``.
    hidden_size: LSTM units (paper: 256).
    glimpse_features: units of a Dense+ReLU layer between the flattened glimpse and the
      LSTM; ``0`` feeds the flattened glimpse directly.
  """

  num_classes: int = 10
  glimpses: int = 8
  read_n: int = 12
  hidden_size: int = 256
  glimpse_features: int = 0

  def __post_init__(self):
    for name in ("num_classes", "glimpses", "read_n", "hidden_size"):
      check_positive_int(name, getattr(self, name))
    check_int("glimpse_features (0: no glimpse network)", self.glimpse_features, low=0)
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """Classifies ``images`` after ``glimpses`` filterbank reads.

    Args:
      images: [B, H, W] or [B, H, W, C] float images (in [0, 1] for the data here).

    Returns:
      ``(logits, aux)``: ``logits`` [B, num_classes], the softmax's inputs computed from
      ``h_T``; ``aux["read"]``, the ``filterbank.AttentionParams`` of every glimpse with each
      field [T, B] (pixel units, 1-based, see ``ops/filterbank.py``; glimpse ``t`` uses
      parameters from ``h_{t-1}``), and ``aux["glimpses"]`` [T, B, N, N] (or
      [T, B, N, N, C] for [B, H, W, C] images), the gamma-scaled reads ``r_t`` of eq. (27).

    Raises:
      ValueError: if ``images`` is not of rank 3 or 4, or ``read_n`` exceeds ``min(H, W)``.
    """
    if images.ndim not in (3, 4):
      raise ValueError(f"images must have shape [B, H, W] or [B, H, W, C], got {images.shape}.")
    height, width = images.shape[1:3]
    check_int(f"read_n (at most min(H, W) for images of shape {images.shape})", self.read_n,
              low=1, high=min(height, width))
    squeeze = images.ndim == 3
    x = jnp.asarray(images[..., None] if squeeze else images, jnp.float32)
    zeros = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
    scan = nn.scan(_GlimpseStep, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=nn.broadcast, length=self.glimpses)
    core = scan(height=height, width=width, read_n=self.read_n, hidden_size=self.hidden_size,
                glimpse_features=self.glimpse_features, name="core")
    (_, h_last), outs = core((zeros, zeros), x)
    logits = nn.Dense(self.num_classes, name="classifier")(h_last)
    glimpses = outs["glimpses"]
    return logits, {"read": outs["read"], "glimpses": glimpses[..., 0] if squeeze else glimpses}
