"""One source of defaults: a method made in Python gets what the command
gets, a method moved to another optimizer takes that optimizer's defaults,
and a named benchmark's defaults are one argument away."""

import functools
import json

import pytest

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import cli
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import train
from classp_optax.continual.methods import optimizers
from classp_optax.continual.suites import SUITES

CLASSP_UNDER = dict(learning_rate=0.01, threshold=1e-5, power=2.0)


@pytest.mark.parametrize('method', ['replay', 'ewc', 'si', 'er', 'joint'])
def test_another_optimizer_brings_its_own_defaults(method):
  on_classp = make_method(method, optimizer='classp').hyperparams
  assert {k: on_classp[k] for k in CLASSP_UNDER} == CLASSP_UNDER
  assert make_method(method, optimizer='adam').hyperparams['learning_rate'] == 1e-3


def test_what_the_user_sets_wins_over_the_optimizers_defaults():
  made = make_method('replay', optimizer='classp', learning_rate=3e-3,
                     power=1.0).hyperparams
  assert made['learning_rate'] == 3e-3 and made['power'] == 1.0
  assert made['threshold'] == 1e-5


def test_the_methods_own_optimizer_keeps_the_methods_defaults():
  assert make_method('er').hyperparams['learning_rate'] == 0.1
  assert make_method('er', optimizer='sgd').hyperparams['learning_rate'] == 0.1


def test_every_optimizer_declares_defaults_its_methods_can_take():
  for name, entry in optimizers.OPTIMIZERS.items():
    assert 'learning_rate' in entry.defaults, name
    make_method('ewc', optimizer=name)  # in range: checked as given ones are


def test_a_named_benchmarks_defaults_in_python_are_the_commands(tmp_path,
                                                                capsys):
  made = make_method('ewc', benchmark='split-digits', scenario='class')
  assert made.hyperparams == make_method(
      'ewc', **SUITES['split-digits'].defaults_for('ewc', 'class')).hyperparams
  cli.main(['--benchmark', 'split-digits', '--scenario', 'class', '--methods',
            'ewc', '--epochs', '1', '--out', str(tmp_path), '--no-progress'])
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert saved['results'][0]['hyperparams'] == made.hyperparams


def test_a_benchmark_or_scenario_of_no_such_name_is_named():
  with pytest.raises(ValueError, match=r"benchmark must be one of .*got 'nope'"):
    make_method('ewc', benchmark='nope')
  with pytest.raises(ValueError, match=r"scenario must be one of .*'domain'"):
    make_method('ewc', benchmark='split-mnist-der', scenario='domain')


def test_the_command_moves_a_method_to_classp_with_classps_defaults(tmp_path,
                                                                    capsys):
  """The benchmark's tuned learning rate is Adam's: on CLASSP it is not."""
  cli.main(['--benchmark', 'split-digits', '--scenario', 'class', '--methods',
            'replay', '--set', 'replay.optimizer=classp', '--epochs', '1',
            '--out', str(tmp_path), '--no-progress'])
  saved = json.loads((tmp_path / 'results.json').read_text())
  hyperparams = saved['results'][0]['hyperparams']
  assert {k: hyperparams[k] for k in CLASSP_UNDER} == CLASSP_UNDER


def _average(method, scenario='class'):
  suite = SUITES['split-digits']
  tasks = suite.make_tasks(None, 0, None, scenario)
  make = functools.partial(models.make_model, 'mlp', (8, 8, 1), 10, 0,
                           hidden=suite.hidden)
  result = train(Run(make, tasks, method, TrainConfig(epochs=5, batch_size=16)))
  assert result.status == 'finished' and not result.not_learnt
  return result.summary['average_accuracy']


def test_replay_on_classp_learns_with_its_defaults():
  """Class-incremental split digits: replay on CLASSP at its defaults keeps
  up with replay on Adam at its own, far above fine-tuning."""
  on_adam = _average(make_method('replay'))
  on_classp = _average(make_method('replay', optimizer='classp'))
  assert on_classp > 0.8 and on_classp > on_adam - 0.1


@pytest.mark.parametrize('label,setting,value', [
    ('ewc:online', 'mode', 'online'), ('ewc:exact', 'fisher', 'exact'),
    ('replay:classp', 'optimizer', 'classp')])
def test_a_variant_named_after_a_value_has_that_value(label, setting, value):
  assert make_method(label).hyperparams[setting] == value
  assert make_method(label, **{setting: value}).hyperparams[setting] == value


def test_a_variants_name_never_disagrees_with_its_settings():
  with pytest.raises(ValueError, match=r"ewc:online\.mode='separate' "
                     r"disagrees with the label ewc:online"):
    make_method('ewc:online', mode='separate')


def test_a_variant_named_after_an_optimizer_drops_the_benchmarks_rate():
  made = make_method('replay:classp', benchmark='split-digits', scenario='class')
  assert {k: made.hyperparams[k] for k in CLASSP_UNDER} == CLASSP_UNDER


def test_a_quoted_name_on_the_command_line_is_the_name():
  """As benchmarks/tune.py writes it (``repr``), and as a shell user may."""
  from classp_optax.continual import methods
  for text in ("'classp'", '"classp"', 'classp'):
    assert methods.parse_settings('ewc:classp', {'optimizer': text}) == {
        'optimizer': 'classp'}
