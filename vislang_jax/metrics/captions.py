"""Corpus caption metrics of the coco-caption toolkit: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

The captioning papers of the period (Show and Tell, Show Attend and Tell, ...) report the
numbers of the MS COCO evaluation server (Chen et al., "Microsoft COCO Captions: Data
Collection and Evaluation Server", arXiv:1504.00325, 2015), whose code is the
``pycocoevalcap`` package. ``caption_metrics`` tokenises the captions and calls its scorers:

* ``bleu1`` .. ``bleu4``: corpus BLEU (Papineni et al. 2002) with the closest reference
  length, ``pycocoevalcap.bleu.Bleu(4)``;
* ``rouge_l``: ROUGE-L F-measure with ``beta = 1.2`` (Lin 2004), averaged over images;
* ``cider``: CIDEr-D (Vedantam et al., CVPR 2015; clipped counts, Gaussian length penalty
  ``sigma = 6``, times 10) with document frequencies from the evaluated references, as the
  server's "CIDEr";
* ``meteor``: METEOR 1.5 (Denkowski and Lavie 2014), a Java program: computed when Java is on
  the ``PATH``. Each call starts it, loading its paraphrase tables (about 15 s, 2 GB heap).

SPICE is not computed (it downloads Stanford CoreNLP models on first use).

Tokenisation: the toolkit uses Stanford's Java ``PTBTokenizer``; the default here is the
pure-Python ``ptb_tokenize``, which agrees with it on ordinary captions (see
``caption_tokenizer``), so the metrics work without Java and give the same numbers with or
without it.
"""

import shutil
from collections.abc import Hashable, Mapping, Sequence

from absl import logging
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vislang_jax.metrics.caption_tokenizer import ptb_tokenize

TOKENIZERS = ("python", "ptb", "none")


def caption_metrics(references: Mapping[Hashable, Sequence[str]],
                    hypotheses: Mapping[Hashable, str], *, meteor: bool | str = "auto",
                    tokenizer: str = "python") -> dict[str, float]:
  """Corpus BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR) of one caption per image.

  Args:
    references: image id -> the non-empty list of its reference captions (raw text).
    hypotheses: image id -> the generated caption (raw text), for exactly the ids of
      ``references``.
    meteor: ``True`` to compute METEOR (needs ``java``), ``False`` to skip it, ``"auto"`` to
      compute it when ``java`` is on the ``PATH`` and otherwise log a warning and leave the
      ``"meteor"`` key out.
    tokenizer: ``"python"`` (``ptb_tokenize``), ``"ptb"`` (the toolkit's Java Stanford
      tokenizer, exactly as the evaluation server) or ``"none"`` (the captions are already
      tokenised; tokens are separated by whitespace).

  Returns:
    ``{"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}`` and, when computed,
    ``"meteor"``, as Python floats: BLEU, METEOR and ROUGE-L in ``[0, 1]``, CIDEr-D in
    ``[0, 10]`` (papers often print them times 100).

  Raises:
    ValueError: if the ids differ, ``hypotheses`` is empty, a caption is not a string, an
      image has no reference, the references have no word at all, an option is unknown, or
      Java is needed but missing.
  """
  _check_captions(references, hypotheses)
  if not (isinstance(meteor, bool) or meteor == "auto"):
    raise ValueError(f"meteor must be True, False or 'auto', got {meteor!r}.")
  if tokenizer not in TOKENIZERS:
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}.")
  has_java = shutil.which("java") is not None
  for option, needs_java in (("meteor=True", meteor is True),
                             ("tokenizer='ptb'", tokenizer == "ptb")):
    if needs_java and not has_java:
      raise ValueError(f"{option} needs Java, but no `java` is on the PATH; install a Java "
                       f"runtime or pass meteor=False / tokenizer='python'.")
  if meteor == "auto" and not has_java:
    logging.warning("caption_metrics: METEOR skipped (no `java` on the PATH); the result "
                    "has no 'meteor' key.")

  gts, res = _tokenize(references, hypotheses, tokenizer)
  if not any(caption for captions in gts.values() for caption in captions):
    raise ValueError("references must hold at least one word after tokenisation, got only "
                     "empty or punctuation captions.")
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  scores = {f"bleu{n}": float(b) for n, b in enumerate(bleu, start=1)}
  if meteor is True or (meteor == "auto" and has_java):
    scorer = Meteor()
    try:
      scores["meteor"] = float(scorer.compute_score(gts, res)[0])
    finally:
      del scorer  # stops the Java process
  scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
  scores["cider"] = float(Cider().compute_score(gts, res)[0])
  return scores


def _tokenize(references, hypotheses, tokenizer):
  """The toolkit's inputs: id -> list of tokenised captions (one for a hypothesis)."""
  ids = list(hypotheses)
  if tokenizer == "ptb":
    # One call for both sets, so that the Java tokenizer starts once.
    keyed = {("ref", i): [{"caption": c} for c in references[i]] for i in ids}
    keyed.update({("hyp", i): [{"caption": hypotheses[i]}] for i in ids})
    tokens = PTBTokenizer().tokenize(keyed)
    return {i: tokens[("ref", i)] for i in ids}, {i: tokens[("hyp", i)] for i in ids}
  tokenize = ptb_tokenize if tokenizer == "python" else lambda c: " ".join(c.split())
  return ({i: [tokenize(c) for c in references[i]] for i in ids},
          {i: [tokenize(hypotheses[i])] for i in ids})


def _check_captions(references, hypotheses) -> None:
  for name, value in (("references", references), ("hypotheses", hypotheses)):
    if not isinstance(value, Mapping):
      raise ValueError(f"{name} must be a mapping from image id to captions, got "
                       f"{type(value).__name__}.")
  if not hypotheses:
    raise ValueError("hypotheses must hold at least one caption, got an empty mapping.")
  missing, extra = set(references) - set(hypotheses), set(hypotheses) - set(references)
  if missing or extra:
    raise ValueError(
        f"hypotheses and references must have the same image ids; ids only in references: "
        f"{_some(missing)}, ids only in hypotheses: {_some(extra)} "
        f"({len(hypotheses)} hypotheses, {len(references)} references).")
  for i, caption in hypotheses.items():
    if not isinstance(caption, str):
      raise ValueError(f"hypotheses[{i!r}] must be a str, got {type(caption).__name__}: "
                       f"{caption!r}.")
  for i, captions in references.items():
    if isinstance(captions, str) or not isinstance(captions, Sequence) or not captions:
      raise ValueError(f"references[{i!r}] must be a non-empty list of str, got "
                       f"{captions!r}.")
    for caption in captions:
      if not isinstance(caption, str):
        raise ValueError(f"references[{i!r}] must hold only str, got "
                         f"{type(caption).__name__}: {caption!r}.")


def _some(ids, limit=5) -> str:
  ids = sorted(ids, key=repr)
  more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
  return "[" + ", ".join(map(repr, ids[:limit])) + "]" + more
