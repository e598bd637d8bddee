"""The classifiers' objective: softmax cross-entropy and the 0/1 error, per example."""

import jax
import jax.numpy as jnp
import optax


def classification_loss(logits: jax.Array, labels: jax.Array
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`-log softmax(logits)[label]` per example, and whether the argmax misses the label.

  Args:
    logits: [B, K] float.
    labels: [B] int in [0, K).

  Returns:
    `(loss [B] in nats, {"error_rate": [B] float, 1 where argmax(logits) != label})`.
  """
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  errors = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return loss, {"error_rate": errors}
