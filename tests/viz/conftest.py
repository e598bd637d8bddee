"""Fixtures of the figure tests."""

import pytest

from vislang_jax.viz import figure


@pytest.fixture
def saved_figures(monkeypatch):
  """Keeps each figure a viz module saves (still writing it), so its artists can be checked."""
  figures, save = [], figure.save

  def keep(fig, path, **kwargs):
    figures.append(fig)
    save(fig, path, **kwargs)

  monkeypatch.setattr(figure, "save", keep)
  return figures
