"""EncodedRegions: region records to padded arrays, boxes to (x0, y0, x1, y1)."""

import numpy as np
import pytest

from vislang_jax.data.regions import EncodedRegions, phrase_texts, region_references
from vislang_jax.data.vocabulary import EOS_ID, PAD_ID, Vocabulary


def _record(num_regions=2):
  return {
      "image": np.full((8, 10, 1), 255, np.uint8),
      "boxes": np.array([[1, 2, 5, 7], [0, 0, 8, 10], [-1, -1, -1, -1]], np.int32),
      "phrases": [b"a large seven", "a small three", ""],
      "num_regions": num_regions,
      "labels": np.array([7, 3, -1], np.int32),
  }


def test_encodes_regions_and_pads():
  source = [_record()]
  vocabulary = Vocabulary.build(phrase_texts(source))
  record = EncodedRegions(source, vocabulary, max_len=5)[0]
  np.testing.assert_array_equal(record["boxes"], [[2, 1, 7, 5], [0, 0, 10, 8], [0, 0, 0, 0]])
  np.testing.assert_array_equal(record["region_mask"], [True, True, False])
  np.testing.assert_array_equal(record["lengths"], [4, 4, 0])
  ids = [vocabulary.token_id(w) for w in ("a", "large", "seven")] + [EOS_ID, PAD_ID]
  np.testing.assert_array_equal(record["tokens"][0], ids)
  assert (record["tokens"][2] == PAD_ID).all()
  assert record["image"].dtype == np.float32 and record["image"].max() == 1.0
  np.testing.assert_array_equal(record["labels"], [7, 3, -1])
  assert int(record["index"]) == 0
  boxes, phrases = region_references(source)[0]
  np.testing.assert_array_equal(boxes, [[2, 1, 7, 5], [0, 0, 10, 8]])
  assert phrases == ["a large seven", "a small three"]


def test_errors_name_the_record():
  source = [_record(), _record(num_regions=0)]
  vocabulary = Vocabulary.build(["a large seven a small three"])
  encoded = EncodedRegions(source, vocabulary, max_len=5)
  with pytest.raises(ValueError, match=r"record 1 .*num_regions must be >= 1"):
    encoded[1]
  with pytest.raises(ValueError, match=r"record 0 .*max_len=3"):
    EncodedRegions(source, vocabulary, max_len=3)[0]
  with pytest.raises(ValueError, match="vocabulary must be a Vocabulary"):
    EncodedRegions(source, None, max_len=5)
