"""One code path from one CPU to a pod: a `data` mesh axis over every device."""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, axis name `data`."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; other axes replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def per_process_batch_size(global_batch_size: int, mesh: Mesh, *,
                           name: str = "train.batch_size") -> int:
  """Checks that the global batch splits evenly over devices and processes."""
  num_devices = mesh.devices.size
  if global_batch_size < 1 or global_batch_size % num_devices:
    raise ValueError(
        f"{name} must be a positive multiple of the number of devices "
        f"({num_devices}) so that every device gets the same share of the "
        f"batch; got {global_batch_size}.")
  return global_batch_size // jax.process_count()


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
  """Process-local numpy batch -> global jax.Arrays sharded on the batch axis."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def process_rows(global_batch_size: int, sharding: NamedSharding) -> np.ndarray:
  """[process_count, rows per process]: the rows of a global batch each process's devices hold.

  Row p lists, in ascending order, where `make_array_from_process_local_data(sharding,
  local)` places process p's `local` rows, so a process that reads exactly those records of
  a split builds its part of the global batch.
  """
  rows = [set() for _ in range(jax.process_count())]
  for device, (rows_slice,) in sharding.devices_indices_map((global_batch_size,)).items():
    rows[device.process_index].update(range(*rows_slice.indices(global_batch_size)))
  if len({len(r) for r in rows}) != 1:
    raise ValueError(f"the batch axis must be split evenly over processes, got rows per "
                     f"process {[len(r) for r in rows]}.")
  return np.asarray([sorted(r) for r in rows], np.int64)


def gather(tree):
  """Global jax.Arrays -> NumPy arrays with the global values, on every process.

  Fully replicated arrays are read from a local copy; arrays sharded over processes are
  all-gathered (a collective: every process must call this with the same tree).
  """
  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(fetch, tree)
