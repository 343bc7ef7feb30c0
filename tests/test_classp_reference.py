"""CLASSP against an independent NumPy reference and against optax.adagrad."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import classp
from tests import enable_x64
from tests.numpy_classp import classp_numpy

CASES = list(itertools.product(
    (0.5, 1.0, 2.0, 3.0, 1.7),  # power
    (0.0, 0.3),                 # threshold
    (True, False),              # apply_decay
))


def _gradient_sequence(seed, steps, shape, dtype):
  rng = np.random.default_rng(seed)
  grads = rng.normal(size=(steps, *shape)) * rng.uniform(0.1, 2.0)
  if np.issubdtype(dtype, np.complexfloating):
    grads = grads + 1j * rng.normal(size=grads.shape)
    grads[rng.random(grads.shape) < 0.1] *= 1j  # some purely imaginary
  grads[rng.random(grads.shape) < 0.1] = 0.0  # exact zeros never pass
  return grads.astype(dtype)


def _run_classp(grads, dtype, injected_decay=False, relative_threshold=False,
                **kwargs):
  if injected_decay:  # a boolean array, traced, switchable without a retrace
    tx = optax.inject_hyperparams(  # real hyperparameters for complex params
        classp, static_args=('power',), hyperparam_dtype=np.finfo(dtype).dtype)(
        **{**kwargs, 'apply_decay': jnp.asarray(kwargs['apply_decay'])})
  else:
    tx = classp(relative_threshold=relative_threshold, **kwargs)
  params = jnp.zeros(grads.shape[1:], dtype)
  state = tx.init(params)
  update = jax.jit(tx.update)
  deltas = []
  for g in grads:
    u, state = update(jnp.asarray(g), state)
    deltas.append(np.asarray(u))
  inner = state.inner_state if injected_decay else state
  return deltas, np.asarray(inner[0].grad_sum)


@pytest.mark.parametrize('power,threshold,apply_decay', CASES)
@pytest.mark.parametrize('dtype',
                         ['float32', 'float64', 'complex64', 'complex128'])
@pytest.mark.parametrize('injected_decay', [False, True],
                         ids=['static', 'injected'])
def test_matches_numpy_reference(power, threshold, apply_decay, dtype,
                                 injected_decay):
  dtype = np.dtype(dtype)
  kwargs = dict(learning_rate=0.05, threshold=threshold, power=power,
                eps=1e-5, apply_decay=apply_decay)
  grads = _gradient_sequence(int(power * 10 + threshold * 100), 6, (3, 7), dtype)
  with enable_x64(np.finfo(dtype).bits == 64):
    got, got_sum = _run_classp(grads, dtype, injected_decay, **kwargs)
  want, want_sum = classp_numpy(list(grads), dtype=dtype.type, **kwargs)
  assert got_sum.dtype == np.finfo(dtype).dtype  # real, also for complex
  rtol = 1e-5 if np.finfo(dtype).bits == 32 else 1e-12
  for g, w in zip(got, want, strict=True):
    assert g.dtype == dtype
    np.testing.assert_array_equal(g == 0, w == 0)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=0)
  np.testing.assert_allclose(got_sum, want_sum, rtol=rtol, atol=0)


@pytest.mark.parametrize('eps', [1e-5, 0.1, 1.0])
def test_power_two_threshold_zero_is_adagrad(eps):
  grads = _gradient_sequence(0, 20, (5, 4), np.float32)
  params = jnp.ones((5, 4))
  ours = classp(0.1, threshold=0.0, power=2, eps=eps)
  adagrad = optax.adagrad(0.1, initial_accumulator_value=eps, eps=0.0)
  p_ours, p_ada = params, params
  s_ours, s_ada = ours.init(params), adagrad.init(params)
  for g in map(jnp.asarray, grads):
    u, s_ours = ours.update(g, s_ours)
    p_ours = optax.apply_updates(p_ours, u)
    u, s_ada = adagrad.update(g, s_ada)
    p_ada = optax.apply_updates(p_ada, u)
  np.testing.assert_allclose(p_ours, p_ada, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
      s_ours[0].grad_sum + eps, s_ada[0].sum_of_squares, rtol=1e-6
  )


@pytest.mark.parametrize('power,apply_decay', [(1.0, True), (2.0, True),
                                               (1.7, False), (3.0, True)])
@pytest.mark.parametrize('threshold', [0.0, 0.5, 1.0, 2.5])
@pytest.mark.parametrize('dtype',
                         ['float32', 'float64', 'complex64', 'complex128'])
def test_relative_threshold_matches_numpy_reference(power, apply_decay,
                                                    threshold, dtype):
  dtype = np.dtype(dtype)
  kwargs = dict(learning_rate=0.05, threshold=threshold, power=power,
                eps=1e-5, apply_decay=apply_decay)
  grads = _gradient_sequence(int(power * 10 + threshold * 7), 6, (3, 7), dtype)
  with enable_x64(np.finfo(dtype).bits == 64):
    got, got_sum = _run_classp(grads, dtype, relative_threshold=True, **kwargs)
  want, want_sum = classp_numpy(list(grads), dtype=dtype.type,
                                relative_threshold=True, **kwargs)
  rtol = 1e-5 if np.finfo(dtype).bits == 32 else 1e-12
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g == 0, w == 0)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=0)
  np.testing.assert_allclose(got_sum, want_sum, rtol=rtol, atol=0)
