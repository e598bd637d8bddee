"""The benchmark suite runs end to end in its CI-sized form (`--smoke`); no timing is asserted."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TITLES = ("Ceilings", "Bilinear sampler vs torch grid_sample", "DRAW filterbank attention",
          "Additive attention", "Beam search", "Train steps",
          "DRAW train step", "Show-Attend-Tell decoder train step")


def _run(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.benchmark", *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=1200)


def _tables(stdout: str) -> dict[str, list[list[str]]]:
  """{title: rows (cells)} of the markdown tables printed."""
  tables, title = {}, None
  for line in stdout.splitlines():
    if line.startswith("### "):
      title = line[4:]
      tables[title] = []
    elif line.startswith("| ") and title is not None:
      tables[title].append([cell.strip() for cell in line.strip("|").split("|")])
  return {name: rows[1:] for name, rows in tables.items()}  # without the header row


@pytest.fixture(scope="module")
def smoke() -> dict[str, list[list[str]]]:
  result = _run("--smoke")
  assert result.returncode == 0, result.stderr[-4000:]
  return _tables(result.stdout)


def test_every_section_prints_its_table_with_measured_times(smoke):
  for title in TITLES:
    matching = [name for name in smoke if name.startswith(title)]
    assert matching, f"no table {title!r} in {sorted(smoke)}"
    rows = smoke[matching[0]]
    assert rows, title
    for row in rows:
      numbers = [float(cell.replace(",", "")) for cell in row
                 if re.fullmatch(r"[\d,]+(\.\d+)?(e[-+]?\d+)?", cell)]
      assert numbers and all(n > 0 for n in numbers), (title, row)


def test_train_steps_cover_both_compute_dtypes_with_their_memory(smoke):
  rows = next(rows for name, rows in smoke.items() if name.startswith("Train steps"))
  assert {row[2] for row in rows} == {"float32", "bfloat16"}
  assert all(float(row[-1].replace(",", "")) > 0 for row in rows)


def test_peers_are_timed_next_to_jax(smoke):
  captioning = next(rows for name, rows in smoke.items()
                    if name.startswith("Show-Attend-Tell decoder train step"))
  names = [row[1] for row in captioning]
  assert names[0].startswith("JAX") and any("port" in n for n in names) and any(
      "tutorial" in n for n in names)
  draw = next(rows for name, rows in smoke.items() if name.startswith("DRAW train step"))
  assert draw[0][1].startswith("JAX") and any("port" in row[1] for row in draw)


@pytest.mark.parametrize("flags, message", [
    (("--only=sampler,bogus",), "--only must be among"),
    (("--only=steps", "--experiments=nope:paper"), "--experiments must be among"),
    (("--repeats=0",), "--repeats must be >= 1"),
])
def test_bad_flags_are_refused(flags, message):
  result = _run(*flags)
  assert result.returncode != 0 and message in result.stderr
