"""Question answering examples: flattening order, encoding, variable counts, errors, repr, grain.

Expectations come from the fake per-image records themselves (their question words, the
answer's position in the answer list, the uint8 image / 255), written out independently of
the flattening code.
"""

import numpy as np
import pytest

from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.questions import (
    QuestionAnswers,
    answer_counts,
    check_answers_cover,
    encode_question_splits,
    question_counts,
    question_texts,
)
from vislang_jax.data.vocabulary import EOS_ID, PAD_ID, UNK_ID, Vocabulary

ANSWERS = ("no", "yes", "one", "two", "red", "blue")
TYPES = ("exists", "count", "color")


def _record(n, questions, answers, types, **extra):
  image = np.full((4, 5, 3), 10 * n, np.uint8)
  image[0, 0, 0] = n
  return {"image": image, "questions": [q.encode() for q in questions],
          "answers": [a.encode() for a in answers],
          "question_types": np.asarray(types, np.int32), **extra}


def _fixed(n_images=3):
  """Images of 3 questions each, with per-image fields and a per-question subtype."""
  return [
      _record(n, [f"is there a {'red' if n % 2 else 'blue'} square",
                  "how many squares are there", "what color is the big square"],
              ["yes" if n % 2 else "no", ("one", "two")[n % 2], ("red", "blue")[n % 2]],
              [0, 1, 2], labels=np.array([n, -1], np.int32), num_digits=n + 1,
              question_subtypes=np.array([n, 10 + n, 20 + n], np.int32), caption="dropped")
      for n in range(n_images)
  ]


def _variable():
  """Images of 2, 0 and 3 questions (as CLEVR's)."""
  return [
      _record(0, ["is there a cube", "how many cubes"], ["yes", "two"], [0, 1]),
      _record(1, [], [], []),
      _record(2, ["is there a ball", "what color is the ball", "how many balls"],
              ["no", "red", "one"], [0, 2, 1]),
  ]


@pytest.fixture(scope="module")
def vocab():
  return Vocabulary.build(question_texts(_fixed() + _variable()))


def test_flattening_order_and_fields(vocab):
  source = _fixed()
  qa = QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES)
  assert len(qa) == 9
  for i in range(9):
    n, q = i // 3, i % 3  # The contract: image i // Q, question i % Q.
    example, record = qa[i], source[n]
    assert set(example) == {"image", "question", "length", "answer", "question_type",
                            "image_index", "index", "labels", "num_digits", "question_subtype"}
    assert example["image"].dtype == np.float32 and example["image"].shape == (4, 5, 3)
    np.testing.assert_allclose(example["image"] * 255, record["image"], atol=1e-4)
    words = record["questions"][q].decode().split()
    length = int(example["length"])
    assert example["question"].dtype == np.int32 and example["question"].shape == (8,)
    assert length == len(words) + 1
    assert [vocab.tokens[t] for t in example["question"][: length - 1]] == words
    assert example["question"][length - 1] == EOS_ID and np.all(example["question"][length:] == 0)
    assert ANSWERS[int(example["answer"])] == record["answers"][q].decode()
    assert int(example["question_type"]) == q
    assert int(example["image_index"]) == n and int(example["index"]) == i
    for key in ("answer", "question_type", "image_index", "index", "length", "num_digits",
                "question_subtype"):
      assert example[key].dtype == np.int32 and example[key].shape == (), key
    assert int(example["question_subtype"]) == 10 * q + n
    np.testing.assert_array_equal(example["labels"], [n, -1])
    assert int(example["num_digits"]) == n + 1
  with pytest.raises(IndexError):
    qa[9]


def test_variable_question_counts(vocab):
  source = _variable()
  counts = question_counts(source)
  assert counts.tolist() == [2, 0, 3]
  qa = QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES,
                       question_counts=counts)
  assert len(qa) == 5
  expected = [(0, 0), (0, 1), (2, 0), (2, 1), (2, 2)]  # Image 1 has no question.
  assert [qa.locate(i) for i in range(5)] == expected
  for i, (n, q) in enumerate(expected):
    example = qa[i]
    assert int(example["image_index"]) == n and int(example["index"]) == i
    assert ANSWERS[int(example["answer"])] == source[n]["answers"][q].decode()
    assert vocab.decode(example["question"][None]) == [source[n]["questions"][q].decode()]
  # Without counts, Q is record 0's (2): record 1 (0 questions) is refused by name.
  fixed = QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES)
  assert len(fixed) == 6 and int(fixed[1]["answer"]) == ANSWERS.index("two")
  with pytest.raises(ValueError, match=r"record 1 .*must hold 2 questions.*question_counts=None"):
    fixed[2]
  with pytest.raises(ValueError, match="question_counts"):
    QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES,
                    question_counts=[2, 3])
  with pytest.raises(ValueError, match="question_counts"):
    QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES,
                    question_counts=[2, -1, 3])


def test_record_errors_name_the_record(vocab):
  source = _fixed()
  source[1]["questions"][2] = b"what color is the big square on the left"  # 9 words
  source[2]["answers"][1] = b"three"
  source[0]["question_types"] = np.array([0, 1, 7], np.int32)
  qa = QuestionAnswers(source, vocab, ANSWERS, max_len=9, question_types=TYPES)
  with pytest.raises(ValueError, match=r"record 1 .*question 2.*max_len=9"):
    qa[5]
  assert int(QuestionAnswers(source, vocab, ANSWERS, max_len=10,
                             question_types=TYPES)[5]["length"]) == 10
  with pytest.raises(ValueError, match=r"answers does not cover answer 'three' of record 2"):
    qa[7]
  with pytest.raises(ValueError, match=r"question_types has 3 entries.*question type 7 in record 0"):
    qa[2]
  qa[0], qa[1], qa[6], qa[8]  # The other records read.
  source[0]["image"] = source[0]["image"].astype(np.float32)
  with pytest.raises(ValueError, match="image must be uint8"):
    qa[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_len=0), "max_len"),
    (dict(answers=("yes", "yes")), "answers must be distinct"),
    (dict(answers="yes"), "answers"),
    (dict(answers=()), "answers"),
    (dict(question_types=()), "question_types"),
    (dict(vocabulary=["is"]), "vocabulary"),
    (dict(source="text"), "source"),
])
def test_bad_arguments(vocab, kwargs, match):
  arguments = dict(source=_fixed(), vocabulary=vocab, answers=ANSWERS, max_len=8,
                   question_types=TYPES) | kwargs
  source, vocabulary, answers = (arguments.pop(k) for k in ("source", "vocabulary", "answers"))
  with pytest.raises(ValueError, match=match):
    QuestionAnswers(source, vocabulary, answers, **arguments)


def test_repr_is_stable_and_names_every_parameter(vocab):
  qa = QuestionAnswers(_fixed(), vocab, ANSWERS, max_len=8, question_types=TYPES)
  again = QuestionAnswers(_fixed(), Vocabulary.build(question_texts(_fixed() + _variable())),
                          list(ANSWERS), max_len=8, question_types=list(TYPES))
  assert repr(qa) == repr(again)
  assert "0x" not in repr(qa)
  for part in ("<list of 3 records>", f"Vocabulary of {len(vocab)} ids", "<6 answers, sha256",
               "max_len=8", "question_types=('exists', 'count', 'color')",
               "question_counts=None"):
    assert part in repr(qa), part
  # Each parameter changes it.
  others = [
      QuestionAnswers(_fixed(), vocab, ANSWERS[::-1], max_len=8, question_types=TYPES),
      QuestionAnswers(_fixed(), Vocabulary.build(question_texts(_fixed())), ANSWERS, max_len=8,
                      question_types=TYPES),
      QuestionAnswers(_fixed(), vocab, ANSWERS, max_len=9, question_types=TYPES),
      QuestionAnswers(_fixed(), vocab, ANSWERS, max_len=8, question_types=TYPES[::-1]),
      QuestionAnswers(_fixed(), vocab, ANSWERS, max_len=8, question_types=TYPES,
                      question_counts=[3, 3, 3]),
  ]
  assert len({repr(qa)} | {repr(o) for o in others}) == 6
  assert "question_counts=<3 counts, 9 questions, sha256" in repr(others[-1])


def test_helpers(vocab):
  source = _fixed(4)
  assert question_texts(source)[:4] == ["is there a blue square", "how many squares are there",
                                        "what color is the big square", "is there a red square"]
  qa = QuestionAnswers(source, vocab, ANSWERS, max_len=8, question_types=TYPES)
  assert question_texts(qa) == question_texts(source)
  assert answer_counts(source) == {"no": 2, "yes": 2, "one": 2, "two": 2, "red": 2, "blue": 2}
  assert answer_counts(qa, question_type=0) == {"no": 2, "yes": 2}
  check_answers_cover(source, ANSWERS, split="train")
  with pytest.raises(ValueError, match=r"split 'novel'.*\['blue', 'red'\]"):
    check_answers_cover(source, ANSWERS[:4], split="novel")


def test_encode_question_splits(vocab):
  splits = {"train": _fixed(2), "test": _fixed(3), "clevr": _variable()}
  encoded, vocabulary = encode_question_splits(splits, answers=ANSWERS, question_types=TYPES)
  assert vocabulary == Vocabulary.build(question_texts(splits["train"]))
  assert {s: len(e) for s, e in encoded.items()} == {"train": 6, "test": 9, "clevr": 5}
  assert encoded["train"].max_len == 7  # "what color is the big square" + <eos>; "how many
  assert encoded["train"].question_counts is None  # squares are there" has 5 words.
  assert encoded["clevr"].question_counts.tolist() == [2, 0, 3]
  # Words the training questions lack are <unk>.
  assert UNK_ID in encoded["clevr"][0]["question"]
  splits["test"][2]["answers"][0] = b"three"
  with pytest.raises(ValueError, match=r"split 'test'.*\['three'\]"):
    encode_question_splits(splits, answers=ANSWERS, question_types=TYPES)
  with pytest.raises(ValueError, match="vocabulary_split"):
    encode_question_splits(splits, answers=ANSWERS, question_types=TYPES, vocabulary_split="val")


def test_batches_through_grain(vocab):
  qa = QuestionAnswers(_fixed(), vocab, ANSWERS, max_len=8, question_types=TYPES)
  loader = make_loader(qa, batch_size=4, seed=0, shuffle=True, num_epochs=1,
                       drop_remainder=False)
  batches = list(loader)
  assert [len(b["index"]) for b in batches] == [4, 4, 1]
  first = batches[0]
  assert first["image"].shape == (4, 4, 5, 3) and first["image"].dtype == np.float32
  assert first["question"].shape == (4, 8) and first["question"].dtype == np.int32
  for key in ("length", "answer", "question_type", "image_index", "question_subtype"):
    assert first[key].shape == (4,), key
  seen = np.concatenate([b["index"] for b in batches])
  assert sorted(seen.tolist()) == list(range(9))
  for b in batches:  # Each row is the example its index names.
    for row, i in enumerate(b["index"].tolist()):
      np.testing.assert_array_equal(b["question"][row], qa[i]["question"])
      assert b["answer"][row] == qa[i]["answer"] and b["image_index"][row] == i // 3
  assert not np.any(first["question"][:, 0] == PAD_ID)
