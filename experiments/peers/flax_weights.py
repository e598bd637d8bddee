"""Flax parameters as PyTorch state-dict entries: what every port's `load_flax_params` shares.

Dense kernels [in, out] become `nn.Linear` weights [out, in]. Flax's `OptimizedLSTMCell` keeps
one kernel per gate (`i<gate>` on the input, without bias; `h<gate>` on the hidden state, with
the gate's one bias), gates i, f, g, o: PyTorch's order; they are stacked into `weight_ih` /
`weight_hh`, the biases into `bias_hh`, and `bias_ih` is zero (the ports freeze it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def tensor(x) -> torch.Tensor:
  """A float32 torch copy of an array."""
  return torch.tensor(np.array(x, np.float32))


def linear(prefix: str, layer: dict) -> dict[str, torch.Tensor]:
  """`{prefix}.weight` (the kernel transposed) and, if the layer has one, `{prefix}.bias`."""
  state = {f"{prefix}.weight": tensor(layer["kernel"]).T}
  if "bias" in layer:
    state[f"{prefix}.bias"] = tensor(layer["bias"])
  return state


def lstm_cell(prefix: str, cell: dict, *, suffix: str = "") -> dict[str, torch.Tensor]:
  """`{prefix}.weight_ih{suffix}`, `weight_hh`, `bias_hh` and a zero `bias_ih` of an LSTM
  (`suffix` e.g. "_l0_reverse" for a layer of `torch.nn.LSTM`)."""
  bias = torch.cat([tensor(cell[f"h{g}"]["bias"]) for g in "ifgo"])
  return {f"{prefix}.weight_ih{suffix}": torch.cat([tensor(cell[f"i{g}"]["kernel"]).T
                                                    for g in "ifgo"]),
          f"{prefix}.weight_hh{suffix}": torch.cat([tensor(cell[f"h{g}"]["kernel"]).T
                                                    for g in "ifgo"]),
          f"{prefix}.bias_hh{suffix}": bias,
          f"{prefix}.bias_ih{suffix}": torch.zeros_like(bias)}


def load(model: nn.Module, state: dict[str, torch.Tensor], *, expected: str) -> None:
  """`model.load_state_dict(state)`, or a ValueError naming `expected` (the params a port
  takes) and the names that differ."""
  mismatched = set(model.state_dict()) ^ set(state)
  if mismatched:
    raise ValueError(f"params must be {expected}, got mismatched names {sorted(mismatched)}.")
  model.load_state_dict(state)
