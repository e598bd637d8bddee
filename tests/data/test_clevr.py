"""CLEVR loading on a real TFDS preparation of tiny CLEVR-format files (no download).

`tfds.testing.mock_data` cannot drive these checks: its random "question_answer" draws the
question and answer sequences with different lengths (and its encoder then rejects the
record when the image is read with SkipDecoding). So the tests write a few images,
questions and scenes in CLEVR v1.0's layout, let TFDS's own "clevr" builder prepare them
as array_record (its download replaced by the folder), and load that.
"""

import io
import json
import os
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from vislang_jax.data import clevr
from vislang_jax.data.captions import resize_square
from vislang_jax.data.questions import QuestionAnswers, question_texts
from vislang_jax.data.vocabulary import Vocabulary

# Per split, per image: (question, answer) pairs; images hold different numbers.
QA = {
    "train": [
        [("is there a red cube?", "yes"), ("how many spheres are there?", "3"),
         ("what color is the big sphere?", "purple")],
        [("what material is the cylinder?", "metal")],
        [("are there more cubes than spheres?", "no"), ("what size is the cube?", "small")],
    ],
    "val": [[("how many cylinders are there?", "10"), ("what shape is the red thing?", "cube")]],
    "test": [[("is there a cube?", None)]],
}
# Written out independently of the module's tables.
EXPECTED_TYPE = {"yes": "yes_no", "no": "yes_no", "3": "count", "10": "count",
                 "purple": "attribute", "metal": "attribute", "small": "attribute",
                 "cube": "attribute"}
SIZE = 16


def _picture(split, i):
  """RGBA 48x32 (CLEVR's 3:2): a red left third, a per-image shade elsewhere, opaque."""
  image = np.zeros((32, 48, 4), np.uint8)
  image[..., 3] = 255
  image[..., 1] = 20 * i + (100 if split == "val" else 0)
  image[:, :16, 0] = 250
  return image


def _write_clevr(root):
  base = os.path.join(root, "CLEVR_v1.0")
  for split, images in QA.items():
    folder = os.path.join(base, "images", split)
    os.makedirs(folder)
    questions, scenes = [], []
    for i, pairs in enumerate(images):
      name = f"CLEVR_{split}_{i:06d}.png"
      Image.fromarray(_picture(split, i), "RGBA").save(os.path.join(folder, name))
      for q, a in pairs:
        questions.append({"image_filename": name, "question": q,
                          **({} if a is None else {"answer": a})})
      scenes.append({"objects": [{"color": "red", "material": "metal", "shape": "cube",
                                  "size": "large", "rotation": 10.0,
                                  "pixel_coords": [1.0, 2.0, 3.0],
                                  "3d_coords": [0.5, 0.5, 0.7]}] * (i + 1)})
    os.makedirs(os.path.join(base, "questions"), exist_ok=True)
    with open(os.path.join(base, "questions", f"CLEVR_{split}_questions.json"), "w") as f:
      json.dump({"questions": questions}, f)
    if split != "test":
      os.makedirs(os.path.join(base, "scenes"), exist_ok=True)
      with open(os.path.join(base, "scenes", f"CLEVR_{split}_scenes.json"), "w") as f:
        json.dump({"scenes": scenes}, f)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("clevr")
  _write_clevr(str(root / "download"))
  builder = tfds.builder("clevr", data_dir=str(root / "data"), file_format="array_record")
  with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                         return_value=str(root / "download")):
    builder.download_and_prepare()
  return str(root / "data")


@pytest.fixture(scope="module")
def loaded(data_dir):
  return clevr.load_clevr(data_dir=data_dir, image_size=SIZE)


def test_answers_and_types():
  assert len(clevr.ANSWERS) == len(set(clevr.ANSWERS)) == 28
  assert clevr.ANSWERS[:13] == ("yes", "no") + tuple(str(n) for n in range(11))
  assert set(clevr.ANSWERS[13:]) == {
      "gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow", "cube", "sphere",
      "cylinder", "rubber", "metal", "small", "large"}
  for answer, name in EXPECTED_TYPE.items():
    assert clevr.QUESTION_TYPES[clevr.question_type(answer.encode())] == name
  with pytest.raises(ValueError, match="'maybe'"):
    clevr.question_type("maybe")


def test_records_follow_the_files(loaded):
  sources, counts = loaded
  assert set(sources) == set(counts) == {"train", "validation"}
  for split, folder in (("train", "train"), ("validation", "val")):
    source = sources[split]
    assert len(source) == len(QA[folder]) == len(counts[split])
    seen = set()
    for n in range(len(source)):
      record = source[n]
      name = record["file_name"].decode()
      i = int(name[-10:-4])
      seen.add(i)
      pairs = QA[folder][i]
      assert counts[split][n] == len(pairs)
      assert [q.decode() for q in record["questions"]] == [q for q, _ in pairs]
      assert [a.decode() for a in record["answers"]] == [a for _, a in pairs]
      assert record["question_types"].dtype == np.int32
      assert [clevr.QUESTION_TYPES[t] for t in record["question_types"]] == [
          EXPECTED_TYPE[a] for _, a in pairs]
      image = record["image"]
      assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
      # The whole 48x32 picture squeezed (not cropped): its red left third stays a third.
      np.testing.assert_array_equal(
          image, resize_square(_picture(folder, i)[..., :3], size=SIZE, center_crop=False))
      assert image[:, :4, 0].min() > 200 and image[:, -4:, 0].max() < 50
      assert len(record["objects"]["color"]) == i + 1
    assert seen == set(range(len(QA[folder])))
  assert "image_size=16" in repr(sources["train"]) and "clevr/train" in repr(sources["train"])


def test_question_answers_flattens_with_the_counts(loaded):
  sources, counts = loaded
  source = sources["train"]
  vocabulary = Vocabulary.build(question_texts(source))
  flat = QuestionAnswers(source, vocabulary, clevr.ANSWERS, max_len=12,
                         question_types=clevr.QUESTION_TYPES, question_counts=counts["train"])
  assert len(flat) == sum(len(p) for p in QA["train"]) == 6
  answers = sorted(clevr.ANSWERS[flat[i]["answer"]] for i in range(len(flat)))
  assert answers == sorted(a for p in QA["train"] for _, a in p)
  assert flat[0]["image"].shape == (SIZE, SIZE, 3)


def test_unprepared_data_dir_raises_without_downloading(tmp_path):
  empty = str(tmp_path / "empty")
  with mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare",
                         side_effect=AssertionError("download attempted")):
    with pytest.raises(ValueError, match=f"data_dir='{empty}' holds no prepared CLEVR"):
      clevr.load_clevr(data_dir=empty)
  assert not os.path.exists(os.path.join(empty, "clevr", "3.1.0"))


@pytest.mark.parametrize("kwargs, match", [
    ({"splits": ("train", "test")}, "splits"), ({"splits": "train"}, "splits"),
    ({"splits": ()}, "splits"), ({"image_size": 0}, "image_size"),
])
def test_bad_arguments(kwargs, match, data_dir):
  with pytest.raises(ValueError, match=match):
    clevr.load_clevr(data_dir=data_dir, **kwargs)


def test_an_answer_outside_the_set_names_the_record():
  png = _png(_picture("train", 0))
  record = {"image": png, "file_name": b"x.png", "objects": {},
            "question_answer": {"question": [b"is it?"], "answer": [b"maybe"]}}
  source = clevr.ClevrQuestions([record], image_size=SIZE, name="fake")
  with pytest.raises(ValueError, match=r"record 0 \('x.png'\).*'maybe'"):
    source[0]


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def test_a_tfrecord_preparation_is_named(data_dir):
  with mock.patch.object(tfds.core.DatasetInfo, "file_format", new_callable=mock.PropertyMock,
                         return_value=tfds.core.FileFormat.TFRECORD):
    with pytest.raises(ValueError, match="holds CLEVR as tfrecord.*array_record"):
      clevr.load_clevr(data_dir=data_dir)
