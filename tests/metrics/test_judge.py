"""`metrics.judge`: the scene judge's windows and loss against NumPy, its training, its cache."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vislang_jax.metrics import judge as judge_lib

SIZE, WINDOW, CLASSES = 24, 12, 3
# Layout 0: one object in the top-left window; layout 1: two, side by side in the bottom half.
WINDOWS = (((0, 0),), ((12, 0), (12, 12)))


def _object(kind, rng):
  """A 12x12 window holding a 7x7 pattern of class `kind` at a random offset."""
  pattern = np.zeros((7, 7), np.float32)
  if kind == 0:
    pattern[3] = 1.0  # horizontal bar
  elif kind == 1:
    pattern[:, 3] = 1.0  # vertical bar
  else:
    pattern[np.arange(7), np.arange(7)] = 1.0  # diagonal
  window = np.zeros((WINDOW, WINDOW), np.float32)
  r, c = rng.integers(0, WINDOW - 7 + 1, 2)
  window[r:r + 7, c:c + 7] = pattern
  return window


def toy_scenes(num, seed):
  """[num, 24, 24, 1] images and their [num, 3] targets (layout, class, class or absent)."""
  rng = np.random.default_rng(seed)
  images = np.zeros((num, SIZE, SIZE, 1), np.float32)
  targets = np.full((num, 3), CLASSES, np.int32)
  for n in range(num):
    layout = int(rng.integers(0, 2))
    targets[n, 0] = layout
    for slot, (row, col) in enumerate(WINDOWS[layout]):
      kind = int(rng.integers(0, CLASSES))
      targets[n, 1 + slot] = kind
      images[n, row:row + WINDOW, col:col + WINDOW, 0] = _object(kind, rng)
  return images, targets


def _judge():
  return judge_lib.SceneJudge(windows=WINDOWS, window_size=WINDOW, num_classes=CLASSES,
                              widths=(8, 8))


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_windows_and_loss_match_numpy():
  judge = _judge()
  images, targets = toy_scenes(6, seed=0)
  params = judge.init(jax.random.PRNGKey(0), images[:1], targets[:1, 0])["params"]
  layout_logits, object_logits = judge.apply({"params": params}, images, targets[:, 0])
  # Each slot is the object classifier on that slot's window, cut out with NumPy.
  net = judge_lib.ConvNet(judge.widths, CLASSES)
  for n in range(len(images)):
    windows = WINDOWS[targets[n, 0]]
    for slot in range(2):
      row, col = windows[slot] if slot < len(windows) else windows[0]  # padding: the first
      crop = images[n:n + 1, row:row + WINDOW, col:col + WINDOW]
      expected = net.apply({"params": params["object_net"]}, crop)[0]
      np.testing.assert_allclose(object_logits[n, slot], expected, rtol=1e-5, atol=1e-6)
  # The loss: mean layout cross-entropy + mean cross-entropy over the present objects only.
  layout_ce = -_log_softmax(layout_logits)[np.arange(6), targets[:, 0]]
  object_lp = _log_softmax(object_logits)
  present = [(n, s) for n in range(6) for s in range(2) if targets[n, 1 + s] != CLASSES]
  object_ce = [-object_lp[n, s, targets[n, 1 + s]] for n, s in present]
  loss = judge_lib.judge_loss(judge, params, jnp.asarray(images), jnp.asarray(targets))
  np.testing.assert_allclose(loss, layout_ce.mean() + np.mean(object_ce), rtol=1e-5)
  assert len(present) < 12  # some one-object scenes: an absent slot really is skipped


def test_the_judge_learns_a_separable_toy_set():
  judge = _judge()
  images, targets = toy_scenes(400, seed=1)
  params = judge_lib.train_scene_judge(judge, images, targets, num_steps=300, batch_size=32,
                                       learning_rate=3e-3, seed=0)
  test_images, test_targets = toy_scenes(200, seed=2)
  readings = np.asarray(jax.jit(lambda p, x: judge_lib.read_scenes(judge, p, x))(
      params, test_images))
  # Chance of reading a whole scene is below 1/2 * 1/3; the toy set is separable.
  assert judge_lib.agreement(readings, test_targets) > 0.9
  # A one-object layout's second slot always reads as absent.
  one = readings[:, 0] == 0
  assert one.any() and np.all(readings[one, 2] == CLASSES)
  assert np.all(readings[~one, 2] < CLASSES)


def test_agreement_counts_whole_scenes():
  targets = np.array([[0, 1, 3], [1, 2, 0], [1, 0, 0]])
  readings = np.array([[0, 1, 3], [1, 2, 1], [0, 0, 0]])
  assert judge_lib.agreement(readings, targets) == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match=r"readings, targets must share one shape \[B, 1 \+ S\]"):
    judge_lib.agreement(readings[:, :2], targets)


def test_cache_returns_the_same_params_for_the_same_content_and_retrains_otherwise(tmp_path):
  calls = []
  template = {"w": np.zeros(3, np.float32)}

  def fit_fn():
    calls.append(1)
    return {"w": jnp.arange(3, dtype=jnp.float32) + len(calls)}

  arrays = {"x": np.arange(6, dtype=np.float32).reshape(3, 2)}
  cached = lambda **kw: judge_lib.load_or_fit(
      fit_fn, template=template, cache_dir=str(tmp_path),
      **{"config": {"lr": 0.1}, "seed": 0, "arrays": arrays, **kw})
  first = cached()
  assert len(calls) == 1
  (name,) = os.listdir(tmp_path)  # one file, no temporary left behind
  assert name == judge_lib.content_hash({"lr": 0.1}, 0, arrays) + ".msgpack"
  chex.assert_trees_all_equal(cached(), first)
  assert len(calls) == 1  # read back, not retrained
  changed = {"x": arrays["x"].copy()}
  changed["x"][2, 1] += 1.0
  for kwargs in ({"arrays": changed}, {"seed": 1}, {"config": {"lr": 0.2}}):
    cached(**kwargs)
  assert len(calls) == 4 and len(os.listdir(tmp_path)) == 4
  # Same bytes, another dtype or shape: other content.
  ints = {"x": arrays["x"].view(np.int32)}
  assert judge_lib.content_hash({}, 0, ints) != judge_lib.content_hash({}, 0, arrays)
  flat = {"x": arrays["x"].reshape(6)}
  assert judge_lib.content_hash({}, 0, flat) != judge_lib.content_hash({}, 0, arrays)


def test_a_cached_judge_is_the_trained_one(tmp_path):
  judge = _judge()
  images, targets = toy_scenes(50, seed=3)
  train = lambda cache_dir: judge_lib.train_scene_judge(
      judge, images, targets, num_steps=3, batch_size=8, learning_rate=1e-3, seed=0,
      cache_dir=cache_dir)
  fresh = train(None)
  written = train(str(tmp_path))
  read = train(str(tmp_path))
  chex.assert_trees_all_equal(written, fresh)
  chex.assert_trees_all_equal(read, fresh)
  assert len(os.listdir(tmp_path)) == 1
  wider = judge_lib.SceneJudge(windows=WINDOWS, window_size=WINDOW, num_classes=CLASSES,
                               widths=(8, 4))
  judge_lib.train_scene_judge(wider, images, targets, num_steps=3, batch_size=8,
                              learning_rate=1e-3, seed=0, cache_dir=str(tmp_path))
  assert len(os.listdir(tmp_path)) == 2  # another judge's configuration, another file


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match=r"windows must hold, per layout"):
    judge_lib.SceneJudge(windows=((), ((0, 0),)), window_size=WINDOW)
  with pytest.raises(ValueError, match=r"window_size must be a positive int"):
    judge_lib.SceneJudge(windows=WINDOWS, window_size=0)
  judge = _judge()
  small = jnp.zeros((1, 20, 20, 1))
  with pytest.raises(ValueError, match=r"windows must lie inside the images.*24x24.*"
                                       r"\(1, 20, 20, 1\)"):
    judge.init(jax.random.PRNGKey(0), small, jnp.zeros((1,), jnp.int32))
  images, targets = toy_scenes(4, seed=0)
  with pytest.raises(ValueError, match=r"targets must have shape \[N, 1 \+ S\] = \(4, 3\)"):
    judge_lib.train_scene_judge(judge, images, targets[:, :2], num_steps=1, batch_size=2,
                                learning_rate=1e-3, seed=0)
  with pytest.raises(ValueError, match=r"arrays must hold rows of one non-zero length"):
    judge_lib.fit(lambda p, b: 0.0, {}, {"a": np.zeros(3), "b": np.zeros(2)}, num_steps=1,
                  batch_size=1, learning_rate=1e-3, seed=0)


def test_convnet_features_are_the_layer_under_the_logits():
  net = judge_lib.ConvNet((4, 8), CLASSES, hidden=16)
  images = np.random.default_rng(0).uniform(size=(5, SIZE, SIZE, 1)).astype(np.float32)
  params = net.init(jax.random.PRNGKey(0), images)["params"]
  # The compact form's names: judges cached before `features` existed still load.
  assert set(params) == {"Conv_0", "Conv_1", "Dense_0", "Dense_1"}
  assert params["Dense_0"]["kernel"].shape == (6 * 6 * 8, 16)
  features = net.apply({"params": params}, images, method=judge_lib.ConvNet.features)
  assert features.shape == (5, 16) and np.all(np.asarray(features) >= 0)  # after the ReLU
  dense = params["Dense_1"]
  np.testing.assert_allclose(net.apply({"params": params}, images),
                             features @ dense["kernel"] + dense["bias"], rtol=1e-5, atol=1e-6)


def test_scene_features_are_the_layout_features_and_the_read_windows_mean():
  # A third layout of three windows: S = 3, so a two-window layout has a padded slot.
  windows = WINDOWS + (((0, 0), (0, 12), (12, 0)),)
  judge = judge_lib.SceneJudge(windows=windows, window_size=WINDOW, num_classes=CLASSES,
                               widths=(8, 8))
  images, targets = toy_scenes(4, seed=4)
  params = jax.jit(judge.init)(jax.random.PRNGKey(1), images[:1], targets[:1, 0])["params"]
  features_fn = jax.jit(lambda p: judge.apply({"params": p}, images,
                                              method=judge_lib.SceneJudge.features))
  net_features = lambda name, classes, x: np.asarray(judge_lib.ConvNet(
      judge.widths, classes).apply({"params": params[name]}, x,
                                   method=judge_lib.ConvNet.features))
  layout_features = net_features("layout_net", len(windows), images)
  for layout, corners in enumerate(windows):
    # The layout head made to read `layout` on every image (its features are unchanged).
    head = {"kernel": jnp.zeros_like(params["layout_net"]["Dense_1"]["kernel"]),
            "bias": jnp.eye(len(windows))[layout]}
    forced = {**params, "layout_net": {**params["layout_net"], "Dense_1": head}}
    features = np.asarray(features_fn(forced))
    for n in range(len(images)):
      # The read layout's real windows only, cut out with NumPy, through the object network.
      crops = np.stack([images[n, r:r + WINDOW, c:c + WINDOW] for r, c in corners])
      expected = np.concatenate([layout_features[n],
                                 net_features("object_net", CLASSES, crops).mean(0)])
      np.testing.assert_allclose(features[n], expected, rtol=1e-5, atol=1e-6)
