"""Synaptic Intelligence: the path integral, importance and penalty by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import SiState
from classp_optax import add_si_penalty
from classp_optax import consolidate_si


def test_path_integral_importance_and_penalty_by_hand():
  tx = optax.chain(add_si_penalty(0.5), optax.sgd(0.1))
  w0 = jnp.array([1.0, 2.0])
  state = tx.init(w0)
  g1, g2 = jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])
  u1, state = tx.update(g1, state, w0)          # no importance yet: plain SGD
  np.testing.assert_allclose(u1, -0.1 * g1)
  w1 = w0 + u1                                   # [0.8, 2.1]
  u2, state = tx.update(g2, state, w1)
  w2 = w1 + u2                                   # [0.7, 2.1]
  # omega = -(g1 * (w1 - w0)) - (g2 * (w2 - w1)) = [0.4 + 0.1, 0.1 + 0]
  state = consolidate_si(state, w2, damping=0.1)
  si = state[0]
  assert isinstance(si, SiState)
  delta = np.array([0.7 - 1.0, 2.1 - 2.0])
  want_importance = np.array([0.5, 0.1]) / (delta**2 + 0.1)
  np.testing.assert_allclose(si.importance, want_importance, rtol=1e-5)
  np.testing.assert_allclose(si.anchor, w2)
  np.testing.assert_array_equal(si.path_integral, 0.0)
  # The penalty pulls back towards the anchor: 2c * Omega * (w - anchor).
  moved = w2 + jnp.array([1.0, -1.0])
  updates, _ = tx.update(jnp.zeros(2), state, moved)
  np.testing.assert_allclose(
      updates, -0.1 * 2 * 0.5 * want_importance * np.array([1.0, -1.0]),
      rtol=1e-5)


def test_negative_path_integrals_add_no_importance():
  tx = add_si_penalty(1.0)
  w0 = jnp.zeros(1)
  state = tx.init(w0)
  _, state = tx.update(jnp.array([1.0]), state, w0)
  state = consolidate_si(state, jnp.array([1.0]))  # moved up the gradient
  np.testing.assert_array_equal(state.importance, 0.0)


def test_bad_arguments():
  with pytest.raises(ValueError, match='strength'):
    add_si_penalty(-1.0)
  state = add_si_penalty(1.0).init(jnp.zeros(1))
  with pytest.raises(ValueError, match=r'damping must be a real number in \(0.0'):
    consolidate_si(state, jnp.zeros(1), damping=0.0)
  with pytest.raises(ValueError, match='exactly one SiState'):
    consolidate_si(optax.sgd(0.1).init(jnp.zeros(1)), jnp.zeros(1))
  tx = add_si_penalty(1.0)
  with pytest.raises(ValueError, match='needs params'):
    tx.update(jnp.zeros(1), tx.init(jnp.zeros(1)))


def test_state_can_be_donated_with_the_params_after_init_and_consolidation():
  """SI keeps copies of the weights: no buffer of its state is a buffer of
  the parameters, so a step may donate both (as for CLASSP)."""
  tx = optax.chain(add_si_penalty(0.5), optax.sgd(0.1))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, state):
    updates, state = tx.update(jax.tree.map(lambda w: 2 * w, params), state,
                               params)
    return optax.apply_updates(params, updates), state

  params = {'w': jnp.arange(4.0)}
  state = tx.init(params)
  params, state = step(params, state)
  state = consolidate_si(state, params)
  params, state = step(params, state)
  np.testing.assert_allclose(state[0].anchor['w'], jnp.arange(4.0) * 0.8)
  assert np.all(np.isfinite(params['w']))


def test_complex_path_integral_is_the_real_loss_change():
  """omega = -Re(conj(g) dw): one SGD step of lr 0.1 on g = 1+2j moves
  dw = -0.1 g, so omega = 0.1 |g|^2 = 0.5 and |dw|^2 = 0.05."""
  tx = optax.chain(add_si_penalty(0.5), optax.sgd(0.1))
  w0 = jnp.array([1.0 + 1.0j], jnp.complex64)
  state = tx.init(w0)
  u, state = tx.update(jnp.array([1 + 2j], jnp.complex64), state, w0)
  w1 = w0 + u
  state = consolidate_si(state, w1, damping=0.1)
  si = state[0]
  assert si.importance.dtype == si.path_integral.dtype == jnp.float32
  np.testing.assert_allclose(si.importance, [0.5 / (0.05 + 0.1)], rtol=1e-5)
