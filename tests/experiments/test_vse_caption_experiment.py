"""`experiments/vse_caption.py`: region snippets, template decoding and short end-to-end runs."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import vse_caption
from experiments.configs import vse_caption as vse_caption_config
from vislang_jax import decoding
from vislang_jax.data.captioned_digits import STRUCTURE_CLASSES, WORD_CLASSES
from vislang_jax.data.vocabulary import BOS_ID, EOS_ID, Vocabulary
from vislang_jax.models.vse import SCNLM
from vislang_jax.train.metrics import read_metrics


def test_snippets_gather_each_regions_words_in_order():
  tokens = jnp.array([[5, 6, 7, 8, 9, EOS_ID, 0]])
  aligned = jnp.array([[1, 2, 1, 1, 0, -1, -1]])
  words, lengths = vse_caption.snippets(tokens, aligned, jnp.array([1, 2, 3]), eos_id=EOS_ID)
  np.testing.assert_array_equal(words[0], [[5, 7, 8, EOS_ID, 0, 0, 0],
                                           [6, EOS_ID, 0, 0, 0, 0, 0],
                                           [EOS_ID, 0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(lengths[0], [4, 2, 1])


def test_word_classes_of_the_vocabulary():
  vocabulary = Vocabulary.build(["the digit three is at the top left of the image"])
  classes = vse_caption.word_class_ids(vocabulary)
  for word in ("the", "digit", "three", "top"):
    assert STRUCTURE_CLASSES[classes[vocabulary.token_id(word)]] == WORD_CLASSES[word]
  assert STRUCTURE_CLASSES[classes[EOS_ID]] == STRUCTURE_CLASSES[-1]
  with pytest.raises(ValueError, match="'zebra'"):
    vse_caption.word_class_ids(Vocabulary.build(["the zebra is at the top"]))


def test_template_decoding_keeps_the_likeliest_template():
  model = SCNLM(vocab_size=9, word_dim=4, context_size=2, num_structure=3, structure_window=1,
                structure_dim=3, hidden=5, factors=6)
  templates = jnp.array([[0, 1, 2, 2], [1, 1, 0, 2], [2, 0, 1, 2]])
  content = jax.random.normal(jax.random.key(1), (4, 7))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), templates[:1],
                      content[:1], method=model.sentence_logits)["params"]
  tokens, lengths, scores = jax.jit(functools.partial(vse_caption.decode_with_templates, model,
                                              max_len=5, beam_size=2))(params, content,
                                                                       templates)
  # Reference: one beam search per (image, template), the best score kept in Python.
  @jax.jit
  def search(one_content, template):
    state = model.init_decode_state(params, one_content, template)
    return decoding.beam_search(functools.partial(model.decode_step, params), state,
                                bos_id=BOS_ID, eos_id=EOS_ID, max_len=5, beam_size=2)

  for b in range(4):
    best = None
    for p in range(3):
      out = search(content[b:b + 1], templates[p:p + 1])
      if best is None or out.scores[0, 0] > best[0]:
        best = (out.scores[0, 0], out.tokens[0, 0], out.lengths[0, 0])
    assert scores[b] == pytest.approx(float(best[0]), abs=1e-5)
    np.testing.assert_array_equal(tokens[b], best[1])
    assert lengths[b] == best[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize("model", ["scnlm", "mrnn"])
def test_trains_and_scores_every_split(tmp_path, data_dir, model):
  config = vse_caption_config.get_config()
  config.model = model
  config.vse.update(embed_dim=16, word_dim=8, encoder={"widths": (4, 8, 8)})
  config.dvsa.update(embed_dim=16, word_dim=8, hidden_size=16, crop_size=(14, 14),
                     encoder={"widths": (4, 8)})
  config.scnlm.update(word_dim=8, hidden=8, factors=8, structure_dim=4)
  config.mrnn.update(word_dim=8, hidden_size=16, encoder={"widths": (4, 8)})
  config.data.dir = data_dir
  config.data.copies = 1
  config.data.novel_size = 20
  config.train.update(num_steps=40, batch_size=32, learning_rate=1e-2, log_every=10,
                      eval_every=40, checkpoint_every=40)
  config.eval.update(batch_size=100, beam_size=2)
  config.num_samples = 2
  workdir = str(tmp_path / model)
  final = vse_caption.train_and_evaluate(config, workdir)
  train = [r for r in read_metrics(workdir) if r["split"] == "train"]
  assert train[-1]["nll_per_token"] < 0.8 * train[0]["nll_per_token"]
  assert set(final) == {"validation", "test", "novel"}
  for record in final.values():
    assert record["bleu1"] >= record["bleu4"] >= 0.0
    assert record["nll_per_token"] > 0.0
    if model == "mrnn":
      assert 0.0 <= record["region_digit_accuracy"] <= 1.0
      assert train[-1]["region_nll_per_token"] > 0.0
  assert os.path.isfile(os.path.join(workdir, "samples", "captions_test_40.png"))
