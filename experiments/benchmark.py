r"""The benchmark suite: device ceilings, ops, every experiment's train step, PyTorch peers.

  python -m experiments.benchmark                          # every section, on jax.devices()[0]
  python -m experiments.benchmark --only=sampler,steps     # some sections
  python -m experiments.benchmark --only=steps --experiments=draw:paper --mnist_dir=DIR
  python -m experiments.benchmark --smoke                  # CI-sized: every code path, tiny shapes

Sections (`--only`), each printed as a markdown table:
- `ceilings`: the device's copy bandwidth (`2 x` a 256 MiB float32 array read and written) and
  matmul throughput (float32 and bfloat16, 2 m^3 FLOPs of an m x m product): the yardsticks of
  the ops' achieved fractions.
- `sampler`: `ops.sampling.bilinear_sample` forward and forward+backward (output and the
  gradients w.r.t. images and grid) against `torch.nn.functional.grid_sample` (bilinear, zeros,
  align_corners=False) on the same inputs: small 256x28x28x1 -> 28x28, large 64x64x64x256 -> 32x32.
- `filterbank`: DRAW's read (N = 2, 28x28) and write (N = 5) with the filterbank construction,
  forward+backward, at DRAW's paper batch.
- `attention`: additive attention (`ops.attention.additive_attention`) forward+backward at
  Show-Attend-Tell's COCO sizes (L = 196 annotations of 512, attention width 512, batch 64).
- `beam_search`: `decoding.beam_search` over an LSTM language model's step, batch 128, beam 5,
  20 steps, vocabulary 10k (the `<eos>` logit suppressed so every search runs 20 steps).
- `steps`: every experiment's whole train step as `train.loop.fit` runs it (captured by
  `experiments.task_capture`: the experiment's own data, model, loss and optimizer, jitted with the
  state donated) at its quickstart and its paper preset, in examples/s and, for models of
  text, tokens/s (the batch's token positions), with the compiled step's memory
  (`compiled.memory_analysis()`: arguments + outputs + temporaries - donated), in each
  `--compute_dtypes`.
- `draw_peer`: DRAW's train step (quickstart and paper sizes) against its PyTorch port
  (`experiments/peers/draw_torch.py`), eager and `torch.compile`d.
- `captioning_peer`: Show-Attend-Tell's decoder train step against its PyTorch port
  (`experiments/peers/show_attend_tell_torch.py`), eager and compiled, and the PyTorch
  tutorial decoder (`experiments/peers/captioning_tutorial_torch.py`), at equal sizes.

Times are the median of `--repeats` calls after compilation and a warm-up call, each waited
for (`jax.block_until_ready`, `torch.cuda.synchronize`). PyTorch runs on CUDA when JAX runs on
a GPU and torch has CUDA, else on the CPU with its default threads. Ratios > 1: JAX faster.
"""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments import draw as draw_experiment
from experiments import task_capture
from experiments.timing import median_ms
from vislang_jax import decoding
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID
from vislang_jax.models import show_attend_tell
from vislang_jax.objectives.show_attend_tell import soft_attention_loss
from vislang_jax.ops import attention, filterbank, sampling
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import gradient_update, make_train_step, mean_loss

SECTIONS = ("ceilings", "sampler", "filterbank", "attention", "beam_search", "steps",
            "draw_peer", "captioning_peer")

_ONLY = flags.DEFINE_list("only", list(SECTIONS), f"Sections to run, from {SECTIONS}.")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "CI-sized run: tiny shapes, one timed call, one experiment's step, no "
    "torch.compile. Checks that every section runs; its times mean nothing.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per measurement (median).")
_COMPUTE_DTYPES = flags.DEFINE_list("compute_dtypes", ["float32", "bfloat16"],
                                    "steps: the train.compute_dtype of each measurement.")
_EXPERIMENTS = flags.DEFINE_list(
    "experiments", [], "steps: the cases to run as <name>[:<preset>] (default: all of "
    "STEP_CASES).")
_MNIST_DIR = flags.DEFINE_string(
    "mnist_dir", "", "steps: MNIST IDX folder: the paper presets of digit experiments read "
    "MNIST's test digits; '' = the scikit-learn digits (the same image sizes; speed does not "
    "depend on the pixels).")
_COMPILE = flags.DEFINE_bool("torch_compile", True, "Peers: also time torch.compile'd ports.")


# ---------------------------------------------------------------------------------------------
# Timing and tables


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]] = ()
           ) -> Callable[[Sequence[Any]], None]:
  """Prints a markdown table's title, header and `rows`; returns the printer of later rows."""
  print(f"\n### {title}\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|", flush=True)
  row_printer = lambda row: print("| " + " | ".join(_cell(v) for v in row) + " |", flush=True)
  for row in rows:
    row_printer(row)
  return row_printer


def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
  return str(value)


def _repeats() -> int:
  return 1 if _SMOKE.value else _REPEATS.value


def _time_jax(fn: Callable, *args) -> tuple[float, dict[str, float]]:
  """(median ms, XLA's cost analysis: flops and bytes accessed) of jitted `fn(*args)`."""
  compiled = jax.jit(fn).lower(*args).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ms = median_ms(lambda: compiled(*args), jax.block_until_ready, repeats=_repeats(), warmup=1)
  return ms, {"flops": float(cost.get("flops", 0.0)),
              "bytes": float(cost.get("bytes accessed", 0.0))}


def _torch():
  import torch  # a benchmark-only dependency (the "test" extra)
  on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
  return torch, torch.device("cuda" if on_gpu else "cpu")


def _time_torch(fn: Callable[[], Any]) -> float:
  torch, device = _torch()
  sync = (lambda _: torch.cuda.synchronize()) if device.type == "cuda" else (lambda _: None)
  return median_ms(fn, sync, repeats=_repeats(), warmup=1)


def _device_name() -> str:
  device = jax.devices()[0]
  return f"{device.platform}: {device.device_kind}"


# ---------------------------------------------------------------------------------------------
# Ceilings


def ceilings() -> dict[str, float]:
  """Copy bytes/s and matmul FLOP/s of the device, measured (and printed)."""
  n = 1 << (16 if _SMOKE.value else 26)
  x = jnp.ones((n,), jnp.float32)
  copy_ms, _ = _time_jax(lambda x: x * 2.0, x)
  m = 128 if _SMOKE.value else (8192 if jax.default_backend() != "cpu" else 2048)
  result = {"copy_bytes_per_s": 8.0 * n / copy_ms * 1e3}
  rows = [["copy (read + write)", f"{8 * n / 2 ** 20:.0f} MiB", copy_ms,
           f"{result['copy_bytes_per_s'] / 1e9:.1f} GB/s"]]
  for dtype in (jnp.float32, jnp.bfloat16):
    a = jnp.ones((m, m), dtype)
    ms, _ = _time_jax(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32), a)
    flops = result[f"matmul_flops_per_s_{jnp.dtype(dtype).name}"] = 2.0 * m ** 3 / ms * 1e3
    rows.append([f"matmul {jnp.dtype(dtype).name}", f"{m}x{m}", ms,
                 f"{flops / 1e9:.1f} GFLOP/s"])
  _table(f"Ceilings ({_device_name()})", ["op", "size", "ms", "rate"], rows)
  return result


def _fractions(ms: float, cost: dict[str, float], limits: dict[str, float]) -> list[str]:
  """Achieved GB/s and GFLOP/s of an op, each with its fraction of the device's ceiling."""
  rate = cost["bytes"] / ms * 1e3
  flops = cost["flops"] / ms * 1e3
  peak = limits["matmul_flops_per_s_float32"]
  return [f"{rate / 1e9:.1f} ({rate / limits['copy_bytes_per_s']:.0%})",
          f"{flops / 1e9:.1f} ({flops / peak:.0%})"]


# ---------------------------------------------------------------------------------------------
# Ops

SAMPLER_CASES = {  # name: (images [B, H, W, C], output (Ho, Wo))
    "small": ((256, 28, 28, 1), (28, 28)),
    "large": ((64, 64, 64, 256), (32, 32)),
}


def _sampler_inputs(shape, out_hw, seed: int = 0):
  """Images, a near-identity affine grid (as an STN produces) and an output cotangent."""
  rng = np.random.default_rng(seed)
  images = rng.normal(size=shape).astype(np.float32)
  theta = (np.eye(2, 3) + 0.2 * rng.normal(size=(shape[0], 2, 3))).astype(np.float32)
  grid = np.asarray(sampling.affine_grid(theta, out_hw))
  cotangent = rng.normal(size=(shape[0], *out_hw, shape[-1])).astype(np.float32)
  return images, grid, cotangent


def sampler(limits: dict[str, float]) -> None:
  torch, device = _torch()
  grid_sample = functools.partial(torch.nn.functional.grid_sample, mode="bilinear",
                                  padding_mode="zeros", align_corners=False)
  rows = []
  for case, (shape, out_hw) in SAMPLER_CASES.items():
    if _SMOKE.value:
      shape = (2, *shape[1:3], min(shape[3], 4))
    images, grid, cotangent = _sampler_inputs(shape, out_hw)

    def forward_backward(images, grid, cotangent):
      out, vjp = jax.vjp(sampling.bilinear_sample, images, grid)
      return out, vjp(cotangent)

    jax_args = tuple(map(jnp.asarray, (images, grid, cotangent)))
    t_images = torch.tensor(images.transpose(0, 3, 1, 2), device=device).contiguous()
    t_grid = torch.tensor(grid, device=device)
    t_cot = torch.tensor(cotangent.transpose(0, 3, 1, 2), device=device).contiguous()
    leaves = t_images.clone().requires_grad_(), t_grid.clone().requires_grad_()

    def torch_forward():
      with torch.no_grad():
        return grid_sample(t_images, t_grid)

    def torch_forward_backward():
      out = grid_sample(*leaves)
      return torch.autograd.grad(out, leaves, t_cot)

    label = f"{case} {'x'.join(map(str, shape))} -> {out_hw[0]}x{out_hw[1]}"
    for op, fn, args, peer in (
        ("forward", sampling.bilinear_sample, jax_args[:2], torch_forward),
        ("forward+backward", forward_backward, jax_args, torch_forward_backward)):
      ms, cost = _time_jax(fn, *args)
      torch_ms = _time_torch(peer)
      rows.append([label, op, ms, *_fractions(ms, cost, limits), torch_ms, torch_ms / ms])
  _table("Bilinear sampler vs torch grid_sample",
         ["case", "op", "jax ms", "GB/s (of copy)", "GFLOP/s (of matmul)", "torch ms",
          "torch/jax"], rows)


def filterbank_ops(limits: dict[str, float]) -> None:
  """DRAW's read (N = 2) and write (N = 5) on 28x28, filterbanks built from h^dec, fwd+bwd."""
  batch = 2 if _SMOKE.value else 64
  rng = np.random.default_rng(0)
  rows = []
  for op, n in (("read", 2), ("write", 5)):
    raw = jnp.asarray(rng.normal(size=(batch, 5)), jnp.float32)
    images = jnp.asarray(rng.uniform(size=(batch, 28, 28)), jnp.float32)
    patch = jnp.asarray(rng.normal(size=(batch, n, n)), jnp.float32)

    def loss(raw, x, n=n, op=op):
      a = filterbank.attention_params(raw, height=28, width=28, n=n)
      fx, fy = filterbank.gaussian_filterbank(a.gx, a.gy, a.sigma2, a.delta, n=n, height=28,
                                              width=28)
      out = (filterbank.read(x, fy, fx, a.gamma) if op == "read"
             else filterbank.write(x, fy, fx, a.gamma))
      return jnp.sum(out ** 2)

    grad = jax.grad(loss, argnums=(0, 1))
    ms, cost = _time_jax(grad, raw, images if op == "read" else patch)
    rows.append([f"{op} N={n}, 28x28, batch {batch}", ms, *_fractions(ms, cost, limits)])
  _table("DRAW filterbank attention (forward+backward, filterbanks included)",
         ["op", "jax ms", "GB/s (of copy)", "GFLOP/s (of matmul)"], rows)


def attention_op(limits: dict[str, float]) -> None:
  """Additive attention at Show-Attend-Tell's COCO sizes, forward+backward."""
  batch, length, width = (2, 16, 8) if _SMOKE.value else (64, 196, 512)
  rng = np.random.default_rng(0)
  query = jnp.asarray(rng.normal(size=(batch, width)), jnp.float32)
  keys = jnp.asarray(rng.normal(size=(batch, length, width)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(width,)), jnp.float32)
  values = jnp.asarray(rng.normal(size=(batch, length, width)), jnp.float32)

  def loss(query, keys, v, values):
    context, weights = attention.additive_attention(query, keys, v, values)
    return jnp.sum(context ** 2) + jnp.sum(weights ** 2)

  ms, cost = _time_jax(jax.grad(loss, argnums=(0, 1, 2, 3)), query, keys, v, values)
  _table("Additive attention (forward+backward)",
         ["case", "jax ms", "GB/s (of copy)", "GFLOP/s (of matmul)"],
         [[f"batch {batch}, L={length}, width {width}", ms, *_fractions(ms, cost, limits)]])


def beam_search_op(limits: dict[str, float]) -> None:
  """Beam search over an LSTM language model's step with random weights."""
  del limits
  batch, beam, steps, vocab, width = ((2, 2, 3, 50, 8) if _SMOKE.value
                                      else (128, 5, 20, 10_000, 512))
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  params = {"embed": jax.random.normal(keys[0], (vocab, width)) * 0.1,
            "lstm": jax.random.normal(keys[1], (2 * width, 4 * width)) * width ** -0.5,
            "out": jax.random.normal(keys[2], (width, vocab)) * width ** -0.5,
            "bias": jnp.zeros((vocab,)).at[2].set(-1e4)}  # <eos> = 2 never wins

  def step_fn(params, tokens, state):
    c, h = state
    gates = jnp.concatenate([params["embed"][tokens], h], -1) @ params["lstm"]
    i, f, g, o = jnp.split(gates, 4, -1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h @ params["out"] + params["bias"], (c, h), {}

  def search(params, init):
    return decoding.beam_search(functools.partial(step_fn, params), init, bos_id=1, eos_id=2,
                                max_len=steps, beam_size=beam).tokens

  init = (jnp.zeros((batch, width)), jax.random.normal(keys[3], (batch, width)))
  ms, _ = _time_jax(search, params, init)
  # No fractions: XLA's cost analysis counts a while loop's body once, not once per step.
  _table("Beam search", ["case", "jax ms", "tokens/s"],
         [[f"batch {batch}, beam {beam}, {steps} steps, vocabulary {vocab:,}, LSTM {width}",
           ms, batch * steps / ms * 1e3]])


# ---------------------------------------------------------------------------------------------
# Train steps of every experiment


# name: (experiment module, preset, config overrides, the batch key whose size counts the tokens
# of a model of text, or None). Paper presets of digit experiments keep the paper's model,
# optimizer and batch on the digits at hand (`--mnist_dir`).
STEP_CASES: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "stn:quickstart": ("stn", "quickstart", {}, None),
    "stn:paper": ("stn", "paper", {}, None),
    "stn_addition:quickstart": ("stn_addition", "quickstart", {}, None),
    "stn_addition:paper": ("stn_addition", "paper", {}, None),
    "draw:quickstart": ("draw", "quickstart", {}, None),
    "draw:paper": ("draw", "paper", {}, None),
    "draw_classify:quickstart": ("draw_classify", "quickstart", {}, None),
    "draw_classify:paper": ("draw_classify", "paper", {}, None),
    "align_draw:quickstart": ("align_draw", "quickstart", {}, "tokens"),
    "align_draw:paper": ("align_draw", "paper", {}, "tokens"),
    "show_attend_tell_soft:quickstart": ("show_attend_tell", "quickstart", {}, "tokens"),
    "show_attend_tell_soft:paper": ("show_attend_tell", "paper", {}, "tokens"),
    "show_attend_tell_hard:quickstart": ("show_attend_tell", "quickstart",
                                         {"attention": "hard"}, "tokens"),
    "show_attend_tell_hard:paper": ("show_attend_tell", "paper", {"attention": "hard"},
                                    "tokens"),
    "semantic_attention:quickstart": ("show_attend_tell", "quickstart",
                                      {"model": "semantic_attention"}, "tokens"),
    "mixer_captioning:quickstart": ("mixer", "quickstart", {}, "tokens"),
    "mixer_translation:paper": ("mixer", "paper", {}, "target"),
    "seq2seq:quickstart": ("seq2seq", "quickstart", {}, "target"),
    "vse:quickstart": ("retrieval", "quickstart", {"model": "vse"}, "tokens"),
    "dvsa:quickstart": ("retrieval", "quickstart", {"model": "dvsa"}, "tokens"),
    "vse_caption:quickstart": ("vse_caption", "quickstart", {}, "tokens"),
    "rnn_lm:quickstart": ("rnn_lm", "quickstart", {}, "tokens"),
    **{f"{game}:quickstart": ("gan", "quickstart", {"model": game}, None)
       for game in ("dcgan", "gan_int_cls", "lapgan", "gran")},
    "gan_int_cls:paper": ("gan", "paper", {}, None),
    **{f"vqa_{model}:quickstart": ("vqa", "quickstart", {"model": model}, "question")
       for model in ("naive", "san", "memnet")},
    "densecap:quickstart": ("densecap", "quickstart", {}, None),
    "densecap:paper": ("densecap", "paper", {}, None),
    "dcc_lexical:quickstart": ("dcc", "quickstart", {}, None),
    **{f"{model}:quickstart": ("segmentation", "quickstart", {"model": model}, None)
       for model in ("fcn32s", "fcn8s", "deconvnet")},
}


def _step_cases() -> dict[str, tuple[str, str, dict[str, Any], str | None]]:
  if not _SMOKE.value:
    chosen = _EXPERIMENTS.value or list(STEP_CASES)
  else:
    chosen = _EXPERIMENTS.value or ["stn:quickstart"]
  unknown = sorted(set(chosen) - set(STEP_CASES))
  if unknown:
    raise app.UsageError(f"--experiments must be among {sorted(STEP_CASES)}; got {unknown}.")
  return {name: STEP_CASES[name] for name in chosen}


def _case_config(module: str, preset: str, overrides: dict[str, Any]):
  config = importlib.import_module(f"experiments.configs.{module}").get_config(preset)
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value
  if preset != "quickstart" and "mnist_dir" in config.get("data", {}):
    # The paper's digits: MNIST's when at hand, else the scikit-learn digits at the same size.
    config.data.source = "mnist_test" if _MNIST_DIR.value else "sklearn_digits"
    config.data.mnist_dir = _MNIST_DIR.value
  # Networks an experiment trains before its own (evaluation judges, GAN's text encoder) do
  # not change its step's cost: one step each.
  for name in ("judge", "classifier", "text_encoder"):
    if "num_steps" in config.get(name, {}):
      config[name].num_steps = 1
  if _SMOKE.value:
    config.train.batch_size = min(config.train.batch_size, 4)
  return config


def time_step(captured: task_capture.Captured, batch: dict, compute_dtype: str
              ) -> tuple[float, float]:
  """(median ms, bytes allocated) of the captured experiment's jitted, donated train step."""
  return _time_train_step(task_capture.train_step(captured, compute_dtype),
                          task_capture.initial_state(captured), batch)


def _time_train_step(step, state, batch: dict) -> tuple[float, float]:
  """(median ms, bytes allocated) of a jitted `step(state, batch) -> (state, metrics)` that
  donates its state, each call fed the state the previous one returned."""
  batch = jax.device_put(batch)
  compiled = step.lower(state, batch).compile()
  # The program's allocation: arguments, outputs and temporaries, donated (aliased) bytes once.
  # (`peak_memory_in_bytes` is not filled in by every backend: XLA:CPU leaves it near zero.)
  memory = compiled.memory_analysis()
  allocated = (memory.argument_size_in_bytes + memory.output_size_in_bytes
               + memory.temp_size_in_bytes - memory.alias_size_in_bytes)

  def call():
    nonlocal state
    state, metrics = compiled(state, batch)
    return metrics

  return median_ms(call, jax.block_until_ready, repeats=_repeats(), warmup=1), float(allocated)


def steps(workdir: str) -> list[str]:
  """Prints the table of `_step_cases()`; returns the cases that failed (their rows say why)."""
  add_row = _table(f"Train steps ({_device_name()})",
                   ["experiment:preset", "batch", "compute", "ms/step", "examples/s",
                    "tokens/s", "memory MiB"])
  failed = []
  for name, (module, preset, overrides, token_key) in _step_cases().items():
    try:
      config = _case_config(module, preset, overrides)
      experiment = importlib.import_module(f"experiments.{module}")
      captured = task_capture.capture(experiment, config, os.path.join(workdir, name))
      batch = task_capture.first_batch(captured)
      tokens = None if token_key is None else int(np.size(batch[token_key]))
      for dtype in _COMPUTE_DTYPES.value:
        ms, peak = time_step(captured, batch, dtype)
        add_row([name, config.train.batch_size, dtype, ms, config.train.batch_size / ms * 1e3,
                 "" if tokens is None else f"{tokens / ms * 1e3:,.0f}",
                 f"{peak / 2 ** 20:,.1f}"])
    except Exception as error:  # pylint: disable=broad-except  (reported; the run then fails)
      failed.append(name)
      add_row([name, "", "", f"failed: {type(error).__name__}: {error}"[:300], "", "", ""])
  return failed


# ---------------------------------------------------------------------------------------------
# PyTorch peers of whole train steps

# name: batch B, annotations L x D, vocabulary K, caption tokens T, width (embedding, attention
# and LSTM) W. "tutorial": the sizes of the CPU target; "coco": Xu et al.'s COCO model
# (14x14 ResNet-sized annotations, a 9.5k vocabulary, captions up to 52 tokens), the GPU target.
CAPTIONING_CASES = {
    "tutorial": dict(batch=32, locations=49, annotation_dim=512, vocab=2000, tokens=20,
                     width=256),
    "coco": dict(batch=128, locations=196, annotation_dim=2048, vocab=9487, tokens=52,
                 width=512),
}
_CAPTIONING = flags.DEFINE_list(
    "captioning_cases", [], f"captioning_peer: cases from {list(CAPTIONING_CASES)} (default: "
    "tutorial on a CPU, both on an accelerator).")


def _captioning_batch(case: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
  """Random annotations and full-length captions (every contender runs all T steps)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, case["vocab"], size=(case["batch"], case["tokens"]))
  tokens[:, -1] = EOS_ID
  return {"annotations": rng.normal(size=(case["batch"], case["locations"],
                                          case["annotation_dim"])).astype(np.float32),
          "tokens": tokens.astype(np.int32),
          "length": np.full((case["batch"],), case["tokens"], np.int32)}


def _jax_captioning_step(case: dict[str, int], batch: dict[str, np.ndarray]):
  """The harness's step (`gradient_update`, Adam, donated) of the soft-attention decoder."""
  width = case["width"]
  decoder = show_attend_tell.Decoder(vocab_size=case["vocab"], embed_dim=width,
                                     hidden_size=width, attention_dim=width, gating=True,
                                     dropout_rate=0.5)

  def per_example(params, batch, key):
    logits, aux = decoder.apply({"params": params}, batch["annotations"],
                                shift_right(batch["tokens"], bos_id=BOS_ID),
                                deterministic=False, rngs={"dropout": key})
    loss, _ = soft_attention_loss(logits, batch["tokens"],
                                  length_mask(batch["length"], case["tokens"]), aux["alpha"],
                                  penalty=1.0)
    return {"loss": loss}

  optimizer = optax.adam(4e-4)
  params = jax.jit(functools.partial(decoder.init, deterministic=True))(
      jax.random.PRNGKey(0), batch["annotations"][:1], batch["tokens"][:1])["params"]
  state = TrainState.create(params=params, opt_state=optimizer.init(params),
                            rng=jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(gradient_update(mean_loss(per_example), optimizer)),
                 donate_argnums=0)
  return step, state


def captioning_peer(limits: dict[str, float]) -> None:
  """Show-Attend-Tell's decoder step against its PyTorch port and the tutorial decoder."""
  del limits
  from experiments.peers import captioning_tutorial_torch as tutorial
  from experiments.peers import show_attend_tell_torch as port
  torch, device = _torch()
  names = _CAPTIONING.value or (["tutorial"] if jax.default_backend() == "cpu"
                                else list(CAPTIONING_CASES))
  add_row = _table("Show-Attend-Tell decoder train step (soft attention, Adam) vs PyTorch",
                   ["case", "implementation", "ms/step", "tokens/s", "jax speed-up"])
  for name in names:
    case = dict(CAPTIONING_CASES[name])
    if _SMOKE.value:
      case.update(batch=2, locations=4, annotation_dim=8, vocab=30, tokens=3, width=8)
    batch = _captioning_batch(case)
    tokens = case["batch"] * case["tokens"]
    label = (f"{name}: B={case['batch']}, {case['locations']}x{case['annotation_dim']}, "
             f"K={case['vocab']:,}, T={case['tokens']}, W={case['width']}")
    jax_ms, _ = _time_train_step(*_jax_captioning_step(case, batch), batch)
    add_row([label, "JAX (jit, scan)", jax_ms, tokens / jax_ms * 1e3, 1.0])
    t_batch = {k: torch.as_tensor(v, device=device).long() if v.dtype != np.float32 else
               torch.as_tensor(v, device=device) for k, v in batch.items()}
    width = case["width"]
    torch.manual_seed(0)
    peers = {}
    model = port.SoftAttentionDecoder(
        vocab_size=case["vocab"], annotation_dim=case["annotation_dim"], embed_dim=width,
        hidden_size=width, attention_dim=width, gating=True, dropout_rate=0.5).to(device)
    optimizer = port.make_optimizer(model, learning_rate=4e-4)
    peers["PyTorch port, eager"] = lambda m=model, o=optimizer: port.train_step(m, o, t_batch)
    if _COMPILE.value and not _SMOKE.value:
      compiled = torch.compile(model)
      peers["PyTorch port, torch.compile"] = (
          lambda m=compiled, o=optimizer: port.train_step(m, o, t_batch))
    tutor = tutorial.DecoderWithAttention(
        attention_dim=width, embed_dim=width, decoder_dim=width, vocab_size=case["vocab"],
        encoder_dim=case["annotation_dim"], dropout=0.5).to(device)
    tutor_optimizer = tutorial.make_optimizer(tutor)
    peers["PyTorch tutorial decoder (sgrvinod), eager"] = (
        lambda: tutorial.train_step(tutor, tutor_optimizer, t_batch))
    for peer, fn in peers.items():
      ms = _time_torch(fn)
      add_row([label, peer, ms, tokens / ms * 1e3, ms / jax_ms])


def draw_peer(limits: dict[str, float]) -> None:
  """DRAW's train step (captured from experiments.draw) against its PyTorch port."""
  del limits
  from experiments.peers import draw_torch
  torch, device = _torch()
  add_row = _table("DRAW train step (binarization, T glimpses, eq. 12 loss, Adam) vs PyTorch",
                   ["config", "implementation", "ms/step", "examples/s", "jax speed-up"])
  with tempfile.TemporaryDirectory() as workdir:
    for preset in ("quickstart", "paper"):
      config = _case_config("draw", preset, {})
      if _SMOKE.value:
        config.model.update(glimpses=2, enc_size=8, dec_size=8)
      captured = task_capture.capture(draw_experiment, config, workdir)
      batch = task_capture.first_batch(captured)
      jax_ms, _ = time_step(captured, batch, "float32")
      size = config.train.batch_size
      label = (f"{preset}: B={size}, T={config.model.glimpses}, "
               f"{'x'.join(map(str, batch['image'].shape[1:]))}, "
               f"{'attention' if config.attention else 'no attention'}")
      add_row([label, "JAX (jit, scan)", jax_ms, size / jax_ms * 1e3, 1.0])
      height, width, channels = batch["image"].shape[1:]
      images = torch.as_tensor(np.asarray(batch["image"]), device=device)
      noise_shape = (config.model.glimpses, size, config.model.z_size)
      torch.manual_seed(0)
      model = draw_torch.DRAW(**config.model, height=height, width=width, channels=channels,
                              read_attention=config.attention,
                              write_attention=config.attention).to(device)
      optimizer = draw_torch.make_optimizer(model, config.train.learning_rate)

      def step():  # binarization and noise drawn each step, as the JAX step does
        return draw_torch.train_step(model, optimizer, torch.bernoulli(images),
                                     torch.randn(noise_shape, device=device),
                                     grad_clip_norm=config.train.grad_clip_norm)

      ms = _time_torch(step)
      add_row([label, "PyTorch port, eager", ms, size / ms * 1e3, ms / jax_ms])
      if _COMPILE.value and not _SMOKE.value:
        model.glimpse = torch.compile(model.glimpse)  # one glimpse's graph, run T times
        ms = _time_torch(step)
        add_row([label, "PyTorch port, torch.compile (per glimpse)", ms, size / ms * 1e3,
                 ms / jax_ms])


SECTION_FNS = {
    "sampler": sampler, "filterbank": filterbank_ops, "attention": attention_op,
    "beam_search": beam_search_op, "captioning_peer": captioning_peer,
    "draw_peer": draw_peer,
}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = sorted(set(_ONLY.value) - set(SECTIONS))
  if unknown:
    raise app.UsageError(f"--only must be among {SECTIONS}; got {unknown}.")
  if _REPEATS.value < 1:
    raise app.UsageError(f"--repeats must be >= 1; got {_REPEATS.value}.")
  _step_cases()
  unknown = sorted(set(_CAPTIONING.value) - set(CAPTIONING_CASES))
  if unknown:
    raise app.UsageError(f"--captioning_cases must be among {list(CAPTIONING_CASES)}; got "
                         f"{unknown}.")
  torch, device = _torch()
  print(f"JAX {jax.__version__} on {_device_name()} (x{len(jax.devices())}); PyTorch "
        f"{torch.__version__} on {device}"
        f"{'' if device.type == 'cuda' else f' ({torch.get_num_threads()} threads)'}; "
        f"median of {_repeats()}{' (smoke run: times mean nothing)' if _SMOKE.value else ''}.")
  limits = ceilings()
  failed = []
  with tempfile.TemporaryDirectory() as workdir:
    for section in _ONLY.value:
      if section in SECTION_FNS:
        SECTION_FNS[section](limits)
      elif section == "steps":
        failed += steps(workdir)
  if failed:
    raise SystemExit(f"benchmark: these cases failed (see their rows): {failed}")


if __name__ == "__main__":
  app.run(main)
