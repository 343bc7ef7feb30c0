"""Diagnostics: grad_sum summaries and state bytes, checked by hand."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import FrozenWeightsWarning
from classp_optax import check_capacity
from classp_optax import classp
from classp_optax import classp_stats
from classp_optax import find_classp_state
from classp_optax import scale_by_classp
from classp_optax import threshold_for
from classp_optax import tree_bytes


def test_stats_by_hand():
  tx = classp(0.1, threshold=1.0, power=1)
  params = {'a': jnp.zeros(4), 'b': jnp.zeros((2, 2))}
  state = tx.init(params)
  grads = {'a': jnp.array([2.0, 0.5, -3.0, 0.0]),
           'b': jnp.array([[1.5, 0.0], [0.0, 0.0]])}
  updates, state = jax.jit(tx.update)(grads, state)
  stats = jax.jit(classp_stats)(state, updates)
  # grad_sum: a = [2, 0, 3, 0], b = [1.5, 0, 0, 0]; 3 of 8 weights updated.
  np.testing.assert_allclose(stats.mean_grad_sum, 6.5 / 8)
  np.testing.assert_allclose(stats.capacity_used, 3 / 8)
  np.testing.assert_allclose(stats.fraction_updated, 3 / 8)
  # A second step touching one new weight: capacity grows, the step is sparse.
  grads = jax.tree.map(jnp.zeros_like, grads)
  grads['b'] = grads['b'].at[1, 1].set(-2.0)
  updates, state = tx.update(grads, state)
  stats = classp_stats(state, updates)
  np.testing.assert_allclose(stats.capacity_used, 4 / 8)
  np.testing.assert_allclose(stats.fraction_updated, 1 / 8)
  assert classp_stats(state).fraction_updated is None


def test_find_classp_state_in_wrapped_states():
  params = jnp.zeros(3)
  inner = scale_by_classp()
  for tx in (inner, classp(0.1), optax.inject_hyperparams(classp)(0.1),
             optax.chain(optax.clip(1.0), classp(0.1))):
    assert find_classp_state(tx.init(params)).grad_sum.shape == (3,)
  with pytest.raises(ValueError, match='exactly one ClasspState, found 0'):
    find_classp_state(optax.sgd(0.1).init(params))
  two = optax.chain(classp(0.1), classp(0.1))
  with pytest.raises(ValueError, match='found 2'):
    find_classp_state(two.init(params))


def test_tree_bytes():
  params = {'w': jnp.zeros((10, 3)), 'h': jnp.zeros(5, jnp.bfloat16)}
  assert tree_bytes(params) == 30 * 4 + 5 * 2
  # bf16 parameters get a float32 accumulator: 4 bytes each.
  assert tree_bytes(classp(0.1).init(params)) == 35 * 4
  assert tree_bytes(optax.adam(0.1).init(params)) == 2 * (120 + 10) + 4
  abstract = jax.eval_shape(classp(0.1).init, params)
  assert tree_bytes(abstract) == 35 * 4


def test_stats_of_complex_parameters():
  tx = classp(0.1, threshold=0.5)
  params = {'z': jnp.zeros(4, jnp.complex64)}
  grads = {'z': jnp.array([1j, 0.5 + 0j, 0j, 1 + 1j], jnp.complex64)}
  updates, state = tx.update(grads, tx.init(params))
  stats = classp_stats(state, updates)
  # |g|^2 = 1, 0.25, 0, 2: two pass the threshold 0.5.
  assert float(stats.capacity_used) == 0.5
  assert float(stats.fraction_updated) == 0.5
  assert float(stats.mean_grad_sum) == pytest.approx((1 + 2**0.5) / 4)  # power 1


def test_threshold_for_lets_that_fraction_of_the_gradients_through():
  grads = {'a': jnp.arange(1.0, 7.0), 'b': -jnp.arange(7.0, 11.0)}  # g*g 1..100
  for fraction in (0.1, 0.3, 0.5, 0.9):
    threshold = threshold_for(grads, fraction)
    passing = sum(int(jnp.sum(g * g > threshold)) for g in grads.values())
    assert passing == round(10 * fraction), fraction
  with pytest.raises(ValueError, match=r'fraction must be in \(0, 1\]'):
    threshold_for(grads, 0.0)


def test_a_classp_that_moved_no_weight_says_so_and_how_to_choose_the_threshold():
  params = {'w': jnp.ones(100)}
  grads = {'w': jnp.linspace(1e-4, 1e-2, 100)}  # g*g at most 1e-4
  tx = classp(0.1, threshold=0.5)
  state = tx.update(grads, tx.init(params), params)[1]
  with pytest.warns(FrozenWeightsWarning, match=r'moved no weight.*g\*g.*'
                    r'threshold_for\(grads, 0\.1\).*8\.\d+e-05'):
    stats = check_capacity(state, grads)
  assert float(stats.capacity_used) == 0.0
  tx = classp(0.1, threshold=threshold_for(grads, 0.1))
  state = tx.update(grads, tx.init(params), params)[1]
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert float(check_capacity(state).capacity_used) == pytest.approx(0.1)
