"""Tests for vislang_jax.metrics.bleu against sacrebleu, the coco-caption BLEU and hand cases."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pycocoevalcap.bleu import bleu_scorer
from pycocoevalcap.bleu.bleu import Bleu

from vislang_jax.metrics import bleu

sacrebleu = pytest.importorskip("sacrebleu")


def random_batch(seed, *, batch=64, refs=4, hyp_max=9, ref_max=11, vocab=4):
  """Padded random token ids with random lengths (0 allowed) and a random reference mask.

  A small vocabulary makes n-gram matches up to order 4 and repeated n-grams common; the
  padding holds random tokens too, which must not count.
  """
  rng = np.random.default_rng(seed)
  hyp = rng.integers(0, vocab, (batch, hyp_max))
  hyp_len = rng.integers(0, hyp_max + 1, batch)
  ref = rng.integers(0, vocab, (batch, refs, ref_max))
  ref_len = rng.integers(0, ref_max + 1, (batch, refs))
  ref_mask = rng.random((batch, refs)) < 0.7
  ref_mask[:, 0] = True
  return hyp, hyp_len, ref, ref_len, ref_mask


def as_text(tokens, length):
  return " ".join(f"w{t}" for t in tokens[:length])


def texts(hyp, hyp_len, ref, ref_len, ref_mask):
  """Per example: the hypothesis string and the list of its unmasked reference strings."""
  out = []
  for b in range(hyp.shape[0]):
    refs = [as_text(ref[b, r], ref_len[b, r]) for r in range(ref.shape[1]) if ref_mask[b, r]]
    out.append((as_text(hyp[b], hyp_len[b]), refs))
  return out


@pytest.mark.parametrize("smoothing,smooth_value,effective_order,max_n", [
    ("exp", None, True, 4),  # sacrebleu.sentence_bleu's defaults
    ("exp", None, False, 4),
    ("floor", None, True, 4),
    ("floor", 0.3, False, 3),
    ("add-k", None, True, 4),
    ("add-k", 2.0, False, 2),
    ("none", None, True, 4),
    ("exp", None, True, 1),
])
def test_sentence_bleu_equals_sacrebleu(smoothing, smooth_value, effective_order, max_n):
  hyp, hyp_len, ref, ref_len, ref_mask = random_batch(max_n + len(smoothing))
  got = bleu.sentence_bleu(hyp, hyp_len, ref, ref_len, ref_mask=ref_mask, max_n=max_n,
                           smoothing=smoothing, smooth_value=smooth_value,
                           effective_order=effective_order)
  metric = sacrebleu.BLEU(tokenize="none", smooth_method=smoothing, smooth_value=smooth_value,
                          effective_order=effective_order, max_ngram_order=max_n)
  want = [metric.sentence_score(h, refs).score / 100
          for h, refs in texts(hyp, hyp_len, ref, ref_len, ref_mask)]
  assert got.shape == (hyp.shape[0],) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
  assert 0 < np.mean(np.asarray(got) > 0) < 1  # the random cases score both zero and not


def test_default_is_sacrebleu_sentence_bleu():
  hyp, hyp_len, ref, ref_len, ref_mask = random_batch(7)
  got = bleu.sentence_bleu(hyp, hyp_len, ref, ref_len, ref_mask=ref_mask)
  want = [sacrebleu.sentence_bleu(h, refs, tokenize="none").score / 100
          for h, refs in texts(hyp, hyp_len, ref, ref_len, ref_mask)]
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def test_statistics_equal_coco_caption_counts():
  hyp, hyp_len, ref, ref_len, ref_mask = random_batch(3, batch=40)
  stats = jax.tree.map(np.asarray,
                       bleu.bleu_statistics(hyp, hyp_len, ref, ref_len, ref_mask=ref_mask))
  for b, (h, refs) in enumerate(texts(hyp, hyp_len, ref, ref_len, ref_mask)):
    cooked = bleu_scorer.cook_test(h, bleu_scorer.cook_refs(refs), eff="closest")
    assert stats.matches[b].tolist() == cooked["correct"]
    assert stats.totals[b].tolist() == cooked["guess"]
    assert int(stats.hyp_len[b]) == cooked["testlen"]
    assert int(stats.ref_len[b]) == cooked["reflen"]


def test_summed_statistics_give_coco_caption_corpus_bleu():
  hyp, hyp_len, ref, ref_len, ref_mask = random_batch(5, batch=50, vocab=3)
  stats = jax.tree.map(lambda x: np.asarray(x, np.int64),
                       bleu.bleu_statistics(hyp, hyp_len, ref, ref_len, ref_mask=ref_mask))
  matches, totals = np.sum(stats.matches, 0), np.sum(stats.totals, 0)
  c, r = np.sum(stats.hyp_len), np.sum(stats.ref_len)
  assert np.all(matches > 0)
  # Papineni et al. 2002, section 2.3, on the corpus sums.
  ours = [np.exp(np.mean(np.log(matches[:n] / totals[:n])) + min(0.0, 1 - r / c))
          for n in range(1, 5)]
  pairs = texts(hyp, hyp_len, ref, ref_len, ref_mask)
  theirs, _ = Bleu(4).compute_score({b: refs for b, (_, refs) in enumerate(pairs)},
                                    {b: [h] for b, (h, _) in enumerate(pairs)}, verbose=0)
  np.testing.assert_allclose(ours, theirs, rtol=1e-8)


def score(hyp, refs, **kwargs):
  """sentence_bleu of one hypothesis (a list of ids) against a list of references."""
  width = max(len(r) for r in refs)
  padded = [r + [0] * (width - len(r)) for r in refs]
  return float(bleu.sentence_bleu(jnp.array([hyp]), jnp.array([len(hyp)]),
                                  jnp.array([padded]), jnp.array([[len(r) for r in refs]]),
                                  **kwargs)[0])


def test_identical_hypothesis_scores_one():
  assert score([5, 6, 7, 8, 9], [[5, 6, 7, 8, 9], [1, 2]]) == pytest.approx(1.0, abs=1e-6)


def test_no_overlap_scores_zero():
  assert score([1, 2, 3, 4], [[5, 6, 7, 8, 9]]) == 0.0


def test_brevity_penalty():
  # All n-grams match, so BLEU = BP = exp(1 - r / c) with r = 10, c = 6.
  assert score([1, 2, 3, 4, 5, 6], [list(range(1, 11))]) == pytest.approx(
      np.exp(1 - 10 / 6), rel=1e-6)


def test_closest_reference_length_prefers_the_shorter_on_a_tie():
  # c = 7 is 2 from both 5 and 9: r = 5 > no penalty (r = 9 would give exp(1 - 9/7)).
  assert score(list(range(1, 8)), [list(range(1, 6)), list(range(1, 10))]) == pytest.approx(
      1.0, abs=1e-6)


def test_clipped_unigram_precision_of_papineni_example():
  # Papineni et al. 2002, section 2.1: "the the the the the the the" against "The cat is on
  # the mat" / "There is a cat on the mat" has modified unigram precision 2/7.
  the, cat, is_, on, mat, a, there = range(1, 8)
  stats = bleu.bleu_statistics(
      jnp.full((1, 7), the), jnp.array([7]),
      jnp.array([[[the, cat, is_, on, the, mat, 0], [there, is_, a, cat, on, the, mat]]]),
      jnp.array([[6, 7]]))
  assert stats.matches[0, 0] == 2 and stats.totals[0, 0] == 7


def test_padding_and_masked_references_do_not_count():
  hyp, hyp_len, ref, ref_len, _ = random_batch(11, refs=3)
  mask = np.array([True, False, True])
  rng = np.random.default_rng(0)
  noisy_hyp = np.where(np.arange(hyp.shape[1]) < hyp_len[:, None], hyp,
                       rng.integers(0, 4, hyp.shape))
  noisy_ref = ref.copy()
  noisy_ref[:, 1] = rng.integers(0, 4, ref[:, 1].shape)
  noisy_ref_len = ref_len.copy()
  noisy_ref_len[:, 1] = rng.integers(0, ref.shape[2] + 1, ref.shape[0])
  got = bleu.sentence_bleu(noisy_hyp, hyp_len, noisy_ref, noisy_ref_len,
                           ref_mask=np.broadcast_to(mask, ref_len.shape))
  want = bleu.sentence_bleu(hyp, hyp_len, ref[:, mask], ref_len[:, mask])
  np.testing.assert_array_equal(got, want)


def test_jit_vmap_and_a_single_trace():
  hyp, hyp_len, ref, ref_len, ref_mask = random_batch(13, batch=8)
  samples = np.stack([np.roll(hyp, k, axis=1) for k in range(3)])  # [K, B, T]
  lengths = np.stack([hyp_len] * 3)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def rewards(samples, lengths, ref, ref_len, ref_mask):
    score_one = functools.partial(bleu.sentence_bleu, ref_mask=ref_mask, smoothing="floor")
    return jax.vmap(score_one, in_axes=(0, 0, None, None))(samples, lengths, ref, ref_len)

  got = rewards(samples, lengths, ref, ref_len, ref_mask)
  again = rewards(samples[::-1], lengths, ref, ref_len, ref_mask)
  for k in range(3):
    want = bleu.sentence_bleu(samples[k], hyp_len, ref, ref_len, ref_mask=ref_mask,
                              smoothing="floor")
    np.testing.assert_allclose(got[k], want, rtol=1e-6)
    np.testing.assert_allclose(again[2 - k], want, rtol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda h, hl, r, rl: bleu.sentence_bleu(h[0], hl, r, rl), r"hyp must be \[B, T\]"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r[:1], rl), r"refs must be \[B, R, S\]"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl[:1], r, rl), r"hyp_len must have shape"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl[:, :1]), r"ref_len must have shape"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h * 1.0, hl, r, rl), "hyp must hold integers"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl, ref_mask=rl), "ref_mask must be bool"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl, max_n=0), "max_n must be an int"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl, smoothing="add1"),
     "smoothing must be one of"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl, smooth_value=0.1),
     "smooth_value is only used"),
    (lambda h, hl, r, rl: bleu.sentence_bleu(h, hl, r, rl, smoothing="floor", smooth_value=0),
     "smooth_value must be a finite float > 0"),
])
def test_errors_name_the_argument(call, match):
  hyp, hyp_len, ref, ref_len, _ = random_batch(0, batch=2)
  with pytest.raises(ValueError, match=match):
    call(jnp.asarray(hyp), jnp.asarray(hyp_len), jnp.asarray(ref), jnp.asarray(ref_len))
