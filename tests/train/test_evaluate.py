"""Evaluators, predictions, keys and cadences of `vislang_jax.train.evaluate`, in-process."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vislang_jax.train import evaluate, sharding
from vislang_jax.train.loop import Task, fit
from vislang_jax.train.metrics import read_metrics


class Source:
  """n records {"image": uint8 [4, 4, 1], "label": int}."""

  def __init__(self, n, seed=0):
    rng = np.random.default_rng(seed)
    self.images = rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8)
    self.labels = rng.integers(0, 10, n)
    self._repr = f"Source({n}, {seed})"

  def __repr__(self):
    return self._repr

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": int(self.labels[i])}


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


def test_mean_metrics_are_exact_over_a_ragged_split(mesh):
  source = Source(61)  # 24 + 24 + 13: the last batch is padded
  metric_fn = lambda params, batch, key: {
      "mean_pixel": jnp.mean(batch["image"], axis=(1, 2, 3)) * params,
      "label": batch["label"].astype(jnp.float32),
      # 0 / 0 = NaN on the all-zero padding examples; it must not leak into the mean.
      "ratio": jnp.mean(batch["image"], axis=(1, 2, 3)) / jnp.mean(batch["image"], axis=(1, 2, 3))}
  evaluator = evaluate.MeanMetrics(metric_fn=metric_fn, batch_size=24)
  result = evaluator(jnp.float32(2.0), source, jax.random.PRNGKey(0), mesh)
  np.testing.assert_allclose(result["mean_pixel"], 2.0 * np.mean(source.images / 255.0),
                             rtol=1e-5)
  np.testing.assert_allclose(result["label"], np.mean(source.labels), rtol=1e-6)
  np.testing.assert_allclose(result["ratio"], 1.0, rtol=1e-6)


def test_record_keys_make_random_metrics_independent_of_batching(mesh):
  source = Source(37)

  def metric_fn(params, batch, key):
    keys = evaluate.record_keys(key, batch["index"])
    return {"u": jax.vmap(jax.random.uniform)(keys) * params}

  key = jax.random.PRNGKey(3)
  results = [evaluate.MeanMetrics(metric_fn=metric_fn, batch_size=b)(1.0, source, key, mesh)
             for b in (5, 16, 40)]
  expected = np.mean([jax.random.uniform(jax.random.fold_in(key, i)) for i in range(37)])
  for result in results:
    np.testing.assert_allclose(result["u"], expected, rtol=1e-6)


def test_predict_returns_every_record_once_in_order(mesh):
  source = Source(23)
  fn = jax.jit(lambda params, batch, key: {"label": batch["label"] * params,
                                           "index": batch["index"],
                                           "image": batch["image"]})
  out = evaluate.predict(fn, 2, source, jax.random.PRNGKey(0), batch_size=10, mesh=mesh)
  np.testing.assert_array_equal(out["index"], np.arange(23))
  np.testing.assert_array_equal(out["label"], 2 * source.labels)
  np.testing.assert_allclose(out["image"], source.images / 255.0, rtol=1e-6)


def test_corpus_metrics_score_the_first_count_records(mesh):
  source = Source(30)
  seen = {}

  def score_fn(predictions, scored):
    seen["n"] = len(scored)
    return {"label_sum": predictions["label"].sum()}

  evaluator = evaluate.CorpusMetrics(
      name="corpus", predict_fn=lambda params, batch, key: {"label": batch["label"]},
      score_fn=score_fn, batch_size=8, count=12)
  result = evaluator(None, source, jax.random.PRNGKey(0), mesh)
  assert result == {"label_sum": float(source.labels[:12].sum())} and seen["n"] == 12


def test_named_keys_are_fixed_per_seed_and_name():
  a = evaluate.named_key(0, "bound")
  np.testing.assert_array_equal(a, evaluate.named_key(0, "bound"))
  for other in (evaluate.named_key(1, "bound"), evaluate.named_key(0, "retrieval")):
    assert not np.array_equal(a, other)
  # Not one of the keys the harness initialises or trains with.
  init_key, train_key = jax.random.split(jax.random.PRNGKey(0))
  assert not np.array_equal(a, init_key) and not np.array_equal(a, train_key)


def test_schedule_runs_periodically_on_validation_and_everywhere_at_the_end():
  periodic = evaluate.Scheduled(name="cheap")
  final_only = evaluate.Scheduled(name="costly", every=0, splits=("test",))
  assert periodic.due(20, final=False, eval_every=10)
  assert not periodic.due(25, final=False, eval_every=10)
  assert evaluate.Scheduled(name="x", every=5).due(25, final=False, eval_every=10)
  assert not final_only.due(20, final=False, eval_every=10)
  assert final_only.due(23, final=True, eval_every=10)
  assert periodic.covers("validation", final=False)
  assert not periodic.covers("test", final=False) and periodic.covers("test", final=True)
  assert not final_only.covers("novel", final=True)


def test_schedule_errors_are_named():
  with pytest.raises(ValueError, match="names must be unique, got \\['a'\\]"):
    evaluate.check_schedule([evaluate.Scheduled(name="a"), evaluate.Scheduled(name="a")],
                            ["validation"])
  with pytest.raises(ValueError, match="b: splits \\['novel'\\] are not among"):
    evaluate.check_schedule([evaluate.Scheduled(name="b", splits=("novel",))],
                            ["validation", "test"])
  with pytest.raises(ValueError, match="every must be an int >= 0, got -1"):
    evaluate.Scheduled(name="c", every=-1)
  with pytest.raises(ValueError, match="name must be an identifier"):
    evaluate.Scheduled(name="a b")


def test_fit_runs_each_evaluator_on_its_cadence_and_figures_on_process_0(tmp_path):
  config = ml_collections.ConfigDict({
      "seed": 0,
      "train": {"num_steps": 6, "batch_size": 4, "log_every": 3, "eval_every": 2,
                "checkpoint_every": 6, "keep_checkpoints": 1}})
  task = Task(init_params=lambda key: jnp.zeros(()),
              loss_fn=lambda w, batch, key, extra: ((w - 1.0) ** 2, {}, extra),
              optimizer=optax.sgd(0.1))
  mean = evaluate.MeanMetrics(
      name="mean", batch_size=5,
      metric_fn=lambda w, batch, key: {"w": jnp.full(batch["label"].shape, w)})
  final_only = evaluate.CorpusMetrics(
      name="corpus", every=0, splits=("test",), batch_size=5,
      predict_fn=lambda w, batch, key: {"label": batch["label"]},
      score_fn=lambda predictions, source: {"n": len(predictions["label"])})
  written = []
  figure = evaluate.Figure(
      name="picture", every=4, arrays_fn=lambda w, source, key: {"w": w, "key": key},
      write_fn=lambda arrays, directory, split, step: written.append(
          (os.path.relpath(directory, tmp_path), split, step, float(arrays["w"]),
           tuple(arrays["key"]))))
  datasets = {"train": Source(16), "validation": Source(7, 1), "test": Source(9, 2)}
  final = fit(config, str(tmp_path), task, datasets, evaluators=[mean, final_only],
              figures=[figure])
  logs = [(r["step"], r["split"], sorted(set(r) - {"step", "split"}))
          for r in read_metrics(str(tmp_path)) if r["split"] != "train"]
  assert logs == [(2, "validation", ["w"]), (4, "validation", ["w"]),
                  (6, "validation", ["w"]), (6, "test", ["n", "w"])]
  assert final["test"]["n"] == 9.0
  w = 1.0 - 0.8 ** 6  # six SGD steps on (w - 1)^2 from 0
  assert final["validation"]["w"] == pytest.approx(w, rel=1e-5)
  key = tuple(np.asarray(evaluate.named_key(0, "picture")))
  assert [(d, s, t) for d, s, t, _, _ in written] == [
      ("samples", "validation", 4), ("samples", "validation", 6), ("samples", "test", 6)]
  assert all(k == key for *_, k in written)


def test_fit_names_clashing_metrics(tmp_path):
  config = ml_collections.ConfigDict({
      "seed": 0, "train": {"num_steps": 1, "batch_size": 4, "log_every": 1, "eval_every": 1,
                           "checkpoint_every": 1, "keep_checkpoints": 1}})
  task = Task(init_params=lambda key: jnp.zeros(()),
              loss_fn=lambda w, batch, key, extra: (w ** 2, {}, extra), optimizer=optax.sgd(0.1))
  metric_fn = lambda w, batch, key: {"w": jnp.full(batch["label"].shape, w)}
  evaluators = [evaluate.MeanMetrics(name=n, metric_fn=metric_fn, batch_size=4)
                for n in ("one", "two")]
  with pytest.raises(ValueError, match="evaluator 'two' reports metrics \\['w'\\]"):
    fit(config, str(tmp_path), task, {"train": Source(8), "validation": Source(4)},
        evaluators=evaluators)


def test_pair_retrieval_ranks_every_candidate_for_every_query(mesh):
  source = Source(25)  # a pool of the first 20; batches of 7 pairs, the last one padded
  retrieval = lambda score_fn: evaluate.PairRetrieval(
      score_fn=score_fn, query_fields=("label",), candidate_fields=("image",), pool=20,
      batch_size=7, ks=(1, 5, 10, 50))(None, source, jax.random.PRNGKey(0), mesh)
  perfect = retrieval(lambda params, batch, key: (batch["query"] == batch["candidate"]) * 1.0)
  assert perfect == {"r_at_1": 1.0, "r_at_5": 1.0, "r_at_10": 1.0, "r_at_50": 1.0,
                     "median_rank": 1.0}
  # Scores growing with the candidate's position: query q's own candidate ranks 20 - q (a
  # transposed score matrix would tie every candidate and rank every target last).
  growing = retrieval(lambda params, batch, key: batch["candidate"] * 1.0)
  assert growing == {"r_at_1": 0.05, "r_at_5": 0.25, "r_at_10": 0.5, "r_at_50": 1.0,
                     "median_rank": 10.5}
  # The pair's fields are the query's and the candidate's own records.
  fields = retrieval(lambda params, batch, key: jnp.where(
      (batch["label"] == jnp.asarray(source.labels)[batch["query"]])
      & jnp.all(batch["image"][:, :, :, 0] * 255.0 == jnp.asarray(
          source.images, jnp.float32)[batch["candidate"], :, :, 0], axis=(1, 2)),
      batch["query"] == batch["candidate"], -1.0) * 1.0)
  assert fields["r_at_1"] == 1.0


def test_a_record_field_named_mask_is_refused(mesh):
  class Masked(Source):
    def __getitem__(self, i):
      return {**super().__getitem__(i), "mask": np.ones((4, 4), np.uint8)}

  with pytest.raises(ValueError, match="must not have a 'mask' field"):
    next(evaluate.split_batches(Masked(3), batch_size=2, mesh=mesh))
