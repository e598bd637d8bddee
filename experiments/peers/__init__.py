"""Eager PyTorch ports of the package's models, for benchmarks and cross-checks."""
