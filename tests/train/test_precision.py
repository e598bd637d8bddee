"""Mixed precision (`train.precision`): which ops run in bfloat16, what stays float32, and how close."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vislang_jax.ops.matmul import matmul
from vislang_jax.train import precision
from vislang_jax.train.step import gradient_update, make_train_step, mean_loss
from vislang_jax.train.state import TrainState


def _bf16(x):
  """float32 -> nearest bfloat16 -> float64, in NumPy (round to nearest even, as XLA)."""
  return np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32),
                    np.float64)


class _Net(nn.Module):
  """Every layer kind the policy covers, a softmax and an LSTM over time."""

  @nn.compact
  def __call__(self, images, tokens):
    x = nn.Conv(4, (3, 3))(images)
    x = nn.ConvTranspose(3, (2, 2), strides=(2, 2))(nn.relu(x))
    x = nn.DenseGeneral(6, axis=(-3, -2, -1))(x)
    embed = nn.Embed(11, 6)
    words = embed(tokens)
    hidden = nn.RNN(nn.OptimizedLSTMCell(6))(words + x[:, None])
    logits = embed.attend(nn.Dense(6)(hidden))
    return jax.nn.log_softmax(logits)


def _inputs():
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.normal(size=(2, 4, 4, 1)), jnp.float32),
          jnp.asarray(rng.integers(0, 11, size=(2, 5)), jnp.int32))


def _dtypes_of(jaxpr_text: str, primitive: str) -> list[str]:
  return re.findall(rf"(\w+)\[[\d,]*\] = {primitive}[\[ ]", jaxpr_text)


def test_every_matmul_and_convolution_runs_in_bfloat16_and_gradients_stay_float32():
  net = _Net()
  images, tokens = _inputs()
  params = net.init(jax.random.PRNGKey(0), images, tokens)["params"]

  def loss(p):
    with precision.compute_in(jnp.bfloat16):
      out = net.apply({"params": p}, images, tokens)
    return -jnp.mean(out[..., 0]), out

  (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
  assert out.dtype == jnp.float32 and value.dtype == jnp.float32
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  text = str(jax.make_jaxpr(jax.grad(lambda p: loss(p)[0]))(params))
  dots, convs = _dtypes_of(text, "dot_general"), _dtypes_of(text, "conv_general_dilated")
  # forward and backward of the Dense/DenseGeneral/attend/LSTM matmuls and both convolutions
  assert len(dots) >= 10 and len(convs) >= 4
  assert set(dots) == {"bf16"} and set(convs) == {"bf16"}
  # the softmax (exp, log) is float32
  assert set(_dtypes_of(text, "exp")) == {"f32"} and set(_dtypes_of(text, "log")) == {"f32"}


def test_float32_leaves_the_function_as_it_was():
  fn = lambda x: x
  assert precision.with_compute_dtype(fn, "float32") is fn
  net = _Net()
  images, tokens = _inputs()
  params = net.init(jax.random.PRNGKey(0), images, tokens)
  with precision.compute_in(jnp.float32):
    inside = net.apply(params, images, tokens)
  np.testing.assert_array_equal(inside, net.apply(params, images, tokens))


def test_dense_equals_bfloat16_rounded_operands_with_float32_accumulation():
  """y = round_bf16(round_bf16(x) round_bf16(W)) + b, in NumPy float64."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 64)).astype(np.float32)
  dense = nn.Dense(5, bias_init=nn.initializers.normal(1.0))
  params = dense.init(jax.random.PRNGKey(2), x)
  with precision.compute_in(jnp.bfloat16):
    y = dense.apply(params, x)
  kernel, bias = (np.asarray(params["params"][k]) for k in ("kernel", "bias"))
  expected = _bf16(_bf16(x) @ _bf16(kernel)) + bias
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, expected, rtol=2 ** -8, atol=1e-6)
  # and it is not the float32 layer: the rounding is visible at this width
  assert np.max(np.abs(np.asarray(y) - (x @ kernel + bias))) > 1e-3


@pytest.mark.parametrize("layer", [nn.Dense(3), nn.Conv(3, (1, 1)),
                                   nn.ConvTranspose(3, (1, 1)), nn.DenseGeneral(3)])
def test_bias_gradients_are_reduced_in_float32(layer):
  """A bias gradient sums 8 x 32 x 32 positions: in bfloat16 the running sum stalls."""
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 4))
  params = layer.init(jax.random.PRNGKey(1), x)
  loss = lambda p: jnp.mean(jax.nn.log_softmax(layer.apply(p, x))[..., 0])
  expected = jax.grad(loss)(params)["params"]["bias"]
  with precision.compute_in(jnp.bfloat16):
    got = jax.grad(loss)(params)["params"]["bias"]
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=2e-2, atol=1e-3)


def test_lstm_cell_state_stays_float32():
  """c_t = f * c_{t-1} + i * g keeps c in float32: a tiny increment on a large state survives."""
  cell = nn.OptimizedLSTMCell(4)
  x = jnp.zeros((1, 3))
  params = cell.init(jax.random.PRNGKey(0), cell.initialize_carry(jax.random.PRNGKey(0),
                                                                    x.shape), x)
  c0 = jnp.full((1, 4), 256.0 + 1.0 / 64, jnp.float32)  # not representable in bfloat16
  h0 = jnp.zeros((1, 4))
  with precision.compute_in(jnp.bfloat16):
    (c1, _), _ = cell.apply(params, (c0, h0), x)
  (c1_32, _), _ = cell.apply(params, (c0, h0), x)
  assert c1.dtype == jnp.float32
  # f = sigmoid(bias) with zero inputs: bf16 gates, so only f's rounding separates the two
  np.testing.assert_allclose(c1, c1_32, rtol=2 ** -7)
  assert not np.all(np.asarray(c1) == np.round(np.asarray(c1)))  # the 1/64 is still there


def test_train_step_keeps_parameters_and_optimizer_state_float32_and_loss_close():
  net = _Net()
  images, tokens = _inputs()
  params = net.init(jax.random.PRNGKey(0), images, tokens)["params"]
  optimizer = optax.adam(1e-2)

  def per_example(p, batch, key):
    del key
    out = net.apply({"params": p}, batch["images"], batch["tokens"])
    nll = -jnp.take_along_axis(out, batch["tokens"][..., None], -1)[..., 0]
    return {"loss": nll.sum(-1)}

  update = gradient_update(mean_loss(per_example), optimizer)
  batch = {"images": images, "tokens": tokens}
  results = {}
  for name in ("float32", "bfloat16"):
    state = TrainState.create(params=params, opt_state=optimizer.init(params),
                              rng=jax.random.PRNGKey(0))
    step = jax.jit(make_train_step(precision.with_compute_dtype(update, name)))
    for _ in range(3):
      state, metrics = step(state, batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.params,
                                                                 state.opt_state))
               if jnp.issubdtype(x.dtype, jnp.floating))
    results[name] = float(metrics["loss"])
  assert results["bfloat16"] == pytest.approx(results["float32"], rel=0.02)
  assert results["bfloat16"] != results["float32"]


@pytest.mark.parametrize("name", ["float16", "bf16", None])
def test_unknown_compute_dtype_is_refused(name):
  with pytest.raises(ValueError, match=r"train.compute_dtype must be one of \('float32', "
                                        r"'bfloat16'\), got"):
    precision.with_compute_dtype(lambda: None, name)


def test_fit_refuses_an_unknown_compute_dtype_before_training(tmp_path):
  from vislang_jax.train.loop import Task, fit
  config = ml_collections.ConfigDict({"seed": 0, "train": {
      "num_steps": 1, "batch_size": 2, "log_every": 1, "eval_every": 1, "checkpoint_every": 1,
      "keep_checkpoints": 1, "compute_dtype": "float16"}})
  task = Task(init_params=lambda key: {"w": jnp.zeros(2)},
              loss_fn=lambda p, b, k, e: (jnp.sum(p["w"]), {}, e), optimizer=optax.sgd(0.1))
  with pytest.raises(ValueError, match="train.compute_dtype"):
    fit(config, str(tmp_path), task, {"train": [{"x": np.zeros(2)}] * 4})
  assert not any(tmp_path.iterdir())


def test_hand_written_matmuls_follow_the_policy():
  """ops.matmul.matmul: x @ w in float32; bf16 operands, float32 result under the policy."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(3, 64)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
  np.testing.assert_array_equal(matmul(x, w), x @ w)
  with precision.compute_in(jnp.bfloat16):
    y = matmul(x, w)
    text = str(jax.make_jaxpr(matmul)(x, w))
  assert y.dtype == jnp.float32 and _dtypes_of(text, "dot_general") == ["f32"]
  assert "bf16[3,64]" in text and "bf16[64,5]" in text
  np.testing.assert_allclose(y, _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(matmul(x, w), x @ w)  # the context has ended
