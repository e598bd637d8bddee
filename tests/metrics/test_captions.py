"""Tests for caption_metrics and ptb_tokenize: hand-checked values, a NumPy CIDEr-D, and the
coco-caption toolkit's own scorers and Java tokenizer."""

import collections
import math
import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vislang_jax.metrics import captions
from vislang_jax.metrics import caption_metrics, ptb_tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

# Raw caption -> the output of coco-caption's tokenisation (Stanford CoreNLP 3.4.1
# PTBTokenizer -preserveLines -lowerCase, then its punctuation filter), recorded with
# pycocoevalcap 1.2 and OpenJDK 17.
PTB_TOKENIZED = {
    "A man riding a wave on top of a surfboard.":
        "a man riding a wave on top of a surfboard",
    "A cat is sitting on a laptop's keyboard.": "a cat is sitting on a laptop 's keyboard",
    "The dog doesn't want to get out of the car!":
        "the dog does n't want to get out of the car",
    "A plate of food with broccoli, carrots, and rice.":
        "a plate of food with broccoli carrots and rice",
    'A kitchen with stainless steel appliances and a "chef\'s" knife.':
        "a kitchen with stainless steel appliances and a chef 's knife",
    "A man in a suit and tie (with glasses) talks on a cell phone.":
        "a man in a suit and tie -lrb- with glasses -rrb- talks on a cell phone",
    "A bus parked at a bus stop; people wait nearby.":
        "a bus parked at a bus stop people wait nearby",
    "A young boy swinging a baseball bat at a ball...":
        "a young boy swinging a baseball bat at a ball",
    "There's a clock tower in the middle of the city at 12:30.":
        "there 's a clock tower in the middle of the city at 12:30",
    "A woman holding an umbrella: it's raining.": "a woman holding an umbrella it 's raining",
    "A black-and-white photo of a train station in the U.K.":
        "a black-and-white photo of a train station in the u.k.",
    "Mr. Smith's 10-year-old son can't find his shoes?":
        "mr. smith 's 10-year-old son ca n't find his shoes",
    "An old truck that costs $5,000 with 100% rust -- really":
        "an old truck that costs $ 5,000 with 100 % rust really",
    "a stop sign with 'no parking' written under it":
        "a stop sign with no parking written under it",
    "Kids' toys spread out on the floor": "kids toys spread out on the floor",
    "A sandwich cut in half on a plate .": "a sandwich cut in half on a plate",
    "I cannot believe we're gonna win, wow!! what?? ?!":
        "i can not believe we 're gon na win wow !! what ?? ?!",
    "[a] {b} you'll I'm we'd they've I'd've":
        "-lsb- a -rsb- -lcb- b -rcb- you 'll i 'm we 'd they 've i 'd 've",
    "a man\u2019s hat \u2014 \u201ccurly\u201d \u2018quotes\u2019 and en\u2013dash":
        "a man 's hat curly quotes and en dash",
    "the 1990s and '90s, 8. a.m. e.g. a -hyphen": "the 1990s and '90s 8 a.m. e.g. a hyphen",
    "  . , ;  ": "",
}

# A small corpus of COCO-like captions: hypotheses of varying quality, 2-4 references each.
REFERENCES = {
    "img1": ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave.",
             "A person on a surfboard riding a wave in the ocean."],
    "img2": ["Two giraffes standing next to each other in a field.",
             "Two giraffes in a grassy field near trees.", "A pair of giraffes in the wild."],
    "img3": ["A cat is sitting on a laptop's keyboard.", "A cat lying on a laptop computer.",
             "An orange cat sleeping on a keyboard.", "The cat is on the laptop."],
    "img4": ["A plate of food with broccoli, carrots, and rice.",
             "A plate with rice and vegetables."],
    5: ["A stop sign with 'no parking' written under it.", "A red stop sign on a street."],
}
HYPOTHESES = {
    "img1": "A man riding a wave on a surfboard.",
    "img2": "Two giraffes standing in a field.",
    "img3": "A cat sitting on a laptop.",
    "img4": "A plate of rice and broccoli.",
    5: "A dog on a couch.",
}


@pytest.mark.parametrize("raw", list(PTB_TOKENIZED))
def test_ptb_tokenize_matches_recorded_stanford_output(raw):
  assert ptb_tokenize(raw) == PTB_TOKENIZED[raw]


@needs_java
def test_recorded_outputs_are_the_java_tokenizer_s():
  tokens = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(PTB_TOKENIZED)})
  assert [tokens[i][0] for i in range(len(PTB_TOKENIZED))] == list(PTB_TOKENIZED.values())


def toolkit_scores(references, hypotheses):
  """The coco-caption scorers called directly on ptb_tokenize'd captions."""
  gts = {i: [ptb_tokenize(c) for c in refs] for i, refs in references.items()}
  res = {i: [ptb_tokenize(hypotheses[i])] for i in references}
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  return {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3],
          "rouge_l": Rouge().compute_score(gts, res)[0],
          "cider": Cider().compute_score(gts, res)[0]}


def test_equals_the_toolkit_scorers():
  got = caption_metrics(REFERENCES, HYPOTHESES, meteor=False)
  assert got == toolkit_scores(REFERENCES, HYPOTHESES)
  assert all(type(v) is float for v in got.values())
  assert 0 < got["bleu4"] < got["bleu3"] < got["bleu2"] < got["bleu1"] < 1


@needs_java
def test_python_tokenizer_gives_the_java_tokenizer_s_scores():
  assert (caption_metrics(REFERENCES, HYPOTHESES, meteor=False, tokenizer="ptb")
          == caption_metrics(REFERENCES, HYPOTHESES, meteor=False))


def test_identical_captions_score_one():
  hypotheses = {i: refs[0] for i, refs in REFERENCES.items()}
  got = caption_metrics(REFERENCES, hypotheses, meteor=False)
  for n in range(1, 5):  # the toolkit adds 1e-15 and 1e-9 to its counts
    assert got[f"bleu{n}"] == pytest.approx(1.0, rel=1e-8)
  assert got["rouge_l"] == pytest.approx(1.0, rel=1e-12)


def test_cider_d_by_hand():
  # Two images, one reference each; every n-gram occurs in one image's reference, so its
  # idf is log(2 / 1). img "a": the hypothesis is the reference, a single word: cosine 1 for
  # unigrams, and no n-grams of order 2..4 (zero vectors score 0): 10 * (1 + 0 + 0 + 0) / 4.
  # img "b": no common word, 0. CIDEr-D is the mean, 1.25. BLEU-1: 1 of 2 words, BP = 1.
  got = caption_metrics({"a": ["dog"], "b": ["cat"]}, {"a": "dog", "b": "dog"}, meteor=False)
  assert got["cider"] == pytest.approx(1.25, rel=1e-12)
  assert got["bleu1"] == pytest.approx(0.5, rel=1e-8)


def test_cider_d_of_identical_captions_with_disjoint_words_is_ten():
  refs = {1: ["a brown dog runs fast"], 2: ["two cats sleep on beds today"]}
  got = caption_metrics(refs, {1: refs[1][0], 2: refs[2][0]}, meteor=False)
  assert got["cider"] == pytest.approx(10.0, rel=1e-12)


def numpy_cider_d(references, hypotheses, *, n_max=4, sigma=6.0):
  """CIDEr-D (Vedantam et al. 2015, eqs. 2-5 with the CIDEr-D clipping, length penalty and
  factor 10) on tokenised captions; idf from the references of the corpus."""
  def ngrams(words, n):
    return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))

  refs = {i: [c.split() for c in cs] for i, cs in references.items()}
  hyps = {i: hypotheses[i].split() for i in references}
  num_images = len(refs)
  scores = []
  for i in refs:
    per_order = []
    for n in range(1, n_max + 1):
      df = collections.Counter(g for cs in refs.values() for g in set().union(
          *(ngrams(c, n) for c in cs)))

      def tfidf(words):
        return {g: tf * math.log(num_images / max(1.0, df[g]))
                for g, tf in ngrams(words, n).items()}

      vh = tfidf(hyps[i])
      total = 0.0
      for ref in refs[i]:
        vr = tfidf(ref)
        norms = math.sqrt(sum(v * v for v in vh.values())) * math.sqrt(
            sum(v * v for v in vr.values()))
        dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items())
        penalty = math.exp(-(len(hyps[i]) - len(ref)) ** 2 / (2 * sigma ** 2))
        total += penalty * (dot / norms if norms else 0.0)
      per_order.append(total / len(refs[i]))
    scores.append(10 * np.mean(per_order))
  return float(np.mean(scores))


def test_cider_d_equals_a_numpy_transcription_of_the_formula():
  got = caption_metrics(REFERENCES, HYPOTHESES, meteor=False)
  tokenized_refs = {i: [ptb_tokenize(c) for c in cs] for i, cs in REFERENCES.items()}
  tokenized_hyps = {i: ptb_tokenize(c) for i, c in HYPOTHESES.items()}
  assert got["cider"] == pytest.approx(numpy_cider_d(tokenized_refs, tokenized_hyps),
                                       rel=1e-10)


def test_pretokenized_captions_with_tokenizer_none():
  refs = {i: [ptb_tokenize(c) for c in cs] for i, cs in REFERENCES.items()}
  hyps = {i: "  " + ptb_tokenize(c) + "\n" for i, c in HYPOTHESES.items()}
  assert (caption_metrics(refs, hyps, meteor=False, tokenizer="none")
          == caption_metrics(REFERENCES, HYPOTHESES, meteor=False))


@needs_java
def test_meteor_equals_the_toolkit_meteor():
  # pycocoevalcap.meteor.meteor.Meteor().compute_score on the tokenised captions gave
  # 0.40147107816240263 (recorded: the Java scorer takes ~15 s to start).
  got = caption_metrics(
      {1: ["A man riding a horse.", "A person on a horse!"],
       2: ["Two dogs play in the grass.", "Dogs playing"]},
      {1: "A man on a horse.", 2: "Two dogs in grass"}, meteor="auto")
  assert got["meteor"] == pytest.approx(0.40147107816240263, rel=1e-12)
  assert set(got) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}


def test_without_java_meteor_auto_is_left_out_and_true_is_an_error(monkeypatch):
  monkeypatch.setattr(captions.shutil, "which", lambda name: None)
  got = caption_metrics(REFERENCES, HYPOTHESES, meteor="auto")
  assert set(got) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
  with pytest.raises(ValueError, match="meteor=True needs Java"):
    caption_metrics(REFERENCES, HYPOTHESES, meteor=True)
  with pytest.raises(ValueError, match="tokenizer='ptb' needs Java"):
    caption_metrics(REFERENCES, HYPOTHESES, meteor=False, tokenizer="ptb")


@pytest.mark.parametrize("references,hypotheses,match", [
    ({1: ["a"], 2: ["b"]}, {1: "a", 3: "c"},
     r"same image ids; ids only in references: \[2\], ids only in hypotheses: \[3\]"),
    ({}, {}, "hypotheses must hold at least one caption"),
    ({1: ["a"]}, {1: ["a"]}, r"hypotheses\[1\] must be a str, got list"),
    ({1: ["a"]}, {1: None}, r"hypotheses\[1\] must be a str, got NoneType"),
    ({1: "a dog"}, {1: "a"}, r"references\[1\] must be a non-empty list of str"),
    ({1: []}, {1: "a"}, r"references\[1\] must be a non-empty list of str"),
    ({1: ["a", 2]}, {1: "a"}, r"references\[1\] must hold only str, got int"),
    ([["a"]], {1: "a"}, "references must be a mapping"),
    ({1: ["..."]}, {1: "a"}, "references must hold at least one word"),
])
def test_caption_errors_name_the_argument(references, hypotheses, match):
  with pytest.raises(ValueError, match=match):
    caption_metrics(references, hypotheses, meteor=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"meteor": "yes"}, "meteor must be True, False or 'auto'"),
    ({"meteor": 1}, "meteor must be True, False or 'auto'"),
    ({"meteor": False, "tokenizer": "nltk"}, "tokenizer must be one of"),
])
def test_option_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    caption_metrics(REFERENCES, HYPOTHESES, **kwargs)


def test_ptb_tokenize_rejects_non_strings():
  with pytest.raises(ValueError, match="caption must be a str, got bytes"):
    ptb_tokenize(b"a dog")
