"""Tuning as a package feature: the grid is searched on held-out data only,
a run that is no result is never chosen, the choice is tested on every
test seed, and a stopped search resumes to the same choice."""

import dataclasses
import math

import numpy as np
import pytest

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import datasets
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual import train
from classp_optax.continual import tune
from classp_optax.continual import tuning

# The search diverges on purpose; that run's warning is expected.
pytestmark = pytest.mark.filterwarnings(
    'ignore::classp_optax.continual.results.DivergenceWarning')
CONFIG = TrainConfig(batch_size=32, steps_per_task=40)
# A rate that learns nothing, one that learns, one that diverges.
RATES = [1e-7, 0.05, 1e30]


def stream(seed):
  return streams.split(datasets.load_digits(seed=seed), scenario='task')[:2]


def make_model(seed):
  return models.make_model('mlp', (8, 8, 1), 10, seed, hidden=(32,))


def tuned(**kwargs):
  return tune('sgd', tuning.grid(learning_rate=RATES), tasks=stream,
              make_model=make_model, config=CONFIG, test_seeds=(0, 1), **kwargs)


@pytest.fixture(scope='module')
def choice():
  return tuned()


def test_a_run_that_is_no_result_is_never_chosen(choice):
  assert choice.best == dict(learning_rate=0.05)
  assert 'not learnt' in tuning.rejection(choice.search[0])
  assert 'diverged' in tuning.rejection(choice.search[2])
  assert math.isnan(choice.scores[0]) and math.isnan(choice.scores[2])


def test_the_search_scores_held_out_training_data_as_a_run_of_its_own(choice):
  """The score is a plain run on ``validation_tasks`` (never the test set),
  as one trained alone gets it."""
  held_out = streams.validation_tasks(stream(0), 0.1, 0)
  alone = train(Run(lambda: make_model(0), held_out,
                    make_method('sgd', learning_rate=0.05), CONFIG))
  np.testing.assert_allclose(choice.scores[1],
                             alone.summary['average_accuracy'], atol=1e-6)
  test_sizes = {len(t.test_index) for t in stream(0)}
  assert {len(t.test_index) for t in held_out}.isdisjoint(test_sizes)


def test_the_choice_is_tested_on_every_seed_with_its_own_stream(choice):
  assert [r.swept['seed'] for r in choice.tests] == [0, 1]
  for seed, result in zip((0, 1), choice.tests, strict=True):
    alone = train(Run(lambda s=seed: make_model(s), stream(seed),
                      make_method('sgd', learning_rate=0.05),
                      dataclasses.replace(CONFIG, seed=seed)))
    np.testing.assert_allclose(result.accuracy, alone.accuracy, atol=1e-6)
  mean, spread = choice.test_summary['average_accuracy']
  values = [r.summary['average_accuracy'] for r in choice.tests]
  assert mean == pytest.approx(np.mean(values)) and spread == pytest.approx(
      np.std(values))


def test_a_stopped_search_resumes_to_the_same_choice(tmp_path, choice):
  first = tuned(checkpoint_dir=tmp_path)
  again = tuned(checkpoint_dir=tmp_path)
  assert again.best == first.best == choice.best
  for a, b in zip(first.search + first.tests, again.search + again.tests,
                  strict=True):
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
  assert len(list(tmp_path.iterdir())) == 2  # one search, one test folder


def test_settings_that_compile_differently_train_as_separate_programs():
  choice = tune('replay', tuning.grid(budget=[2, 4], learning_rate=[0.05]),
                tasks=stream, make_model=make_model, config=CONFIG,
                test_seeds=())
  assert [r.hyperparams['budget'] for r in choice.search] == [2, 4]
  assert choice.best['budget'] in (2, 4)
  assert choice.tests == [] and choice.test_summary == {}  # search alone


def test_bad_input_is_named_before_anything_trains():
  def refuse(seed):
    raise AssertionError('trained')
  kwargs = dict(tasks=refuse, make_model=refuse)
  with pytest.raises(ValueError, match=r"sgd\.learning_rat.*learning_rate"):
    tune('sgd', [dict(learning_rat=0.1)], **kwargs)
  with pytest.raises(ValueError, match=r'sgd\.learning_rate'):
    tune('sgd', [dict(learning_rate=-1.0)], **kwargs)
  with pytest.raises(ValueError, match='grid .* is empty'):
    tune('sgd', [], **kwargs)
  with pytest.raises(ValueError, match=r'validation must be in \(0, 1\)'):
    tune('sgd', validation=1.0, **kwargs)
  for seed in (-1, 0.5, True):
    with pytest.raises(ValueError, match='search_seed must be an integer >= 0'):
      tune('sgd', search_seed=seed, **kwargs)
  for seeds in ((-1,), (0, 0), (True,)):
    with pytest.raises(ValueError, match='test_seeds must be distinct'):
      tune('sgd', test_seeds=seeds, **kwargs)
  with pytest.raises(ValueError, match='learning_rate must be a non-empty'):
    tuning.grid(learning_rate=0.1)


def test_when_every_configuration_is_rejected_each_reason_is_named():
  with pytest.raises(ValueError, match=r"no configuration of 'sgd'.*\n.*"
                     r"1e-07.*not learnt\n.*1e\+30.*diverged"):
    tune('sgd', tuning.grid(learning_rate=[1e-7, 1e30]), tasks=stream,
         make_model=make_model, config=CONFIG)
