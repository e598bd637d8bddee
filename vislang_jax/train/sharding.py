"""One code path from one CPU to a pod: a `data` mesh axis over every device."""

import jax
import numpy as np
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
