"""make_loader: batch format, seeded order, epochs, per-process rows, checkpointable state."""

import itertools

import grain.python as pygrain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vislang_jax.data.builders import build_digits_dataset
from vislang_jax.data.pipeline import make_loader

N = 37  # Not a multiple of the batch size.
RECORDS = [
    {"image": np.full((5, 4, 1), 3 * i, np.uint8), "label": i % 10, "index": i} for i in range(N)
]


def _loader(**kwargs):
  options = dict(batch_size=4, seed=0, shuffle=True, num_epochs=1, drop_remainder=False) | kwargs
  return make_loader(RECORDS, **options)


def _indices(batches):
  # The image encodes the record: pixel value 3 * index.
  return [int(round(v * 255 / 3)) for b in batches for v in b["image"][:, 0, 0, 0]]


def test_batch_format():
  batch = next(iter(_loader(shuffle=False)))
  assert batch["image"].shape == (4, 5, 4, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
  np.testing.assert_allclose(batch["image"][:, 0, 0, 0], np.arange(4) * 3 / 255)
  np.testing.assert_array_equal(batch["label"], [0, 1, 2, 3])


def test_one_epoch_sees_every_record_once():
  batches = list(_loader())
  assert [len(b["label"]) for b in batches] == [4] * 9 + [1]
  assert sorted(_indices(batches)) == list(range(N))
  dropped = list(_loader(drop_remainder=True))
  assert len(dropped) == N // 4 and all(len(b["label"]) == 4 for b in dropped)


def test_unshuffled_order_is_sequential():
  assert _indices(_loader(shuffle=False)) == list(range(N))


def test_seeded_order():
  first, again, other = (_indices(_loader(seed=s)) for s in (0, 0, 1))
  assert first == again
  assert first != other and sorted(first) == sorted(other)
  assert first != list(range(N))


def test_infinite_epochs_reshuffle():
  batches = list(itertools.islice(iter(_loader(num_epochs=None, batch_size=N)), 3))
  epochs = [_indices([b]) for b in batches]
  assert all(sorted(e) == list(range(N)) for e in epochs)  # Batches of N are whole epochs.
  assert epochs[0] != epochs[1]


@pytest.mark.parametrize("rows", [[[0, 1, 2], [3, 4, 5]], [[0, 2, 4], [1, 3, 5]]])
def test_processes_read_disjoint_rows_of_the_same_global_batches(rows):
  # Six rows per global batch split over two processes, contiguously or interleaved: together
  # they read exactly the batches one process reads alone, each record once.
  options = dict(batch_size=6, seed=0, shuffle=True, num_epochs=2, drop_remainder=True)
  alone = [_indices([b]) for b in make_loader(RECORDS, **options)]
  shares = [[_indices([b]) for b in make_loader(RECORDS, process_rows=np.array(rows),
                                                process_index=p, **options)]
            for p in range(2)]
  assert len(alone) == len(shares[0]) == len(shares[1]) == 2 * N // 6
  for batch, first, second in zip(alone, *shares):
    merged = [None] * 6
    for p, share in enumerate((first, second)):
      for row, record in zip(rows[p], share):
        merged[row] = record
    assert merged == batch and not set(first) & set(second)


def test_a_last_partial_batch_is_split_by_rows():
  rows = np.array([[0, 1, 2], [3, 4, 5]])
  options = dict(batch_size=6, seed=0, shuffle=False, num_epochs=1, drop_remainder=False)
  first, second = ([_indices([b]) for b in make_loader(RECORDS, process_rows=rows,
                                                       process_index=p, **options)]
                   for p in range(2))
  # 37 = 6 * 6 + 1: the last global batch holds one record, in process 0's first row.
  assert first[-1] == [36] and len(first) == 7 and len(second) == 6
  assert sorted(sum(first + second, [])) == list(range(N))


def test_state_round_trip():
  loader = _loader(num_epochs=None)
  iterator = iter(loader)
  for _ in range(5):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(12)]  # Crosses an epoch boundary.
  resumed = iter(loader)
  resumed.set_state(state)
  got = [next(resumed) for _ in range(12)]
  assert _indices(got) == _indices(expected)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a["label"], b["label"])


def test_orbax_round_trip(tmp_path):
  loader = _loader(num_epochs=None, seed=3)
  iterator = iter(loader)
  for _ in range(4):
    next(iterator)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(4, args=ocp.args.Composite(data=pygrain.PyGrainCheckpointSave(iterator)))
    manager.wait_until_finished()
  expected = _indices(next(iterator) for _ in range(6))
  resumed = iter(loader)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    assert manager.latest_step() == 4
    manager.restore(4, args=ocp.args.Composite(data=pygrain.PyGrainCheckpointRestore(resumed)))
  assert _indices(next(resumed) for _ in range(6)) == expected


def test_loader_over_built_dataset(tmp_path):
  data = build_digits_dataset(distortion="none", source="sklearn_digits", data_dir=str(tmp_path))
  batch = next(
      iter(
          make_loader(
              data["train"], batch_size=8, seed=0, shuffle=True, num_epochs=1, drop_remainder=True
          )
      )
  )
  assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0 and batch["image"].max() > 0.5
  assert batch["label"].dtype == np.int32 and set(batch["label"].tolist()) <= set(range(10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_epochs=0), "num_epochs"),
        (dict(worker_count=-1), "worker_count"),
        (dict(process_rows=np.array([[0, 1], [1, 3]])), "process_rows must split the rows 0..3"),
    ],
)
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _loader(**kwargs)
