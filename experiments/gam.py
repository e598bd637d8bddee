"""GRAN's generative adversarial metric between two trained GANs (Im et al. 2016, Sec. 4).

  python -m experiments.gam --run_a=DIR_A --run_b=DIR_B [--num_samples=2000] [--output=FILE]

Two runs of `experiments.gan` (models `dcgan` or `gran`, whose discriminators score whole
images) on the same digits battle: each one's discriminator judges the test images and the
other's samples, `r_test = err(D_a(x_test)) / err(D_b(x_test))` and
`r_sample = err(D_a(G_b(z))) / err(D_b(G_a(z)))`, err the discriminator's error rate
(`metrics.generation.generative_adversarial_metric`). When `r_test` is about 1 (both
discriminators judge real images equally well), `r_sample < 1` means run a's discriminator
is fooled less by b's samples than b's by a's: run a wins. Prints the result as JSON (and
writes it to `--output`). Both generators and discriminators run in evaluation mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from experiments import gan
from vislang_jax.data.pipeline import ImageToFloat, stack_records
from vislang_jax.metrics import generation
from vislang_jax.train.checkpoint import load_params

BATTLE_MODELS = ("dcgan", "gran")
_RUN_A = flags.DEFINE_string("run_a", None, "workdir of the first experiments.gan run")
_RUN_B = flags.DEFINE_string("run_b", None, "workdir of the second experiments.gan run")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 2000, "test images and samples per side")
_OUTPUT = flags.DEFINE_string("output", None, "optional JSON file for the result")


def load_run(workdir: str) -> tuple[ml_collections.ConfigDict, Any]:
  """A run's config (its `config.json`) and its newest variables."""
  with open(f"{workdir}/config.json") as f:
    config = ml_collections.ConfigDict(json.load(f))
  if config.model not in BATTLE_MODELS:
    raise ValueError(f"run {workdir!r}: the metric needs a whole-image discriminator, a model "
                     f"in {BATTLE_MODELS}, got config.model={config.model!r}.")
  return config, load_params(workdir)[1]


def battle(game_a: gan.Game, variables_a: Any, game_b: gan.Game, variables_b: Any,
           images: np.ndarray, *, key: jax.Array, batch_size: int = 500) -> dict[str, float]:
  """The GAM of `(G_a, D_a)` against `(G_b, D_b)` on test `images` [N, H, W, C] and N
  samples of each generator (keys from `key`)."""

  @jax.jit
  def scores(images, key):
    """D_a, D_b on the images and each generator's samples, from one batch of noise keys."""
    draw = lambda game, v, k: game.generate(v["generator"], k, images.shape[0], None,
                                            train=False)[0]
    judge = lambda game, v, x: game.discriminate(v["discriminator"], x, None, key,
                                                 train=False)[0]
    fake_a = draw(game_a, variables_a, key)  # the same noise key for both (common numbers)
    fake_b = draw(game_b, variables_b, key)
    return (judge(game_a, variables_a, images), judge(game_b, variables_b, images),
            judge(game_a, variables_a, fake_b), judge(game_b, variables_b, fake_a))

  parts = []
  for start in range(0, len(images), batch_size):
    chunk = jnp.asarray(images[start:start + batch_size])
    parts.append(scores(chunk, jax.random.fold_in(key, start)))
  a_test, b_test, a_on_b, b_on_a = (np.concatenate([p[i] for p in parts]) for i in range(4))
  return generation.generative_adversarial_metric(a_test, b_test, a_on_b, b_on_a)


def main(argv: Sequence[str]) -> None:
  del argv
  config_a, variables_a = load_run(_RUN_A.value)
  config_b, variables_b = load_run(_RUN_B.value)
  same = ("source", "mnist_dir")
  if any(config_a.data[k] != config_b.data[k] for k in same):
    raise ValueError(f"the runs must learn the same digits (data.{same}), got "
                     f"{[config_a.data[k] for k in same]} and {[config_b.data[k] for k in same]}.")
  datasets, _ = gan.load_datasets(config_a)
  images = ImageToFloat().map(stack_records(datasets["test"], ("image",),
                                            count=min(_NUM_SAMPLES.value,
                                                      len(datasets["test"]))))["image"]
  result = battle(gan.make_game(config_a), variables_a, gan.make_game(config_b), variables_b,
                  images, key=jax.random.PRNGKey(config_a.seed))
  result = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in result.items()}
  text = json.dumps({"run_a": _RUN_A.value, "run_b": _RUN_B.value, **result}, indent=1)
  print(text)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["run_a", "run_b"])
  app.run(main)
