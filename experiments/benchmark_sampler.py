r"""Benchmark: `vislang_jax.ops.sampling.bilinear_sample` against PyTorch `grid_sample`.

Times the forward pass and forward + backward (output and the gradients w.r.t. images and
grid for a given output cotangent) of the jitted JAX sampler and of
`torch.nn.functional.grid_sample(mode="bilinear", align_corners=False)` on the same inputs
and the same kind of device (torch CUDA when JAX runs on a GPU and torch has CUDA, else CPU).
Compilation and warm-up calls are excluded; each time is the median of --repeats calls,
synchronised with `block_until_ready` / `torch.cuda.synchronize`.

  python -m experiments.benchmark_sampler --repeats=10 --cases=small,large

Prints a markdown table: case | op | jax ms | torch ms | torch/jax ratio (> 1: JAX faster).
"""

import functools

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.timing import median_ms
from vislang_jax.ops import sampling

# name: (images [B, H, W, C], output grid (Ho, Wo)).
CASES = {
    "small": ((256, 28, 28, 1), (28, 28)),
    "large": ((64, 64, 64, 256), (32, 32)),
}

_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per measurement (median).")
_CASES = flags.DEFINE_list("cases", list(CASES), f"Cases to run, from {list(CASES)}.")



def _inputs(case: str, seed: int = 0):
  """Images, a near-identity affine grid (as an STN produces) and an output cotangent."""
  (batch, height, width, channels), out_hw = CASES[case]
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
  theta = (np.eye(2, 3) + 0.2 * rng.normal(size=(batch, 2, 3))).astype(np.float32)
  grid = np.asarray(sampling.affine_grid(theta, out_hw))
  cotangent = rng.normal(size=(batch, *out_hw, channels)).astype(np.float32)
  return images, grid, cotangent


def _time_jax(images, grid, cotangent, repeats: int) -> dict[str, float]:
  images, grid, cotangent = map(jnp.asarray, (images, grid, cotangent))
  forward = jax.jit(sampling.bilinear_sample)

  @jax.jit
  def forward_backward(images, grid, cotangent):
    out, vjp = jax.vjp(sampling.bilinear_sample, images, grid)
    return out, vjp(cotangent)

  sync = jax.block_until_ready
  return {
      "forward": median_ms(lambda: forward(images, grid), sync, repeats=repeats),
      "forward+backward": median_ms(
          lambda: forward_backward(images, grid, cotangent), sync, repeats=repeats),
  }


def _time_torch(torch, device, images, grid, cotangent, repeats: int) -> dict[str, float]:
  grid_sample = functools.partial(torch.nn.functional.grid_sample, mode="bilinear",
                                  padding_mode="zeros", align_corners=False)
  # grid_sample's native layout is NCHW.
  images = torch.tensor(images.transpose(0, 3, 1, 2), device=device).contiguous()
  grid = torch.tensor(grid, device=device)
  cotangent = torch.tensor(cotangent.transpose(0, 3, 1, 2), device=device).contiguous()
  images_leaf = images.clone().requires_grad_()
  grid_leaf = grid.clone().requires_grad_()

  def forward():
    with torch.no_grad():
      return grid_sample(images, grid)

  def forward_backward():
    images_leaf.grad = grid_leaf.grad = None
    out = grid_sample(images_leaf, grid_leaf)
    out.backward(cotangent)
    return out, images_leaf.grad, grid_leaf.grad

  def sync(_):
    if device.type == "cuda":
      torch.cuda.synchronize()

  return {"forward": median_ms(forward, sync, repeats=repeats),
          "forward+backward": median_ms(forward_backward, sync, repeats=repeats)}


def main(argv):
  del argv
  import torch  # Benchmark-only dependency (the "test" extra), so imported here.

  unknown = set(_CASES.value) - set(CASES)
  if unknown:
    raise ValueError(f"--cases must be a subset of {list(CASES)}; got {_CASES.value}.")
  if _REPEATS.value < 1:
    raise ValueError(f"--repeats must be >= 1; got {_REPEATS.value}.")
  on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
  device = torch.device("cuda" if on_gpu else "cpu")
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} "
        f"on {device} ({torch.get_num_threads()} threads); median of {_REPEATS.value} calls\n")
  print("| case | op | jax ms | torch ms | torch/jax ratio |")
  print("| --- | --- | ---: | ---: | ---: |")
  for case in _CASES.value:
    inputs = _inputs(case)
    jax_ms = _time_jax(*inputs, _REPEATS.value)
    torch_ms = _time_torch(torch, device, *inputs, _REPEATS.value)
    shape, out_hw = CASES[case]
    label = f"{case} {'x'.join(map(str, shape))} -> {out_hw[0]}x{out_hw[1]}"
    for op in jax_ms:
      print(f"| {label} | {op} | {jax_ms[op]:.2f} | {torch_ms[op]:.2f} | "
            f"{torch_ms[op] / jax_ms[op]:.2f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
