"""Translation corpora: the synthetic grammar re-derived from its parsed source, the builder's
determinism, the IWSLT14 reader on a tiny fixture, a TFDS dataset under mock_data, encoding."""

import collections
import pathlib

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vislang_jax.data import translation
from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.translation import (
    EncodedPairs, SyntheticTranslationConfig, build_encoded_translation,
    build_synthetic_translation_dataset, read_iwslt14, reference_ids, sample_pair)
from vislang_jax.data.vocabulary import Vocabulary

TINY = dict(train_size=40, validation_size=8, test_size=8)

# The target rules as the module docstring states them, written out here independently.
CASE_SUFFIX = {("subject", False): "a", ("subject", True): "an",
               ("object", False): "u", ("object", True): "un"}
NUMBER_SUFFIX = {False: "i", True: "e"}
AGREEMENT = {False: "it", True: "et"}
THE = {False: "ta", True: "te"}


class _Parser:
  """Recursive descent over the source words (greedy: "that" attaches to the nearest noun)."""

  def __init__(self, words):
    self.words, self.at = words, 0
    self.relatives = collections.Counter()  # depth -> relative clauses

  def peek(self):
    return self.words[self.at] if self.at < len(self.words) else None

  def take(self, kind, members):
    word = self.peek()
    assert word in members, f"expected a {kind} at word {self.at}, got {word!r}: {self.words}"
    self.at += 1
    return word

  def noun_phrase(self, role, depth):
    """Parses DET ADJ* NOUN [that VERB NP]; returns the rules' target words and the number."""
    determiner = self.take("determiner", translation.DETERMINERS)
    adjectives = []
    while self.peek() in translation.ADJECTIVES:
      adjectives.append(self.take("adjective", translation.ADJECTIVES))
    assert len(adjectives) <= 2 and len(set(adjectives)) == len(adjectives)
    word = self.take("noun", set(translation.NOUNS) | {n + "s" for n in translation.NOUNS})
    plural = word not in translation.NOUNS
    forms = translation.DETERMINERS[determiner]
    assert plural in forms, f"{determiner!r} with a {'plural' if plural else 'singular'} noun"
    det = THE[plural] if determiner == "the" else forms[plural]
    out = []
    if self.peek() == "that":
      assert role == "object" and depth < 2, "relative clauses only on objects, 2 deep"
      self.relatives[depth] += 1
      self.take("relative pronoun", {"that"})
      verb = self.take("verb", translation.VERBS)
      # Head-final: the relative clause (object, verb agreeing with the head, "sto") first.
      out += self.noun_phrase("object", depth + 1)[0] + [
          translation.VERBS[verb] + AGREEMENT[plural], "sto"]
    stem = translation.NOUNS[word[:-1] if plural else word]
    return out + [stem + CASE_SUFFIX[role, plural]] + [
        translation.ADJECTIVES[a] + NUMBER_SUFFIX[plural] for a in adjectives] + [det], plural

  def sentence(self):
    target, clauses = [], 0
    while True:
      subject, subject_plural = self.noun_phrase("subject", 0)
      verb = self.take("verb", translation.VERBS)
      obj, _ = self.noun_phrase("object", 0)
      target += subject + obj + [translation.VERBS[verb] + AGREEMENT[subject_plural]]
      clauses += 1
      if self.peek() is None:
        return target, clauses
      target.append(translation.CONJUNCTIONS[self.take("conjunction", translation.CONJUNCTIONS)])


def _pairs(seed, count, **kwargs):
  options = dict(max_clauses=6, max_words=60) | kwargs
  return [sample_pair(np.random.default_rng([seed, 0, i]), **options) for i in range(count)]


def test_docstring_example():
  assert sample_pair(np.random.default_rng([0, 2, 147]), max_clauses=6, max_words=60) == (
      "the green camels knew every boy that heard the farmer",
      "velbudan zelene te seljaku ta chulit sto dechaku svak znalet", 1)


def test_target_is_the_rules_applied_to_the_parsed_source():
  relatives = collections.Counter()
  for source, target, num_clauses in _pairs(3, 400):
    parser = _Parser(source.split())
    expected, clauses = parser.sentence()
    assert target.split() == expected, source
    assert clauses == num_clauses
    relatives += parser.relatives
  # Every branch of the grammar occurs: relative clauses, nested ones.
  assert relatives[0] > 300 and relatives[1] > 100, relatives


def test_target_side_invariants():
  """Read off the target alone: verb-final clauses, case by role, agreement with the subject."""
  verb_forms = {stem + AGREEMENT[p]: p for stem in translation.VERBS.values() for p in AGREEMENT}
  noun_forms = {stem + CASE_SUFFIX[r, p]: (r, p) for stem in translation.NOUNS.values()
                for r, p in CASE_SUFFIX}
  conjunctions = set(translation.CONJUNCTIONS.values())
  for _, target, num_clauses in _pairs(4, 200):
    words = target.split()
    cuts = [-1] + [i for i, w in enumerate(words) if w in conjunctions] + [len(words)]
    assert len(cuts) - 1 == num_clauses
    for start, end in zip(cuts, cuts[1:]):
      clause = words[start + 1:end]
      assert clause[-1] in verb_forms  # Verb-final.
      nouns = [noun_forms[w] for w in clause if w in noun_forms]
      subjects = [p for role, p in nouns if role == "subject"]
      assert len(subjects) == 1 and nouns[0][0] == "subject"  # One nominative, first.
      assert verb_forms[clause[-1]] == subjects[0]  # Agreement with the subject's number.
      for i, w in enumerate(clause):
        if w == "sto":  # A relative clause's verb just before "sto" agrees with the next noun.
          assert verb_forms[clause[i - 1]] == noun_forms[clause[i + 1]][1]


def test_lexicon_forms_are_distinct_and_few():
  source = (set(translation.NOUNS) | {n + "s" for n in translation.NOUNS}
            | set(translation.ADJECTIVES) | set(translation.VERBS) | set(translation.DETERMINERS)
            | set(translation.CONJUNCTIONS) | {"that"})
  target = ([s + x for s in translation.NOUNS.values() for x in CASE_SUFFIX.values()]
            + [s + x for s in translation.ADJECTIVES.values() for x in NUMBER_SUFFIX.values()]
            + [s + x for s in translation.VERBS.values() for x in AGREEMENT.values()]
            + [f for forms in translation.DETERMINERS.values() for f in forms.values()]
            + list(translation.CONJUNCTIONS.values()) + ["sto"])
  assert len(source) == 40 * 2 + 20 + 24 + 9 + 4 + 1 == 138
  assert len(target) == len(set(target)) == 40 * 4 + 20 * 2 + 24 * 2 + 10 + 4 + 1 == 263


def test_length_distribution_reaches_50_words():
  lengths = np.array([len(s.split()) for s, t, _ in _pairs(0, 1500)])
  assert lengths.max() <= 60 and lengths.min() <= 7
  # Broad: every 10-word bucket from 1 to 60 holds at least 5% of the sentences.
  counts = np.histogram(lengths, bins=[1, 11, 21, 31, 41, 51, 61])[0]
  assert (counts >= 0.05 * len(lengths)).all(), counts
  assert all(len(s.split()) <= 12 for s, _, _ in _pairs(0, 50, max_clauses=2, max_words=12))
  # Only clause counts that fit are drawn: 11 words hold 2 clauses of 5 and a conjunction.
  short = _pairs(0, 100, max_clauses=50, max_words=11)
  assert {c for _, _, c in short} == {1, 2} and max(len(s.split()) for s, _, _ in short) <= 11


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("synthetic")
  return data_dir, build_synthetic_translation_dataset(data_dir=data_dir, seed=5, **TINY)


def _texts(source):
  return [(source[i]["source"], source[i]["target"]) for i in range(len(source))]


def test_builder_records_follow_the_seed_rule(synthetic):
  _, data = synthetic
  assert {k: len(v) for k, v in data.items()} == {"train": 40, "validation": 8, "test": 8}
  for split, split_id in (("train", 0), ("validation", 1), ("test", 2)):
    for i in range(len(data[split])):
      record = data[split][i]
      source, target, clauses = sample_pair(np.random.default_rng([5, split_id, i]),
                                            max_clauses=6, max_words=60)
      assert (record["source"].decode(), record["target"].decode()) == (source, target)
      assert record["num_clauses"] == clauses and record["num_words"] == len(source.split())


def test_builder_is_deterministic_and_seeded(synthetic, tmp_path):
  data_dir, data = synthetic
  again = build_synthetic_translation_dataset(data_dir=tmp_path / "a", seed=5, **TINY)
  other = build_synthetic_translation_dataset(data_dir=tmp_path / "b", seed=6, **TINY)
  for split in data:
    assert _texts(again[split]) == _texts(data[split])
    assert not set(_texts(other[split])) & set(_texts(data[split]))
  name = SyntheticTranslationConfig.make(seed=5, **TINY).name
  assert name == "seed5-train40-validation8-test8-clauses6-words60"
  first = sorted((data_dir / "synthetic_translation" / name).rglob("*.array_record*"))
  second = sorted((tmp_path / "a" / "synthetic_translation" / name).rglob("*.array_record*"))
  assert len(first) == 3 and [f.read_bytes() for f in first] == [f.read_bytes() for f in second]
  # Prepared once: a second call reuses the files.
  before = {f: f.stat().st_mtime_ns for f in first}
  build_synthetic_translation_dataset(data_dir=data_dir, seed=5, **TINY)
  assert {f: f.stat().st_mtime_ns for f in first} == before


@pytest.mark.parametrize("kwargs, argument", [
    (dict(seed=-1), "seed"), (dict(train_size=0), "train_size"), (dict(test_size=1.5), "test_size"),
    (dict(max_clauses=0), "max_clauses"), (dict(max_words=4), "max_words")])
def test_bad_builder_parameters(kwargs, argument):
  with pytest.raises(ValueError, match=argument):
    SyntheticTranslationConfig.make(**kwargs)


def test_encoded_synthetic_is_deterministic(synthetic):
  data_dir, _ = synthetic
  kwargs = dict(corpus="synthetic", data_dir=data_dir, max_len=61, **TINY)
  first, source_vocab, target_vocab = build_encoded_translation(seed=5, **kwargs)
  again, _, _ = build_encoded_translation(seed=5, **kwargs)
  other, _, _ = build_encoded_translation(seed=6, **kwargs)
  for split in first:
    np.testing.assert_array_equal(first[split].source, again[split].source)
    np.testing.assert_array_equal(first[split].target, again[split].target)
    assert repr(first[split]) == repr(again[split])
  assert first["train"].source_texts != other["train"].source_texts
  # The source and target of a synthetic pair have the same number of words.
  np.testing.assert_array_equal(first["test"].source_length, first["test"].target_length)
  assert len(source_vocab.words) <= 138 and len(target_vocab.words) <= 263


# IWSLT14: a tiny fixture in prepare-iwslt14.sh's layout.
IWSLT = {
    "train": (["ein kleiner hund .", "der hund sieht die katze .", "", "eine katze schläft ."],
              ["a small dog .", "the dog sees the cat .", "", "a cat sleeps ."]),
    "valid": (["der kleine hund ."], ["the small dog ."]),
    "test": (["die katze sieht einen vogel .", "hund !"], ["the cat sees a bird .", "dog !"]),
}


def _write_iwslt(folder, files=IWSLT):
  folder.mkdir(parents=True, exist_ok=True)
  for stem, (de, en) in files.items():
    (folder / f"{stem}.de").write_text("".join(line + "\n" for line in de), encoding="utf-8")
    (folder / f"{stem}.en").write_text("".join(line + "\n" for line in en), encoding="utf-8")
  return folder


def test_read_iwslt14(tmp_path):
  pairs = read_iwslt14(_write_iwslt(tmp_path / "iwslt"))
  assert set(pairs) == {"train", "validation", "test"}
  assert [pairs["train"][i] for i in range(len(pairs["train"]))] == [
      {"source": de, "target": en} for de, en in zip(*IWSLT["train"])]
  assert pairs["validation"][0] == {"source": "der kleine hund .", "target": "the small dog ."}
  reverse = read_iwslt14(tmp_path / "iwslt", source_lang="en", target_lang="de")
  assert reverse["test"][1] == {"source": "dog !", "target": "hund !"}


def test_iwslt14_errors(tmp_path):
  with pytest.raises(ValueError, match=r"iwslt_dir must be an existing folder.*nowhere"):
    read_iwslt14(tmp_path / "nowhere")
  folder = _write_iwslt(tmp_path / "iwslt")
  (folder / "valid.en").unlink()
  (folder / "test.de").unlink()
  with pytest.raises(ValueError, match=r"got none of \['test\.de', 'valid\.en'\]"):
    read_iwslt14(folder)
  uneven = dict(IWSLT, valid=(["eins", "zwei"], ["one"]))
  with pytest.raises(ValueError, match=r"valid\.de and valid\.en .* got 2 and 1"):
    read_iwslt14(_write_iwslt(tmp_path / "uneven", uneven))
  empty = dict(IWSLT, test=([], []))
  with pytest.raises(ValueError, match=r"test\.de.*an empty file"):
    read_iwslt14(_write_iwslt(tmp_path / "empty", empty))
  with pytest.raises(ValueError, match="must differ"):
    read_iwslt14(folder, source_lang="de", target_lang="de")


def test_encoded_iwslt14(tmp_path):
  folder = _write_iwslt(tmp_path / "iwslt")
  data, de, en = build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder,
                                           max_len=7)
  # Vocabularies from the training pairs only: "vogel" / "bird" (test only) are unknown.
  assert de == Vocabulary.build(IWSLT["train"][0]) and en == Vocabulary.build(IWSLT["train"][1])
  record = data["test"][0]
  assert set(record) == {"source", "source_length", "target", "target_length", "index"}
  assert record["source"].dtype == np.int32 and record["source"].shape == (7,)
  ids, lengths = en.encode(["the cat sees a bird"], max_len=7)
  np.testing.assert_array_equal(record["target"], ids[0])
  assert record["target_length"] == lengths[0] == 6 and record["index"] == 0
  assert de.decode(record["source"][None])[0] == "die katze sieht <unk> <unk>"
  # The blank training pair is an empty sentence: just <eos>.
  assert data["train"][2]["source_length"] == 1
  # The size cap: the 3 most frequent English words.
  capped, _, en3 = build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder,
                                             max_len=7, vocab_size=3)
  assert en3.words == Vocabulary.build(IWSLT["train"][1]).words[:3] == ("a", "cat", "dog")
  assert en3.decode(capped["test"][0]["target"][None])[0] == "<unk> cat <unk> a <unk>"
  # Batches through the grain loader.
  batch = next(iter(make_loader(data["train"], batch_size=2, seed=0, shuffle=False,
                                num_epochs=1, drop_remainder=True)))
  assert batch["source"].shape == (2, 7) and batch["target_length"].tolist() == [4, 6]


def test_reference_ids(tmp_path):
  folder = _write_iwslt(tmp_path / "iwslt")
  data, _, en = build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder,
                                          max_len=4, train_too_long="truncate",
                                          eval_too_long="truncate")
  refs, ref_len = reference_ids(data["test"])
  # The whole target, not the truncated record: 5 words, no <eos>, "bird" unknown.
  assert refs.shape == (2, 1, 5) and ref_len.tolist() == [[5], [1]]
  expected = [[en.token_id(w) for w in "the cat sees a bird".split()], [en.token_id("dog"), 0, 0,
                                                                          0, 0]]
  np.testing.assert_array_equal(refs[:, 0], expected)
  assert refs[0, 0, 4] == 3  # <unk>
  assert data["test"][0]["target_length"] == 4  # Truncated: 3 words + <eos>.


def test_too_long_policies(tmp_path):
  folder = _write_iwslt(tmp_path / "iwslt")
  # max_len 6: "der hund sieht die katze" (5 words + <eos>) fits, nothing longer exists in
  # train; test pair 0 has 5 words, so max_len 5 rejects it.
  with pytest.raises(ValueError, match=r"max_len=5 is too short for 1 of the 2 pairs of "
                                       r"iwslt14/test .*pair 0, has 5 words"):
    build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder, max_len=5)
  data, _, _ = build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder,
                                         max_len=5, eval_too_long="filter")
  assert data["train"].num_filtered == 1 and len(data["train"]) == 3  # Filtered by default.
  assert data["train"].positions.tolist() == [0, 2, 3]
  assert data["test"].num_filtered == 1 and data["test"].target_texts == ["dog !"]
  assert data["test"][0]["index"] == 0
  with pytest.raises(ValueError, match="iwslt14/train"):
    build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder, max_len=5,
                              train_too_long="error", eval_too_long="filter")
  with pytest.raises(ValueError, match="must keep at least one pair"):
    EncodedPairs([{"source": "a b", "target": "c"}], data["train"].source_vocab,
                 data["train"].target_vocab, max_len=2, too_long="filter")


def test_tfds_dataset_under_mock_data(tmp_path):
  with tfds.testing.mock_data(num_examples=6):
    data, pt, en = build_encoded_translation(
        corpus="tfds", tfds_name="ted_hrlr_translate/pt_to_en", data_dir=tmp_path, max_len=40,
        vocab_size=20)
    raw = tfds.data_source("ted_hrlr_translate/pt_to_en", split="test")
    # Languages from the supervised keys (pt -> en); the vocabulary from the train split.
    assert data["test"].source_texts == [raw[i]["pt"] for i in range(len(raw))]
    assert data["test"].target_texts == [raw[i]["en"] for i in range(len(raw))]
    assert len(pt.words) <= 20 and {len(v) for v in data.values()} == {6}
    swapped, _, _ = build_encoded_translation(
        corpus="tfds", tfds_name="wmt14_translate/de-en", data_dir=tmp_path, max_len=40,
        source_lang="en", target_lang="de")
    assert swapped["train"].source_texts == [
        tfds.data_source("wmt14_translate/de-en", split="train")[i]["en"] for i in range(6)]
    with pytest.raises(ValueError, match=r"source_lang must be one of \('de', 'en'\), got 'fr'"):
      build_encoded_translation(corpus="tfds", tfds_name="wmt14_translate/de-en",
                                data_dir=tmp_path, max_len=40, source_lang="fr",
                                target_lang="en")
  with pytest.raises(ValueError, match="tfds_name must name a registered TFDS dataset"):
    build_encoded_translation(corpus="tfds", tfds_name="no_such_translation_xyz",
                              data_dir=tmp_path, max_len=40)


@pytest.mark.parametrize("kwargs, match", [
    (dict(corpus="europarl"), r"corpus must be one of \('synthetic', 'iwslt14', 'tfds'\), got "
                              r"'europarl'"),
    (dict(corpus="iwslt14"), "iwslt_dir must be the folder"),
    (dict(corpus="tfds"), "tfds_name must name"),
    (dict(corpus="synthetic", iwslt_dir="/x"), "iwslt_dir do not apply to corpus='synthetic'"),
    (dict(corpus="iwslt14", iwslt_dir="/x", train_size=5), "train_size do not apply"),
    (dict(corpus="synthetic", max_len=1), "max_len"),
    (dict(corpus="synthetic", eval_too_long="drop"), "eval_too_long"),
])
def test_entry_point_errors(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    build_encoded_translation(**(dict(data_dir=tmp_path, max_len=10) | kwargs))
  assert not list(pathlib.Path(tmp_path).iterdir())  # Nothing prepared.


def test_build_from_config(tmp_path):
  folder = _write_iwslt(tmp_path / "iwslt")
  data = ml_collections.ConfigDict(dict(
      corpus="iwslt14", dir=None, iwslt_dir=str(folder), max_len=7, vocab_size=3,
      train_size=100, max_clauses=2, batch_size=4))  # Synthetic sizes and others: ignored.
  pairs, _, en = translation.build_from_config(data, seed=0)
  direct, _, _ = build_encoded_translation(corpus="iwslt14", data_dir=None, iwslt_dir=folder,
                                           max_len=7, vocab_size=3)
  assert len(en.words) == 3 and repr(pairs["test"]) == repr(direct["test"])
  with pytest.raises(ValueError, match="data.max_len must be set"):
    translation.build_from_config({"corpus": "iwslt14", "iwslt_dir": str(folder)}, seed=0)
  with pytest.raises(ValueError, match=r"data.corpus must be one of .*got 'wmt'"):
    translation.build_from_config({"corpus": "wmt", "max_len": 5}, seed=0)


def test_encoded_pairs_errors():
  vocab = Vocabulary.build(["a b"])
  with pytest.raises(ValueError, match="pairs must hold at least one sentence pair"):
    EncodedPairs([], vocab, vocab, max_len=4)
  with pytest.raises(ValueError, match="target_vocab must be a Vocabulary"):
    EncodedPairs([{"source": "a", "target": "b"}], vocab, None, max_len=4)
  with pytest.raises(ValueError, match="too_long must be one of"):
    EncodedPairs([{"source": "a", "target": "b"}], vocab, vocab, max_len=4, too_long="drop")
  pairs = EncodedPairs([{"source": b"a b", "target": "b"}], vocab, vocab, max_len=4)
  assert pairs.source_texts == ["a b"]  # UTF-8 bytes (TFDS text) are decoded.
  with pytest.raises(IndexError):
    pairs[1]


def test_unprepared_tfds_dataset_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"tfds_name='ted_hrlr_translate/pt_to_en' must be prepared "
                                       r"as array_record"):
    translation.load_tfds_translation("ted_hrlr_translate/pt_to_en", data_dir=tmp_path)
