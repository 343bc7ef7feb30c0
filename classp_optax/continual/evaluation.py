"""Test sets as the engine scores them: stacked into equal batches, padded
with examples marked invalid, so that one compiled call scores a whole set
and one compiled function serves every task."""

from flax import nnx
import jax
import numpy as np

from classp_optax._padding import pad_rows
from classp_optax.continual import steps
from classp_optax.continual.streams import Task


def test_batches(task: Task, batch_size: int,
                 num_batches: int | None = None) -> tuple:
  """``task``'s test set as host ``(inputs, labels, valid)`` stacks of shape
  ``(num_batches, batch_size, ...)`` (default: as few as it needs)."""
  x, y = task.test_set()
  num_batches = num_batches or -(-len(y) // batch_size)
  rows = num_batches * batch_size
  valid = np.arange(rows) < len(y)
  return tuple(a.reshape(num_batches, batch_size, *a.shape[1:])
               for a in (pad_rows(x, rows), pad_rows(y, rows), valid))


def evaluate(model: nnx.Module, task: Task, batch_size: int = 1000,
             example_score=steps.correct) -> float:
  """The mean score (by default, the accuracy) of ``model`` as it is (in
  training or evaluation mode) on ``task``'s test set."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  batches = test_batches(task, batch_size)
  total = steps.correct_counts(
      graphdef, example_score, *jax.tree.map(lambda x: x[None], (params, rest)),
      *batches, task.logit_mask()[None], shared_data=True)
  return float(total[0]) / len(task.test_index)


def majority_accuracy(task: Task) -> float | None:
  """:meth:`Task.majority_accuracy`, or None where the targets are not
  class labels (a regression)."""
  labels = task.dataset.y_test
  if not np.issubdtype(labels.dtype, np.integer):
    return None
  return task.majority_accuracy()
