"""A method and an optimizer registered from this file alone, with no edit
to the package, work everywhere a built-in one does: make_method, train,
the command (its methods, sweeps, --list-settings, --set errors) and a
checkpoint resume."""

import dataclasses
import json

import numpy as np
import optax
import pytest

from classp_optax.continual import Hook
from classp_optax.continual import Method
from classp_optax.continual import Run
from classp_optax.continual import Setting
from classp_optax.continual import TrainConfig
from classp_optax.continual import cli
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import register_method
from classp_optax.continual import register_optimizer
from classp_optax.continual import streams
from classp_optax.continual import train
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.methods import catalogue
from classp_optax.continual.methods import optimizers
from classp_optax.continual.settings import Real
from tests.resume import killed_and_resumed

LEARNING_RATE = Setting('learning_rate', 3e-3, 'step size',
                        Real(0.0, low_open=True, high_open=True))


def lion(learning_rate):
  return Method.injected('lion', optax.lion, learning_rate=learning_rate)


@pytest.fixture
def registered():
  """``lion`` as a method and as an optimizer, for this test only."""
  register_method('lion', lion, [LEARNING_RATE])
  register_optimizer('lion', optax.lion)
  yield
  catalogue._METHODS.pop('lion')
  optimizers._OPTIMIZERS.pop('lion')


def _tasks():
  return streams.split(load_digits(), scenario='task')[:2]


def _mlp():
  return lambda: models.make_model('mlp', (8, 8, 1), 10, 0, hidden=(32,))


CONFIG = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128)


def test_make_method_checks_its_declared_settings(registered):
  method = make_method('lion', learning_rate=1e-3)
  assert method.label == 'lion' and method.hyperparams == {
      'learning_rate': 1e-3}
  assert make_method('lion:fast').label == 'lion:fast'
  with pytest.raises(ValueError, match=r'lion.learning_rate must be a real '
                     r'number in \(0.0, inf\)'):
    make_method('lion', learning_rate=-1.0)
  with pytest.raises(ValueError, match="Did you mean lion.learning_rate"):
    make_method('lion', learning_rat=0.1)


def test_it_trains_and_learns(registered):
  result = train(Run(_mlp(), _tasks(), make_method('lion'), CONFIG))
  assert result.not_learnt == [] and result.diverged is None
  assert np.all(np.diag(result.accuracy) > 0.9)


def test_a_penalty_runs_on_a_registered_optimizer(registered):
  """``ewc.optimizer=lion``: EWC's penalty on Lion, recorded as such; a
  setting of another optimizer is refused, naming the one it applies to."""
  method = make_method('ewc', optimizer='lion', learning_rate=1e-3)
  assert method.hyperparams['optimizer'] == 'lion'
  result = train(Run(_mlp(), _tasks(), method, CONFIG))
  assert result.not_learnt == [] and len(result.stiffness) == 2
  with pytest.raises(ValueError, match='ewc.momentum applies to '
                     'optimizer=sgd only, not lion'):
    make_method('ewc', optimizer='lion', momentum=0.9)


def test_the_command_runs_it_beside_a_built_in_method(registered, tmp_path,
                                                      capsys):
  argv = ['--benchmark', 'split-digits', '--methods', 'lion,sgd', '--epochs',
          '1', '--seeds', '0,1', '--sweep', 'lion.learning_rate=1e-3,3e-3',
          '--out', str(tmp_path), '--no-progress']
  assert cli.main(argv) == 0
  saved = json.loads((tmp_path / 'results.json').read_text())
  rows = [(r['method'], r['swept']) for r in saved['results']]
  assert ('lion', {'learning_rate': 3e-3, 'seed': 1}) in rows
  assert len(rows) == 6
  assert all(not r['not_learnt'] for r in saved['results'])
  assert 'lion learning_rate=0.003 seed=1' in capsys.readouterr().out


def test_the_command_lists_and_checks_its_settings(registered, capsys):
  assert cli.main(['--list-settings']) == 0
  assert 'lion.learning_rate=0.003' in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_:
    cli.main(['--methods', 'lion', '--set', 'lion.learning_rat=0.1'])
  assert exit_.value.code == 2
  assert "Did you mean lion.learning_rate?" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(['--help'])
  assert 'lion' in capsys.readouterr().out


def test_a_killed_run_resumes_to_the_same_result(registered, tmp_path):
  run = Run(_mlp(), _tasks(), make_method('lion'), CONFIG)
  straight = train(run)

  resumed = killed_and_resumed(run, tmp_path)
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)


class UnevenPlan(Hook):
  """A plan whose length follows the seed, and no pad_plan."""

  def plan(self, tasks, t, seed):
    return (np.ones(5 + seed, np.float32),)


def test_a_command_is_refused_before_any_method_trains(monkeypatch, capsys,
                                                      tmp_path):
  """Every method's sweep is checked before the first one trains: a method
  whose plans cannot take one shape stops the command before ``sgd``,
  listed first, trains."""

  def uneven(learning_rate):
    method = Method.injected('uneven', optax.sgd, learning_rate=learning_rate)
    return dataclasses.replace(method, hooks=(UnevenPlan(),))

  monkeypatch.setattr(catalogue, '_METHODS', dict(catalogue._METHODS))
  register_method('uneven', uneven, [LEARNING_RATE])
  trained = []
  real_train = cli.engine.train

  def recording_train(runs, **options):
    trained.append(runs[0].method.label)
    return real_train(runs, **options)

  monkeypatch.setattr(cli.engine, 'train', recording_train)
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--benchmark', 'split-digits', '--methods', 'sgd,uneven',
              '--seeds', '0,1', '--steps-per-task', '2', '--no-progress',
              '--out', str(tmp_path)])
  assert exit_info.value.code == 2
  assert 'UnevenPlan.plan gives the configurations of one sweep' in (
      capsys.readouterr().err)
  assert trained == []
