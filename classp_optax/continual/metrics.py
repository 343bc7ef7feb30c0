"""Continual-learning metrics from an accuracy matrix.

``R[i, j]`` is the accuracy on task ``j``'s test set after training on tasks
``0..i``; ``T`` tasks give a ``T x T`` matrix. Accuracies are fractions in
``[0, 1]``. Each metric needs at least one task; those about earlier tasks
(forgetting, backward transfer) are 0 for a single task.
"""

import numpy as np


def _check(accuracy: np.ndarray) -> np.ndarray:
  r = np.asarray(accuracy, dtype=np.float64)
  if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
    raise ValueError(f'accuracy must be a non-empty T x T matrix, got {r.shape}.')
  return r


def average_accuracy(accuracy) -> float:
  """Mean accuracy over all tasks after the last: ``mean_j R[T-1, j]``."""
  return float(_check(accuracy)[-1].mean())


def learning_accuracy(accuracy) -> float:
  """Plasticity: mean accuracy on each task just after learning it,
  ``mean_j R[j, j]``."""
  return float(np.diag(_check(accuracy)).mean())


def backward_transfer(accuracy) -> float:
  """BWT (Lopez-Paz & Ranzato, 2017): ``mean_{j<T-1} (R[T-1, j] - R[j, j])``.

  Negative when later tasks erased earlier ones; positive when they helped.
  """
  r = _check(accuracy)
  if len(r) == 1:
    return 0.0
  return float((r[-1, :-1] - np.diag(r)[:-1]).mean())


FORGETTING_FORMULA = 'mean_{j<T-1} (max_{j<=l<T-1} R[l, j] - R[T-1, j])'


def forgetting(accuracy) -> float:
  """Average forgetting (Chaudhry et al., 2018), over tasks once learnt.

  ``mean_{j<T-1} (max_{j<=l<T-1} R[l, j] - R[T-1, j])``: how far each
  earlier task fell from its best accuracy since it was trained. Chaudhry et
  al. take the maximum over every ``l < T-1``; before task ``j`` is trained
  its accuracy measures nothing learnt (chance on its own head, or transfer
  from other tasks), so it is left out here. 0 means nothing was forgotten,
  larger is worse; a task that later training improved beyond its best
  counts negatively.
  """
  r = _check(accuracy)
  if len(r) == 1:
    return 0.0
  best = np.array([r[j:-1, j].max() for j in range(len(r) - 1)])
  return float((best - r[-1, :-1]).mean())


def summarize(accuracy) -> dict:
  """All of the above, by name."""
  return {
      'average_accuracy': average_accuracy(accuracy),
      'forgetting': forgetting(accuracy),
      'backward_transfer': backward_transfer(accuracy),
      'learning_accuracy': learning_accuracy(accuracy),
  }


def mean_and_spread(values) -> tuple[float, float]:
  """The mean of ``values`` over seeds and their spread: the standard
  deviation (``ddof=0``), as every table here shows them."""
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    raise ValueError('mean_and_spread needs at least one value.')
  return float(values.mean()), float(values.std())
