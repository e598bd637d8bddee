"""`experiments/mixer.py`: MIXER on captioning and REINFORCE on translation end to end (the
other regimes: their jitted train step), the schedules as logged, and the named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mixer
from experiments.configs import mixer as mixer_config
from vislang_jax.data.pipeline import stack_records
from vislang_jax.data.vocabulary import BOS_ID
from vislang_jax.objectives.show_attend_tell import caption_nll
from vislang_jax.ops.sequence import length_mask, shift_right
from vislang_jax.train.metrics import read_metrics
from vislang_jax.train.step import make_train_step


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, preset="quickstart", **overrides):
  config = mixer_config.get_config(preset)
  config.model.encoder.widths = (4, 8, 8)
  config.model.decoder.update(embed_dim=8, hidden_size=16, attention_dim=8, dropout_rate=0.0)
  config.model.translation.update(embed_dim=8, hidden_size=16, attention_dim=8, maxout_dim=8)
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 10
  config.data.update(train_size=64, validation_size=8, test_size=8, max_words=6)
  config.objective.update(xent_steps=2, mixed_steps=2, delta=4, anneal_steps=4, feed_end=0.5)
  config.train.num_steps = 6
  config.train.batch_size = 8
  config.train.log_every = 2
  config.train.eval_every = 6
  config.train.checkpoint_every = 6
  config.eval.batch_size = 100
  config.eval.beam_size = 2
  config.update(overrides)
  return config


def test_mixer_captioning_end_to_end(tmp_path, data_dir):
  final = mixer.train_and_evaluate(tiny_config(data_dir, regime="mixer"), str(tmp_path))
  assert set(final) == {"validation", "test", "novel"}
  for metrics in final.values():
    assert set(metrics) == {"bleu4_greedy", "bleu4_beam"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
  train = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert [r["step"] for r in train] == [2, 4, 6]
  # s = 12 at steps 1-2 (pure XENT: nothing sampled), then 8 (steps 3-4) and 4 (5-6).
  np.testing.assert_allclose([r["xent_steps"] for r in train], [12, 8, 4])
  assert train[0]["sampled_tokens"] == 0 and train[-1]["sampled_tokens"] > 0
  assert all(0.0 <= r["reward"] <= 1.0 and r["baseline_error"] >= 0 for r in train)


def test_reinforce_translation_end_to_end(tmp_path, data_dir):
  config = tiny_config(data_dir, "translation", regime="reinforce")
  final = mixer.train_and_evaluate(config, str(tmp_path))
  assert set(final) == {"validation", "test"}
  train = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert all(r["xent_tokens"] == 0 and r["sampled_tokens"] > 0 for r in train)


@pytest.mark.parametrize("regime", ["xent", "dad", "e2e"])
def test_word_level_regimes_train_step(data_dir, regime):
  """One jitted step; XENT's loss is the teacher-forced NLL of the model's own nn.scan."""
  setup, task, _ = mixer.build(tiny_config(data_dir, regime=regime))
  state = task.initial_state(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  batch = stack_records(setup.datasets["train"], ("image", "tokens", "length"), count=8)
  step = jax.jit(make_train_step(task.update()),
                 compiler_options={"xla_backend_optimization_level": 0})
  new_state, metrics = step(state, batch)
  assert int(new_state.extra) == 1 and bool(jnp.isfinite(metrics["loss"]))
  if regime != "xent":
    assert float(metrics["feed_probability"]) == 0.0  # p = 0 at step 0
  else:
    logits, _ = setup.model.apply({"params": state.params["model"]}, batch["image"],
                                  shift_right(batch["tokens"], bos_id=BOS_ID), deterministic=True)
    nll, _ = caption_nll(logits, batch["tokens"], length_mask(batch["length"], 12))
    np.testing.assert_allclose(metrics["loss"], nll.mean(), rtol=1e-5)


@pytest.mark.parametrize("overrides,message", [
    ({"regime": "mle"}, "regime must be one of"),
    ({"task": "summarization"}, "task must be one of"),
    ({"objective": {"delta": 0}}, "delta must be an int >= 1"),
    ({"objective": {"xent_steps": 6}}, "xent_steps must be < num_steps"),
    ({"objective": {"unit": "epoch"}}, "objective.unit must be one of"),
])
def test_named_errors(data_dir, overrides, message):
  with pytest.raises(ValueError, match=message):
    mixer.build(tiny_config(data_dir, **overrides))


def test_schedule_in_epochs(data_dir):
  config = tiny_config(data_dir)
  config.objective.update(unit="epochs", xent_steps=3, mixed_steps=1, anneal_steps=2)
  assert mixer.schedule_steps(config, train_size=80) == {
      "xent_steps": 30, "mixed_steps": 10, "anneal_steps": 20}


def test_translation_default_data_dir_is_tfds_default(monkeypatch):
  """data.dir "" reaches data.translation as None (TFDS's default folder), not "" (the cwd)."""
  seen = {}

  def capture(data, *, seed):
    seen.update(data, seed=seed)
    raise RuntimeError("captured")

  monkeypatch.setattr(mixer.translation, "build_from_config", capture)
  with pytest.raises(RuntimeError, match="captured"):
    mixer.build(mixer_config.get_config("translation"))
  assert seen["dir"] is None and seen["max_len"] == 16 and seen["seed"] == 0
