"""The notebooks of notebooks/ run end to end on tiny settings and draw their pictures.

Each notebook's first code cell is tagged ``parameters`` and assigns the sizes that make it
slow (training steps, sample counts); the test replaces that cell by tiny values (every name it
sets must already be assigned there, so a renamed parameter fails here), executes the
notebook with nbclient in a fresh kernel in a temporary folder, and checks that no cell
raised (the notebooks' own ``assert`` cells included) and that every notebook drew at least
one picture (an ``image/png`` output). The four take about 85 s of CPU (kernel start, imports
and XLA compilation, with the backend optimisations off); the cell timeout only catches hangs.
"""

import ast
import os
import pathlib

import nbclient
import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

# Tiny values for each notebook's parameter cell.
TINY = {
    "stn.ipynb": {"fit_steps": 3},
    "draw.ipynb": {"train_steps": 2, "batch_size": 4, "num_samples": 2},
    "show_attend_tell.ipynb": {"train_steps": 2, "batch_size": 4, "copies": 1, "beam_size": 2,
                               "num_images": 2},
    "align_draw.ipynb": {"train_steps": 2, "batch_size": 4, "copies": 1, "num_samples": 2},
}


def _assigned_names(source: str) -> set[str]:
  return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
          for target in node.targets if isinstance(target, ast.Name)}


def set_parameters(notebook, values: dict) -> None:
  """Replaces the source of ``notebook``'s cell tagged ``parameters`` by ``values``."""
  cells = [c for c in notebook.cells
           if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
  assert len(cells) == 1, "a notebook needs exactly one code cell tagged 'parameters'"
  unknown = set(values) - _assigned_names(cells[0].source)
  assert not unknown, f"parameters {sorted(unknown)} are not assigned in the parameters cell"
  cells[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())


def test_every_notebook_is_tested_and_small():
  assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)
  for path in NOTEBOOKS.glob("*.ipynb"):  # pictures saved in a notebook must stay small
    assert path.stat().st_size < 300_000, path.name


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path, monkeypatch):
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  set_parameters(notebook, TINY[name])
  # Derived datasets land in the temporary folder; the kernel inherits the environment.
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # Compilation is nearly all of a tiny run's time: XLA's backend optimisations off.
  flags = os.environ.get("XLA_FLAGS", "")
  monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0".strip())
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  images = [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "image/png" in output.get("data", {})]
  assert images, f"{name} drew no picture"
