"""Orbax checkpoints of the train state and the grain iterator position."""

import dataclasses
import os
from typing import Any

import grain.checkpoint as grain_ckpt
import jax
import orbax.checkpoint as ocp


@dataclasses.dataclass(frozen=True)
class _IteratorSnapshot:
  """The iterator's state captured when `save` is called.

  An async save may write after training has moved the live iterator on; the
  snapshot pins the position that belongs with the saved train state.
  """
  state: bytes

  def get_state(self) -> bytes:
    return self.state


class Checkpointer:
  """Saves `{state, data}` every `save_every` steps, keeping the newest `keep`."""

  def __init__(self, directory: str, *, save_every: int, keep: int):
    if save_every < 1:
      raise ValueError(
          f"train.checkpoint_every must be >= 1; got {save_every}.")
    if keep < 1:
      raise ValueError(f"train.keep_checkpoints must be >= 1; got {keep}.")
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=keep, create=True,
            enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any, *,
           force: bool = False) -> bool:
    """Starts an async save if `step` is on the interval (or `force`)."""
    return self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain_ckpt.CheckpointSave(
                _IteratorSnapshot(data_iterator.get_state()))),
        force=force)

  def restore(self, state: Any, data_iterator: Any) -> Any:
    """Restores the newest checkpoint into `state`'s structure and shardings.

    The data iterator is moved to its saved position in place.
    """
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state)
    restored = self._manager.restore(
        self._manager.latest_step(),
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=grain_ckpt.CheckpointRestore(data_iterator)))
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def load_params(workdir: str, *, step: int | None = None) -> tuple[int, Any]:
  """A run's trained parameters, for evaluation or a notebook: `(step, params)`.

  Args:
    workdir: the experiment's `--workdir` (its `checkpoints/` folder).
    step: the checkpoint to read; None: the newest.

  Returns:
    The step and the `TrainState.params` pytree saved there, as host arrays.

  Raises:
    ValueError: naming `workdir` when it holds no checkpoint, or `step` when it is not one.
  """
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  manager = ocp.CheckpointManager(directory)
  steps = list(manager.all_steps()) if os.path.isdir(directory) else []
  if not steps:
    raise ValueError(f"workdir {workdir!r} holds no checkpoint (no steps under {directory}).")
  step = max(steps) if step is None else step
  if step not in steps:
    raise ValueError(f"step must be one of the checkpoints {sorted(steps)} of {workdir!r}, got "
                     f"{step}.")
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored.state["params"]
