"""Tests for vislang_jax.metrics.dense_captioning: hand-worked APs, a brute-force reference
written as the Lua evaluator loops (jcjohnson/densecap eval/eval_utils.lua), and METEOR."""

import shutil

import numpy as np
import pytest

from vislang_jax.metrics import dense_captioning as dc
from vislang_jax.metrics.dense_captioning import (RegionPredictions, RegionReferences,
                                                  dense_captioning_map,
                                                  detection_average_precision,
                                                  merge_overlapping_boxes)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

LANG = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)


def _pred(boxes, scores, captions):
  return RegionPredictions(np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float),
                           list(captions))


def _ref(boxes, captions):
  return RegionReferences(np.asarray(boxes, float).reshape(-1, 4), list(captions))


# -------------------------------------------------------------------------------------------
# A brute-force reference, written the way the Lua evaluator is (no NumPy in the logic).


def _lua_iou(a, b):
  iw = min(a[2], b[2]) - max(a[0], b[0])
  ih = min(a[3], b[3]) - max(a[1], b[1])
  if iw <= 0 or ih <= 0:
    return 0.0
  inter = iw * ih
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _brute_force_detection_ap(predictions, references, iou_threshold):
  """DenseCaptioningEvaluator:addResult + evaluate at one IoU, language ignored, no merging."""
  records = []  # (score, ok, overlap)
  npos = 0
  for (boxes, scores, _), (gt, _) in zip(predictions, references):
    boxes, gt = boxes.tolist(), gt.tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    used = [False] * len(gt)
    for i in order:
      ovmax, jmax = 0.0, None
      for j, g in enumerate(gt):
        ov = _lua_iou(boxes[i], g)
        if ov > ovmax:
          ovmax, jmax = ov, j
      ok = jmax is not None and not used[jmax]
      if jmax is not None:
        used[jmax] = True
      records.append((float(scores[i]), ok, ovmax))
    npos += len(gt)
  records.sort(key=lambda r: -r[0])
  tp = fp = 0
  rec, prec = [], []
  for _, ok, ov in records:
    if ok and ov >= iou_threshold:
      tp += 1
    else:
      fp += 1
    rec.append(tp / npos)
    prec.append(tp / (tp + fp))
  ap, apn, t = 0.0, 0, 0.0
  while t <= 1:  # Lua's `for t=0,1,0.01`: the step accumulates in doubles
    ap += max([p * (r >= t) for p, r in zip(prec, rec)], default=0.0)
    apn += 1
    t += 0.01
  return ap / apn


# -------------------------------------------------------------------------------------------


def _two_images():
  """Image A: g1 "a large seven" (0,0,10,10), g2 "a small three" (20,0,30,10).
  Image B: g3 "a one" (0,0,10,10)."""
  predictions = [
      _pred([[0, 0, 10, 10],     # p1 .9: g1, IoU 1, exact phrase
             [20, 0, 30, 8],     # p2 .8: g2, IoU 80/100 = .8, wrong phrase
             [0, 0, 10, 5]],     # p3 .6: best g1 (IoU .5), taken by p1 -> duplicate
            [0.9, 0.8, 0.6], ["A large seven.", "a small two", "a large seven"]),
      _pred([[0, 0, 10, 6],      # p4 .7: g3, IoU .6, exact phrase
             [50, 50, 60, 60]],  # p5 .5: overlaps nothing
            [0.7, 0.5], ["a one", "a one"]),
  ]
  references = [_ref([[0, 0, 10, 10], [20, 0, 30, 10]], ["a large seven", "a small three"]),
                _ref([[0, 0, 10, 10]], ["a one"])]
  return predictions, references


def test_hand_worked_two_images_exact_phrases():
  # 3 regions. All predictions by score: p1 .9, p2 .8, p4 .7, p3 .6, p5 .5.
  # Language thresholds .05 .. .25 need an exact phrase (similarity 1); p2's is wrong.
  #  IoU .3-.6: T F T F F -> (precision, recall) (1, 1/3) (1/2, 1/3) (2/3, 2/3) (1/2, 2/3)
  #    (2/5, 2/3). Levels t <= 1/3 are t_0..t_33 (34 of them): max precision 1; levels
  #    t_34..t_66 (33; t_66 = 0.66000... < 2/3): 2/3; t_67..t_99: recall never reaches, 0.
  #    AP = (34 * 1 + 33 * 2/3) / 100 = 0.56.
  #  IoU .7 (p4's .6 fails): T F F F F -> AP = 34 / 100 = 0.34.
  #  map = (4 * 0.56 + 0.34) / 5 = 0.516.
  # Detection (phrases ignored): IoU .3-.6: T T T F F -> precision 1 up to recall 1 -> 1.0;
  #  IoU .7: T T F F F -> precision 1 up to recall 2/3 -> 67 levels -> 0.67.
  predictions, references = _two_images()
  got = dense_captioning_map(predictions, references, similarity="exact")
  assert got["similarity"] == "exact"
  for (t_iou, t_lang), ap in got["ap"].items():
    assert ap == pytest.approx(0.34 if t_iou == 0.7 else 0.56, abs=1e-12), (t_iou, t_lang)
  assert len(got["ap"]) == 25  # 5 IoU x 5 METEOR thresholds (the released code)
  assert got["map"] == pytest.approx(0.516, abs=1e-12)
  assert got["detection_ap"] == pytest.approx({0.3: 1.0, 0.4: 1.0, 0.5: 1.0, 0.6: 1.0,
                                               0.7: 0.67}, abs=1e-12)
  assert got["detection_map"] == pytest.approx(4.67 / 5, abs=1e-12)
  assert got["detection_ap50"] == 1.0
  assert detection_average_precision(predictions, references, iou_threshold=0.7) == (
      pytest.approx(0.67, abs=1e-12))


def test_perfect_predictions_score_one_everywhere():
  rng = np.random.default_rng(0)
  predictions, references = [], []
  for n in range(4):  # disjoint boxes along x: nothing merges, every IoU with another is 0
    count = n + 1
    boxes = np.array([[12 * k, 3, 12 * k + 10, 13 + k] for k in range(count)], float)
    captions = [f"phrase {n} {k}" for k in range(count)]
    references.append(_ref(boxes, captions))
    predictions.append(_pred(boxes, rng.uniform(size=count), captions))
  got = dense_captioning_map(predictions, references, similarity="exact")
  assert all(ap == 1.0 for ap in got["ap"].values())
  assert all(ap == 1.0 for ap in got["detection_ap"].values())
  assert got["map"] == got["detection_map"] == got["detection_ap50"] == 1.0


def test_right_box_wrong_phrase_counts_only_at_language_threshold_minus_one():
  predictions = [_pred([[0, 0, 10, 10]], [1.0], ["a small three"])]
  references = [_ref([[0, 0, 10, 10]], ["a large seven"])]
  got = dense_captioning_map(predictions, references, similarity="exact",
                             language_thresholds=(-1.0,) + LANG)
  for (t_iou, t_lang), ap in got["ap"].items():
    assert ap == (1.0 if t_lang == -1.0 else 0.0), (t_iou, t_lang)
  assert got["detection_ap50"] == 1.0


def test_duplicates_are_false_positives_and_not_reassigned():
  # g1 (0,0,10,10) and g2 (5,0,15,10) overlap by 50/150 = 1/3 (not merged).
  # p1 .9 = g1; p2 .8 (2,0,12,10): IoU 80/120 = .67 with g1 (taken), 70/130 = .54 with g2;
  # p3 .7 = g2. p2 is a duplicate of g1, not g2's match, so at IoU .5: T F T ->
  # (1, 1/2) (1/2, 1/2) (2/3, 1). Recall 1/2 reaches levels t_0..t_49 only (t_50 is the
  # double 0.5000000000000002): AP = (50 * 1 + 50 * 2/3) / 100 = 5/6.
  # (Reassigning p2 to g2 would give T T F -> 1.0; without p2, T T -> 1.0.)
  boxes = [[0, 0, 10, 10], [2, 0, 12, 10], [5, 0, 15, 10]]
  predictions = [_pred(boxes, [0.9, 0.8, 0.7], ["x", "x", "y"])]
  references = [_ref([[0, 0, 10, 10], [5, 0, 15, 10]], ["x", "y"])]
  assert detection_average_precision(predictions, references) == pytest.approx(5 / 6)
  got = dense_captioning_map(predictions, references, similarity="exact")
  assert got["ap"][(0.5, 0.05)] == pytest.approx(5 / 6)
  assert got["detection_ap50"] == pytest.approx(5 / 6)
  without = [_pred([boxes[0], boxes[2]], [0.9, 0.7], ["x", "y"])]
  assert detection_average_precision(without, references) == 1.0


def test_merge_overlapping_boxes_hand_case():
  # A chain (0, 0, 10, h) for h = 10, 8, 6, 4.5: neighbours IoU .8, .75, .75; others .6, .5625,
  # .45. Counts at >= .7 (self included): d0 2, d1 3, d2 3, d3 2. The tie goes to the lower
  # index, d1, whose group is {d0, d1, d2} (not d3, a neighbour of a neighbour). d3 is left
  # alone. d4 far away is its own group.
  boxes = [[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 6], [0, 0, 10, 4.5], [50, 50, 60, 60]]
  merged, texts = merge_overlapping_boxes(boxes, ["a", "b", "c", "d", "e"], threshold=0.7)
  np.testing.assert_allclose(merged, [[0, 0, 10, 8], [0, 0, 10, 4.5], [50, 50, 60, 60]])
  assert texts == [["a", "b", "c"], ["d"], ["e"]]
  # The most-neighbours box first: (0, 0, 10, 9) has IoU .9, .8 and .75 with the boxes of
  # heights 10, 8 and 6 -> one group of four, mean height (10 + 9 + 8 + 6) / 4.
  merged, texts = merge_overlapping_boxes(
      [[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 6], [0, 0, 10, 9]], list("abcd"))
  np.testing.assert_allclose(merged, [[0, 0, 10, 8.25]])
  assert texts == [["a", "b", "c", "d"]]
  merged, texts = merge_overlapping_boxes(np.zeros((0, 4)), [])
  assert merged.shape == (0, 4) and texts == []


def test_merged_regions_pool_their_phrases_and_count_once():
  # Two references with IoU 90/100 >= .7 merge into one region (0,0,10,9.5) with both phrases.
  # The prediction (IoU .95 with it) says the second phrase: a match, recall 1/1.
  references = [_ref([[0, 0, 10, 10], [0, 0, 10, 9]], ["a large seven", "a big seven"])]
  predictions = [_pred([[0, 0, 10, 10]], [0.5], ["a big seven"])]
  assert dense_captioning_map(predictions, references, similarity="exact")["map"] == 1.0
  # Unmerged: two regions; the prediction takes the first (IoU 1), whose phrase differs;
  # detection recall 1/2 reaches 50 levels.
  got = dense_captioning_map(predictions, references, similarity="exact", merge_threshold=None)
  assert got["map"] == 0.0
  assert got["detection_ap50"] == pytest.approx(0.5)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_detection_ap_equals_the_brute_force_evaluator(iou_threshold):
  rng = np.random.default_rng(1)
  predictions, references = [], []
  for n in range(6):
    gt_count = [0, 1, 3, 4, 2, 5][n]
    corners = rng.uniform(0, 60, size=(gt_count, 2))
    gt = np.concatenate([corners, corners + rng.uniform(5, 20, size=(gt_count, 2))], 1)
    pred_count = [3, 0, 4, 6, 2, 8][n]
    source = gt[rng.integers(0, gt_count, pred_count)] if gt_count else np.zeros((pred_count, 4))
    boxes = source + rng.normal(0, 3, size=(pred_count, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    references.append(_ref(gt, [""] * gt_count))
    predictions.append(_pred(boxes, rng.uniform(size=pred_count), [""] * pred_count))
  want = _brute_force_detection_ap(predictions, references, iou_threshold)
  got = detection_average_precision(predictions, references, iou_threshold=iou_threshold,
                                    merge_threshold=None)
  assert 0.05 < want < 0.95  # a case that tells precisions apart
  assert got == pytest.approx(want, abs=1e-12)


def test_empty_predictions_give_zero():
  references = [_ref([[0, 0, 10, 10]], ["a one"]), _ref([[5, 5, 9, 9]], ["a two"])]
  predictions = [_pred(np.zeros((0, 4)), [], []), RegionPredictions([], [], [])]
  got = dense_captioning_map(predictions, references, similarity="exact")
  assert got["map"] == got["detection_map"] == got["detection_ap50"] == 0.0
  assert detection_average_precision(predictions, references) == 0.0


def test_injected_similarity_is_called_once_on_the_scorable_tokenised_phrases():
  # p1 .9 takes g1 at IoU 1, p3 .7 takes g2 at IoU 80/100; p2 .8 (a duplicate of g1) and
  # p4 .6 (no overlap) can never count, so they are not scored. The scorer gives p1 .12 and
  # p3 .3. Language thresholds 0, .05, .1: T F T F -> (1, 1/2) (1/2, 1/2) (2/3, 1) (1/2, 1):
  # AP = (50 * 1 + 50 * 2/3) / 100 = 5/6. Thresholds .15, .2, .25: F F T F -> precision 1/3
  # at recall 1/2: AP = 50 * 1/3 / 100 = 1/6.
  calls = []

  def fake(candidates, references):
    calls.append((candidates, references))
    return [0.12, 0.3]

  predictions = [_pred([[0, 0, 10, 10], [0, 0, 10, 10], [20, 0, 30, 8], [80, 80, 90, 90]],
                       [0.9, 0.8, 0.7, 0.6], ["A large SEVEN.", "x", "Two!", "y"])]
  references = [_ref([[0, 0, 10, 10], [20, 0, 30, 10]], ["a large seven", "The two."])]
  got = dense_captioning_map(predictions, references, similarity=fake)
  assert calls == [(["a large seven", "two"], [["a large seven"], ["the two"]])]
  assert got["similarity"] == "fake"
  for (t_iou, t_lang), ap in got["ap"].items():
    assert ap == pytest.approx(5 / 6 if t_lang <= 0.1 else 1 / 6), (t_iou, t_lang)


def test_auto_similarity_follows_java(monkeypatch):
  predictions, references = _two_images()
  monkeypatch.setattr(dc.shutil, "which", lambda name: None)
  assert dense_captioning_map(predictions, references)["similarity"] == "exact"
  with pytest.raises(ValueError, match="similarity='meteor' needs Java"):
    dense_captioning_map(predictions, references, similarity="meteor")
  monkeypatch.setattr(dc.shutil, "which", lambda name: "/usr/bin/java")
  monkeypatch.setattr(dc, "meteor_similarity", lambda c, r: np.zeros(len(c)))
  got = dense_captioning_map(predictions, references)
  assert got["similarity"] == "meteor" and got["map"] == 0.0


@needs_java
def test_meteor_scores_phrases_as_the_paper():
  # pycocoevalcap's METEOR 1.5: identical phrase 1.0; "a large seven" against "a small three"
  # 0.0571 (one word of three matches). p1 .9 on g1 (1.0), p2 .8 on g2 (0.0571): language
  # threshold .05: T T -> 1; .1 - .25: T F -> recall 1/2 -> 50 levels -> 0.5.
  # map = (1 + 4 * 0.5) / 5 = 3/5 at every IoU threshold (thresholds .05 .. .25).
  predictions = [_pred([[0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.8],
                       ["a large seven", "a large seven"])]
  references = [_ref([[0, 0, 10, 10], [20, 0, 30, 10]], ["a large seven", "a small three"])]
  got = dense_captioning_map(predictions, references, similarity="meteor")
  assert got["similarity"] == "meteor"
  for (t_iou, t_lang), ap in got["ap"].items():
    assert ap == pytest.approx(1.0 if t_lang <= 0.05 else 0.5), (t_iou, t_lang)
  assert got["map"] == pytest.approx(3 / 5)


def test_recall_levels_are_lua_s():
  assert dc.RECALL_LEVELS.size == 100
  assert dc.RECALL_LEVELS[0] == 0.0 and dc.RECALL_LEVELS[-1] < 1.0
  assert dc.RECALL_LEVELS[50] > 0.5  # hence recall 1/2 reaches 50 levels
  np.testing.assert_allclose(dc.RECALL_LEVELS, np.arange(100) / 100, atol=1e-14)


@pytest.mark.parametrize("change, match", [
    (lambda p, r: (p[:1], r), "one entry per image each"),
    (lambda p, r: ({0: p[0]}, r), "predictions must be a sequence"),
    (lambda p, r: ([p[0]._replace(boxes=np.zeros((3, 3)))] + p[1:], r),
     r"predictions\[0\].boxes must have shape \[N, 4\]"),
    (lambda p, r: ([p[0]._replace(scores=np.ones(2))] + p[1:], r),
     r"predictions\[0\].scores must be 3 finite floats"),
    (lambda p, r: ([p[0]._replace(captions=["a", "b"])] + p[1:], r),
     r"predictions\[0\].captions must be a list of 3 str"),
    (lambda p, r: (p, [r[0]._replace(captions=["a", 7])] + r[1:]),
     r"references\[0\].captions must be a list of 2 str"),
    (lambda p, r: (p, [_ref([[0, 0, -1, 10], [0, 0, 1, 1]], "ab")] + r[1:]),
     r"references\[0\].boxes must be finite .* x0 <= x1"),
    (lambda p, r: (p, [r[0][:1]] + r[1:]), r"references\[0\] must be a \(boxes, captions\)"),
    (lambda p, r: (p, [_ref(np.zeros((0, 4)), [])] * 2), "at least one ground-truth box"),
])
def test_bad_inputs_raise(change, match):
  predictions, references = change(*_two_images())
  with pytest.raises(ValueError, match=match):
    dense_captioning_map(predictions, references, similarity="exact")


@pytest.mark.parametrize("kwargs, match", [
    ({"similarity": "bleu"}, r"similarity must be one of \('auto', 'meteor', 'exact'\)"),
    ({"similarity": "exact", "iou_thresholds": (0.0, 0.5)}, r"iou_thresholds must hold"),
    ({"similarity": "exact", "iou_thresholds": (1.5,)}, r"iou_thresholds must hold"),
    ({"similarity": "exact", "iou_thresholds": ()}, r"iou_thresholds must be a non-empty"),
    ({"similarity": "exact", "language_thresholds": (np.nan,)}, "language_thresholds must be"),
    ({"similarity": "exact", "merge_threshold": 0.0}, "merge_threshold must be None or in"),
    ({"similarity": lambda c, r: [1.0]}, "similarity must return 3 finite scores"),
])
def test_bad_options_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dense_captioning_map(*_two_images(), **kwargs)
