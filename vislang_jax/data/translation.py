"""Translation corpora as batchable records: a synthetic grammar, IWSLT14 de-en, TFDS datasets.

Three corpora give the same thing, `{"train", "validation", "test"}` -> sentence pairs:
  * "synthetic": `SyntheticTranslation`, an offline TFDS builder of an English-like SVO
    language translated into a verb-final language with case suffixes and agreement (the
    grammar below), deterministic from a seed;
  * "iwslt14": `read_iwslt14`, the text files of fairseq's `prepare-iwslt14.sh`
    (`{train,valid,test}.{de,en}`, one sentence per line) from a local folder;
  * "tfds": `load_tfds_translation`, any TFDS dataset of `Translation` features, e.g.
    `wmt14_translate/de-en` or `ted_hrlr_translate/pt_to_en`, through `tfds.data_source`.

`build_encoded_translation` turns one of them into `EncodedPairs` (records of padded word ids,
the word vocabularies built from the training split with a size cap) and `reference_ids`
gives the references for corpus BLEU.

The synthetic grammar
---------------------
Source (English-like, subject-verb-object). A sentence is 1..`max_clauses` clauses (uniform;
at most `(max_words + 1) // 6`, the most that fit) joined by conjunctions ("and", "but",
"while", "because", uniform):

  clause   := NP_subject VERB NP_object
  NP       := DET ADJ* NOUN [RELATIVE]     (RELATIVE only on objects)
  RELATIVE := "that" VERB NP_object        (its subject is the noun it follows)

  nouns: 40 (`NOUNS`), singular or plural (+"s") with probability 1/2 each; adjectives: 20
  (`ADJECTIVES`), 0, 1 or 2 per noun phrase with probabilities 1/2, 3/10, 1/5; verbs: 24
  (`VERBS`), in the past tense, so the source verb does not show the subject's number;
  determiners (`DETERMINERS`): "the" with either number, "a", "this", "every" with the
  singular ("a" also before a vowel), "some", "these", "many", "two", "three" with the
  plural, uniform among those of the noun's number; a relative clause on an object with
  probability 0.35, nested at most `_MAX_RELATIVE_DEPTH` = 2 deep. A sentence longer than
  `max_words` words is drawn again, so `max_words` bounds every sentence.

Target (verb-final, head-final relative clauses; every source word becomes exactly one
target word, so both sides have the same number of words):

  clause   := NP(nominative) NP(accusative) VERB+agreement(subject's number)
  NP(case) := [RELATIVE] NOUN+case.number ADJ+number* DET(number)
  RELATIVE := NP_object(accusative) VERB+agreement(head noun's number) "sto"

  the noun is the stem of `NOUNS` with a suffix of case and number (`NOUN_SUFFIXES`):
  nominative "a" / "an", accusative "u" / "un" (singular / plural); adjectives keep their
  source order after the noun, each agreeing in number ("i" / "e", `ADJECTIVE_SUFFIXES`);
  the determiner comes last in its number's form (`DETERMINERS`: "the" is "ta" / "te");
  the verb is its stem with "it" after a singular subject and "et" after a plural one
  (`VERB_SUFFIXES`); a relative clause comes before the noun it describes, its verb
  agreeing with that noun; conjunctions stay in place, translated (`CONJUNCTIONS`).

To translate, a model must move each verb past its object and the object's relative clauses
(up to 16 words), find the subject's number for the verb's agreement (the source verb does
not mark it), mark case by the noun's role, bring each noun phrase's noun to its front and
its determiner to its end, and each relative clause before its noun.
An example (seed 0, "test" example 147: `sample_pair(np.random.default_rng([0, 2, 147]),
max_clauses=6, max_words=60)`), one clause with a relative clause on the object:

  source: "the green camels knew every boy that heard the farmer"
  target: "velbudan zelene te seljaku ta chulit sto dechaku svak znalet"

"knew" moves 7 words to the end and agrees with the plural "camels" ("znal-et"); "heard"
agrees with the singular "boy" it describes ("chul-it"); "farmer" is accusative ("seljak-u").

(Records are drawn per example: example `index` of a split from
`np.random.default_rng([seed, split_id, index])`, as in `digit_builder`; a short sentence may
appear in two splits.)

Records and references
----------------------
`EncodedPairs` records (random access, batchable by `pipeline.make_loader` and
`pipeline.stack_records`):
  source: int32 `[S]`, S = `max_len`, the source words' ids then `<eos>`, `<pad>` after;
  source_length: int32, ids up to and including `<eos>`;
  target: int32 `[T]`, T = `max_len`, the same for the target sentence;
  target_length: int32;
  index: int32, the record's position (the key of `reference_ids` and the texts).
Words are read with `vocabulary.tokenize` (lowercase; punctuation dropped), so BLEU on a
real corpus is over words without punctuation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from vislang_jax.checks import check_choice, check_int
from vislang_jax.data.digit_builder import OfflineBuilder, prepare
from vislang_jax.data.text_corpus import as_text, read_lines
from vislang_jax.data.vocabulary import PAD_ID, Vocabulary, tokenize

SPLITS = ("train", "validation", "test")
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
CORPORA = ("synthetic", "iwslt14", "tfds")
TOO_LONG = ("error", "filter", "truncate")
# fairseq's prepare-iwslt14.sh names the validation split "valid".
IWSLT_FILES = {"train": "train", "validation": "valid", "test": "test"}
SYNTHETIC_DEFAULTS = {"train_size": 50_000, "validation_size": 1_000, "test_size": 1_000,
                      "max_clauses": 6, "max_words": 60}

# The synthetic lexicon: source word -> target stem (nouns, adjectives, verbs).
NOUNS = dict(pair.split(":") for pair in (
    "dog:hund cat:mis bird:ptak horse:konj cow:krav goat:kozel lion:lev tiger:tigr "
    "rabbit:zajak duck:utk frog:zhab snake:zmij owl:sov crow:vran monkey:majmun donkey:osel "
    "camel:velbud zebra:zebr parrot:papag spider:pauk turtle:kornjach whale:kit boy:dechak "
    "girl:devojk king:kral queen:kraljic farmer:seljak doctor:lekar teacher:uchitel "
    "student:dak baker:pekar sailor:mornar soldier:vojnik painter:slikar singer:pevach "
    "friend:prijatel neighbor:sused pilot:letach robot:robot dragon:zmaj").split())
ADJECTIVES = dict(pair.split(":") for pair in (
    "big:vel small:mal red:crven green:zelen old:star young:mlad happy:sretn sad:tuzhn "
    "angry:ljut brave:hrabr quiet:tih lazy:len clever:pamet hungry:gladn tall:visok "
    "tiny:sitn black:crn white:bel proud:ponos shy:stidljiv").split())
VERBS = dict(pair.split(":") for pair in (
    "saw:vid chased:jur liked:vol loved:ljub helped:pomag found:nashl followed:prat "
    "knew:znal fed:hran painted:mazal called:zov visited:posjet greeted:pozdrav pulled:vuk "
    "heard:chul met:sret kicked:udar bit:grizl held:drzh tickled:golic drew:crt "
    "remembered:pamt admired:divl ignored:ignor").split())
# Determiner -> {plural: target form}; a determiner allows the numbers it has forms for.
DETERMINERS = {
    "the": {False: "ta", True: "te"}, "a": {False: "en"}, "this": {False: "ov"},
    "every": {False: "svak"}, "some": {True: "nek"}, "these": {True: "ovi"},
    "many": {True: "mnog"}, "two": {True: "dva"}, "three": {True: "tri"},
}
CONJUNCTIONS = {"and": "i", "but": "ali", "while": "dok", "because": "jer"}
RELATIVE = ("that", "sto")
NOMINATIVE, ACCUSATIVE = "nominative", "accusative"
# (case, plural) -> suffix; plural -> suffix.
NOUN_SUFFIXES = {(NOMINATIVE, False): "a", (NOMINATIVE, True): "an",
                 (ACCUSATIVE, False): "u", (ACCUSATIVE, True): "un"}
ADJECTIVE_SUFFIXES = {False: "i", True: "e"}
VERB_SUFFIXES = {False: "it", True: "et"}

_ADJECTIVE_CDF = np.cumsum([0.5, 0.3, 0.2])[:-1]  # P(0, 1, 2 adjectives), cumulated
_RELATIVE_PROBABILITY = 0.35
_MAX_RELATIVE_DEPTH = 2
_NOUN_LIST, _ADJECTIVE_LIST, _VERB_LIST, _CONJUNCTION_LIST = (
    tuple(words) for words in (NOUNS, ADJECTIVES, VERBS, CONJUNCTIONS))
_SINGULAR_DETERMINERS, _PLURAL_DETERMINERS = (
    tuple(d for d, forms in DETERMINERS.items() if plural in forms) for plural in (False, True))


@dataclasses.dataclass(frozen=True)
class _NounPhrase:
  determiner: str
  adjectives: tuple[str, ...]
  noun: str
  plural: bool
  relative: _Relative | None


@dataclasses.dataclass(frozen=True)
class _Relative:
  verb: str
  obj: _NounPhrase


def _noun_phrase(rng: np.random.Generator, *, may_relate: bool, depth: int) -> _NounPhrase:
  plural = bool(rng.integers(2))
  determiners = _PLURAL_DETERMINERS if plural else _SINGULAR_DETERMINERS
  determiner = determiners[rng.integers(len(determiners))]
  count = int(np.searchsorted(_ADJECTIVE_CDF, rng.random(), side="right"))
  adjectives = tuple(_ADJECTIVE_LIST[j] for j in rng.permutation(len(_ADJECTIVE_LIST))[:count])
  noun = _NOUN_LIST[rng.integers(len(_NOUN_LIST))]
  relative = None
  if may_relate and depth < _MAX_RELATIVE_DEPTH and rng.random() < _RELATIVE_PROBABILITY:
    relative = _Relative(verb=_VERB_LIST[rng.integers(len(_VERB_LIST))],
                         obj=_noun_phrase(rng, may_relate=True, depth=depth + 1))
  return _NounPhrase(determiner, adjectives, noun, plural, relative)


def _source_np(phrase: _NounPhrase) -> list[str]:
  words = [phrase.determiner, *phrase.adjectives, phrase.noun + ("s" if phrase.plural else "")]
  if phrase.relative is not None:
    words += [RELATIVE[0], phrase.relative.verb, *_source_np(phrase.relative.obj)]
  return words


def _target_np(phrase: _NounPhrase, case: str) -> list[str]:
  words = []
  if phrase.relative is not None:
    words += [*_target_np(phrase.relative.obj, ACCUSATIVE),
              VERBS[phrase.relative.verb] + VERB_SUFFIXES[phrase.plural], RELATIVE[1]]
  words.append(NOUNS[phrase.noun] + NOUN_SUFFIXES[case, phrase.plural])
  words += [ADJECTIVES[a] + ADJECTIVE_SUFFIXES[phrase.plural] for a in phrase.adjectives]
  words.append(DETERMINERS[phrase.determiner][phrase.plural])
  return words


def sample_pair(rng: np.random.Generator, *, max_clauses: int, max_words: int
                ) -> tuple[str, str, int]:
  """One sentence of the synthetic grammar and its translation (module docstring).

  Args:
    rng: the generator every choice is drawn from.
    max_clauses: the number of clauses is uniform in [1, max_clauses], less the counts whose
      shortest sentence (5 words a clause, a conjunction between two) exceeds max_words.
    max_words: a longer sentence is drawn again (the same rng continues).

  Returns:
    `(source, target, num_clauses)`: space-separated words, both of the same length.

  Raises:
    ValueError: for max_clauses below 1 or max_words below 5 (the shortest clause).
  """
  check_int("max_clauses", max_clauses, low=1)
  check_int("max_words", max_words, low=5)
  max_clauses = min(max_clauses, (max_words + 1) // 6)
  while True:
    num_clauses = int(rng.integers(1, max_clauses + 1))
    source, target = [], []
    for k in range(num_clauses):
      if k:
        conjunction = _CONJUNCTION_LIST[rng.integers(len(_CONJUNCTION_LIST))]
        source.append(conjunction)
        target.append(CONJUNCTIONS[conjunction])
      subject = _noun_phrase(rng, may_relate=False, depth=0)
      verb = _VERB_LIST[rng.integers(len(_VERB_LIST))]
      obj = _noun_phrase(rng, may_relate=True, depth=0)
      source += [*_source_np(subject), verb, *_source_np(obj)]
      target += [*_target_np(subject, NOMINATIVE), *_target_np(obj, ACCUSATIVE),
                 VERBS[verb] + VERB_SUFFIXES[subject.plural]]
    if len(source) <= max_words:
      return " ".join(source), " ".join(target), num_clauses


@dataclasses.dataclass(kw_only=True)
class SyntheticTranslationConfig(tfds.core.BuilderConfig):
  """Every parameter of `SyntheticTranslation`; build with `SyntheticTranslationConfig.make`.

  Attributes:
    seed: base seed of every example's generator.
    train_size, validation_size, test_size: pairs per split.
    max_clauses, max_words: see `sample_pair`.
  """

  seed: int = 0
  train_size: int = SYNTHETIC_DEFAULTS["train_size"]
  validation_size: int = SYNTHETIC_DEFAULTS["validation_size"]
  test_size: int = SYNTHETIC_DEFAULTS["test_size"]
  max_clauses: int = SYNTHETIC_DEFAULTS["max_clauses"]
  max_words: int = SYNTHETIC_DEFAULTS["max_words"]

  @classmethod
  def make(cls, *, seed: int = 0, train_size: int = SYNTHETIC_DEFAULTS["train_size"],
           validation_size: int = SYNTHETIC_DEFAULTS["validation_size"],
           test_size: int = SYNTHETIC_DEFAULTS["test_size"],
           max_clauses: int = SYNTHETIC_DEFAULTS["max_clauses"],
           max_words: int = SYNTHETIC_DEFAULTS["max_words"]) -> SyntheticTranslationConfig:
    """Validates the parameters and names the config after all of them.

    Raises:
      ValueError: naming the argument, for any value out of range.
    """
    check_int("seed", seed, low=0)
    for name, value in (("train_size", train_size), ("validation_size", validation_size),
                        ("test_size", test_size), ("max_clauses", max_clauses)):
      check_int(name, value, low=1)
    check_int("max_words", max_words, low=5)
    return cls(
        name=(f"seed{seed}-train{train_size}-validation{validation_size}-test{test_size}"
              f"-clauses{max_clauses}-words{max_words}"),
        description=(f"Synthetic SVO -> verb-final translation, seed {seed}, up to "
                     f"{max_clauses} clauses and {max_words} words."),
        seed=int(seed), train_size=int(train_size), validation_size=int(validation_size),
        test_size=int(test_size), max_clauses=int(max_clauses), max_words=int(max_words))


class SyntheticTranslation(OfflineBuilder, skip_registration=True):
  """The synthetic translation corpus (module docstring), TFDS name `synthetic_translation`.

  Construct with a config: `SyntheticTranslation(config=SyntheticTranslationConfig.make(...),
  data_dir=..., file_format="array_record")`, or call `build_synthetic_translation_dataset`.
  Records:
    source, target: text (bytes when read back from a data source).
    num_clauses: int32, the clauses of the sentence.
    num_words: int32, the words of either side (the two are equal).
  """

  # Bump on any change to the generated data (lexicon, grammar, probabilities, splits).
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="An SVO language translated into a verb-final one with case and agreement.",
        features=tfds.features.FeaturesDict({
            "source": tfds.features.Text(),
            "target": tfds.features.Text(),
            "num_clauses": tfds.features.Tensor(shape=(), dtype=np.int32),
            "num_words": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=("source", "target"),
        disable_shuffling=True,  # Record i of a split is example i (loaders shuffle).
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    sizes = {"train": config.train_size, "validation": config.validation_size,
             "test": config.test_size}
    return {split: self._generate_examples(split, size) for split, size in sizes.items()}

  def _generate_examples(self, split: str, size: int):
    config = self.builder_config
    for index in range(size):
      rng = np.random.default_rng([config.seed, SPLIT_IDS[split], index])
      source, target, num_clauses = sample_pair(rng, max_clauses=config.max_clauses,
                                                max_words=config.max_words)
      yield index, {"source": source, "target": target, "num_clauses": np.int32(num_clauses),
                    "num_words": np.int32(len(source.split()))}


def build_synthetic_translation_dataset(
    *, data_dir: str | os.PathLike | None, seed: int = 0,
    train_size: int = SYNTHETIC_DEFAULTS["train_size"],
    validation_size: int = SYNTHETIC_DEFAULTS["validation_size"],
    test_size: int = SYNTHETIC_DEFAULTS["test_size"],
    max_clauses: int = SYNTHETIC_DEFAULTS["max_clauses"],
    max_words: int = SYNTHETIC_DEFAULTS["max_words"],
) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Prepares the synthetic corpus in `data_dir` (once) and returns its data sources.

  Args:
    data_dir: TFDS data dir (None: TFDS's default); the corpus lands in
      `data_dir/synthetic_translation/<config name>/<version>/`. A corpus already prepared
      there with the same parameters is reused.
    seed, train_size, validation_size, test_size, max_clauses, max_words: see
      `SyntheticTranslationConfig` and `sample_pair`.

  Returns:
    `{"train", "validation", "test"}` -> random-access source of `{"source": bytes,
    "target": bytes, "num_clauses": int32, "num_words": int32}` records.
  """
  config = SyntheticTranslationConfig.make(
      seed=seed, train_size=train_size, validation_size=validation_size, test_size=test_size,
      max_clauses=max_clauses, max_words=max_words)
  return prepare(SyntheticTranslation, config, data_dir=data_dir)


def read_records(source: Sequence, indices: Sequence[int] | None = None) -> list[Any]:
  """`[source[i] for i in indices]` (all records when None), batched where the source can.

  An array_record data source reads a batch of records (`__getitems__`) about 4x faster than
  one at a time (0.11 against 0.5 ms per synthetic record); sources without it, and those
  of `tfds.testing.mock_data` (whose `__getitems__` raises TypeError), are read one by one.
  """
  indices = list(range(len(source))) if indices is None else list(indices)
  if hasattr(source, "__getitems__"):
    try:
      return [record for start in range(0, len(indices), 8192)
              for record in source.__getitems__(indices[start:start + 8192])]
    except TypeError:
      pass
  return [source[i] for i in indices]


class TextPairs(Sequence):
  """Random-access `{"source": str, "target": str}` records from two aligned lists of lines."""

  def __init__(self, sources: Sequence[str], targets: Sequence[str], *, name: str):
    if len(sources) != len(targets):
      raise ValueError(f"{name}: sources and targets must have one line each per pair, got "
                       f"{len(sources)} and {len(targets)} lines.")
    self.sources, self.targets, self.name = list(sources), list(targets), name

  def __len__(self) -> int:
    return len(self.sources)

  def __getitem__(self, index: int) -> dict[str, str]:
    return {"source": self.sources[index], "target": self.targets[index]}

  def __repr__(self) -> str:
    return f"TextPairs({self.name}, {len(self)} pairs)"


def read_iwslt14(iwslt_dir: str | os.PathLike, *, source_lang: str = "de",
                 target_lang: str = "en") -> dict[str, TextPairs]:
  """IWSLT14 as fairseq's `prepare-iwslt14.sh` writes it: `{train,valid,test}.{de,en}`.

  The script writes the tokenized, lowercased words to `iwslt14.tokenized.de-en/tmp/` and
  the same after BPE to `iwslt14.tokenized.de-en/`; this reads words, so point `iwslt_dir`
  at the former (in BPE files `tokenize` would drop the "@@" continuation marks as
  punctuation). Line `i`
  of `X.de` and of `X.en` form a pair; blank lines are kept as empty sentences.

  Args:
    iwslt_dir: the folder of the six files.
    source_lang, target_lang: the files' suffixes ("de", "en": German to English).

  Returns:
    `{"train", "validation", "test"}` -> `TextPairs` ("validation" reads `valid.*`).

  Raises:
    ValueError: naming iwslt_dir, for a missing folder or files (all listed), files of one
      split with different line counts, or an empty file (naming it).
  """
  if not isinstance(iwslt_dir, (str, os.PathLike)) or not os.path.isdir(iwslt_dir):
    raise ValueError(f"iwslt_dir must be an existing folder of the IWSLT14 text files, got "
                     f"{iwslt_dir!r}.")
  if source_lang == target_lang:
    raise ValueError(f"source_lang and target_lang must differ, got {source_lang!r} twice.")
  iwslt_dir = os.fspath(iwslt_dir)
  paths = {(split, lang): os.path.join(iwslt_dir, f"{stem}.{lang}")
           for split, stem in IWSLT_FILES.items() for lang in (source_lang, target_lang)}
  missing = sorted(os.path.basename(p) for p in paths.values() if not os.path.isfile(p))
  if missing:
    raise ValueError(f"iwslt_dir={iwslt_dir!r} must hold the files {{train,valid,test}}."
                     f"{{{source_lang},{target_lang}}} (prepare-iwslt14.sh's layout), got none "
                     f"of {missing}.")
  result = {}
  for split, stem in IWSLT_FILES.items():
    sources = read_lines(paths[split, source_lang])
    targets = read_lines(paths[split, target_lang])
    if len(sources) != len(targets):
      raise ValueError(
          f"iwslt_dir={iwslt_dir!r}: {stem}.{source_lang} and {stem}.{target_lang} must have "
          f"the same number of lines (one sentence pair per line), got {len(sources)} and "
          f"{len(targets)}.")
    result[split] = TextPairs(sources, targets, name=f"{iwslt_dir}/{stem}")
  return result


class LanguagePairs(Sequence):
  """`{"source": str, "target": str}` records read from a TFDS `Translation` source."""

  def __init__(self, source: Sequence, *, source_lang: str, target_lang: str):
    self.source, self.source_lang, self.target_lang = source, source_lang, target_lang

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, str]:
    return self._pair(self.source[index])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, str]]:
    """Reads many records at once (`read_records`), the fast way for array_record."""
    return [self._pair(record) for record in read_records(self.source, indices)]

  def _pair(self, record: Mapping[str, Any]) -> dict[str, str]:
    return {"source": as_text(record[self.source_lang]),
            "target": as_text(record[self.target_lang])}

  def __repr__(self) -> str:
    return f"LanguagePairs({self.source!r}, {self.source_lang} -> {self.target_lang})"


def load_tfds_translation(
    tfds_name: str, *, data_dir: str | os.PathLike | None, source_lang: str | None = None,
    target_lang: str | None = None, download: bool = False) -> dict[str, LanguagePairs]:
  """The "train", "validation" and "test" splits of a TFDS translation dataset.

  Args:
    tfds_name: a dataset of `Translation` features with those three splits, e.g.
      "wmt14_translate/de-en" or "ted_hrlr_translate/pt_to_en".
    data_dir: TFDS data dir (None: TFDS's default).
    source_lang, target_lang: the languages to read; None takes the dataset's
      `supervised_keys` (e.g. ("pt", "en") for ted_hrlr_translate/pt_to_en).
    download: download and prepare the dataset when it is not in `data_dir` (WMT needs
      TensorFlow and several GiB); False reads prepared data only.

  Returns:
    `{"train", "validation", "test"}` -> `LanguagePairs`.

  Raises:
    ValueError: naming the argument, for an unknown dataset, one not prepared in `data_dir`
      (without download), languages it does not have, or no languages given for a dataset
      without supervised keys.
  """
  if not isinstance(tfds_name, str) or not tfds_name:
    raise ValueError(f"tfds_name must name a TFDS translation dataset, got {tfds_name!r}.")
  sources = {}
  for split in SPLITS:
    try:
      sources[split] = tfds.data_source(
          tfds_name, split=split, download=download,
          data_dir=None if data_dir is None else os.fspath(data_dir))
    except tfds.core.registered.DatasetNotFoundError as error:
      raise ValueError(f"tfds_name must name a registered TFDS dataset, got {tfds_name!r}.") \
          from error
    except NotImplementedError as error:  # TFDS's words when no array_record copy is there.
      raise ValueError(
          f"tfds_name={tfds_name!r} must be prepared as array_record in data_dir={data_dir!r} "
          f"(pass download=True, or run `tfds build {tfds_name} --data_dir=... "
          f"--file_format=array_record`); TFDS says: {error}") from error
  info = sources["train"].dataset_info
  if (source_lang is None) != (target_lang is None):
    raise ValueError(f"source_lang and target_lang must be given together, got "
                     f"{source_lang!r} and {target_lang!r}.")
  if source_lang is None:
    if not info.supervised_keys or len(info.supervised_keys) != 2:
      raise ValueError(f"source_lang and target_lang must be given: tfds_name={tfds_name!r} "
                       f"has no (source, target) supervised keys.")
    source_lang, target_lang = info.supervised_keys
  languages = tuple(info.features.keys())
  check_choice("source_lang", source_lang, languages)
  check_choice("target_lang", target_lang, languages)
  return {split: LanguagePairs(s, source_lang=source_lang, target_lang=target_lang)
          for split, s in sources.items()}


class EncodedPairs:
  """Sentence pairs encoded once into padded id arrays; random access to records.

  Args:
    pairs: random-access `{"source", "target"}` text records (str or UTF-8 bytes).
    source_vocab, target_vocab: the word vocabularies (`build_encoded_translation` builds
      them from the training split).
    max_len: S = T, ids per side, `<eos>` included.
    too_long: what a pair with more than `max_len - 1` words on either side does: "error"
      raises a ValueError naming `max_len`, the count and the longest pair; "filter" drops
      it (`num_filtered` counts them); "truncate" keeps its first `max_len - 1` words per
      side (`reference_ids` still gives the whole target).
    name: names the pairs in errors and `repr`, e.g. "synthetic/test".

  Attributes:
    source, target: int32 `[N, max_len]`; source_length, target_length: int32 `[N]`.
    source_texts, target_texts: the N kept pairs' texts.
    positions: int `[N]`, each record's position in `pairs` (they differ after "filter").
    num_filtered: pairs dropped by "filter".

  Records (`self[i]`): the module docstring's `{"source", "source_length", "target",
  "target_length", "index"}`.
  """

  def __init__(self, pairs: Sequence, source_vocab: Vocabulary, target_vocab: Vocabulary, *,
               max_len: int, too_long: str = "error", name: str = "pairs"):
    for arg, vocab in (("source_vocab", source_vocab), ("target_vocab", target_vocab)):
      if not isinstance(vocab, Vocabulary):
        raise ValueError(f"{arg} must be a Vocabulary, got {type(vocab).__name__}.")
    check_int("max_len", max_len, low=2)
    check_choice("too_long", too_long, TOO_LONG)
    texts = [(as_text(r["source"]), as_text(r["target"])) for r in read_records(pairs)]
    if not texts:
      raise ValueError(f"pairs must hold at least one sentence pair, got none in {name}.")
    words = [max(len(tokenize(s)), len(tokenize(t))) for s, t in texts]
    long = [i for i, n in enumerate(words) if n > max_len - 1]
    if long and too_long == "error":
      worst = max(long, key=lambda i: words[i])
      raise ValueError(
          f"max_len={max_len} is too short for {len(long)} of the {len(texts)} pairs of "
          f"{name} (more than max_len - 1 = {max_len - 1} words on a side); the longest, "
          f"pair {worst}, has {words[worst]} words + <eos>: {texts[worst]}. Raise max_len, "
          f"or filter or truncate these pairs (too_long='filter' / 'truncate').")
    keep = [i for i in range(len(texts)) if too_long != "filter" or words[i] <= max_len - 1]
    if not keep:
      raise ValueError(f"{name} must keep at least one pair, got all {len(texts)} longer than "
                       f"max_len - 1 = {max_len - 1} words.")
    self.positions = np.asarray(keep, np.int64)
    self.num_filtered = len(texts) - len(keep)
    self.source_texts = [texts[i][0] for i in keep]
    self.target_texts = [texts[i][1] for i in keep]
    self.source, self.source_length = source_vocab.encode(self.source_texts, max_len=max_len,
                                                          truncate=True)
    self.target, self.target_length = target_vocab.encode(self.target_texts, max_len=max_len,
                                                          truncate=True)
    self.source_vocab, self.target_vocab = source_vocab, target_vocab
    self.max_len, self.too_long, self.name = int(max_len), too_long, name
    digest = hashlib.sha256()
    for array in (self.source, self.target):
      digest.update(array.tobytes())
    self._digest = digest.hexdigest()[:16]

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < len(self):
      raise IndexError(f"index must be in [0, {len(self)}), got {index}.")
    return {"source": self.source[index], "source_length": self.source_length[index],
            "target": self.target[index], "target_length": self.target_length[index],
            "index": np.int32(index)}

  def __repr__(self) -> str:
    # Grain keeps this in checkpoints and compares it on restore: every parameter and a
    # digest of the ids, no memory address.
    return (f"EncodedPairs({self.name}, {len(self)} pairs, max_len={self.max_len}, "
            f"too_long={self.too_long!r}, vocabularies {len(self.source_vocab)} -> "
            f"{len(self.target_vocab)} ids, sha256 {self._digest})")


def reference_ids(pairs: EncodedPairs) -> tuple[np.ndarray, np.ndarray]:
  """Every record's whole target as word ids, for `metrics.bleu` (one reference each).

  Args:
    pairs: encoded pairs; the references are their `target_texts`, never truncated.

  Returns:
    `(refs, ref_len)`: refs int32 `[N, 1, R]`, the target words' ids without `<eos>`, padded
    with `<pad>` (R the longest target, at least 1); words outside the target vocabulary are
    `<unk>`, as a model would have to write them; ref_len int32 `[N, 1]`, the word counts.
    Compare hypotheses without their `<eos>` (a decoded length minus one).
  """
  tokens = [tokenize(t) for t in pairs.target_texts]
  width = max(1, max(len(t) for t in tokens))
  refs = np.full((len(tokens), 1, width), PAD_ID, np.int32)
  for n, words in enumerate(tokens):
    refs[n, 0, : len(words)] = [pairs.target_vocab.token_id(w) for w in words]
  return refs, np.asarray([[len(t)] for t in tokens], np.int32).reshape(len(tokens), 1)


def build_encoded_translation(
    *,
    corpus: str,
    data_dir: str | os.PathLike | None,
    max_len: int,
    vocab_size: int | None = None,
    min_count: int = 1,
    seed: int = 0,
    train_size: int | None = None,
    validation_size: int | None = None,
    test_size: int | None = None,
    max_clauses: int | None = None,
    max_words: int | None = None,
    iwslt_dir: str | os.PathLike | None = None,
    tfds_name: str | None = None,
    source_lang: str | None = None,
    target_lang: str | None = None,
    train_too_long: str = "filter",
    eval_too_long: str = "error",
) -> tuple[dict[str, EncodedPairs], Vocabulary, Vocabulary]:
  """A translation corpus ready to train on: the entry point of the experiments.

  Args:
    corpus: "synthetic", "iwslt14" or "tfds".
    data_dir: TFDS data dir of the synthetic corpus and of TFDS datasets.
    max_len: ids per side of a record, `<eos>` included.
    vocab_size: the most frequent words kept per language (specials not counted; None
      keeps all); the rest are `<unk>`.
    min_count: a rarer word is `<unk>` (as `Vocabulary.build`).
    seed: the synthetic corpus's seed.
    train_size, validation_size, test_size, max_clauses, max_words: the synthetic corpus
      (None: `SYNTHETIC_DEFAULTS`); only with corpus="synthetic".
    iwslt_dir: the folder of `read_iwslt14`; only with corpus="iwslt14".
    tfds_name: the dataset of `load_tfds_translation`; only with corpus="tfds".
    source_lang, target_lang: iwslt14: "de", "en" when None; tfds: the supervised keys.
    train_too_long: `EncodedPairs`' too_long for "train": "filter" by default, as in
      fairseq's cleaning step, with the count in `num_filtered`.
    eval_too_long: the same for "validation" and "test": "error" by default, so that a
      reported score is on the whole split unless asked otherwise.

  Returns:
    `({"train", "validation", "test"} -> EncodedPairs, source_vocab, target_vocab)`, the
    vocabularies built from the training pairs.

  Raises:
    ValueError: naming the argument, for an unknown corpus, an option of another corpus,
      a missing iwslt_dir or tfds_name, or data the readers or `EncodedPairs` reject.
  """
  check_choice("corpus", corpus, CORPORA)
  check_int("max_len", max_len, low=2)
  check_choice("train_too_long", train_too_long, TOO_LONG)
  check_choice("eval_too_long", eval_too_long, TOO_LONG)
  synthetic = {"train_size": train_size, "validation_size": validation_size,
               "test_size": test_size, "max_clauses": max_clauses, "max_words": max_words}
  given = {"iwslt_dir": iwslt_dir, "tfds_name": tfds_name, "source_lang": source_lang,
           "target_lang": target_lang} | synthetic
  allowed = {"synthetic": set(synthetic), "iwslt14": {"iwslt_dir", "source_lang", "target_lang"},
             "tfds": {"tfds_name", "source_lang", "target_lang"}}[corpus]
  foreign = {k: v for k, v in given.items() if v is not None and k not in allowed}
  if foreign:
    raise ValueError(f"{', '.join(foreign)} do not apply to corpus={corpus!r}, got {foreign}.")
  if corpus == "synthetic":
    raw = build_synthetic_translation_dataset(
        data_dir=data_dir, seed=seed,
        **{k: SYNTHETIC_DEFAULTS[k] if v is None else v for k, v in synthetic.items()})
  elif corpus == "iwslt14":
    if iwslt_dir is None:
      raise ValueError("iwslt_dir must be the folder of the IWSLT14 text files with "
                       "corpus='iwslt14', got None.")
    raw = read_iwslt14(iwslt_dir, source_lang=source_lang or "de",
                       target_lang=target_lang or "en")
  else:
    if tfds_name is None:
      raise ValueError("tfds_name must name a TFDS translation dataset with corpus='tfds', "
                       "got None.")
    raw = load_tfds_translation(tfds_name, data_dir=data_dir, source_lang=source_lang,
                                target_lang=target_lang)
  train = read_records(raw["train"])
  vocabs = [Vocabulary.build([as_text(r[key]) for r in train], min_count=min_count,
                             max_size=vocab_size) for key in ("source", "target")]
  name = {"synthetic": "synthetic", "iwslt14": "iwslt14", "tfds": tfds_name}[corpus]
  encoded = {
      split: EncodedPairs(train if split == "train" else raw[split], *vocabs, max_len=max_len,
                          too_long=train_too_long if split == "train" else eval_too_long,
                          name=f"{name}/{split}")
      for split in SPLITS
  }
  return encoded, vocabs[0], vocabs[1]



# The `config.data` fields `build_from_config` reads, each with its default when absent.
CONFIG_FIELDS = {
    "corpus": "synthetic", "dir": None, "max_len": None, "vocab_size": None, "min_count": 1,
    "train_too_long": "filter", "eval_too_long": "error",
    "train_size": None, "validation_size": None, "test_size": None, "max_clauses": None,
    "max_words": None, "iwslt_dir": None, "tfds_name": None, "source_lang": None,
    "target_lang": None,
}
_CORPUS_FIELDS = {
    "synthetic": ("train_size", "validation_size", "test_size", "max_clauses", "max_words"),
    "iwslt14": ("iwslt_dir", "source_lang", "target_lang"),
    "tfds": ("tfds_name", "source_lang", "target_lang"),
}


def build_from_config(data: Mapping[str, Any], *, seed: int
                      ) -> tuple[dict[str, EncodedPairs], Vocabulary, Vocabulary]:
  """`build_encoded_translation` from an experiment's `config.data` (`CONFIG_FIELDS`).

  `data.dir` is the data_dir; of the corpus-specific fields only the chosen corpus's are
  passed, so a config may keep, say, synthetic sizes while `--config.data.corpus=iwslt14`
  switches corpus. Other fields of `data` are ignored.

  Args:
    data: a ConfigDict or dict with "corpus" and "max_len" and any of `CONFIG_FIELDS`.
    seed: the synthetic corpus's seed (an experiment's `config.seed`).

  Raises:
    ValueError: as `build_encoded_translation`; naming "data.max_len" when it is missing.
  """
  fields = {k: data.get(k, default) for k, default in CONFIG_FIELDS.items()}
  if fields["max_len"] is None:
    raise ValueError("data.max_len must be set (ids per side, <eos> included), got None.")
  corpus = check_choice("data.corpus", fields["corpus"], CORPORA)
  chosen = {k: fields[k] for k in _CORPUS_FIELDS[corpus]}
  common = ("max_len", "vocab_size", "min_count", "train_too_long", "eval_too_long")
  return build_encoded_translation(corpus=corpus, data_dir=fields["dir"], seed=seed,
                                   **{k: fields[k] for k in common}, **chosen)
