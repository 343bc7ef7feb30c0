"""Continual-learning metrics against a matrix worked out by hand."""

import pathlib

import numpy as np
import pytest

from classp_optax.continual import metrics

# R[i, j]: accuracy on task j after training task i.
R = np.array([
    [0.90, 0.10, 0.05],
    [0.70, 0.80, 0.20],
    [0.60, 0.85, 0.95],
])


def test_metrics_by_hand():
  assert metrics.average_accuracy(R) == pytest.approx((0.60 + 0.85 + 0.95) / 3)
  assert metrics.learning_accuracy(R) == pytest.approx((0.90 + 0.80 + 0.95) / 3)
  # BWT: (0.60 - 0.90 + 0.85 - 0.80) / 2 = -0.125; negative = forgot.
  assert metrics.backward_transfer(R) == pytest.approx(-0.125)
  # Forgetting: task 0 best 0.90 -> 0.60 (0.30); task 1 best 0.80 -> 0.85
  # (-0.05): mean 0.125.
  assert metrics.forgetting(R) == pytest.approx(0.125)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_diagonal():
  r = np.array([[0.5, 0.0, 0.0], [0.9, 0.7, 0.0], [0.6, 0.7, 0.8]])
  # Task 0 peaked after task 1 (0.9): forgot 0.3; BWT only sees 0.6 - 0.5.
  assert metrics.forgetting(r) == pytest.approx((0.3 + 0.0) / 2)
  assert metrics.backward_transfer(r) == pytest.approx((0.1 + 0.0) / 2)


def test_forgetting_ignores_accuracy_before_a_task_was_learnt():
  """Where the two definitions differ: task 1 scored 0.6 before training (on
  a shared head) and 0.5 after. Chaudhry's max over every l < T-1 would give
  (0.3 + 0.2) / 2 = 0.25; over l >= j, as the README states, 0.2."""
  r = np.array([[0.9, 0.6, 0.1], [0.7, 0.5, 0.2], [0.6, 0.4, 0.9]])
  assert metrics.forgetting(r) == pytest.approx((0.3 + 0.1) / 2)


def test_the_readme_states_the_forgetting_formula_the_code_computes():
  readme = (pathlib.Path(__file__).parents[1] / 'README.md').read_text()
  assert f'**forgetting** is `{metrics.FORGETTING_FORMULA}`' in readme
  assert metrics.FORGETTING_FORMULA in metrics.forgetting.__doc__


def test_no_forgetting_and_single_task():
  perfect = np.triu(np.ones((4, 4))).T
  assert metrics.forgetting(perfect) == 0.0
  assert metrics.backward_transfer(perfect) == 0.0
  one = np.array([[0.7]])
  assert metrics.summarize(one) == {
      'average_accuracy': 0.7, 'forgetting': 0.0, 'backward_transfer': 0.0,
      'learning_accuracy': 0.7}


@pytest.mark.parametrize('bad', [np.zeros((2, 3)), np.zeros(3), np.zeros((0, 0))])
def test_rejects_non_square(bad):
  with pytest.raises(ValueError, match='T x T'):
    metrics.average_accuracy(bad)


def test_mean_and_spread_is_the_mean_and_population_std():
  values = [0.5, 0.7, 0.9]
  mean, spread = metrics.mean_and_spread(values)
  assert mean == pytest.approx(0.7)
  assert spread == pytest.approx(np.sqrt(((0.2 ** 2) * 2) / 3))
  assert metrics.mean_and_spread([0.3]) == (0.3, 0.0)
  with pytest.raises(ValueError, match='at least one value'):
    metrics.mean_and_spread([])
