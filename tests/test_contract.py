"""Every exported transform keeps optax's whole optimizer contract.

One battery, after optax's own (``optax/_src/alias_test.py``), for every
public transform of the package. ``optax.adagrad`` runs through each case as
a control: a case that fails for it is a wrong case, not a finding. A new
transform joins by one line in ``TRANSFORMS``.
"""

import functools
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import ClasspState
from classp_optax import EwcState
from classp_optax import SiState
from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si
from classp_optax import scale_by_classp


def _real_ones(params):
  return jax.tree.map(lambda p: jnp.ones(p.shape, jnp.finfo(p.dtype).dtype),
                      params)


def _ewc_sgd(learning_rate, strength=0.1):
  return optax.chain(add_ewc_penalty(strength), optax.sgd(learning_rate))


def _si_sgd(learning_rate, strength=0.1):
  return optax.chain(add_si_penalty(strength), optax.sgd(learning_rate))


def _classp_scaled(learning_rate, threshold=1e-6):
  return optax.chain(scale_by_classp(threshold=threshold, power=2.0),
                     optax.scale_by_learning_rate(learning_rate))


# name: (factory(learning_rate, **numeric hyperparameters), learning rate for
# the parabola, consolidate(state, params) -> state making a penalty act).
TRANSFORMS = {
    'optax.adagrad (control)': (optax.adagrad, 1.0, None),
    'classp p=2': (functools.partial(classp, power=2.0, threshold=1e-6), 1.0,
                   None),
    'classp p=1': (functools.partial(classp, power=1.0), 3.0, None),
    'classp relative threshold': (
        functools.partial(classp, power=2.0, threshold=0.1,
                          relative_threshold=True), 1.0, None),
    'scale_by_classp': (_classp_scaled, 1.0, None),
    'add_ewc_penalty + sgd': (
        _ewc_sgd, 0.1,
        lambda state, params: consolidate_ewc(state, params,
                                              _real_ones(params))),
    'add_si_penalty + sgd': (
        _si_sgd, 0.1, lambda state, params: consolidate_si(state, params)),
}
NAMES = list(TRANSFORMS)


def _make(name, learning_rate=None):
  factory, lr, _ = TRANSFORMS[name]
  return factory(lr if learning_rate is None else learning_rate)


def _init(name, tx, params):
  """``tx.init``, then a consolidation at ``params`` for a penalty: the
  penalty then acts in every case (it is zero before one)."""
  state = tx.init(params)
  consolidate = TRANSFORMS[name][2]
  return state if consolidate is None else consolidate(state, params)


def _parabola(dtype):
  """optax's parabola, with a complex target for complex parameters."""
  start = jnp.array([-1.0, 10.0, 1.0], dtype)
  target = jnp.array([1.0, -1.0, 1.0], dtype)
  if jnp.iscomplexobj(target):
    target = target * (1 + 1j)
  return start, target, lambda p: jnp.sum(optax.tree.norm(p - target,
                                                          squared=True))


def _descent_direction(grads):
  # JAX's gradient of a real function of complex numbers is the conjugate of
  # the steepest-ascent direction; optax's optimizers take the latter.
  return jax.tree.map(jnp.conj, grads)


def _step(tx, params, state, grads):
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


def _random_tree(dtype=jnp.float32, seed=0):
  key_w, key_b = jax.random.split(jax.random.key(seed))
  return {'w': jax.random.normal(key_w, (3, 2), dtype),
          'b': jax.random.normal(key_b, (2,), dtype)}


def _assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
  chex.assert_trees_all_equal_structs(a, b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.complex64])
def test_converges_on_a_parabola(name, dtype):
  tx = _make(name)
  start, target, objective = _parabola(dtype)
  params = start
  # The penalty's anchor at the target: it pulls the same way.
  state = _init(name, tx, target) if TRANSFORMS[name][2] else tx.init(params)

  @jax.jit
  def step(params, state):
    grads = _descent_direction(jax.grad(objective)(params))
    return _step(tx, params, state, grads)

  for _ in range(2000):
    params, state = step(params, state)
  assert params.dtype == dtype
  np.testing.assert_allclose(params, target, atol=1e-2)


@pytest.mark.parametrize('name', NAMES)
def test_inject_hyperparams_changes_the_learning_rate_without_a_retrace(name):
  factory = TRANSFORMS[name][0]
  injected = optax.inject_hyperparams(factory)(learning_rate=0.1)
  params = _random_tree()
  grads = _random_tree(seed=1)
  state = _init(name, injected, params)
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(1)
    return _step(injected, params, state, grads)

  params_a, state = step(params, state)
  state.hyperparams['learning_rate'] = jnp.asarray(
      0.05, state.hyperparams['learning_rate'].dtype)
  params_b, _ = step(params_a, state)
  assert len(traces) == 1
  # The same as the plain transform with each learning rate in turn.
  plain_state = _init(name, factory(0.1), params)
  want_a, plain_state = _step(factory(0.1), params, plain_state, grads)
  want_b, _ = _step(factory(0.05), want_a, plain_state, grads)
  _assert_trees_close(params_a, want_a)
  _assert_trees_close(params_b, want_b)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16, jnp.float32,
                                   jnp.complex64])
def test_parameters_keep_their_dtype(name, dtype):
  tx = _make(name, 0.1)
  params = _random_tree(dtype)
  state = _init(name, tx, params)
  for _ in range(2):
    params, state = jax.jit(functools.partial(_step, tx))(
        params, state, _random_tree(dtype, seed=2))
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == dtype
    assert np.all(np.isfinite(np.asarray(leaf, np.complex64)))


def test_float64_under_x64_in_a_subprocess():
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp
      from tests import test_contract as c
      assert jax.config.jax_enable_x64
      for name in c.NAMES:
          tx = c._make(name, 0.1)
          params = c._random_tree(jnp.float64)
          state = c._init(name, tx, params)
          params, state = jax.jit(lambda p, s: c._step(tx, p, s, p))(params,
                                                                     state)
          for leaf in jax.tree.leaves((params, state)):
              if jnp.issubdtype(leaf.dtype, jnp.floating):
                  assert leaf.dtype == jnp.float64, (name, leaf.dtype)
      print('ok', len(c.NAMES))
  ''')
  done = subprocess.run(
      [sys.executable, '-c', script], capture_output=True, text=True,
      env={'JAX_ENABLE_X64': '1', 'JAX_PLATFORMS': 'cpu',
           'PATH': '/usr/bin:/bin'}, timeout=300)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == f'ok {len(NAMES)}'


@pytest.mark.parametrize('name', NAMES)
def test_complex_parameters_move_like_adagrad_on_an_imaginary_gradient(name):
  """A purely imaginary gradient moves a complex parameter along the
  imaginary axis (a gate on g * g would see -1 and never pass); the state's
  accumulators are real."""
  tx = _make(name, 0.1)
  params = {'z': jnp.array([1 + 0j, 2 + 0j], jnp.complex64)}
  state = _init(name, tx, params)
  new, state = _step(tx, params, state, {'z': jnp.array([-1j, -1j],
                                                        jnp.complex64)})
  assert np.all(np.imag(new['z']) > 0)
  np.testing.assert_allclose(np.real(new['z']), [1.0, 2.0], atol=1e-6)
  accumulators = [getattr(node, field)
                  for node in jax.tree.leaves(state, is_leaf=_is_state)
                  if _is_state(node) for field in REAL_FIELDS[type(node)]]
  assert accumulators or name.startswith('optax.')
  for leaf in jax.tree.leaves(accumulators):
    assert leaf.dtype == jnp.float32


# The accumulators that are real whatever the parameters' dtype.
REAL_FIELDS = {ClasspState: ('grad_sum',), EwcState: ('fisher',),
               SiState: ('importance', 'path_integral')}
_is_state = lambda x: isinstance(x, tuple(REAL_FIELDS))


@pytest.mark.parametrize('name', NAMES)
def test_eval_shape_of_init_and_update(name):
  tx = _make(name)
  params = _random_tree()
  state = _init(name, tx, params)
  shaped = jax.eval_shape(lambda p: _init(name, tx, p), params)
  chex.assert_trees_all_equal_shapes_and_dtypes(shaped, state)
  updates, new_state = tx.update(params, state, params)
  shaped_updates, shaped_state = jax.eval_shape(tx.update, params, state,
                                                params)
  chex.assert_trees_all_equal_shapes_and_dtypes(shaped_updates, updates)
  chex.assert_trees_all_equal_shapes_and_dtypes(shaped_state, new_state)


@pytest.mark.parametrize('name', NAMES)
def test_state_leaves_are_arrays_with_stable_weak_types(name):
  tx = _make(name)
  params = _random_tree()
  state = _init(name, tx, params)
  _, new_state = jax.jit(tx.update)(params, state, params)
  for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(new_state),
                           strict=True):
    assert isinstance(before, jax.Array) and isinstance(after, jax.Array)
    assert before.dtype == after.dtype
    assert before.weak_type == after.weak_type


@pytest.mark.parametrize('name', NAMES)
def test_jit_equals_no_jit(name):
  tx = _make(name)
  params = _random_tree()
  state = _init(name, tx, params)
  for seed in range(3):
    grads = _random_tree(seed=seed + 5)
    eager = _step(tx, params, state, grads)
    jitted = jax.jit(functools.partial(_step, tx))(params, state, grads)
    _assert_trees_close(eager, jitted)
    params, state = eager


@pytest.mark.parametrize('name', NAMES)
def test_vmap_equals_a_loop(name):
  tx = _make(name)
  batch = [_random_tree(seed=s) for s in range(4)]
  grads = [_random_tree(seed=s + 10) for s in range(4)]
  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)

  def run(params, grads):
    return _step(tx, params, _init(name, tx, params), grads)

  vmapped = jax.vmap(run)(stack(batch), stack(grads))
  looped = stack([run(p, g) for p, g in zip(batch, grads, strict=True)])
  _assert_trees_close(vmapped, looped)


@pytest.mark.parametrize('name', NAMES)
def test_multi_steps_applies_the_mean_every_k_steps(name):
  tx = _make(name)
  multi = optax.MultiSteps(tx, every_k_schedule=2)
  params = _random_tree()
  g1, g2 = _random_tree(seed=1), _random_tree(seed=2)
  state = multi.init(params)
  inner = _init(name, tx, params)
  state = state._replace(inner_opt_state=inner)
  params_1, state = _step(multi, params, state, g1)
  _assert_trees_close(params_1, params)  # nothing applied yet
  params_2, _ = _step(multi, params_1, state, g2)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
  want, _ = _step(tx, params, inner, mean)
  _assert_trees_close(params_2, want, rtol=1e-5, atol=1e-6)


def _update_of_w_alone(name, params, grads):
  """The first update of the transform on the tree of leaf 'w' only."""
  alone = _make(name)
  only_w = {'w': params['w']}
  return alone.update({'w': grads['w']}, alone.init(only_w), only_w)[0]['w']


@pytest.mark.parametrize('name', NAMES)
def test_masked_leaves_the_masked_out_leaves_alone(name):
  tx = optax.masked(_make(name), {'w': True, 'b': False})
  params = _random_tree()
  grads = _random_tree(seed=3)
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_array_equal(updates['b'], grads['b'])  # passed through
  np.testing.assert_allclose(updates['w'], _update_of_w_alone(name, params,
                                                              grads), rtol=1e-6)


@pytest.mark.parametrize('name', NAMES)
def test_multi_transform_gives_each_label_its_transform(name):
  tx = optax.multi_transform({'a': _make(name), 'frozen': optax.set_to_zero()},
                             {'w': 'a', 'b': 'frozen'})
  params = _random_tree()
  grads = _random_tree(seed=4)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates['b'], 0.0)
  np.testing.assert_allclose(updates['w'], _update_of_w_alone(name, params,
                                                              grads), rtol=1e-6)


@pytest.mark.parametrize('name', NAMES)
def test_apply_if_finite_skips_a_nan_step_exactly(name):
  tx = optax.apply_if_finite(_make(name), max_consecutive_errors=3)
  params = _random_tree()
  state = tx.init(params)
  state = state._replace(inner_state=_init(name, _make(name), params))
  params, state = _step(tx, params, state, _random_tree(seed=6))
  bad = {'w': jnp.full((3, 2), jnp.nan), 'b': jnp.ones(2)}
  new_params, new_state = jax.jit(functools.partial(_step, tx))(params, state,
                                                                bad)
  jax.tree.map(np.testing.assert_array_equal, new_params, params)
  jax.tree.map(np.testing.assert_array_equal, new_state.inner_state,
               state.inner_state)
  assert int(new_state.notfinite_count) == 1


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('params', [{}, {'w': jnp.ones(2), 'skip': None}],
                         ids=['empty', 'none-leaf'])
def test_trees_with_no_leaves_or_none_leaves(name, params):
  tx = _make(name)
  state = _init(name, tx, params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  if params:
    assert updates['skip'] is None
    assert np.all(np.asarray(updates['w']) < 0)
