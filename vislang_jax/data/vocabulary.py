"""A word-level vocabulary built from training captions; encodes to fixed-length id arrays.

Tokenization (`tokenize`): lowercase, then a token is a maximal run of letters and digits
(Unicode `\\w` less the underscore); everything else (whitespace, punctuation, underscores)
separates tokens and is dropped. So "A man, riding a horse." -> ["a", "man", "riding", "a",
"horse"], and "don't" -> ["don", "t"].

Ids: the special tokens come first, `<pad>` = 0, `<bos>` = 1, `<eos>` = 2, `<unk>` = 3 (the
ids `vislang_jax.decoding` takes as `pad_id`, `bos_id`, `eos_id`), then the words by count
in the training captions, most frequent first, ties in alphabetical order, so a vocabulary is
a deterministic function of its captions, `min_count` and `max_size` (which keeps the first
`max_size` words of that order).

Sequences follow `vislang_jax.decoding`: `encode` writes the caption's ids then `<eos>`, no
`<bos>` (a decoder feeds `<bos>` at its first step), and pads with `<pad>`; a length counts
the tokens up to and including `<eos>`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from vislang_jax.checks import check_int

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIALS))
_TOKEN = re.compile(r"[^\W_]+")
_FORMAT = "vislang_jax.data.vocabulary.Vocabulary"
_FORMAT_VERSION = 1


def tokenize(caption: str) -> list[str]:
  """Lowercases `caption` and splits it into runs of letters and digits (see module doc)."""
  if not isinstance(caption, str):
    raise ValueError(f"caption must be a str, got {type(caption).__name__}: {caption!r}.")
  return _TOKEN.findall(caption.lower())


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Word <-> id maps; build with `Vocabulary.build`, store with `save` / `load`.

  Attributes:
    words: the non-special words in id order (`words[j]` has id `len(SPECIALS) + j`).
    counts: their counts in the captions the vocabulary was built from.
  """

  words: tuple[str, ...]
  counts: tuple[int, ...]

  def __post_init__(self):
    if len(self.words) != len(self.counts):
      raise ValueError(
          f"counts must have one entry per word ({len(self.words)}), got {len(self.counts)}."
      )
    if not self.words:
      raise ValueError("words must not be empty: a vocabulary needs at least one word.")
    for word in self.words:
      if not isinstance(word, str) or tokenize(word) != [word]:
        raise ValueError(
            f"words must be lowercase tokens that tokenize to themselves, got {word!r}."
        )
    duplicates = sorted(w for w, c in collections.Counter(self.words).items() if c > 1)
    if duplicates:
      raise ValueError(f"words must be distinct, got duplicates {duplicates}.")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in self.counts):
      raise ValueError(f"counts must be positive integers, got {self.counts!r}.")

  @classmethod
  def build(cls, captions: Iterable[str], *, min_count: int = 1,
            max_size: int | None = None) -> Vocabulary:
    """The vocabulary of the words seen at least `min_count` times in `captions`.

    Args:
      captions: training captions (strings).
      min_count: a word rarer than this maps to `<unk>`.
      max_size: keep at most this many words (specials not counted), the most frequent
        first, ties in alphabetical order; the rest map to `<unk>`. None keeps them all.

    Raises:
      ValueError: for a bare string, a min_count below 1, a max_size that is not None or a
        positive int, or no word left (no captions, captions without tokens, or every word
        rarer than min_count).
    """
    if isinstance(captions, str):
      raise ValueError(f"captions must be a sequence of strings, got one string {captions!r}.")
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
      raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}.")
    if max_size is not None:
      check_int("max_size", max_size, low=1)
    counts = collections.Counter()
    num_captions = 0
    for caption in captions:
      counts.update(tokenize(caption))
      num_captions += 1
    kept = sorted(
        ((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0])
    )[:max_size]
    if not kept:
      raise ValueError(
          f"captions give an empty vocabulary: {num_captions} captions, {len(counts)} distinct words, "
          f"none seen min_count={min_count} times or more."
      )
    return cls(words=tuple(w for w, _ in kept), counts=tuple(c for _, c in kept))

  def __len__(self) -> int:
    """The number of ids, specials included (the logits' size)."""
    return len(SPECIALS) + len(self.words)

  @property
  def tokens(self) -> tuple[str, ...]:
    """Every token in id order, specials first."""
    return SPECIALS + self.words

  @functools.cached_property
  def _ids(self) -> dict[str, int]:
    return {token: i for i, token in enumerate(self.tokens)}

  def token_id(self, token: str) -> int:
    """The id of a token (a word or a special); `<unk>`'s id for an unknown word."""
    return self._ids.get(token, UNK_ID)

  def encode(
      self, captions: Sequence[str], *, max_len: int, truncate: bool = False,
      strict: bool = False
  ) -> tuple[np.ndarray, np.ndarray]:
    """Captions to padded id arrays, each caption's tokens followed by `<eos>`.

    Args:
      captions: N strings.
      max_len: T, the length of the arrays, `<eos>` included.
      truncate: keep the first T - 1 tokens of a longer caption (then `<eos>`) instead
        of raising.
      strict: raise for a word outside the vocabulary instead of writing `<unk>` (for
        captions a model is asked to draw or score: one it cannot read must not silently
        become another).

    Returns:
      `(ids, lengths)`: ids int32 `[N, T]`, `<pad>` after `<eos>`, unknown words as
      `<unk>`; lengths int32 `[N]`, tokens up to and including `<eos>`.

    Raises:
      ValueError: for a bare string, max_len below 1, (without truncate) a caption
        with more than max_len - 1 tokens, or (with strict) unknown words, each named
        with the positions of the captions that hold it.
    """
    if isinstance(captions, str):
      raise ValueError(f"captions must be a sequence of strings, got one string {captions!r}.")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
      raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}.")
    captions = list(captions)
    if strict:
      unknown = {}
      for n, caption in enumerate(captions):
        for word in tokenize(caption):
          if self.token_id(word) == UNK_ID and n not in unknown.get(word, ()):
            unknown.setdefault(word, []).append(n)
      if unknown:
        listed = ", ".join(f"{w!r} (captions {where})" for w, where in sorted(unknown.items()))
        raise ValueError(f"captions must use only words of the vocabulary, got unknown words: "
                         f"{listed}.")
    ids = np.full((len(captions), max_len), PAD_ID, np.int32)
    lengths = np.zeros((len(captions),), np.int32)
    for n, caption in enumerate(captions):
      tokens = tokenize(caption)
      if len(tokens) + 1 > max_len:
        if not truncate:
          raise ValueError(
              f"max_len={max_len} is too short for caption {n}, which has {len(tokens)} tokens "
              f"+ <eos> = {len(tokens) + 1}: {caption!r}. Raise max_len or pass truncate=True."
          )
        tokens = tokens[: max_len - 1]
      row = [self.token_id(t) for t in tokens] + [EOS_ID]
      ids[n, : len(row)] = row
      lengths[n] = len(row)
    return ids, lengths

  def decode(self, ids, lengths=None) -> list[str]:
    """Id arrays back to captions: the words before the first `<eos>`, space-separated.

    Args:
      ids: int `[N, T]` (NumPy or JAX), e.g. from `encode` or `decoding.greedy`.
      lengths: optional int `[N]`; only the first `lengths[n]` ids of row n are read.

    Returns:
      N strings; `<pad>` and `<bos>` are skipped, `<unk>` is written as "<unk>". For a
      caption encoded without `<unk>`s, `decode(encode([c]))[0] == " ".join(tokenize(c))`.

    Raises:
      ValueError: for ids not 2-D, an id outside [0, len(self)), or lengths not [N].
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"ids must be an integer array [N, T], got {ids.dtype} {ids.shape}.")
    if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
      raise ValueError(
          f"ids must lie in [0, {len(self)}), got values in [{ids.min()}, {ids.max()}]."
      )
    if lengths is None:
      lengths = np.full((len(ids),), ids.shape[1])
    lengths = np.asarray(lengths)
    if lengths.shape != (len(ids),):
      raise ValueError(
          f"lengths must have shape ({len(ids)},) to match ids {ids.shape}, got {lengths.shape}."
      )
    tokens = self.tokens
    captions = []
    for row, length in zip(ids.tolist(), lengths.tolist()):
      words = []
      for i in row[:length]:
        if i == EOS_ID:
          break
        if i not in (PAD_ID, BOS_ID):
          words.append(tokens[i])
      captions.append(" ".join(words))
    return captions

  def to_json_dict(self) -> dict:
    """A JSON-serialisable dict that `from_json_dict` reads back."""
    return {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "specials": list(SPECIALS),
        "words": list(self.words),
        "counts": list(self.counts),
    }

  @classmethod
  def from_json_dict(cls, data: dict) -> Vocabulary:
    """The vocabulary `to_json_dict` wrote.

    Raises:
      ValueError: for another format or version, other specials, or invalid words.
    """
    if (
        not isinstance(data, dict)
        or data.get("format") != _FORMAT
        or data.get("version") != _FORMAT_VERSION
    ):
      got = (
          {k: data.get(k) for k in ("format", "version")}
          if isinstance(data, dict)
          else type(data).__name__
      )
      raise ValueError(
          f"data must be a dict with format={_FORMAT!r} and version={_FORMAT_VERSION}, got {got}."
      )
    if tuple(data.get("specials", ())) != SPECIALS:
      raise ValueError(f"data['specials'] must be {list(SPECIALS)}, got {data.get('specials')!r}.")
    return cls(words=tuple(data["words"]), counts=tuple(data["counts"]))

  def save(self, path: str | os.PathLike) -> None:
    """Writes the vocabulary as JSON to `path` (e.g. next to a checkpoint); makes its folder."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(self.to_json_dict(), f, ensure_ascii=False, indent=1)
      f.write("\n")

  @classmethod
  def load(cls, path: str | os.PathLike) -> Vocabulary:
    """Reads a vocabulary that `save` wrote.

    Raises:
      ValueError: for a file that is not JSON or not a saved vocabulary.
    """
    with open(path, encoding="utf-8") as f:
      try:
        data = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"path={os.fspath(path)!r} is not JSON: {e}.") from e
    return cls.from_json_dict(data)
