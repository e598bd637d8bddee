"""Encoded captions: record format, tokens, lengths, repr, batching; references; COCO loading.

Expectations come from the raw records (the caption's whitespace-separated words, the uint8
image / 255, the fields as stored), from geometric invariants of the resize (constant
images stay constant, a crop keeps out what lies outside the central square), and from
grain itself (a checkpointed iterator restores on a freshly built source).
"""

import importlib.util

import numpy as np
import pytest

from vislang_jax.data.captioned_digits import build_captioned_digits_dataset
from vislang_jax.data.captions import (
    CocoCaptions,
    EncodedCaptions,
    load_coco_captions,
    references,
    resize_square,
)
from vislang_jax.data.pipeline import make_loader
from vislang_jax.data.vocabulary import EOS_ID, PAD_ID, Vocabulary, tokenize

HAS_TF = importlib.util.find_spec("tensorflow") is not None
MAX_WORDS = 11  # "the digit three is on the left of the digit five"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("captioned")
  return build_captioned_digits_dataset(
      source="sklearn_digits", data_dir=str(data_dir), novel_size=1
  )


@pytest.fixture(scope="module")
def vocab(digits):
  train = digits["train"]
  return Vocabulary.build(train[i]["caption"].decode() for i in range(len(train)))


def _loader(source, *, batch_size, shuffle=False):
  return make_loader(
      source, batch_size=batch_size, seed=0, shuffle=shuffle, num_epochs=1, drop_remainder=False
  )


def test_record_format(digits, vocab):
  raw = digits["test"]
  encoded = EncodedCaptions(raw, vocab, max_len=16)
  assert len(encoded) == len(raw) == 297
  for i in (0, 1, 296):
    record, original = encoded[i], raw[i]
    assert set(record) == {"image", "tokens", "length", "index", "labels", "boxes", "num_digits"}
    assert record["image"].dtype == np.float32 and record["image"].shape == (60, 60, 1)
    np.testing.assert_allclose(record["image"] * 255, original["image"], atol=1e-4)
    assert record["tokens"].dtype == np.int32 and record["tokens"].shape == (16,)
    for key in ("length", "index", "num_digits"):
      assert record[key].dtype == np.int32 and record[key].shape == (), key
    assert int(record["index"]) == i and int(record["num_digits"]) == original["num_digits"]
    np.testing.assert_array_equal(record["labels"], original["labels"])
    np.testing.assert_array_equal(record["boxes"], original["boxes"])


def test_tokens_round_trip_and_lengths(digits, vocab):
  raw = digits["test"]
  encoded = EncodedCaptions(raw, vocab, max_len=MAX_WORDS + 3)
  for i in range(len(raw)):
    words = raw[i]["caption"].decode().split()
    record = encoded[i]
    tokens, length = record["tokens"], int(record["length"])
    assert length == len(words) + 1
    assert tokens[length - 1] == EOS_ID and np.all(tokens[length:] == PAD_ID)
    assert [vocab.tokens[t] for t in tokens[: length - 1]] == words
    assert vocab.decode(tokens[None], record["length"][None]) == [" ".join(words)]


def test_too_long_caption_names_max_len(digits, vocab):
  raw = digits["test"]
  long_index = next(i for i in range(len(raw)) if len(raw[i]["caption"].split()) == MAX_WORDS)
  EncodedCaptions(raw, vocab, max_len=MAX_WORDS + 1)[long_index]  # Just fits.
  short = EncodedCaptions(raw, vocab, max_len=MAX_WORDS)
  with pytest.raises(
      ValueError, match=rf"record {long_index} of .*max_len={MAX_WORDS} is too short"
  ):
    short[long_index]
  truncated = EncodedCaptions(raw, vocab, max_len=MAX_WORDS, truncate=True)[long_index]
  words = raw[long_index]["caption"].decode().split()
  assert int(truncated["length"]) == MAX_WORDS
  assert vocab.decode(truncated["tokens"][None]) == [" ".join(words[: MAX_WORDS - 1])]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_len=0), "max_len must be a positive int, got 0"),
        (dict(max_len=12.0), "max_len must be a positive int, got 12.0"),
        (dict(max_len=12, truncate=1), "truncate must be a bool"),
    ],
)
def test_bad_options(digits, vocab, kwargs, match):
  with pytest.raises(ValueError, match=match):
    EncodedCaptions(digits["test"], vocab, **kwargs)


def test_bad_source_or_vocabulary(digits, vocab):
  with pytest.raises(ValueError, match="vocabulary must be a Vocabulary, got dict"):
    EncodedCaptions(digits["test"], {"the": 4}, max_len=12)
  with pytest.raises(ValueError, match="source must be a random-access sequence"):
    EncodedCaptions(iter([]), vocab, max_len=12)


def test_repr_is_stable_and_names_every_parameter(tmp_path_factory, digits, vocab):
  again = build_captioned_digits_dataset(
      source="sklearn_digits", data_dir=str(tmp_path_factory.mktemp("again")), novel_size=1
  )
  text = repr(EncodedCaptions(digits["test"], vocab, max_len=12))
  assert text == repr(
      EncodedCaptions(again["test"], Vocabulary(words=vocab.words, counts=vocab.counts), max_len=12)
  )
  assert "0x" not in text and "split='test'" in text
  others = [
      EncodedCaptions(digits["test"], vocab, max_len=13),
      EncodedCaptions(digits["test"], vocab, max_len=12, truncate=True),
      EncodedCaptions(digits["validation"], vocab, max_len=12),
      EncodedCaptions(
          digits["test"], Vocabulary(words=vocab.words[::-1], counts=vocab.counts), max_len=12
      ),
  ]
  assert len({text} | {repr(o) for o in others}) == 1 + len(others)
  # In-memory records are summarised, not printed.
  assert repr(EncodedCaptions([digits["test"][0]] * 3, vocab, max_len=12)).startswith(
      "EncodedCaptions(source=<list of 3 records>,"
  )


def test_grain_iterator_restores_on_a_rebuilt_source(digits, vocab):
  # Grain checks repr(source) when an iterator's state is restored.
  iterator = iter(
      _loader(EncodedCaptions(digits["test"], vocab, max_len=12), batch_size=5, shuffle=True)
  )
  next(iterator)
  state = iterator.get_state()
  expected = next(iterator)
  restored = iter(
      _loader(EncodedCaptions(digits["test"], vocab, max_len=12), batch_size=5, shuffle=True)
  )
  restored.set_state(state)
  np.testing.assert_array_equal(next(restored)["index"], expected["index"])
  other = iter(
      _loader(EncodedCaptions(digits["test"], vocab, max_len=13), batch_size=5, shuffle=True)
  )
  with pytest.raises(ValueError, match="data source"):
    other.set_state(state)


def test_loader_batches(digits, vocab):
  source = EncodedCaptions(digits["test"], vocab, max_len=12)
  batches = list(_loader(source, batch_size=8))
  batch = batches[0]
  assert all(isinstance(v, np.ndarray) for v in batch.values())
  shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
  assert shapes == {
      "image": ((8, 60, 60, 1), np.float32),
      "tokens": ((8, 12), np.int32),
      "length": ((8,), np.int32),
      "index": ((8,), np.int32),
      "labels": ((8, 2), np.int32),
      "boxes": ((8, 2, 4), np.int32),
      "num_digits": ((8,), np.int32),
  }
  np.testing.assert_array_equal(
      np.concatenate([b["index"] for b in batches]), np.arange(len(source))
  )


def test_references_of_digits(digits, vocab):
  raw = digits["validation"]
  expected = {i: [raw[i]["caption"].decode()] for i in range(len(raw))}
  assert references(raw) == expected
  assert references(EncodedCaptions(raw, vocab, max_len=12)) == expected


# COCO: records as `tfds.data_source("coco_captions")` returns them (text as bytes).
COCO_TEXTS = [
    [b"A man riding a horse.", b"A person on a brown horse", b"Someone rides."],
    [b"Two dogs play in the snow.", b"Dogs, playing!"],
]


def _coco_records():
  rng = np.random.default_rng(0)
  shapes = [(30, 50, 3), (64, 48, 3)]
  return [
      {
          "image": rng.integers(0, 256, shape, dtype=np.uint8),
          "image/id": np.int64(1000 + n),
          "image/filename": f"COCO_val2014_{n:012d}.jpg".encode(),
          "captions": {
              "text": np.array(texts, dtype=object),
              "id": np.arange(len(texts), dtype=np.int64),
          },
      }
      for n, (shape, texts) in enumerate(zip(shapes, COCO_TEXTS))
  ]


def test_coco_records_pair_images_with_captions():
  records = _coco_records()
  coco = CocoCaptions(records, image_size=16, captions_per_image=3)
  assert len(coco) == 6
  captions = [coco[i]["caption"] for i in range(6)]
  # Image 1 has two captions: its third record wraps to the first.
  assert captions == COCO_TEXTS[0] + [COCO_TEXTS[1][0], COCO_TEXTS[1][1], COCO_TEXTS[1][0]]
  record = coco[4]
  assert record["image"].shape == (16, 16, 3) and record["image"].dtype == np.uint8
  assert record["image_id"].dtype == np.int32 and int(record["image_id"]) == 1001
  assert references(coco) == {i: [t.decode() for t in COCO_TEXTS[i // 3]] for i in range(6)}
  with pytest.raises(IndexError):
    coco[6]
  assert repr(coco) == (
      "CocoCaptions(source=<list of 2 records>, image_size=16, captions_per_image=3, center_crop=True)"
  )


def test_coco_encoded_records():
  coco = CocoCaptions(_coco_records(), image_size=8)
  vocab = Vocabulary.build(t.decode() for texts in COCO_TEXTS for t in texts)
  record = EncodedCaptions(coco, vocab, max_len=10)[1]
  assert set(record) == {"image", "tokens", "length", "index", "image_id"}
  assert record["image"].shape == (8, 8, 3) and record["image"].dtype == np.float32
  assert vocab.decode(record["tokens"][None]) == ["two dogs play in the snow"]
  assert int(record["length"]) == 7 and int(record["image_id"]) == 1001


def test_resize_square_crop_and_squeeze():
  # A 40x80 image, bright in its 10 leftmost columns: outside the central 40x40 square.
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, :10] = 255
  cropped = resize_square(image, size=20)
  assert cropped.shape == (20, 20, 3) and cropped.dtype == np.uint8
  assert cropped.max() == 0
  squeezed = resize_square(image, size=20, center_crop=False)
  # Squeezing 80 columns to 20 keeps the strip in the first 10 / 4 columns.
  assert squeezed[:, :2].min() > 200 and squeezed[:, 4:].max() < 30
  # A constant image stays constant at any size; grey becomes equal RGB channels.
  np.testing.assert_array_equal(
      resize_square(np.full((7, 5, 1), 77, np.uint8), size=13), np.full((13, 13, 3), 77)
  )
  grey = np.arange(30 * 30, dtype=np.uint8).reshape(30, 30)
  rgb = resize_square(grey, size=10)
  assert np.all(rgb == rgb[..., :1])


@pytest.mark.parametrize(
    "image, size, match",
    [
        (np.zeros((4, 4, 3), np.float32), 2, "image must be uint8"),
        (np.zeros((4, 4, 2), np.uint8), 2, r"image must be uint8 .*got uint8 \(4, 4, 2\)"),
        (np.zeros((4, 4, 3), np.uint8), 0, "size must be a positive int, got 0"),
    ],
)
def test_resize_square_errors(image, size, match):
  with pytest.raises(ValueError, match=match):
    resize_square(image, size=size)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(split="validation"),
            r"split must be one of \('train', 'val', 'test', 'restval'\).*got 'validation'",
        ),
        (dict(split="train+valid[:10]"), "split must be one of"),
        (dict(split="val", image_size=0), "image_size must be a positive int, got 0"),
        (
            dict(split="val", captions_per_image=0),
            "captions_per_image must be a positive int, got 0",
        ),
    ],
)
def test_load_coco_captions_checks_arguments(tmp_path, kwargs, match):
  options = dict(data_dir=tmp_path, image_size=8) | kwargs
  with pytest.raises(ValueError, match=match):
    load_coco_captions(**options)


@pytest.mark.skipif(
    HAS_TF, reason="TensorFlow is installed: the error for its absence cannot occur."
)
def test_load_coco_captions_without_tensorflow(tmp_path):
  with pytest.raises(ImportError, match=r"vislang_jax\[coco\]"):
    load_coco_captions(split="val", data_dir=tmp_path, image_size=8)


def test_load_coco_captions_from_mock_data(tmp_path):
  # TFDS's coco_captions builder names tf.int64 in its feature spec, so even mocked data needs TF.
  pytest.importorskip(
      "tensorflow", reason="the TFDS coco_captions builder needs TensorFlow (extra 'coco')"
  )
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    raw = tfds.data_source("coco_captions", split="train+restval", data_dir=str(tmp_path))
    coco = load_coco_captions(
        split="train+restval", data_dir=tmp_path, image_size=24, captions_per_image=2
    )
    assert len(coco) == 2 * len(raw) == 8
    refs = references(coco)
    texts = [[str(t) for t in raw[n]["captions"]["text"]] for n in range(len(raw))]
    assert refs == {i: texts[i // 2] for i in range(8)}
    for i in range(8):
      record = coco[i]
      assert record["image"].shape == (24, 24, 3) and record["image"].dtype == np.uint8
      assert record["caption"].decode() == texts[i // 2][(i % 2) % len(texts[i // 2])]
      assert int(record["image_id"]) == int(raw[i // 2]["image/id"])
      np.testing.assert_array_equal(record["image"], resize_square(raw[i // 2]["image"], size=24))
    vocab = Vocabulary.build(t for ts in texts for t in ts)
    max_len = max(len(tokenize(t)) for ts in texts for t in ts) + 1
    encoded = EncodedCaptions(coco, vocab, max_len=max_len)
    batch = next(iter(_loader(encoded, batch_size=8)))
  assert set(batch) == {"image", "tokens", "length", "index", "image_id"}
  assert batch["image"].shape == (8, 24, 24, 3) and batch["tokens"].shape == (8, max_len)
  decoded = vocab.decode(batch["tokens"], batch["length"])
  assert decoded == [" ".join(tokenize(coco[i]["caption"].decode())) for i in range(8)]
