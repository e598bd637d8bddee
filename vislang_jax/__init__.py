"""vislang_jax: attention-based vision-and-language models of 2015-16 in JAX/Flax."""

__version__ = "0.1.0"
