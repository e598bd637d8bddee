"""Attribute words of a caption vocabulary and multi-label attribute targets from captions.

You, Jin, Wang, Fang, Luo, "Image Captioning with Semantic Attention", CVPR 2016, Sec. 3.5:
the attributes are words of the caption vocabulary, detected in an image by one classifier
per word; an image's targets are the attribute words its captions use (the detector's
multi-label targets; DCC's lexical labels are the same construction). Function words
("a", "the", "of", ...) carry no visual content, so the candidate attributes are the
vocabulary's content words (`content_words`).

On captioned digits the content words are "digit", "zero" ... "nine", "top", "bottom",
"left", "right" and "image".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vislang_jax.checks import check_rank
from vislang_jax.data.vocabulary import SPECIALS, Vocabulary

STOPWORDS: frozenset[str] = frozenset((
    # articles and determiners
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every",
    "another", "other", "such",
    # prepositions
    "of", "on", "at", "in", "into", "onto", "to", "from", "with", "without", "by", "for",
    "about", "above", "below", "under", "over", "near", "next", "behind", "between",
    "through", "across", "along", "around", "against", "among", "beside", "up", "down",
    "out", "off", "as", "than", "like",
    # auxiliaries and copulas
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "having",
    "do", "does", "did", "can", "could", "will", "would", "shall", "should", "may", "might",
    "must",
    # pronouns
    "i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her",
    "it", "its", "they", "them", "their", "there", "here", "who", "whom", "whose", "which",
    "what", "itself", "themselves",
    # conjunctions and particles
    "and", "or", "but", "nor", "so", "yet", "if", "while", "where", "when", "then", "not",
    "no", "very", "too", "also", "just",
))


def content_words(vocabulary: Vocabulary, *,
                  stopwords: Iterable[str] = STOPWORDS) -> tuple[str, ...]:
  """The vocabulary's words that are neither special tokens nor stopwords, in id order.

  Args:
    vocabulary: a caption vocabulary.
    stopwords: the function words to leave out (default `STOPWORDS`).

  Returns:
    The candidate attribute words (Sec. 3.5), ordered by their ids.

  Raises:
    ValueError: for `stopwords` given as one string or holding non-strings, or when no
      content word is left.
  """
  if isinstance(stopwords, str):
    raise ValueError(f"stopwords must be a collection of words, got one string {stopwords!r}.")
  stopwords = frozenset(stopwords)
  if not all(isinstance(w, str) for w in stopwords):
    raise ValueError(f"stopwords must hold strings, got {sorted(map(repr, stopwords))}.")
  words = tuple(w for w in vocabulary.tokens if w not in SPECIALS and w not in stopwords)
  if not words:
    raise ValueError(f"vocabulary must hold at least one content word (not a stopword), got "
                     f"only {list(vocabulary.words)}.")
  return words


def attribute_ids(vocabulary: Vocabulary, words: Sequence[str]) -> np.ndarray:
  """The ids of the attribute words `words`, in their order.

  Args:
    vocabulary: the caption vocabulary whose embedding the attributes share.
    words: A distinct words of `vocabulary` (e.g. `content_words(vocabulary)`).

  Returns:
    int32 [A].

  Raises:
    ValueError: for one string, an empty sequence, special tokens, words not in the
      vocabulary (all named) or repeated words.
  """
  if isinstance(words, str):
    raise ValueError(f"words must be a sequence of attribute words, got one string {words!r}.")
  words = list(words)
  if not words:
    raise ValueError("words must name at least one attribute, got an empty sequence.")
  specials = [w for w in words if w in SPECIALS]
  if specials:
    raise ValueError(f"attributes must be words of the vocabulary, not special tokens; got "
                     f"{specials}.")
  known = set(vocabulary.words)
  missing = [w for w in words if w not in known]
  if missing:
    raise ValueError(f"attributes must be words of the vocabulary; not in it: {missing}.")
  repeated = sorted({w for w in words if words.count(w) > 1})
  if repeated:
    raise ValueError(f"attributes must be distinct words; repeated: {repeated}.")
  return np.asarray([vocabulary.token_id(w) for w in words], np.int32)


def attribute_targets(tokens: jax.Array, lengths: jax.Array,
                      attribute_ids: jax.Array) -> jax.Array:
  """Multi-label attribute targets from captions: which attribute words each caption uses.

  Sec. 3.5's detector targets: ``y[b, a] = 1`` when attribute word ``a`` occurs among the
  first ``lengths[b]`` tokens of caption ``b``. Pure jnp; jit- and vmap-able.

  Args:
    tokens: [B, T] int caption ids (e.g. `Vocabulary.encode`'s).
    lengths: [B] int, the number of valid tokens of each caption.
    attribute_ids: [A] int, the attribute words' ids (`attribute_ids`).

  Returns:
    float32 [B, A] of 0s and 1s.

  Raises:
    ValueError: for ranks other than [B, T], [B], [A], a batch mismatch, or non-integer
      arrays.
  """
  check_rank("tokens", tokens, "[B, T]")
  check_rank("lengths", lengths, "[B]")
  check_rank("attribute_ids", attribute_ids, "[A]")
  if np.shape(lengths)[0] != np.shape(tokens)[0]:
    raise ValueError(f"lengths must have shape [B] with B = tokens.shape[0] = "
                     f"{np.shape(tokens)[0]}, got {np.shape(lengths)}.")
  for name, value in (("tokens", tokens), ("lengths", lengths),
                      ("attribute_ids", attribute_ids)):
    if not jnp.issubdtype(jnp.result_type(value), jnp.integer):
      raise ValueError(f"{name} must hold integers, got dtype {jnp.result_type(value)}.")
  tokens = jnp.asarray(tokens)
  valid = jnp.arange(tokens.shape[1])[None, :] < jnp.asarray(lengths)[:, None]  # [B, T]
  hits = (tokens[:, :, None] == jnp.asarray(attribute_ids)[None, None, :]) & valid[..., None]
  return jnp.any(hits, axis=1).astype(jnp.float32)
