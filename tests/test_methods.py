"""Every method's hyperparameters are checked up front, and its defaults
train stably on the built-in benchmarks."""

import functools
import json
import pathlib
import warnings

from flax import nnx
import jax
import numpy as np
import optax
import pytest

from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.methods import penalties
from classp_optax.continual.suites import SUITES
from tests.compiles import compiled
from tests.compiles import forget_engine_programs

# Per hyperparameter: values it must refuse, and the range its error states.
BAD = {
    'learning_rate': (['abc', -1.0, 0.0, float('nan')], '(0.0, inf)'),
    'later_learning_rate': (['abc', -1.0, 0.0], '(0.0, inf)'),
    'threshold': (['abc', -1e-3, float('inf')], '[0.0, inf)'),
    'later_threshold': (['abc', -1e-3], '[0.0, inf)'),
    'power': (['abc', 0.0, -2.0], '(0.0, inf)'),
    'eps': (['abc', -1e-5], '[0.0, inf)'),
    'strength': (['abc', -1.0, float('inf')], '[0.0, inf)'),
    'damping': (['abc', 0.0, -0.1], '(0.0, inf)'),
    'momentum': (['abc', -0.5, 1.0, 1.5], '[0.0, 1.0)'),
    'decay': (['abc', -0.1, 1.5], '[0.0, 1.0]'),
    'mode': (['both', 3], "('separate', 'online')"),
    'decay_from_task': (['abc', -1, 1.5, True], 'an integer >= 0'),
    'optimizer': (['rmsprop', 3], "('sgd', 'adam', 'adagrad', 'classp')"),
    'relative_threshold': (['yes', 1], 'True or False'),
    'fisher_samples': (['abc', 0, 1.5, True], 'an integer >= 1'),
    'fisher': (['true', 1], "('empirical', 'predicted', 'sampled', 'exact')"),
    'budget': (['abc', -1, 1.5, True], 'an integer >= 0'),
    'buffer_size': (['abc', -1, 1.5, True], 'an integer >= 0'),
    'minibatch_size': (['abc', 0, 1.5, True], 'an integer >= 1'),
    'alpha': (['abc', -0.1, float('inf')], '[0.0, inf)'),
    'beta': (['abc', -0.1, float('inf')], '[0.0, inf)'),
    'temperature': (['abc', 0.0, -1.0], '(0.0, inf)'),
    'l2': (['abc', -1e-4, float('inf')], '[0.0, inf)'),
}

CASES = [(name, parameter, value)
         for name in methods.METHODS
         for parameter in methods.settings_of(name)
         if parameter != 'reset_state'
         for value in BAD[parameter][0]]


def test_every_setting_of_every_method_has_bad_values_listed():
  for name in methods.METHODS:
    assert set(methods.settings_of(name)) - {'reset_state'} <= set(BAD)


def test_the_settings_list_states_the_ranges_the_errors_state():
  """--list-settings shows each setting's declaration; each range there is
  the one the setting's error names (checked for every value in BAD
  above)."""
  for name in methods.METHODS:
    for setting in methods.settings_of(name).values():
      if setting.name != 'reset_state':
        assert setting.accepts.text.startswith(BAD[setting.name][1]), setting
  text = methods.describe('classp', {'learning_rate': 0.003})
  assert "classp.learning_rate=0.003" in text
  assert 'classp.decay_from_task=1' in text and 'apply_decay' in text


@pytest.mark.parametrize('name,parameter,value', CASES)
def test_every_hyperparameter_is_checked_naming_it_and_its_range(
    name, parameter, value):
  with pytest.raises(ValueError) as error:
    methods.make_method(name, **{parameter: value})
  message = str(error.value)
  assert f'{name}.{parameter} must be' in message
  assert BAD[parameter][1] in message


def test_unknown_method_and_hyperparameter():
  with pytest.raises(ValueError, match='method must be one of'):
    methods.make_method('adamw')
  with pytest.raises(ValueError, match="adam has no setting 'beta'. Its "
                     'settings: learning_rate, reset_state'):
    methods.make_method('adam', beta=0.9)
  with pytest.raises(ValueError, match="no setting 'treshold'. Did you mean "
                     'classp.threshold'):
    methods.make_method('classp', treshold=0.1)
  with pytest.raises(ValueError, match="classp:sparse has no setting 'x'"):
    methods.make_method('classp:sparse', x=1)


def test_labelled_variants_keep_the_kind_and_take_its_hyperparameters():
  variant = methods.make_method('classp:sparse', threshold=1e-3)
  assert variant.label == 'classp:sparse' and variant.name == 'classp'
  assert variant.hyperparams['threshold'] == 1e-3
  with pytest.raises(ValueError, match='classp:sparse.threshold must be'):
    methods.make_method('classp:sparse', threshold=-1.0)


# One method of each kind: an optimizer, a penalty, rehearsal. Every method's
# declared defaults on every embedded benchmark and scenario: the test below.
@pytest.mark.parametrize('name', ['classp', 'ewc', 'er'])
def test_api_defaults_learn_stably_on_the_default_benchmark(name):
  """The Python API's defaults (no suite settings): every task of a 3-task
  prefix of the command's default benchmark is learnt, and no penalty is
  past SGD's stability bound."""
  benchmark = 'permuted-digits'
  suite = SUITES[benchmark]
  tasks = suite.make_tasks(None, 0, 3, suite.default_scenario)[:3]
  config = TrainConfig(epochs=suite.epochs, batch_size=suite.batch_size,
                            eval_batch_size=128)
  make_model = lambda: models.make_model('mlp', (8, 8, 1), 10, 0,  # noqa: E731
                                         hidden=suite.hidden)
  result = engine.train(engine.Run(make_model, tasks, methods.make_method(name),
                                config))
  chance = 0.1  # ten digits
  assert np.all(np.diag(result.accuracy) > chance + 0.3), result.accuracy
  bound = result.bounds.get('stiffness', np.inf)
  assert all(s < bound for s in result.stiffness[:-1])


@pytest.mark.parametrize('name', ['ewc', 'si'])
@pytest.mark.parametrize('settings,message', [
    (dict(optimizer='adam', momentum=0.9), 'momentum applies to optimizer=sgd'),
    (dict(optimizer='sgd', threshold=1e-3),
     'threshold applies to optimizer=classp only'),
])
def test_inner_optimizer_settings_must_apply_to_it(name, settings, message):
  with pytest.raises(ValueError, match=f'{name}[.].*{message}'):
    methods.make_method(name, **settings)


@pytest.mark.parametrize('name,penalty,consolidation', [
    ('ewc', add_ewc_penalty, penalties.EwcConsolidation(fisher_samples=64)),
    ('si', add_si_penalty, penalties.SiConsolidation(damping=0.1)),
])
@pytest.mark.parametrize('optimizer', ['adam', 'classp'])
def test_penalty_on_an_inner_optimizer_equals_the_hand_composed_chain(
    name, penalty, consolidation, optimizer):
  """The toolkit's method and optax.chain(penalty, optimizer) written by hand
  give the same weights after a 2-task run."""
  tasks = SUITES['split-digits'].make_tasks(None, 0, None, 'task')[:2]
  config = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128)
  inner = (optax.adam(1e-3) if optimizer == 'adam'
           else classp(1e-3, threshold=1e-6, power=2.0))
  settings = dict(threshold=1e-6, power=2.0) if optimizer == 'classp' else {}
  fisher = dict(fisher_samples=64) if name == 'ewc' else {}
  ours = methods.make_method(name, optimizer=optimizer, learning_rate=1e-3,
                             strength=5.0, **settings, **fisher)
  by_hand = methods.Method(name, {}, optax.chain(penalty(5.0), inner),
                           hooks=(consolidation,))
  make_model = lambda: models.make_model('mlp', (8, 8, 1), 10, 0, hidden=(32,))
  a = engine.train(engine.Run(make_model, tasks, ours, config))
  b = engine.train(engine.Run(make_model, tasks, by_hand, config))
  assert ours.hyperparams['optimizer'] == optimizer
  # Equal to float rounding: the toolkit injects CLASSP's learning rate,
  # threshold and decay switch as traced values, where the chain by hand has
  # constants that XLA may fold into another order of operations (one ulp
  # apart after a step, seen with jaxlib 0.10.2 on the CPU).
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5,
                                 atol=1e-8),
               nnx.state(a.model, nnx.Param), nnx.state(b.model, nnx.Param))
  assert a.stiffness and a.bounds == {}  # adaptive: no SGD bound


@pytest.mark.parametrize('name', sorted(methods.METHODS))
@pytest.mark.parametrize('benchmark', ['split-digits', 'permuted-digits'])
def test_every_method_learns_every_task_at_the_defaults_of_the_default_scenario(
    benchmark, name, caplog):
  """The defaults of the embedded benchmarks, over the whole stream: the
  method learns every task, does not diverge, and no penalty passes SGD's
  stability bound (the EWC Fisher sums over tasks, so stiffness grows with
  them). The other scenarios: the committed summaries of
  ``benchmarks/defaults_learn.py``, which the test below holds to today's
  defaults. Each compiled function compiles once in the run, not once a
  task (CLASSP's schedule is injected, not rebuilt), though split digits'
  tasks differ in size."""
  suite = SUITES[benchmark]
  scenario = suite.default_scenario
  tasks = suite.make_tasks(None, 0, suite.num_tasks, scenario)
  config = TrainConfig(epochs=suite.epochs, batch_size=suite.batch_size,
                       eval_batch_size=128)
  make_model = functools.partial(models.make_model, 'mlp', (8, 8, 1),
                                 tasks[0].num_outputs, 0, hidden=suite.hidden)
  method = methods.make_method(name, **suite.defaults_for(name, scenario))
  forget_engine_programs()
  with warnings.catch_warnings(record=True) as caught, jax.log_compiles(), \
      caplog.at_level('WARNING'):
    warnings.simplefilter('always', methods.StiffnessWarning)
    result = engine.train(engine.Run(make_model, tasks, method, config))
  assert [str(w.message) for w in caught
          if w.category is methods.StiffnessWarning] == []
  assert result.diverged is None, result.diverged
  assert not result.not_learnt, result.not_learnt
  counts = compiled(caplog)
  assert {f: counts[f] for f in _ONCE_EACH[False]} == _ONCE_EACH[
      name in _NO_TASK_END], name


# The engine's compiled functions in a run; a method none of whose hooks
# acts at a task's end checks only its state's finiteness there (LwF keeps
# the previous model as a task starts).
_NO_TASK_END = ('adagrad', 'adam', 'joint', 'lwf', 'sgd')
_ONCE_EACH = {
    end_free: dict(stacked_train_steps=1, start_tasks=1, correct_counts=1,
                   end_tasks=int(not end_free), finite_states=int(end_free))
    for end_free in (False, True)}


RESULTS = pathlib.Path(__file__).parents[1] / 'docs' / 'results'


@pytest.mark.parametrize('benchmark', ['split-digits', 'permuted-digits'])
@pytest.mark.parametrize('which', ['benchmarks', 'declared'])
def test_todays_defaults_in_every_scenario_are_those_found_to_learn(
    benchmark, which):
  """Every method's settings on each embedded benchmark in each scenario
  (the benchmark's, or the method's declared ones) are those with which
  ``benchmarks/defaults_learn.py`` trained it and found every task learnt,
  no run diverged and no penalty past its bound (its committed summary): a
  changed default, or a new method, fails here until it runs again."""
  path = RESULTS / f'defaults-learn-{which}.json'
  cells = json.loads(path.read_text())['cells'][benchmark]
  for scenario in SUITES[benchmark].scenarios:
    where = dict(benchmark=benchmark, scenario=scenario) if (
        which == 'benchmarks') else {}
    for name in methods.METHODS:
      cell = cells[scenario].get(name)
      assert cell is not None, f'{name} not in {path.name}'
      now = json.loads(json.dumps(methods.make_method(
          name, **where).hyperparams))
      assert now == cell['hyperparams'], (scenario, name)
      assert (cell['status'], cell['not_learnt'], cell['stiff']) == (
          'finished', [], []), (scenario, name)


def test_classp_method_takes_the_relative_threshold():
  """``--set classp.relative_threshold=True``: every task's gate is relative
  to its tensors' mean squared gradient."""
  method = methods.make_method('classp', learning_rate=1.0, threshold=1.0,
                               power=2.0, eps=0.0, decay_from_task=0,
                               later_threshold=None, relative_threshold=True)
  assert method.hyperparams['relative_threshold'] is True
  grads = {'w': jax.numpy.array([3.0, 1.0, 0.0, -2.0])}  # mean g**2 = 3.5
  updates, _ = method.optimizer.update(grads, method.optimizer.init(grads))
  np.testing.assert_allclose(updates['w'], [-1.0, 0.0, 0.0, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match='classp.relative_threshold'):
    methods.make_method('classp', relative_threshold='yes')


@pytest.mark.parametrize('name', sorted(methods.METHODS))
def test_states_from_one_method_share_no_buffer(name):
  """A state may be donated (``jax.jit(..., donate_argnums=...)``) without
  deleting part of the next state the method makes: no leaf of ``init`` is
  an array the transform holds."""
  method = methods.make_method(name)
  params = {'w': jax.numpy.ones((3, 2))}
  donated = method.optimizer.init(params)
  jax.jit(lambda state: state, donate_argnums=0)(donated)
  again = method.optimizer.init(params)
  for leaf in jax.tree.leaves(again):
    assert not leaf.is_deleted()
    np.asarray(leaf)  # readable
