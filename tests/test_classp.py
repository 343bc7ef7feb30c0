"""CLASSP's update rule, hand-computed, and its contract with Optax."""

import warnings

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import ClasspState
from classp_optax import classp
from classp_optax import scale_by_classp
from classp_optax import set_hyperparams
from tests import enable_x64


def run_steps(tx, params, grads_seq, state=None):
  """Applies ``tx`` for each gradient; returns params after each step, state."""
  state = tx.init(params) if state is None else state
  history = []
  for g in grads_seq:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history, state


class HandComputedTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_power_one_with_strict_threshold(self):
    # threshold 0.5: g*g = [4, 0.25, 1] passes [yes, no, yes]; then
    # g*g = [1, 9, 0] passes [yes, yes, no]. eps=1 keeps the numbers round.
    tx = classp(0.1, threshold=0.5, power=1, eps=1.0)
    update = self.variant(tx.update)
    params = jnp.ones(3)
    state = tx.init(params)
    u1, state = update(jnp.array([2.0, 0.5, -1.0]), state)
    np.testing.assert_allclose(u1, [-0.1 * 2 / 3, 0.0, 0.1 * 1 / 2], rtol=1e-6)
    np.testing.assert_array_equal(state[0].grad_sum, [2.0, 0.0, 1.0])
    u2, state = update(jnp.array([1.0, 3.0, 0.0]), state)
    np.testing.assert_allclose(u2, [-0.1 / 4, -0.1 * 3 / 4, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(state[0].grad_sum, [3.0, 3.0, 1.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_threshold_is_strict(self):
    tx = scale_by_classp(threshold=4.0, power=1, eps=0.0)
    updates, state = self.variant(tx.update)(
        jnp.array([2.0, -2.0, 2.001]), tx.init(jnp.zeros(3))
    )
    np.testing.assert_array_equal(updates[:2], [0.0, 0.0])
    np.testing.assert_array_equal(state.grad_sum[:2], [0.0, 0.0])
    np.testing.assert_allclose(updates[2], 1.0, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_power_two(self):
    tx = classp(0.5, threshold=0.0, power=2, eps=0.0)
    update = self.variant(tx.update)
    state = tx.init(jnp.zeros(2))
    u1, state = update(jnp.array([3.0, 4.0]), state)
    np.testing.assert_allclose(u1, [-0.5, -0.5], rtol=1e-6)
    u2, state = update(jnp.array([4.0, 0.0]), state)
    np.testing.assert_allclose(u2, [-0.5 * 4 / 5, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(state[0].grad_sum, [25.0, 16.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_fractional_power(self):
    # p = 0.5: grad_sum += sqrt|g|, step = lr * g / (eps + grad_sum)**2.
    tx = classp(1.0, power=0.5, eps=0.0)
    update = self.variant(tx.update)
    state = tx.init(jnp.zeros(1))
    u1, state = update(jnp.array([4.0]), state)
    np.testing.assert_allclose(u1, [-4.0 / 2.0**2], rtol=1e-6)
    u2, state = update(jnp.array([9.0]), state)
    np.testing.assert_allclose(u2, [-9.0 / 5.0**2], rtol=1e-6)
    np.testing.assert_allclose(state[0].grad_sum, [5.0], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_integer_power_three(self):
    tx = classp(1.0, power=3, eps=0.0)
    update = self.variant(tx.update)
    state = tx.init(jnp.zeros(1))
    u1, state = update(jnp.array([2.0]), state)
    np.testing.assert_allclose(u1, [-1.0], rtol=1e-6)
    u2, state = update(jnp.array([1.0]), state)
    np.testing.assert_allclose(u2, [-(9.0 ** (-1 / 3))], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_eps_is_inside_the_root(self):
    tx = scale_by_classp(power=2, eps=7.0)
    updates, _ = self.variant(tx.update)(jnp.array([3.0]), tx.init(jnp.zeros(1)))
    np.testing.assert_allclose(updates, [3.0 / 4.0], rtol=1e-6)  # 3/sqrt(7+9)

  def test_rejected_coordinates_stay_untouched_across_steps(self):
    tx = classp(0.3, threshold=1.0, power=1)
    params = jnp.array([5.0, -5.0])
    grads = [jnp.array([0.9, 3.0]), jnp.array([-1.0, 2.0]), jnp.array([0.0, 4])]
    history, state = run_steps(tx, params, grads)
    for p in history:
      assert p[0] == params[0]  # bitwise: the first weight never passes
      assert p[0].dtype == params.dtype
    assert state[0].grad_sum[0] == 0.0
    assert len(set(float(p[1]) for p in history)) == 3

  def test_plain_steps_then_decay_with_carried_state(self):
    # Task 1: plain steps still accumulate grad_sum.
    task1 = classp(0.5, power=1, eps=0.0, apply_decay=False)
    params = jnp.zeros(2)
    history, state = run_steps(task1, params, [jnp.array([2.0, 0.0])])
    np.testing.assert_array_equal(history[-1], [-1.0, 0.0])
    np.testing.assert_array_equal(state[0].grad_sum, [2.0, 0.0])
    # Task 2: a new transform continues from the same state.
    task2 = classp(0.5, power=1, eps=0.0, apply_decay=True)
    assert jax.tree.structure(task2.init(params)) == jax.tree.structure(state)
    history, state = run_steps(
        task2, history[-1], [jnp.array([2.0, 1.0])], state=state
    )
    np.testing.assert_allclose(history[-1], [-1.25, -0.5], rtol=1e-6)
    np.testing.assert_array_equal(state[0].grad_sum, [4.0, 1.0])

  def test_relative_threshold_by_hand_and_scale_free(self):
    # g**2 = [9, 1, 0, 4], mean 3.5: threshold 1 passes 9 and 4 only.
    tx = classp(1.0, threshold=1.0, power=2, eps=0.0, relative_threshold=True)
    g = jnp.array([3.0, 1.0, 0.0, -2.0])
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, [-1.0, 0.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(state[0].grad_sum, [9.0, 0.0, 0.0, 4.0])
    # The same gradients 1000x larger (a loss scaled by 1000) pass the same
    # coordinates; an absolute threshold would not.
    u_big, _ = tx.update(1000 * g, tx.init(g))
    np.testing.assert_array_equal(u_big != 0, u != 0)
    absolute = classp(1.0, threshold=3.5, power=2, eps=0.0)
    u_abs, _ = absolute.update(1000 * g, absolute.init(g))
    assert np.count_nonzero(u_abs) == 3
    # Each tensor is gated by its own mean.
    tree = {'a': g, 'b': 1e-3 * jnp.array([1.0, 2.0])}
    u, _ = tx.update(tree, tx.init(tree))
    np.testing.assert_array_equal(u['b'] != 0, [False, True])

  def test_learning_rate_schedule(self):
    schedule = optax.piecewise_constant_schedule(1.0, {1: 0.5})
    tx = classp(schedule, power=1, eps=0.0, apply_decay=False)
    history, _ = run_steps(tx, jnp.zeros(1), [jnp.ones(1)] * 2)
    np.testing.assert_allclose(history, [[-1.0], [-1.5]])


class ConstructionTest(parameterized.TestCase):

  @parameterized.parameters(
      ('threshold', -1e-3, r'threshold must be a real number in \[0.0, inf\]'),
      ('threshold', 'big', 'threshold'),
      ('threshold', float('nan'), 'threshold'),
      ('power', 0.0, r'power must be a real number in \(0.0, inf\)'),
      ('power', -2, 'power'),
      ('power', float('inf'), 'power'),
      ('eps', -1.0, r'eps must be a real number in \[0.0, inf\)'),
      ('eps', None, 'eps'),
      ('eps', True, 'eps'),
      ('apply_decay', 1, 'apply_decay must be True or False'),
      ('eps', 1e-5 + 0j, 'eps must be a real number.*complex.*hyperparam_dtype'),
      ('apply_decay', jnp.ones(2, bool), 'apply_decay must be True or False'),
      ('apply_decay', jnp.asarray(1.0), 'apply_decay must be True or False'),
      ('accumulator_dtype', 'int32', 'accumulator_dtype'),
      ('relative_threshold', 1, 'relative_threshold must be True or False'),
      ('accumulator_dtype', 'not-a-dtype', 'accumulator_dtype'),
  )
  def test_bad_argument_raises_naming_it(self, name, value, message):
    with pytest.raises(ValueError, match=message):
      scale_by_classp(**{name: value})
    with pytest.raises(ValueError, match=message):
      classp(0.1, **{name: value})

  def test_bad_learning_rate(self):
    with pytest.raises(ValueError, match='learning_rate'):
      classp(-0.1)

  def test_boundary_values_are_accepted(self):
    classp(0.0, threshold=0.0, power=1e-3, eps=0.0, apply_decay=np.bool_(True))
    classp(learning_rate=1.0, threshold=float('inf'), power=5, eps=1e-8,
           apply_decay=False, accumulator_dtype=jnp.float32)


class DtypeTest(parameterized.TestCase):

  @parameterized.parameters(
      (jnp.bfloat16, None, jnp.float32),
      (jnp.float16, None, jnp.float32),
      (jnp.float32, None, jnp.float32),
      (jnp.float32, 'bfloat16', jnp.bfloat16),
      (jnp.bfloat16, 'float32', jnp.float32),
  )
  def test_update_and_accumulator_dtypes(self, param_dtype, acc, want_acc):
    tx = classp(0.1, power=2, accumulator_dtype=acc)
    params = {'w': jnp.ones((2, 3), param_dtype), 'b': jnp.ones(3, param_dtype)}
    state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    updates, state = jax.jit(tx.update)(grads, state)
    for u, s in zip(jax.tree.leaves(updates), jax.tree.leaves(state[0]), strict=True):
      assert u.dtype == param_dtype
      assert s.dtype == want_acc
    np.testing.assert_allclose(
        jnp.asarray(updates['w'], jnp.float32), -0.1 * 0.5 / np.sqrt(1e-5 + 0.25),
        rtol=1e-2,
    )

  def test_float64_under_x64(self):
    with enable_x64(True):
      tx = classp(0.1, power=3, eps=1e-5)
      params = jnp.ones(2, jnp.float64)
      updates, state = tx.update(jnp.array([0.3, 2.0]), tx.init(params))
      assert updates.dtype == jnp.float64
      assert state[0].grad_sum.dtype == jnp.float64
      want = -0.1 * 0.3 / (1e-5 + 0.3**3) ** (1 / 3)
      np.testing.assert_allclose(updates[0], want, rtol=1e-13)


class CompositionTest(chex.TestCase):

  def test_none_leaves_pass_through(self):
    tx = classp(0.1)
    params = {'w': jnp.ones(2), 'frozen': None}
    state = tx.init(params)
    assert state[0].grad_sum['frozen'] is None
    updates, _ = tx.update({'w': jnp.ones(2), 'frozen': None}, state)
    assert updates['frozen'] is None

  def test_masked(self):
    params = {'a': jnp.ones(3), 'b': jnp.ones(3)}
    grads = {'a': jnp.array([1.0, 0.1, -2.0]), 'b': jnp.array([1.0, 2.0, 3.0])}
    tx = optax.masked(classp(0.1, threshold=0.05), {'a': True, 'b': False})
    state = tx.init(params)
    assert isinstance(state.inner_state[0].grad_sum['b'], optax.MaskedNode)
    updates, _ = jax.jit(tx.update)(grads, state)
    alone = classp(0.1, threshold=0.05)
    want_a, _ = alone.update(grads['a'], alone.init(params['a']))
    np.testing.assert_array_equal(updates['a'], want_a)
    np.testing.assert_array_equal(updates['b'], grads['b'])  # passed through

  def test_multi_transform(self):
    params = {'body': jnp.ones(2), 'head': jnp.ones(2)}
    tx = optax.multi_transform(
        {'classp': classp(0.1, power=2), 'sgd': optax.sgd(0.1)},
        {'body': 'classp', 'head': 'sgd'},
    )
    grads = {'body': jnp.array([2.0, 0.0]), 'head': jnp.array([2.0, 0.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates['head'], [-0.2, 0.0])
    np.testing.assert_allclose(
        updates['body'], [-0.1 * 2 / np.sqrt(1e-5 + 4), 0.0], rtol=1e-6
    )

  def test_chain_with_clipping(self):
    tx = optax.chain(optax.clip(1.0), classp(0.1, power=1, eps=0.0))
    updates, _ = tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))
    np.testing.assert_allclose(updates, [-0.1])

  def test_apply_if_finite_skips_bad_steps_bit_for_bit(self):
    tx = optax.apply_if_finite(classp(0.1, threshold=0.01), 3)
    params = jnp.array([1.0, 2.0, 3.0])
    history, state = run_steps(tx, params, [jnp.array([0.5, -1.0, 0.05])])
    before_params, before_sum = history[-1], state.inner_state[0].grad_sum
    for bad in (jnp.nan, jnp.inf):
      g = jnp.array([0.5, bad, 1.0])
      updates, state = jax.jit(tx.update)(g, state, before_params)
      after = optax.apply_updates(before_params, updates)
      np.testing.assert_array_equal(after, before_params)
      np.testing.assert_array_equal(
          state.inner_state[0].grad_sum, before_sum
      )
    assert int(state.notfinite_count) == 2


class InjectHyperparamsTest(chex.TestCase):

  def _grads(self, n):
    keys = jax.random.split(jax.random.key(0), n)
    return [jax.random.normal(k, (4, 5)) for k in keys]

  @chex.variants(with_jit=True, without_jit=True)
  def test_equal_to_plain_classp(self):
    kwargs = dict(learning_rate=0.05, threshold=0.3, power=2.0, eps=1e-3)
    plain = classp(**kwargs)
    injected = optax.inject_hyperparams(classp, static_args=('power',))(
        **kwargs
    )
    params = jnp.zeros((4, 5))
    s_plain, s_inj = plain.init(params), injected.init(params)
    for g in self._grads(3):
      u_plain, s_plain = self.variant(plain.update)(g, s_plain)
      u_inj, s_inj = self.variant(injected.update)(g, s_inj)
      np.testing.assert_allclose(u_inj, u_plain, rtol=1e-6)
    np.testing.assert_allclose(
        s_inj.inner_state[0].grad_sum, s_plain[0].grad_sum, rtol=1e-6
    )

  def test_traced_power_takes_the_general_path(self):
    injected = optax.inject_hyperparams(classp)(learning_rate=0.1, power=3.0)
    plain = classp(0.1, power=3)
    g = self._grads(1)[0]
    u_inj, _ = jax.jit(injected.update)(g, injected.init(g))
    u_plain, _ = plain.update(g, plain.init(g))
    np.testing.assert_allclose(u_inj, u_plain, rtol=1e-5)

  def test_changing_hyperparams_neither_recompiles_nor_loses_state(self):
    injected = optax.inject_hyperparams(classp)(
        learning_rate=0.1, threshold=0.5, eps=1e-5
    )
    traces = []

    @jax.jit
    def step(g, state):
      traces.append(None)
      return injected.update(g, state)

    grads = self._grads(4)
    state = injected.init(grads[0])
    _, state = step(grads[0], state)
    # The paper's schedule in miniature: new lr, threshold and eps.
    carried = state.inner_state
    state = set_hyperparams(state, learning_rate=0.02, threshold=0.0, eps=1e-2)
    u, state = step(grads[1], state)
    assert len(traces) == 1
    fresh = classp(0.02, threshold=0.0, eps=1e-2)
    want, want_state = fresh.update(grads[1], carried)
    np.testing.assert_allclose(u, want, rtol=1e-6)
    np.testing.assert_allclose(
        state.inner_state[0].grad_sum, want_state[0].grad_sum, rtol=1e-6
    )


def test_injected_apply_decay_switches_plain_to_decayed_without_a_retrace():
  """The paper's schedule with one compiled step: plain steps on task 1,
  decayed steps after, through a boolean array in state.hyperparams."""
  injected = optax.inject_hyperparams(classp)(
      learning_rate=0.5, power=1, eps=0.0, apply_decay=jnp.asarray(False))
  traces = []

  @jax.jit
  def step(g, state):
    traces.append(None)
    return injected.update(g, state)

  state = injected.init(jnp.zeros(2))
  u1, state = step(jnp.array([2.0, 0.0]), state)
  state = set_hyperparams(state, apply_decay=True)
  u2, state = step(jnp.array([2.0, 1.0]), state)
  assert len(traces) == 1
  # As test_plain_steps_then_decay_with_carried_state, by hand.
  np.testing.assert_array_equal(u1, [-1.0, 0.0])
  np.testing.assert_allclose(u2, [-0.25, -0.5], rtol=1e-6)
  np.testing.assert_array_equal(state.inner_state[0].grad_sum, [4.0, 1.0])


def test_set_hyperparams_rejects_unknown_names_and_plain_states():
  injected = optax.inject_hyperparams(classp)(learning_rate=0.1)
  state = injected.init(jnp.zeros(2))
  with pytest.raises(ValueError, match="'apply_decay'.*accepted names"):
    set_hyperparams(state, apply_decay=False)
  with pytest.raises(ValueError, match='InjectHyperparamsState'):
    set_hyperparams(classp(0.1).init(jnp.zeros(2)), learning_rate=0.2)
  chained = optax.chain(optax.clip(1.0), injected)
  new = set_hyperparams(chained.init(jnp.zeros(2)), learning_rate=0.5)
  assert float(new[1].hyperparams['learning_rate']) == 0.5
  assert float(state.hyperparams['learning_rate']) == np.float32(0.1)


@pytest.mark.parametrize('values, message', [
    (dict(learning_rate=-0.1), 'learning_rate must be a real number in '
     r'\[0.0, inf\), got -0.1'),
    (dict(threshold=-5), r'threshold must be a real number in \[0.0, inf\], '
     'got -5'),
    (dict(eps=-1.0), r'eps must be a real number in \[0.0, inf\), got -1.0'),
    (dict(threshold='x'), "threshold must be a real number in .* got 'x'"),
    (dict(learning_rate=float('nan')), 'learning_rate must be a real number'),
    (dict(apply_decay='yes'), "apply_decay must be True or False.*got 'yes'"),
    (dict(power=3.0), r"\['power'\] are not injected hyperparameters.*"
     'static_args.*build the optimizer again'),
])
def test_set_hyperparams_checks_every_value_naming_it(values, message):
  """Checked before anything changes, with the transform's own ranges: a
  jitted update would otherwise return inf or NaN without a word."""
  injected = optax.inject_hyperparams(classp, static_args=('power',))(
      learning_rate=0.1, threshold=0.5, power=2.0,
      apply_decay=jnp.asarray(False))
  state = injected.init(jnp.zeros(2))
  with pytest.raises(ValueError, match=message):
    set_hyperparams(state, **values)


def test_set_hyperparams_on_an_nnx_optimizer_keeps_the_compiled_step():
  """The natural line on an ``nnx.Optimizer``: its variables are kept, so
  the user's ``nnx.jit`` step is traced once for every hyperparameter
  change, and the new values act."""
  nnx = pytest.importorskip('flax.nnx')  # the toolkit's dependency
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  tx = optax.inject_hyperparams(classp, static_args=('power',))(
      learning_rate=0.1, threshold=0.5, power=2.0,
      apply_decay=jnp.asarray(False))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  traces = []

  @nnx.jit
  def step(model, optimizer, x):
    traces.append(None)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    optimizer.update(model, grads)

  x = jnp.ones((4, 3))
  step(model, optimizer, x)
  for change in (dict(threshold=0.0), dict(apply_decay=True),
                 dict(learning_rate=0.01)):
    optimizer.opt_state = set_hyperparams(optimizer.opt_state, **change)
    step(model, optimizer, x)
  assert len(traces) == 1
  hyperparams = nnx.as_pure(optimizer.opt_state).hyperparams
  assert (float(hyperparams['threshold']), bool(hyperparams['apply_decay']),
          float(hyperparams['learning_rate'])) == (0.0, True, np.float32(0.01))


@pytest.mark.parametrize('bad', [jnp.nan, jnp.inf, -jnp.inf])
def test_a_non_finite_gradient_makes_the_update_and_memory_non_finite(bad):
  """One behaviour for NaN and inf, as optax.adagrad's: the weight's update
  is NaN and its grad_sum not finite, so a divergence check or
  optax.apply_if_finite sees it; the other weights are untouched by it."""
  tx = classp(0.1, threshold=0.01, power=2)
  g = jnp.array([0.5, bad, 0.05])
  updates, state = jax.jit(tx.update)(g, tx.init(jnp.zeros(3)))
  updates, grad_sum = np.asarray(updates), np.asarray(state[0].grad_sum)
  assert np.isnan(updates[1]) and not np.isfinite(grad_sum[1])
  np.testing.assert_allclose(updates[[0, 2]], [-0.1 * 0.5 / np.sqrt(
      1e-5 + 0.25), 0.0], rtol=1e-6)
  np.testing.assert_array_equal(grad_sum[[0, 2]], [0.25, 0.0])
  reference = optax.adagrad(0.1, initial_accumulator_value=1e-5, eps=0.0)
  ref_updates, _ = reference.update(g, reference.init(jnp.zeros(3)))
  assert np.isnan(ref_updates[1])


def test_donation_reuses_buffers_without_warning():
  tx = classp(0.1, threshold=0.1, power=2)

  def train_step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(train_step, donate_argnums=(0, 1))
  params = {'w': jnp.ones((64, 32)), 'b': jnp.ones(32)}
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    new_params, new_state = step(params, state, grads)
    jax.block_until_ready(new_params)
  assert all(x.is_deleted() for x in jax.tree.leaves((params, state)))
  assert isinstance(new_state[0], ClasspState)
