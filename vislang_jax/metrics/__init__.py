"""Metrics: coco-caption corpus metrics, PTB caption tokenisation, sentence BLEU in JAX."""

from vislang_jax.metrics.bleu import BleuStatistics, bleu_statistics, sentence_bleu
from vislang_jax.metrics.caption_tokenizer import ptb_tokenize
from vislang_jax.metrics.captions import caption_metrics

__all__ = [
    "BleuStatistics",
    "bleu_statistics",
    "caption_metrics",
    "ptb_tokenize",
    "sentence_bleu",
]
