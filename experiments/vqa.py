"""Visual question answering: naive CNN+LSTM, stacked attention, end-to-end memory networks.

  python -m experiments.vqa --workdir=DIR [--config.model=naive|san|memnet] \
      [--config.dataset=sort_of_clevr|digit_qa|clevr] ...

Trains `config.model` (`models.vqa.MODELS`, keyword arguments `config.<model>`) to answer
the questions of `config.dataset` with one softmax over the dataset's fixed answer set
(`objectives.classification.classification_loss`), one example per (image, question)
(`data.questions.QuestionAnswers`). The question vocabulary is built from the training
questions; every split's answers must lie in the answer set (checked before training).
Evaluates each split (validation, test, and digit QA's `novel`): `accuracy`, `nll` and
`accuracy_<type>` per question type (and per subtype where the dataset has them: Sort-of-CLEVR's
`accuracy_closest_shape` ...). Writes DIR/metrics.jsonl, DIR/vocabulary.json,
DIR/checkpoints, DIR/tensorboard and DIR/samples/vqa_<split>_<step>.png: questions drawn from
the split (a fixed sample), each image framed green when answered right, red when not, then
the attention of every SAN layer / memory hop.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vislang_jax.checks import check_choice
from vislang_jax.data import clevr, digit_qa, sort_of_clevr
from vislang_jax.data.questions import QuestionAnswers, encode_question_splits, question_texts
from vislang_jax.data.vocabulary import Vocabulary
from vislang_jax.models.vqa import MODELS
from vislang_jax.objectives.classification import classification_loss
from vislang_jax.train import cli, evaluate
from vislang_jax.train.loop import Task, check_workdir, fit
from vislang_jax.train.optimizers import make_optimizer
from vislang_jax.train.step import mean_loss
from vislang_jax.viz.vqa import save_vqa_figure

DATASETS = ("sort_of_clevr", "digit_qa", "clevr")
# What one attention map of a model is called in the figures (None: no attention).
STEP_NAMES = {"naive": None, "san": "layer", "memnet": "hop"}
_DATASET_MODULES = {"sort_of_clevr": sort_of_clevr, "digit_qa": digit_qa, "clevr": clevr}


def question_kinds(config: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]]:
  """`{"question_type": names, "question_subtype": names}` of `config.dataset` (subtypes
  only where the dataset has them): the fields `accuracy_<name>` is reported for."""
  module = _DATASET_MODULES[config.dataset]
  kinds = {"question_type": module.QUESTION_TYPES}
  if hasattr(module, "QUESTION_SUBTYPES"):
    kinds["question_subtype"] = module.QUESTION_SUBTYPES
  return kinds


def load_datasets(config: ml_collections.ConfigDict
                  ) -> tuple[dict[str, QuestionAnswers], Vocabulary, tuple[str, ...]]:
  """Every split as one example per question, the training questions' vocabulary and the
  answer set.

  Raises:
    ValueError: for an unknown `dataset`, or a split with an answer outside the answer set.
  """
  check_choice("dataset", config.dataset, DATASETS)
  data = config.data
  data_dir = data.dir or None
  module = _DATASET_MODULES[config.dataset]
  types = question_kinds(config)["question_type"]
  if config.dataset == "clevr":  # prepared by TFDS: the questions are checked as they are read
    sources, counts = clevr.load_clevr(data_dir=data_dir, image_size=data.clevr_image_size)
    vocabulary = Vocabulary.build(question_texts(sources["train"]))
    datasets = {split: QuestionAnswers(source, vocabulary, module.ANSWERS,
                                       max_len=config.max_len, question_types=types,
                                       question_counts=counts[split])
                for split, source in sources.items()}
    return datasets, vocabulary, tuple(module.ANSWERS)
  if config.dataset == "sort_of_clevr":
    sources = sort_of_clevr.build_sort_of_clevr_dataset(
        data_dir=data_dir, seed=config.seed, num_train=data.num_train,
        num_validation=data.num_validation, num_test=data.num_test)
  else:
    sources = digit_qa.build_digit_qa_dataset(
        source=data.source, data_dir=data_dir, mnist_dir=data.mnist_dir or None,
        seed=config.seed, copies=data.copies, novel_size=data.novel_size)
  datasets, vocabulary = encode_question_splits(sources, answers=module.ANSWERS,
                                                question_types=types, max_len=config.max_len)
  return datasets, vocabulary, tuple(module.ANSWERS)


def make_model(config: ml_collections.ConfigDict, *, vocab_size: int, num_answers: int):
  """`config.model`'s network with its keyword arguments `config.<model>`."""
  check_choice("model", config.model, tuple(MODELS))
  return MODELS[config.model](num_answers=num_answers, vocab_size=vocab_size,
                              **config[config.model])


def accuracies(predictions: dict[str, np.ndarray],
               kinds: dict[str, tuple[str, ...]]) -> dict[str, float]:
  """`accuracy`, `nll`, and `accuracy_<name>` for each question type / subtype present.

  Args:
    predictions: "prediction", "answer" [N] int answer ids, "nll" [N] float, and the
      [N] int fields of `kinds`.
    kinds: field -> names (`question_kinds`); a name no question of the split has is left out.
  """
  correct = predictions["prediction"] == predictions["answer"]
  metrics = {"accuracy": float(correct.mean()), "nll": float(predictions["nll"].mean())}
  for field, names in kinds.items():
    for index, name in enumerate(names):
      chosen = predictions[field] == index
      if chosen.any():
        metrics[f"accuracy_{name}"] = float(correct[chosen].mean())
  return metrics


def sample_indices(size: int, count: int) -> np.ndarray:
  """`count` distinct example positions of a split of `size`, the same at every evaluation."""
  rng = np.random.default_rng(0)
  return np.sort(rng.choice(size, min(count, size), replace=False))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains `config.model` on `config.dataset`; returns the final metrics per split."""
  workdir = check_workdir(workdir)
  check_choice("model", config.model, tuple(MODELS))
  datasets, vocabulary, answers = load_datasets(config)
  model = make_model(config, vocab_size=len(vocabulary), num_answers=len(answers))
  kinds = question_kinds(config)
  if jax.process_index() == 0:
    vocabulary.save(os.path.join(workdir, "vocabulary.json"))
  example = datasets["train"][0]

  def apply(params, batch, key=None):
    rngs = None if key is None else {"dropout": key}
    return model.apply({"params": params}, batch["image"], batch["question"], batch["length"],
                       deterministic=key is None, rngs=rngs)

  def per_example(params, batch, key):
    logits, _ = apply(params, batch, key)
    loss, metrics = classification_loss(logits, batch["answer"])
    return {"loss": loss, "accuracy": 1.0 - metrics["error_rate"]}

  def predict(params, batch, key):
    del key  # deterministic: no dropout
    logits, _ = apply(params, batch)
    nll, _ = classification_loss(logits, batch["answer"])
    return {"prediction": jnp.argmax(logits, -1), "answer": batch["answer"], "nll": nll,
            **{field: batch[field] for field in kinds}}

  answer_and_attend = jax.jit(lambda params, batch: apply(params, batch))

  def figure_arrays(params, source, key):
    del key  # deterministic
    records = [source[int(i)] for i in sample_indices(len(source), config.num_samples)]
    batch = {k: np.stack([r[k] for r in records])
             for k in ("image", "question", "length", "answer")}
    logits, aux = answer_and_attend(params, batch)
    arrays = dict(batch, prediction=jnp.argmax(logits, -1))
    if "attention" in aux:
      arrays["attention"] = aux["attention"]
    return arrays

  def write_figure(arrays, directory, split, step):
    questions = vocabulary.decode(arrays["question"], arrays["length"])
    save_vqa_figure(os.path.join(directory, f"vqa_{split}_{step}.png"), arrays["image"],
                    [q + "?" for q in questions],
                    [answers[i] for i in arrays["prediction"]],
                    [answers[i] for i in arrays["answer"]],
                    arrays.get("attention"), step_name=STEP_NAMES[config.model] or "layer")

  def init_params(key):
    return model.init({"params": key, "dropout": key}, jnp.zeros((1,) + example["image"].shape),
                      jnp.zeros((1, config.max_len), jnp.int32), jnp.ones((1,), jnp.int32),
                      deterministic=True)["params"]

  task = Task(init_params=init_params, loss_fn=mean_loss(per_example),
              optimizer=make_optimizer(config.train))
  evaluators = [evaluate.CorpusMetrics(name="answers", predict_fn=predict,
                                       score_fn=lambda p, _: accuracies(p, kinds),
                                       batch_size=config.eval.batch_size)]
  figures = [evaluate.Figure(name="vqa", arrays_fn=figure_arrays, write_fn=write_figure)]
  return fit(config, workdir, task, datasets, evaluators=evaluators, figures=figures)


if __name__ == "__main__":
  cli.run(train_and_evaluate, os.path.join(os.path.dirname(__file__), "configs", "vqa.py"))
