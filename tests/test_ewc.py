"""EWC: the penalty is real, pulls weights back, and the Fisher is right."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import EwcState
from classp_optax import add_ewc_penalty
from classp_optax import consolidate_ewc
from classp_optax import empirical_fisher
from classp_optax._state_search import find_unique
from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.datasets import load_digits


def test_penalty_is_zero_until_consolidated_then_pulls_back():
  tx = optax.chain(add_ewc_penalty(10.0), optax.sgd(0.01))
  anchor = {'w': jnp.array([1.0, -2.0, 0.5])}
  state = tx.init(anchor)
  moved = {'w': jnp.array([1.5, -3.0, 0.5])}
  zero_grads = {'w': jnp.zeros(3)}
  updates, _ = tx.update(zero_grads, state, moved)
  np.testing.assert_array_equal(updates['w'], 0.0)

  fisher = {'w': jnp.array([2.0, 0.5, 3.0])}
  state = consolidate_ewc(state, anchor, fisher)
  updates, _ = tx.update(zero_grads, state, moved)
  # -lr * lambda * F * (w - w*) = -0.01 * 10 * [2*0.5, 0.5*-1, 3*0]
  np.testing.assert_allclose(updates['w'], [-0.1, 0.05, 0.0], rtol=1e-6)
  new = optax.apply_updates(moved, updates)['w']
  assert np.all(np.abs(new - anchor['w']) <= np.abs(moved['w'] - anchor['w']))
  assert np.any(np.abs(new - anchor['w']) < np.abs(moved['w'] - anchor['w']))


def test_separate_mode_sums_one_penalty_per_task():
  tx = add_ewc_penalty(3.0)
  params = jnp.zeros(2)
  state = tx.init(params)
  anchors = [jnp.array([1.0, 2.0]), jnp.array([-1.0, 4.0])]
  fishers = [jnp.array([0.5, 1.0]), jnp.array([2.0, 0.25])]
  for a, f in zip(anchors, fishers, strict=True):
    state = consolidate_ewc(state, a, f, mode='separate')
  w = jnp.array([0.3, -0.7])
  penalty, _ = tx.update(jnp.zeros(2), state, w)
  want = 3.0 * sum(f * (w - a) for a, f in zip(anchors, fishers, strict=True))
  np.testing.assert_allclose(penalty, want, rtol=1e-6)


def test_online_mode_decays_old_fisher_and_anchors_latest():
  tx = add_ewc_penalty(2.0)
  state = tx.init(jnp.zeros(2))
  state = consolidate_ewc(state, jnp.array([1.0, 1.0]), jnp.array([4.0, 2.0]),
                          mode='online', decay=0.5)
  state = consolidate_ewc(state, jnp.array([3.0, -1.0]), jnp.array([1.0, 1.0]),
                          mode='online', decay=0.5)
  np.testing.assert_allclose(state.fisher, [3.0, 2.0])
  w = jnp.array([0.0, 0.0])
  penalty, _ = tx.update(jnp.zeros(2), state, w)
  np.testing.assert_allclose(penalty, 2.0 * np.array([3.0, 2.0]) * (
      np.array([0.0, 0.0]) - np.array([3.0, -1.0])), rtol=1e-6)


@pytest.mark.parametrize('kwargs,message', [
    (dict(mode='both'), 'mode must be one of'),
    (dict(decay=1.5), r'decay must be a real number in \[0.0, 1.0\]'),
])
def test_consolidate_rejects_bad_arguments(kwargs, message):
  state = add_ewc_penalty(1.0).init(jnp.zeros(1))
  with pytest.raises(ValueError, match=message):
    consolidate_ewc(state, jnp.zeros(1), jnp.ones(1), **kwargs)


def test_bad_strength_and_missing_params():
  with pytest.raises(ValueError, match='strength'):
    add_ewc_penalty(-1.0)
  tx = add_ewc_penalty(1.0)
  with pytest.raises(ValueError, match='needs params'):
    tx.update(jnp.zeros(1), tx.init(jnp.zeros(1)))
  with pytest.raises(ValueError, match='exactly one EwcState'):
    consolidate_ewc(optax.sgd(0.1).init(jnp.zeros(1)), jnp.zeros(1), jnp.ones(1))


def test_empirical_fisher_of_logistic_regression_by_hand():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(7, 3)).astype(np.float32)
  y = rng.integers(0, 2, 7).astype(np.int32)
  w = rng.normal(size=(3, 2)).astype(np.float32)

  def example_loss(w, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(x @ w, y)

  got = empirical_fisher(example_loss, jnp.asarray(w), jnp.asarray(x),
                         jnp.asarray(y), batch_size=3)  # 3 chunks, 1 padded
  # d(-log softmax(xw)_y)/dw = x^T (softmax - onehot), squared per example.
  logits = x @ w
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  per_example = np.einsum('ni,nk->nik', x, p - np.eye(2)[y])
  np.testing.assert_allclose(got, (per_example**2).mean(0), rtol=1e-5)
  # Squaring the mean gradient instead is a different, much smaller number.
  assert np.all(per_example.mean(0) ** 2 <= np.asarray(got) + 1e-7)


def test_empirical_fisher_compiles_once_per_loss_and_takes_extra_arguments():
  """A loop calls it at every task: one compile for all of them, with what
  changes between tasks (here a scale) passed as an argument."""
  from classp_optax import _ewc

  def example_loss(w, x, y, scale):
    return scale * jnp.sum((x @ w - y) ** 2)

  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=3), jnp.float32)
  before = _ewc.squared_gradient_sum._cache_size()
  for n, scale in [(5, 1.0), (9, 2.0), (4, 0.5)]:  # other sizes, one chunk
    x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=n), jnp.float32)
    got = empirical_fisher(example_loss, w, x, y, jnp.float32(scale),
                           batch_size=16)
    per_example = 2 * scale * (x @ w - y)[:, None] * x
    np.testing.assert_allclose(got, (per_example**2).mean(0), rtol=1e-5)
  assert _ewc.squared_gradient_sum._cache_size() == before + 1


def test_the_engines_fisher_is_computed_with_dropout_off():
  """The Fisher EWC consolidates for a model with dropout is that of the
  same weights without dropout: the mask must not act, not merely stay
  fixed."""
  task = streams.split(load_digits())[0]
  method = methods.make_method('ewc',learning_rate=0.1, fisher_samples=64)
  result = engine.train(engine.Run(
      lambda: models.CNN((8, 8, 1), 10, dropout=0.5,
                         rngs=nnx.Rngs(params=0, dropout=1)),
      [task], method, TrainConfig(batch_size=16, eval_batch_size=128)))
  got = find_unique(result.opt_state, EwcState, 'EwcState').fisher
  no_dropout = models.CNN((8, 8, 1), 10, dropout=0.0, rngs=nnx.Rngs(0))
  nnx.update(no_dropout, nnx.state(result.model, nnx.Param))
  graphdef, params, rest = nnx.split(no_dropout, nnx.Param, ...)
  positions, _, _ = method.hooks[0].plan([task], 0, seed=0)
  x, y = task.train_batch(positions)

  def loss(params, x, y, rest):
    logits = nnx.merge(graphdef, params, rest, copy=True)(x[None])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

  want = empirical_fisher(loss, nnx.as_pure(params), x, y, nnx.as_pure(rest))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                        atol=1e-9), got, want)
  assert all(float(jnp.max(f)) > 0 for f in jax.tree.leaves(got))


def test_ewc_keeps_weights_near_the_anchor_while_training_on_new_data():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 64), jnp.int32)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(x @ p['w'], y).mean()

  def train(tx, state, p, steps=200):
    def step(_, carry):
      p, state = carry
      updates, state = tx.update(jax.grad(loss)(p), state, p)
      return optax.apply_updates(p, updates), state
    return jax.jit(lambda p, state: jax.lax.fori_loop(
        0, steps, step, (p, state)))(p, state)[0]

  anchor = {'w': jnp.zeros((4, 3))}
  fisher = {'w': jnp.ones((4, 3))}
  drift = {}
  for strength in (0.0, 10.0):
    tx = optax.chain(add_ewc_penalty(strength), optax.sgd(0.1))
    state = consolidate_ewc(tx.init(anchor), anchor, fisher)
    assert isinstance(state[0], EwcState)
    drift[strength] = float(jnp.abs(train(tx, state, anchor)['w']).max())
  assert drift[10.0] < 0.2 * drift[0.0]


def test_empirical_fisher_of_complex_parameters_is_the_real_mean_modulus():
  """|g|^2 = (df/dRe w)^2 + (df/dIm w)^2, from the real-pair function."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(5, 3)) + 1j * rng.normal(size=(5, 3)),
                  jnp.complex64)
  y = jnp.asarray(rng.normal(size=5), jnp.float32)
  w = jnp.asarray([0.5 - 1j, 2.0 + 0.5j, -1.0 + 0j], jnp.complex64)

  def example_loss(w, x, y):
    return jnp.abs(jnp.dot(w, x) - y) ** 2

  got = empirical_fisher(example_loss, w, x, y, batch_size=2)
  assert got.dtype == jnp.float32
  pair_grad = jax.vmap(jax.grad(
      lambda re, im, x, y: example_loss(re + 1j * im, x, y), argnums=(0, 1)),
      in_axes=(None, None, 0, 0))
  d_re, d_im = pair_grad(jnp.real(w), jnp.imag(w), x, y)
  np.testing.assert_allclose(got, (d_re**2 + d_im**2).mean(0), rtol=1e-5)
