"""Tests for vislang_jax.data.novel_objects: held-out word filtering, Subset, COCO held-out splits.

Filtering is checked on hand-built records with hand-counted answers; COCO loading on
`tfds.testing.mock_data` records, against a regex tokenisation of their captions.
"""

import importlib.util
import re

import numpy as np
import pytest

from vislang_jax.data import novel_objects as no
from vislang_jax.data.captions import CocoCaptions

HAS_TF = importlib.util.find_spec("tensorflow") is not None

RECORDS = [
    {"caption": b"A horse in a field.", "references": (b"A horse in a field.",
                                                      b"Two zebras graze near a horse.")},
    {"caption": "a red double decker bus"},
    {"caption": "a busy street with buses"},
    {"caption": "a pizzeria sign", "references": ["a pizzeria sign", "the sofa's cushions"]},
    {"caption": "Zebra, zebra!", "references": ["a dog runs"]},
    {"caption": "people walking"},
]
# Hand counts with DCC's words: 0 (zebras, in a reference only), 1 (bus), 2 (buses), 3 (sofa:
# "sofa's" splits into "sofa" and "s"; "pizzeria" is not "pizza"); 4 is judged by its
# references alone (a dog), so it does not mention zebra; 5 mentions nothing.
MENTIONING = [0, 1, 2, 3]


def test_held_out_variants():
  assert no.held_out_variants(["Zebra", ("bus", "buses")]) == {"zebra": ("zebra",),
                                                                "bus": ("bus", "buses")}
  assert no.held_out_variants({"couch": ["sofa", "couch"]}) == {"couch": ("couch", "sofa")}
  variants = no.held_out_variants(no.DCC_COCO_HELD_OUT)
  assert variants == no.DCC_COCO_HELD_OUT and len(variants) == 8
  assert no.held_out_variants(variants) == variants
  for bad in ([], "zebra", {}, [""], [("bus", 3)], [()], 7):
    with pytest.raises(ValueError, match="words must"):
      no.held_out_variants(bad)
  with pytest.raises(ValueError, match="held_out must hold non-empty strings"):
    no.load_coco_held_out(data_dir="/nonexistent", image_size=8, held_out=["zebra", ""])
  with pytest.raises(ValueError, match="captions_per_image must"):
    no.load_coco_held_out(data_dir="/nonexistent", image_size=8, captions_per_image=0)


def test_mentions_any_by_hand():
  got = [no.mentions_any(r, no.DCC_COCO_HELD_OUT) for r in RECORDS]
  assert got == [i in MENTIONING for i in range(len(RECORDS))]
  # Only the listed forms count: "zebra" alone misses "zebras".
  assert not no.mentions_any(RECORDS[0], ["zebra"])
  assert no.mentions_any(RECORDS[0], [("zebra", "zebras")])
  assert no.mentions_any({"caption": "Zebra, zebra!"}, ["zebra"])
  with pytest.raises(ValueError, match="record must be a mapping with 'references' or"):
    no.mentions_any({"image": 0}, ["zebra"])


def test_without_and_with_words_partition_in_order():
  paired = no.without_words(RECORDS, no.DCC_COCO_HELD_OUT)
  novel = no.with_words(RECORDS, no.DCC_COCO_HELD_OUT)
  assert paired.indices.tolist() == [4, 5] and novel.indices.tolist() == MENTIONING
  assert [paired[i] for i in range(len(paired))] == [RECORDS[4], RECORDS[5]]
  assert novel[2] is RECORDS[2]
  # One word only: bus without its plural keeps record 2.
  assert no.without_words(RECORDS, ["bus"]).indices.tolist() == [0, 2, 3, 4, 5]
  assert no.with_words(RECORDS, [("bus", "buses"), "sofa"]).indices.tolist() == [1, 2, 3]
  with pytest.raises(ValueError, match="source must be a random-access sequence"):
    no.without_words(iter(RECORDS), ["bus"])


def test_check_paired_names_the_first_offending_record():
  no.check_paired(no.without_words(RECORDS, no.DCC_COCO_HELD_OUT), no.DCC_COCO_HELD_OUT)
  records = [{"caption": "a dog"}, {"caption": "a cat"},
             {"caption": "a zebra and a bus", "references": ["a bus", "a zebra and a bus"]}]
  with pytest.raises(ValueError) as error:
    no.check_paired(records, ["zebra", "bus"])
  assert str(error.value) == ("paired data must not mention the held-out words; record 2 "
                              "mentions 'zebra': 'a zebra and a bus'.")
  with pytest.raises(ValueError, match=r"^train split must not mention the held-out words; "
                     r"record 0 mentions 'zebra' \(as 'zebras'\): 'Two zebras graze near a "
                     r"horse.'\.$"):
    no.check_paired(RECORDS, no.DCC_COCO_HELD_OUT, name="train split")


def test_subset():
  subset = no.Subset(RECORDS, [5, 0, 5])
  assert len(subset) == 3 and subset[0] is RECORDS[5] and subset[1] is RECORDS[0]
  for index in (-1, 3):
    with pytest.raises(IndexError, match=r"index must be in \[0, 3\)"):
      subset[index]
  assert repr(subset).startswith("Subset(source=<list of 6 records>, indices=<3 indices, sha256 ")
  assert repr(subset) == repr(no.Subset(RECORDS, np.array([5, 0, 5])))
  assert repr(subset) != repr(no.Subset(RECORDS, [5, 0, 4]))
  nested = no.Subset(subset, [2])
  assert nested[0] is RECORDS[5] and repr(nested).startswith("Subset(source=Subset(source=<list")
  assert len(no.Subset(RECORDS, [])) == 0
  with pytest.raises(ValueError, match=r"indices must lie in \[0, len\(source\)\) = \[0, 6\)"):
    no.Subset(RECORDS, [0, 6])
  with pytest.raises(ValueError, match="indices must be a \\[N\\] sequence of ints"):
    no.Subset(RECORDS, [0.5])
  with pytest.raises(ValueError, match="indices must be a \\[N\\] sequence of ints"):
    no.Subset(RECORDS, [[0]])


@pytest.mark.skipif(not HAS_TF, reason="the TFDS coco_captions builder needs TensorFlow")
def test_load_coco_held_out_from_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  def words(texts):
    return {w for t in texts for w in re.findall(r"[a-z0-9]+", str(t).lower())}

  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    raw = {split: tfds.data_source("coco_captions", split=split, data_dir=str(tmp_path))
           for split in ("train", "test")}
    captions = {split: [list(source[i]["captions"]["text"]) for i in range(len(source))]
                for split, source in raw.items()}
    # Mock captions are random letters: hold out two words of two train images, so that some
    # images are held out and others stay paired.
    held = [sorted(words(captions["train"][1]))[0], sorted(words(captions["train"][3]))[-1]]
    expect = {split: [bool(words(texts) & set(held)) for texts in captions[split]]
              for split in raw}
    assert 0 < sum(expect["train"]) < len(expect["train"])
    splits = no.load_coco_held_out(data_dir=tmp_path, image_size=8, held_out=held,
                                   captions_per_image=2)
    assert set(splits) == {"train", "unpaired", "validation", "test", "novel"}
    unpaired = splits["unpaired"]
    assert isinstance(unpaired, CocoCaptions) and len(unpaired) == 2 * len(raw["train"])
    kept = [i for i, held_here in enumerate(expect["train"]) if not held_here]
    assert splits["train"].indices.tolist() == [2 * i + j for i in kept for j in (0, 1)]
    assert [int(splits["train"][n]["image_id"]) for n in range(len(splits["train"]))] == [
        int(raw["train"][i]["image/id"]) for i in kept for _ in (0, 1)]
    assert splits["train"][0]["image"].shape == (8, 8, 3)
    no.check_paired(splits["train"], held)
    with pytest.raises(ValueError, match="paired data must not mention the held-out words"):
      no.check_paired(unpaired, held)
    assert len(splits["test"]) == len(raw["test"]) and splits["test"].captions_per_image == 1
    assert any(expect["test"])
    assert splits["novel"].indices.tolist() == [i for i, e in enumerate(expect["test"]) if e]
    for n in range(len(splits["novel"])):
      assert no.mentions_any(splits["novel"][n], held)
    with pytest.raises(ValueError, match="split must be one of"):
      no.load_coco_held_out(data_dir=tmp_path, image_size=8, test_split="val2014")
