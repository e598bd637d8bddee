r"""Benchmark: tokens/s of the attention seq2seq's XENT and MIXER train steps and beam search.

JAX: `models.seq2seq.Seq2Seq(attention=True)` (RNNsearch), its train steps built as the
harness runs them (`train.step.make_train_step(gradient_update(...))`, jitted once, the
train state donated): XENT is the teacher-forced `objectives.sequence.xent_loss`, MIXER is
`objectives.sequence.sequence_loss(regime="mixer")` with `s = T // 2` (the first half of
every target teacher-forced, the second half sampled inside the jitted step and trained by
REINFORCE on the jitted sentence-BLEU reward with the per-step linear baseline), both with
Adam; the time loop is `lax.scan`, no host round trip per token. Beam search is
`decoding.beam_search` (a `lax.while_loop`, jitted) over `Seq2Seq.decode_step`.

PyTorch: the eager port `experiments/peers/seq2seq_torch.py` with the same weights
(`load_flax_params`) on the same batch (a Python loop over time steps; MIXER's BLEU reward on the host with sacrebleu, as
eager implementations do), on CUDA when JAX runs on a GPU and torch has CUDA, else the CPU.

Tokens are target positions: `B * T` per train step and per beam search (each of them
expanded for `K` beams; the `<eos>` logit is suppressed for the search, `without_eos`, so
that both run all `T` steps). Compilation and --warmup calls are excluded; each time is the
median of --repeats calls, synchronised with `block_until_ready` / `torch.cuda.synchronize`.

  nice -n 10 python -m experiments.benchmark_seq --cases=small --repeats=5

Prints a markdown table: case | op | jax ms | jax tokens/s | torch ms | torch tokens/s |
jax/torch (tokens/s ratio, > 1: JAX faster).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from absl import app, flags

from experiments.timing import median_ms
from experiments.peers import seq2seq_torch
from vislang_jax import decoding
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID
from vislang_jax.models.seq2seq import Seq2Seq
from vislang_jax.objectives.sequence import init_linear_baseline, sequence_loss, xent_loss
from vislang_jax.ops.sequence import length_mask
from vislang_jax.train.state import TrainState
from vislang_jax.train.step import gradient_update, make_train_step, mean_loss

# name: batch B, source length S, target length T, vocabulary (both sides), model sizes.
CASES = {
    "small": dict(batch=32, source_len=20, target_len=20, vocab=1000,
                  sizes=dict(embed_dim=64, hidden_size=128, attention_dim=128, maxout_dim=64)),
    # RNNsearch-50's sizes (Bahdanau et al. 2015, Sec. 4.2 and Appendix A; batch 80).
    "paper": dict(batch=80, source_len=50, target_len=50, vocab=30000,
                  sizes=dict(embed_dim=620, hidden_size=1000, attention_dim=1000,
                             maxout_dim=500)),
}
OPS = ("xent_step", "mixer_step", "beam_search")

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (median).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed calls after compilation.")
_BEAM = flags.DEFINE_integer("beam_size", 5, "Beams of the beam search.")
_CASES = flags.DEFINE_list("cases", ["small"], f"Cases to run, from {list(CASES)}.")



def make_batch(case: dict, seed: int = 0) -> dict[str, np.ndarray]:
  """Random sentences: source [B, S] and target [B, T] ids with lengths in [S/2, S], [T/2, T]."""
  rng = np.random.default_rng(seed)
  batch, source_len, target_len, vocab = (case[k] for k in ("batch", "source_len",
                                                            "target_len", "vocab"))
  source_length = rng.integers(source_len // 2, source_len + 1, size=batch).astype(np.int32)
  source = rng.integers(4, vocab, size=(batch, source_len)).astype(np.int32)
  source[np.arange(source_len) >= source_length[:, None]] = 0
  target_length = rng.integers(target_len // 2, target_len + 1, size=batch).astype(np.int32)
  target = rng.integers(4, vocab, size=(batch, target_len)).astype(np.int32)
  target[np.arange(target_len)[None] == target_length[:, None] - 1] = EOS_ID
  target[np.arange(target_len) >= target_length[:, None]] = 0
  return dict(source=source, source_length=source_length, target=target,
              target_length=target_length)


def make_model(case: dict, batch: dict[str, np.ndarray]) -> tuple[Seq2Seq, dict]:
  """The Flax model of `case` and its initial parameters."""
  model = Seq2Seq(source_vocab_size=case["vocab"], target_vocab_size=case["vocab"],
                  **case["sizes"])
  params = jax.jit(model.init)(jax.random.key(0), batch["source"], batch["source_length"],
                               batch["target"])["params"]
  return model, params


def without_eos(params: dict) -> dict:
  """`params` with the `<eos>` logit's bias at -1e4: no beam ends before `T` steps.

  Random weights would end the beams within a few steps (and `decoding.beam_search` would
  stop early); here both searches run all `T` steps, as for a trained model's long outputs.
  """
  bias = params["out_logits"]["bias"].at[EOS_ID].set(-1e4)
  return {**params, "out_logits": {**params["out_logits"], "bias": bias}}


def time_jax(case: dict, model: Seq2Seq, params: dict, batch: dict[str, np.ndarray], *,
             beam_size: int, repeats: int, warmup: int) -> dict[str, float]:
  """Median ms of each op of `OPS` for the Flax model."""
  target_len = case["target_len"]
  batch = jax.device_put(batch)
  target_in = jnp.concatenate([jnp.full_like(batch["target"][:, :1], BOS_ID),
                               batch["target"][:, :-1]], axis=1)
  optimizer = optax.adam(1e-3)
  mask = length_mask(batch["target_length"], target_len)

  def xent_per_example(params, batch, key):
    del key
    logits, _ = model.apply({"params": params}, batch["source"], batch["source_length"],
                            target_in)
    return {"loss": xent_loss(logits, batch["target"], mask)}

  def mixer_per_example(params, batch, key):
    model_params = params["model"]
    loss, _ = sequence_loss(
        key, regime="mixer", step_fn=functools.partial(model.decode_step_embedded, model_params),
        embedding=model.input_embedding(model_params),
        init_state=model.init_decode_state(model_params, batch["source"],
                                           batch["source_length"]),
        targets=batch["target"], mask=mask, bos_id=BOS_ID, eos_id=EOS_ID,
        xent_steps=target_len // 2, baseline_params=params["baseline"],
        baseline_features=lambda state: state.hidden)
    return {"loss": loss}

  mixer_params = {"model": params, "baseline": init_linear_baseline(
      max_len=target_len, features=case["sizes"]["hidden_size"])}
  times = {}
  for op, per_example, initial in (("xent_step", xent_per_example, params),
                                   ("mixer_step", mixer_per_example, mixer_params)):
    step = jax.jit(make_train_step(gradient_update(mean_loss(per_example), optimizer)),
                   donate_argnums=0)
    initial = jax.tree.map(jnp.copy, initial)  # the step donates it; params stay for beams
    state = TrainState.create(params=initial, opt_state=optimizer.init(initial),
                              rng=jax.random.key(1))

    def train(step=step):
      nonlocal state
      state, metrics = step(state, batch)
      return metrics

    times[op] = median_ms(train, jax.block_until_ready, repeats=repeats, warmup=warmup)

  @jax.jit
  def beam_search(params, source, source_length):
    return decoding.beam_search(functools.partial(model.decode_step, params),
                                model.init_decode_state(params, source, source_length),
                                bos_id=BOS_ID, eos_id=EOS_ID, max_len=target_len,
                                beam_size=beam_size).tokens

  params = without_eos(params)
  times["beam_search"] = median_ms(
      lambda: beam_search(params, batch["source"], batch["source_length"]),
      jax.block_until_ready, repeats=repeats, warmup=warmup)
  return times


def time_torch(case: dict, params: dict, batch: dict[str, np.ndarray], device: torch.device,
               *, beam_size: int, repeats: int, warmup: int) -> dict[str, float]:
  """Median ms of each op of `OPS` for the eager PyTorch port on the Flax `params`."""
  target_len = case["target_len"]
  model = seq2seq_torch.AttentionSeq2Seq(source_vocab_size=case["vocab"],
                                         target_vocab_size=case["vocab"], **case["sizes"])

  def load(params):
    seq2seq_torch.load_flax_params(model, params)
    return model.to(device)

  load(params)
  baseline = seq2seq_torch.PerStepBaseline(max_len=target_len,
                                           features=case["sizes"]["hidden_size"]).to(device)
  batch = {k: torch.as_tensor(v, dtype=torch.long, device=device) for k, v in batch.items()}
  target_in = torch.cat([torch.full_like(batch["target"][:, :1], BOS_ID),
                         batch["target"][:, :-1]], 1)
  mask = (torch.arange(target_len, device=device) < batch["target_length"][:, None]).float()
  optimizer = torch.optim.Adam([*model.parameters(), *baseline.parameters()], lr=1e-3)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

  def train(loss_fn):
    def step():
      optimizer.zero_grad()
      loss_fn().backward()
      optimizer.step()
    return step

  def xent():
    logits = model(batch["source"], batch["source_length"], target_in)
    return seq2seq_torch.xent_loss(logits, batch["target"], mask).mean()

  def mixer():
    return seq2seq_torch.mixer_loss(model, baseline, batch["source"], batch["source_length"],
                                    batch["target"], mask, xent_steps=target_len // 2,
                                    bos_id=BOS_ID, eos_id=EOS_ID)

  def beam():
    return seq2seq_torch.beam_search(model, batch["source"], batch["source_length"],
                                     bos_id=BOS_ID, eos_id=EOS_ID, max_len=target_len,
                                     beam_size=beam_size)

  options = dict(repeats=repeats, warmup=warmup)
  times = {"xent_step": median_ms(train(xent), lambda _: sync(), **options),
           "mixer_step": median_ms(train(mixer), lambda _: sync(), **options)}
  load(without_eos(params))
  times["beam_search"] = median_ms(beam, lambda _: sync(), **options)
  return times


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = sorted(set(_CASES.value) - set(CASES))
  if unknown:
    raise app.UsageError(f"--cases must be among {list(CASES)}; got {unknown}.")
  jax_device = jax.devices()[0]
  use_cuda = jax_device.platform == "gpu" and torch.cuda.is_available()
  device = torch.device("cuda" if use_cuda else "cpu")
  print(f"JAX {jax.__version__} on {jax_device.platform}: {jax_device.device_kind}; PyTorch "
        f"{torch.__version__} (eager) on {device}"
        f"{'' if use_cuda else f' with {torch.get_num_threads()} threads'}; beam size "
        f"{_BEAM.value}, median of {_REPEATS.value}.\n")
  print("| case | op | jax ms | jax tokens/s | torch ms | torch tokens/s | jax/torch |")
  print("|---|---|---|---|---|---|---|")
  for name in _CASES.value:
    case = CASES[name]
    batch = make_batch(case)
    options = dict(beam_size=_BEAM.value, repeats=_REPEATS.value, warmup=_WARMUP.value)
    model, params = make_model(case, batch)
    torch_ms = time_torch(case, params, batch, device, **options)  # before JAX donates params
    jax_ms = time_jax(case, model, params, batch, **options)
    tokens = case["batch"] * case["target_len"]
    for op in OPS:
      print(f"| {name} (B={case['batch']}, T={case['target_len']}, V={case['vocab']}, "
            f"n={case['sizes']['hidden_size']}) | {op} | {jax_ms[op]:.1f} | "
            f"{tokens / jax_ms[op] * 1e3:,.0f} | {torch_ms[op]:.1f} | "
            f"{tokens / torch_ms[op] * 1e3:,.0f} | {torch_ms[op] / jax_ms[op]:.2f} |",
            flush=True)


if __name__ == "__main__":
  app.run(main)
