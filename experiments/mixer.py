"""Sequence-level training (Ranzato et al. 2016) of a captioner or a translator.

  python -m experiments.mixer --workdir=DIR [--config.regime=xent|dad|e2e|reinforce|mixer]
      [--config=experiments/configs/mixer.py:translation] ...

`config.task`: "captioning", the Show-Attend-Tell captioner (soft attention) on captioned
digits (`experiments.show_attend_tell`'s data and model), or "translation", the attention
encoder-decoder (`models.seq2seq`) on a `data.translation` corpus. `config.regime` picks the
objective of `vislang_jax.objectives.sequence`: every regime is one jitted `lax.scan` rollout
of the model's `decode_step_embedded` (sampling inside the step, no host round trip per
token); its schedules (DAD / E2E's feed probability, MIXER's `s`) are pure functions of the
step, which `TrainState.extra` counts. REINFORCE and MIXER train a per-step linear baseline on
the decoder state `h_t` (`params["baseline"]`) alongside the model (`params["model"]`).

Logs `xent` (and REINFORCE's `reward`, `baseline_error`; MIXER's `xent_steps`, the `s` of the
step; DAD / E2E's `feed_probability`) while training and, per split (validation while
training; every split at the end), the corpus BLEU-4 (coco-caption scorer,
`metrics.captions`) of greedy and beam-search decoding: `bleu4_greedy`, `bleu4_beam`.
Writes DIR/metrics.jsonl, DIR/vocabulary.json (the target words), DIR/checkpoints and
DIR/tensorboard.
"""

import functools
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from experiments import show_attend_tell
from vislang_jax import decoding
from vislang_jax.checks import check_choice
from vislang_jax.data import translation
from vislang_jax.data.captions import references
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary, tokenize
from vislang_jax.metrics.captions import caption_metrics
from vislang_jax.models.seq2seq import Seq2Seq
from vislang_jax.objectives import sequence
from vislang_jax.ops.sequence import length_mask
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer

TASKS = ("captioning", "translation")
SCHEDULE_UNITS = ("steps", "epochs")


class SequenceTask(NamedTuple):
  """What the objectives need of a task.

  Attributes:
    datasets: split -> random-access records.
    vocabulary: the target words.
    model: a module with the sequence-model contract.
    init_model: key -> the model's params.
    start: (params, batch) -> the decoder's initial state for the batch.
    targets: batch -> (tokens [B, T], lengths [B]).
    references: split source -> {record index: [reference texts]}.
    hidden_size: the width of the state's `hidden`, the baseline's features.
    tokenizer: `metrics.captions.caption_metrics`' tokenizer of the references.
  """

  datasets: dict[str, Any]
  vocabulary: Vocabulary
  model: Any
  init_model: Callable[[jax.Array], Any]
  start: Callable[[Any, dict], Any]
  targets: Callable[[dict], tuple[jax.Array, jax.Array]]
  references: Callable[[Any], dict[int, list[str]]]
  hidden_size: int
  tokenizer: str


def captioning_task(config: ml_collections.ConfigDict) -> SequenceTask:
  """The Show-Attend-Tell captioner on captioned digits (`experiments.show_attend_tell`)."""
  datasets, vocabulary = show_attend_tell.load_datasets(config)
  model = show_attend_tell.make_captioner(
      encoder=config.model.encoder, decoder=config.model.decoder, attention=config.attention,
      vocab_size=len(vocabulary))
  image_shape = datasets["train"][0]["image"].shape

  def init_model(key):
    images = jnp.zeros((1,) + image_shape)
    tokens = jnp.zeros((1, config.max_len), jnp.int32)
    return model.init({"params": key, "dropout": key}, images, tokens,
                      deterministic=True)["params"]

  return SequenceTask(
      datasets=datasets, vocabulary=vocabulary, model=model, init_model=init_model,
      start=lambda params, batch: model.init_decode_state(params, batch["image"]),
      targets=lambda batch: (batch["tokens"], batch["length"]),
      references=functools.cache(references),
      hidden_size=config.model.decoder.hidden_size, tokenizer="python")


def translation_task(config: ml_collections.ConfigDict) -> SequenceTask:
  """`models.seq2seq` on `config.data`'s corpus (`data.translation.build_from_config`)."""
  # data.dir "" means TFDS's default folder (as for captioning), not the current directory.
  data = dict(config.data.to_dict(), max_len=config.max_len, dir=config.data.dir or None)
  datasets, source_vocab, target_vocab = translation.build_from_config(data, seed=config.seed)
  model = Seq2Seq(source_vocab_size=len(source_vocab), target_vocab_size=len(target_vocab),
                  **config.model.translation)

  def init_model(key):
    ids = jnp.zeros((1, config.max_len), jnp.int32)
    return model.init(key, ids, jnp.ones((1,), jnp.int32), ids)["params"]

  def target_references(pairs):
    return {n: [" ".join(tokenize(text))] for n, text in enumerate(pairs.target_texts)}

  return SequenceTask(
      datasets=datasets, vocabulary=target_vocab, model=model, init_model=init_model,
      start=lambda params, batch: model.init_decode_state(params, batch["source"],
                                                          batch["source_length"]),
      targets=lambda batch: (batch["target"], batch["target_length"]),
      references=functools.cache(target_references),
      hidden_size=config.model.translation.hidden_size, tokenizer="none")


def schedule_steps(config: ml_collections.ConfigDict, train_size: int) -> dict[str, int]:
  """`config.objective`'s xent_steps, mixed_steps and anneal_steps in training steps."""
  objective = config.objective
  unit = check_choice("objective.unit", objective.unit, SCHEDULE_UNITS)
  per_unit = 1 if unit == "steps" else max(train_size // config.train.batch_size, 1)
  return {name: int(objective[name]) * per_unit
          for name in ("xent_steps", "mixed_steps", "anneal_steps")}


def build(config: ml_collections.ConfigDict
          ) -> tuple[SequenceTask, Task, list[evaluate.Evaluator]]:
  """`config`'s data and model, its regime's `Task` and the BLEU evaluator.

  Raises:
    ValueError: for an unknown task, regime or schedule unit, or a MIXER schedule that never
      reaches REINFORCE within `train.num_steps` (`objectives.sequence.check_mixer_schedule`).
  """
  task_name = check_choice("task", config.task, TASKS)
  regime = check_choice("regime", config.regime, sequence.REGIMES)
  setup = captioning_task(config) if task_name == "captioning" else translation_task(config)
  model, max_len = setup.model, config.max_len
  steps = schedule_steps(config, len(setup.datasets["train"]))
  if regime == "mixer":
    sequence.check_mixer_schedule(max_len=max_len, xent_steps=steps["xent_steps"],
                                  mixed_steps=steps["mixed_steps"],
                                  delta=config.objective.delta,
                                  num_steps=config.train.num_steps)
  sequence_level = regime in ("reinforce", "mixer")

  def init_params(key):
    params = {"model": setup.init_model(key)}
    if sequence_level:
      params["baseline"] = sequence.init_linear_baseline(max_len=max_len,
                                                         features=setup.hidden_size)
    return params

  def loss_fn(params, batch, key, step):
    tokens, lengths = setup.targets(batch)
    probability = sequence.dad_probability(
        step, start=config.objective.feed_start, end=config.objective.feed_end,
        anneal_steps=steps["anneal_steps"])
    xent_steps = (sequence.mixer_xent_steps(step, max_len=max_len,
                                            xent_steps=steps["xent_steps"],
                                            mixed_steps=steps["mixed_steps"],
                                            delta=config.objective.delta)
                  if regime == "mixer" else 0)
    loss, metrics = sequence.sequence_loss(
        key, regime=regime,
        step_fn=functools.partial(model.decode_step_embedded, params["model"]),
        embedding=model.input_embedding(params["model"]),
        init_state=setup.start(params["model"], batch), targets=tokens,
        mask=length_mask(lengths, max_len), bos_id=BOS_ID, eos_id=EOS_ID,
        probability=probability, xent_steps=xent_steps,
        top_k=config.objective.top_k if regime == "e2e" else None,
        baseline_params=params.get("baseline"),
        baseline_features=(lambda state: state.hidden) if sequence_level else None,
        dropout=True)
    means = {name: jnp.mean(value) for name, value in metrics.items()}
    if regime == "mixer":
      means["xent_steps"] = jnp.asarray(xent_steps, jnp.float32)
    if regime in ("dad", "e2e"):
      means["feed_probability"] = probability
    return jnp.mean(loss), means, step + 1

  def predict(params, batch, key):
    """Greedy and beam-search tokens [B, T] and lengths [B] (the best beam)."""
    del key  # greedy and beam search are deterministic
    state = setup.start(params["model"], batch)
    step_fn = functools.partial(model.decode_step, params["model"])
    greedy = decoding.greedy(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len)
    beam = decoding.beam_search(step_fn, state, bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len,
                                beam_size=config.eval.beam_size)
    return {"greedy": greedy.tokens, "greedy_length": greedy.lengths,
            "beam": beam.tokens[:, 0], "beam_length": beam.lengths[:, 0]}

  def score(predictions, source):
    refs = setup.references(source)
    return {f"bleu4_{name}": caption_metrics(
        refs, dict(enumerate(setup.vocabulary.decode(predictions[name],
                                                     predictions[f"{name}_length"]))),
        meteor=False, tokenizer=setup.tokenizer)["bleu4"] for name in ("greedy", "beam")}

  task = Task(init_params=init_params, loss_fn=loss_fn, optimizer=make_optimizer(config.train),
              init_extra=lambda: jnp.zeros((), jnp.int32))
  evaluators = [evaluate.CorpusMetrics(name="bleu", predict_fn=predict, score_fn=score,
                                       batch_size=config.eval.batch_size)]
  return setup, task, evaluators


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.task` with `config.regime`; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  setup, task, evaluators = build(config)
  if jax.process_index() == 0:
    setup.vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  return fit(config, workdir, task, setup.datasets, evaluators=evaluators)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "mixer.py"))
