"""Data: digit sources (`sources`, `idx`), the derived TFDS builders (`digit_builder`,
`builders`, `multi_digit`, `captioned_digits`), caption encoding and COCO (`captions`,
`vocabulary`), grain loaders (`pipeline`).

Import the submodule you need: importing this package loads nothing, so the harness and the
models import without TensorFlow Datasets.
"""
