"""The classification objective against a NumPy transcription."""

import numpy as np

from vislang_jax.objectives.classification import classification_loss


def test_cross_entropy_and_errors_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 0, 1])
  loss, metrics = classification_loss(logits, labels)
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(loss, -log_softmax[np.arange(6), labels], rtol=1e-5)
  np.testing.assert_array_equal(metrics["error_rate"], logits.argmax(1) != labels)
