"""The dense-captioning mean average precision of DenseCap, and plain detection AP.

Johnson, Karpathy and Fei-Fei, "DenseCap: Fully Convolutional Localization Networks for Dense
Captioning", CVPR 2016, Sec. 4.1 ("Metrics"; the paper's text could not be read when this
was checked, so the section and the paper's threshold lists are unverified; the released
code's steps and thresholds below were checked): a predicted region is right when its box
overlaps a ground-truth region enough *and* its phrase is close enough to that region's
phrases. Average precision is measured for every pair of an IoU threshold (0.3, 0.4, 0.5, 0.6,
0.7) and a METEOR threshold (0, 0.05, 0.1, 0.15, 0.2, 0.25); the metric is the mean of the
30 APs. The steps follow the released evaluator (jcjohnson/densecap ``eval/eval_utils.lua``,
``DenseCaptioningEvaluator``; ``eval/meteor_bridge.py``):

1. Ground-truth merging, per image (``merge_overlapping_boxes``; ``box_utils.merge_boxes``
   and ``pluck_boxes``): Visual Genome has many near-identical boxes with different phrases,
   so boxes with IoU >= 0.7 are grouped into one region whose box is the group's mean and
   whose references are all the group's phrases.
2. Matching, per image: predictions in order of descending score; each is assigned the merged
   region it overlaps most (IoU > 0). It may count as a true positive only if that region has
   not been taken by a higher-scoring prediction (it is then taken); a prediction whose best
   region is already taken is a false positive (a duplicate), and is *not* reassigned to its
   second-best region (as in PASCAL VOC).
3. Language: the phrase of each prediction is scored against the references of its region
   (sentence METEOR, one Java process for the whole evaluation).
4. AP over all images' predictions in order of descending score, for each threshold pair:
   prediction ``i`` is a true positive iff it took its region, ``IoU >= t_iou`` and
   ``similarity > t_lang`` (strict), otherwise a false positive; recall is over the number
   of merged regions of all images. Detection AP ignores the phrases.
5. AP integration, as the released code does (``for t=0,1,0.01``): the mean over the recall
   levels ``t`` of the largest precision at any rank whose recall is ``>= t`` (0 if the
   recall never reaches ``t``). Lua adds the step ``0.01`` in floating point, so the levels
   are ``0, 0.01, 0.02, ...`` as accumulated doubles (``0.5000000000000002`` at the 51st)
   and the loop stops at ``0.99...``: 100 levels, not 101, and a recall of exactly ``0.5``
   does not reach the 51st level. ``RECALL_LEVELS`` holds the same doubles, so the APs are
   the released code's to the last bit (given the same matching and similarities).

Differences from the released code, and why:

* Language thresholds: the paper is read as listing ``0, .05, .1, .15, .2, .25`` (not
  checked against its text); the released code (``min_scores = {-1, 0.05, 0.1, 0.15, 0.2,
  0.25}``) averages ``.05`` .. ``.25`` only (its ``-1`` entry feeds the separate detection
  breakdown), 25 APs.
  We follow the released code (``LANGUAGE_THRESHOLDS``, 25 APs: the evaluator behind the
  published 5.39 / 5.70 mAP); pass ``language_thresholds=(0, 0.05, ..., 0.25)`` for 30.
  With the exact-phrase similarity (1 or 0) the two give the same mAP.
* IoU: the Lua code measures boxes in inclusive pixels (``w = x1 - x0 + 1``); this library's
  boxes have exclusive ends (``ops/boxes.py``), so IoU is the plain continuous one.
* A prediction that overlaps no region: the Lua code then reads ``used[-1]``, which in Torch
  is the image's *last* region, and marks it taken, so a later prediction matching that
  region becomes a duplicate. We treat the prediction as a false positive and take nothing.
* Ties in score: Torch's sort leaves their order open; we keep the input order (images in
  order, predictions of an image in order), a stable sort.
* Phrases are compared after ``ptb_tokenize`` (lower case, no punctuation); the Lua code
  compares its vocabulary's decodings (also lower case, without punctuation).
* Only predictions that can be true positives (they took a region with ``IoU >=
  min(iou_thresholds)``) are scored by the similarity: the others' scores are never read.
* No ground-truth region in any image makes recall undefined: a ``ValueError`` (the Lua code
  divides by zero).

Language similarity (``similarity=``):

* ``"meteor"``: METEOR 1.5 (Denkowski and Lavie 2014) of the candidate against the region's
  references, ``pycocoevalcap``'s ``meteor-1.5.jar`` with the options of DenseCap's bridge
  (``-l en -norm``): the paper's measure. Needs ``java`` on the ``PATH`` (about 6 s to start).
* ``"exact"``: 1 if the tokenised candidate equals one of the tokenised references, else 0.
  With thresholds in ``[0, 1)`` every language threshold asks for an exact phrase, so each
  IoU threshold's APs are equal and ``map`` is the mean over IoU thresholds of the AP of
  boxes that carry a reference's exact phrase: a stricter measure than METEOR's (which gives
  an identical phrase 1.0, ``"a small three"`` against ``"a large seven"`` 0.057, above the
  0 and 0.05 thresholds). Smoothed sentence BLEU was not taken as the fallback: on three-word
  phrases one shared word already scores 0.275 (sacrebleu's default smoothing), above every
  METEOR threshold, so its thresholds would not mean what METEOR's do.
* ``"auto"`` (default): ``"meteor"`` where ``java`` is on the ``PATH``, else ``"exact"``
  with a logged warning. The result's ``"similarity"`` names the one used.
* a callable ``f(candidates: list[str], references: list[list[str]]) -> [N] floats``,
  one call per evaluation on the tokenised phrases, for another measure.
"""

import shutil
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from absl import logging

from vislang_jax.checks import check_float
from vislang_jax.metrics.caption_tokenizer import ptb_tokenize

IOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
LANGUAGE_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)
SIMILARITIES = ("auto", "meteor", "exact")


def _lua_recall_levels() -> np.ndarray:
  """The values Lua's ``for t=0,1,0.01`` takes: the step added in doubles, 100 of them."""
  levels, t = [], 0.0
  while t <= 1.0:
    levels.append(t)
    t += 0.01
  return np.asarray(levels)


RECALL_LEVELS = _lua_recall_levels()

Similarity = Callable[[list[str], list[list[str]]], Sequence[float]]


class RegionPredictions(NamedTuple):
  """An image's predicted regions (a plain ``(boxes, scores, captions)`` tuple also does).

  Attributes:
    boxes: [P, 4] float ``(x0, y0, x1, y1)`` pixels, exclusive ends (``ops/boxes.py``).
    scores: [P] float confidences; higher first.
    captions: P phrases (str).
  """

  boxes: np.ndarray
  scores: np.ndarray
  captions: Sequence[str]


class RegionReferences(NamedTuple):
  """An image's ground-truth regions (a plain ``(boxes, captions)`` tuple also does).

  Attributes:
    boxes: [G, 4] float ``(x0, y0, x1, y1)`` pixels, exclusive ends.
    captions: G phrases (str).
  """

  boxes: np.ndarray
  captions: Sequence[str]


def dense_captioning_map(predictions: Sequence[RegionPredictions],
                         references: Sequence[RegionReferences], *,
                         similarity: str | Similarity = "auto",
                         iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                         language_thresholds: Sequence[float] = LANGUAGE_THRESHOLDS,
                         merge_threshold: float | None = 0.7) -> dict:
  """DenseCap's mean AP over IoU x language-similarity thresholds (see the module docstring).

  Args:
    predictions: per image, ``(boxes [P, 4], scores [P], captions: P str)``; ``P`` may be 0.
    references: per image (as many as ``predictions``), ``(boxes [G, 4], captions: G str)``;
      ``G`` may be 0 for some images, not for all.
    similarity: ``"auto"``, ``"meteor"``, ``"exact"`` or a callable (module docstring).
    iou_thresholds: the IoU thresholds, each in ``(0, 1]``; a match needs ``IoU >= t``.
    language_thresholds: the similarity thresholds; a match needs ``similarity > t``.
    merge_threshold: ground-truth boxes with IoU >= this are merged into one region
      (``merge_overlapping_boxes``), in ``(0, 1]``; ``None`` merges nothing.

  Returns:
    A dict: ``"map"`` the mean of ``"ap"``; ``"ap"`` ``{(t_iou, t_lang): AP}``;
    ``"detection_ap"`` ``{t_iou: AP}`` ignoring the phrases and ``"detection_map"`` their
    mean (the released code's ``det_breakdown`` / ``detmap``); ``"detection_ap50"`` the
    detection AP at IoU 0.5; ``"similarity"`` the measure's name (``"meteor"``,
    ``"exact"``, or the callable's ``__name__``). APs are Python floats in ``[0, 1]``.

  Raises:
    ValueError: for mismatched lengths, a bad shape, non-finite or inverted boxes, a caption
      that is not a str, no ground-truth region at all, a bad threshold, an unknown
      similarity, ``"meteor"`` without Java, or a similarity returning the wrong count.
  """
  iou_thresholds = _check_thresholds("iou_thresholds", iou_thresholds, low=0.0, high=1.0)
  language_thresholds = _check_thresholds("language_thresholds", language_thresholds)
  name, score_fn = _similarity(similarity)
  records = _match(predictions, references, merge_threshold=merge_threshold, captions=True)
  first, overlap = records.first, records.overlap

  scored = np.flatnonzero(first & (overlap >= min(iou_thresholds)))
  language = np.full(len(first), -np.inf)
  if scored.size:
    candidates = [ptb_tokenize(records.candidates[i]) for i in scored]
    refs = [[ptb_tokenize(c) for c in records.references[i]] for i in scored]
    values = np.asarray(score_fn(candidates, refs), dtype=np.float64)
    if values.shape != (scored.size,) or not np.isfinite(values).all():
      raise ValueError(f"similarity must return {scored.size} finite scores (one per "
                       f"candidate), got shape {values.shape}: {values!r}.")
    language[scored] = values

  order, num_regions = records.order, records.num_regions
  first, overlap, language = first[order], overlap[order], language[order]
  ap = {(t_iou, t_lang): _interpolated_ap(first & (overlap >= t_iou) & (language > t_lang),
                                          num_regions)
        for t_iou in iou_thresholds for t_lang in language_thresholds}
  detection = {t: _interpolated_ap(first & (overlap >= t), num_regions)
               for t in iou_thresholds}
  return {
      "map": float(np.mean(list(ap.values()))),
      "ap": ap,
      "detection_map": float(np.mean(list(detection.values()))),
      "detection_ap": detection,
      "detection_ap50": _interpolated_ap(first & (overlap >= 0.5), num_regions),
      "similarity": name,
  }


def detection_average_precision(predictions: Sequence[RegionPredictions],
                                references: Sequence[RegionReferences], *,
                                iou_threshold: float = 0.5,
                                merge_threshold: float | None = 0.7) -> float:
  """Detection AP ignoring the phrases: DenseCap's language-free AP at one IoU threshold.

  The same matching and integration as ``dense_captioning_map`` (module docstring, steps 1,
  2, 4, 5) without step 3, on the same per-image records, whose captions are not read.

  Args:
    predictions: per image ``(boxes [P, 4], scores [P], captions)``.
    references: per image ``(boxes [G, 4], captions)``, as many as ``predictions``.
    iou_threshold: a true positive needs ``IoU >= iou_threshold``, in ``(0, 1]``.
    merge_threshold: as in ``dense_captioning_map``; ``None`` for plain detection AP with
      every ground-truth box its own object.

  Returns:
    The AP, a Python float in ``[0, 1]``.

  Raises:
    ValueError: as ``dense_captioning_map`` for the boxes, scores and thresholds.
  """
  (iou_threshold,) = _check_thresholds("iou_threshold", (iou_threshold,), low=0.0, high=1.0)
  records = _match(predictions, references, merge_threshold=merge_threshold, captions=False)
  order = records.order
  return _interpolated_ap(records.first[order] & (records.overlap[order] >= iou_threshold),
                          records.num_regions)


def merge_overlapping_boxes(boxes: np.ndarray, captions: Sequence[str] | None = None, *,
                            threshold: float = 0.7) -> tuple[np.ndarray, list[list[str]]]:
  """Groups ground-truth boxes that overlap by IoU >= threshold (DenseCap's ``merge_boxes``).

  Repeatedly, among the boxes not yet grouped, the box with the most not-yet-grouped boxes at
  IoU >= threshold (itself included; the lowest index on a tie) forms a group with exactly
  those boxes (its neighbours, not their neighbours in turn), until every box is in a group.

  Args:
    boxes: [G, 4] float ``(x0, y0, x1, y1)``.
    captions: G str, or None.
    threshold: the grouping IoU, in ``(0, 1]``.

  Returns:
    ``(merged [M, 4] float64, texts)``: each group's mean box, in the order the groups were
    formed, and its members' captions in index order (empty lists when ``captions`` is None).

  Raises:
    ValueError: for a bad shape, non-finite or inverted boxes, a captions count that is not
      G, or a threshold outside ``(0, 1]``.
  """
  boxes = _check_boxes("boxes", boxes)
  if captions is not None:
    _check_captions("captions", captions, len(boxes))
  (threshold,) = _check_thresholds("threshold", (threshold,), low=0.0, high=1.0)
  close = _iou_matrix(boxes, boxes) >= threshold
  np.fill_diagonal(close, True)  # a box belongs with itself, even an empty one
  groups = []
  while close.any():
    members = np.flatnonzero(close[np.argmax(close.sum(axis=0))])
    groups.append(members)
    close[members, :] = False
    close[:, members] = False
  merged = np.stack([boxes[g].mean(axis=0) for g in groups]) if groups else np.zeros((0, 4))
  texts = [[captions[i] for i in g] if captions is not None else [] for g in groups]
  return merged, texts


class _Records(NamedTuple):
  """Every prediction of every image after matching (step 2), in input order per image.

  ``first``: it took its region; ``overlap``: IoU with its best region (0 for none);
  ``order``: all records by descending score, stable; ``num_regions``: merged regions.
  """

  first: np.ndarray
  overlap: np.ndarray
  order: np.ndarray
  num_regions: int
  candidates: list[str]
  references: list[list[str]]


def _match(predictions, references, *, merge_threshold, captions: bool) -> _Records:
  """Steps 1 and 2 of the module docstring on every image; checks the inputs."""
  for name, value in (("predictions", predictions), ("references", references)):
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
      raise ValueError(f"{name} must be a sequence with one entry per image, got "
                       f"{type(value).__name__}.")
  if len(predictions) != len(references):
    raise ValueError(f"predictions and references must have one entry per image each, got "
                     f"{len(predictions)} predictions and {len(references)} references.")
  if merge_threshold is not None:
    check_float("merge_threshold", merge_threshold, low=0.0)
    if not 0.0 < merge_threshold <= 1.0:
      raise ValueError(f"merge_threshold must be None or in (0, 1], got {merge_threshold!r}.")
  firsts, overlaps, scores, candidates, refs = [], [], [], [], []
  num_regions = 0
  for n, (prediction, reference) in enumerate(zip(predictions, references)):
    pred_boxes, pred_scores, pred_captions = _unpack(f"predictions[{n}]", prediction, 3,
                                                     captions)
    gt_boxes, gt_captions = _unpack(f"references[{n}]", reference, 2, captions)
    if merge_threshold is not None:
      gt_boxes, gt_texts = merge_overlapping_boxes(gt_boxes, gt_captions,
                                                   threshold=merge_threshold)
    else:
      gt_texts = [[c] for c in gt_captions] if captions else [[] for _ in gt_boxes]
    num_regions += len(gt_boxes)
    # Within an image, in descending score (stable), each prediction's best region.
    rank = np.argsort(-pred_scores, kind="stable")
    iou = _iou_matrix(pred_boxes[rank], gt_boxes)
    best = iou.argmax(axis=1) if gt_boxes.size else np.zeros(len(rank), np.int64)
    overlap = iou[np.arange(len(rank)), best] if gt_boxes.size else np.zeros(len(rank))
    first = np.zeros(len(rank), bool)
    taken = np.zeros(len(gt_boxes), bool)
    for d in np.flatnonzero(overlap > 0):
      first[d] = not taken[best[d]]
      taken[best[d]] = True
    # Back to input order.
    first_in, overlap_in, best_in = (np.empty_like(a) for a in (first, overlap, best))
    first_in[rank], overlap_in[rank], best_in[rank] = first, overlap, best
    firsts.append(first_in)
    overlaps.append(overlap_in)
    scores.append(pred_scores)
    if captions:
      candidates.extend(pred_captions)
      refs.extend(gt_texts[j] if o > 0 else [] for j, o in zip(best_in, overlap_in))
  if num_regions == 0:
    raise ValueError(f"references must hold at least one ground-truth box over all "
                     f"{len(references)} images (recall is undefined without), got none.")
  all_scores = np.concatenate(scores) if scores else np.zeros(0)
  return _Records(first=np.concatenate(firsts) if firsts else np.zeros(0, bool),
                  overlap=np.concatenate(overlaps) if overlaps else np.zeros(0),
                  order=np.argsort(-all_scores, kind="stable"), num_regions=num_regions,
                  candidates=candidates, references=refs)


def _interpolated_ap(true_positive: np.ndarray, num_regions: int) -> float:
  """Step 5: AP of predictions in descending score order; true_positive [N] bool.

  precision_i = TP_i / i and recall_i = TP_i / num_regions after the first i predictions;
  AP = mean over ``RECALL_LEVELS`` t of max{precision_i : recall_i >= t} (0 for none).
  """
  if true_positive.size == 0:
    return 0.0
  tp = np.cumsum(true_positive, dtype=np.float64)
  precision = tp / np.arange(1, tp.size + 1)
  recall = tp / num_regions
  # recall never decreases, so {i : recall_i >= t} is a suffix; its max precision is a
  # running maximum from the end.
  best_after = np.maximum.accumulate(precision[::-1])[::-1]
  start = np.searchsorted(recall, RECALL_LEVELS, side="left")
  reached = start < tp.size
  return float(np.sum(best_after[start[reached]]) / RECALL_LEVELS.size)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[A, 4], [B, 4] -> [A, B] float64 IoU (exclusive ends, as ``ops.boxes.box_iou``).

  NumPy float64 rather than ``box_iou`` (JAX, float32): a host metric on per-image shapes
  that vary, compared against thresholds such as 0.5 exactly.
  """
  lo = np.maximum(a[:, None, :2], b[None, :, :2])
  hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
  area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
  area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
  union = area_a[:, None] + area_b[None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _unpack(name: str, entry, size: int, captions: bool):
  """An image's ``(boxes, scores, captions)`` (size 3) or ``(boxes, captions)`` (size 2)."""
  if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != size:
    layout = "(boxes, scores, captions)" if size == 3 else "(boxes, captions)"
    raise ValueError(f"{name} must be a {layout} tuple, got {type(entry).__name__}: "
                     f"{entry!r:.200}.")
  boxes = _check_boxes(f"{name}.boxes", entry[0])
  out = [boxes]
  if size == 3:
    scores = np.asarray(entry[1], dtype=np.float64)
    if scores.shape != (len(boxes),) or not np.isfinite(scores).all():
      raise ValueError(f"{name}.scores must be {len(boxes)} finite floats (shape [P] with "
                       f"boxes [P, 4]), got shape {scores.shape}: {scores!r:.200}.")
    out.append(scores)
  if captions:
    _check_captions(f"{name}.captions", entry[-1], len(boxes))
  out.append(list(entry[-1]) if captions else None)
  return out


def _check_boxes(name: str, boxes) -> np.ndarray:
  """[N, 4] float64 xyxy with x0 <= x1 and y0 <= y1; an empty input may be any size-0 array."""
  boxes = np.asarray(boxes, dtype=np.float64)
  if boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{name} must have shape [N, 4] (x0, y0, x1, y1), got {boxes.shape}.")
  if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
    raise ValueError(f"{name} must be finite (x0, y0, x1, y1) boxes with x0 <= x1 and "
                     f"y0 <= y1, got {boxes!r:.300}.")
  return boxes


def _check_captions(name: str, captions, count: int) -> None:
  if (isinstance(captions, str) or not isinstance(captions, Sequence)
      or len(captions) != count or not all(isinstance(c, str) for c in captions)):
    raise ValueError(f"{name} must be a list of {count} str (one per box), got "
                     f"{captions!r:.200}.")


def _check_thresholds(name: str, values, *, low: float | None = None,
                      high: float | None = None) -> tuple[float, ...]:
  """A non-empty tuple of finite floats, each in ``(low, high]`` where given."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
    raise ValueError(f"{name} must be a non-empty sequence of floats, got {values!r}.")
  for value in values:
    check_float(name, value)
    if (low is not None and value <= low) or (high is not None and value > high):
      raise ValueError(f"{name} must hold floats in ({low}, {high}], got {values!r}.")
  return tuple(float(v) for v in values)


def _similarity(similarity) -> tuple[str, Similarity]:
  """The measure's name and function (module docstring)."""
  if callable(similarity):
    return getattr(similarity, "__name__", type(similarity).__name__), similarity
  if not isinstance(similarity, str) or similarity not in SIMILARITIES:
    raise ValueError(f"similarity must be one of {SIMILARITIES} or a callable, got "
                     f"{similarity!r}.")
  has_java = shutil.which("java") is not None
  if similarity == "meteor" and not has_java:
    raise ValueError("similarity='meteor' needs Java, but no `java` is on the PATH; install "
                     "a Java runtime or pass similarity='exact'.")
  if similarity == "auto" and not has_java:
    logging.warning("dense_captioning_map: no `java` on the PATH, so phrases are compared "
                    "by exact match instead of METEOR (similarity='exact').")
  if similarity == "meteor" or (similarity == "auto" and has_java):
    return "meteor", meteor_similarity
  return "exact", exact_similarity


def exact_similarity(candidates: list[str], references: list[list[str]]) -> np.ndarray:
  """[N] float64: 1 where ``candidates[i]`` is one of ``references[i]``, else 0.

  The phrases are compared as given (``dense_captioning_map`` passes them tokenised).
  """
  return np.asarray([float(c in refs) for c, refs in zip(candidates, references, strict=True)])


def meteor_similarity(candidates: list[str], references: list[list[str]]) -> np.ndarray:
  """[N] float64 sentence METEOR 1.5 of each candidate against its references (needs Java).

  One ``pycocoevalcap`` METEOR process (``-l en -norm``, as DenseCap's ``meteor_bridge.py``)
  scores all N in one batch; its per-segment scores are the scores DenseCap's bridge reads
  one at a time. ``|||`` (METEOR's field separator) is removed from every phrase, and a
  candidate without references scores 0.
  """
  from pycocoevalcap.meteor.meteor import Meteor  # pylint: disable=g-import-not-at-top

  def clean(text):
    return " ".join(text.replace("|||", " ").split())

  scores = np.zeros(len(candidates))
  keys = [i for i, refs in enumerate(references) if refs]
  if not keys:
    return scores
  scorer = Meteor()
  try:
    _, values = scorer.compute_score({i: [clean(r) for r in references[i]] for i in keys},
                                     {i: [clean(candidates[i])] for i in keys})
  finally:
    del scorer  # stops the Java process
  scores[keys] = values
  return scores
