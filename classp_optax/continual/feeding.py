"""Each task's training data and test sets, placed on the devices for the
engine: one copy for every configuration where they all see the same data,
a stack split over the configurations where they differ."""

from collections.abc import Sequence

import jax
import numpy as np

from classp_optax._padding import pad_rows
from classp_optax.continual import evaluation
from classp_optax.continual import hooks as hooklib


def _same(arrays: list) -> bool:
  return all(a.shape == arrays[0].shape and np.array_equal(a, arrays[0])
             for a in arrays[1:])


class Feeder:
  """The data of one training of ``runs``, each run's train stream being
  ``train_tasks[k]``; test sets are placed once per training."""

  def __init__(self, place, runs: Sequence, train_tasks: Sequence):
    self.place, self.runs, self.train_tasks = place, runs, train_tasks
    self.max_train = max(task.num_train for tasks in train_tasks
                         for task in tasks)
    self.test_sets: dict = {}

  def stacked(self, per_config: list):
    """``(shared, tree)``: one copy on every device if every configuration
    has the same leaves, else a stack split over the configurations."""
    leaves = [jax.tree.leaves(tree) for tree in per_config]
    if all(_same(list(group)) for group in zip(*leaves, strict=True)):
      return True, self.place.shared(per_config[0])
    return False, self.place.configs(hooklib.stack(per_config))

  def task_data(self, t: int):
    """``(shared, TaskData)`` of task ``t`` as trained, padded to the
    largest task so that one compiled step serves every task."""
    per_config = []
    for tasks in self.train_tasks:
      x, y = tasks[t].train_batch(np.arange(tasks[t].num_train))
      per_config.append(hooklib.TaskData(
          pad_rows(x, self.max_train), pad_rows(y, self.max_train),
          tasks[t].train_logit_masks(), np.int32(t)))
    return self.stacked(per_config)

  def test_set(self, j: int):
    """Every configuration's test set ``j`` (batches split over the data
    axis) and scored outputs, placed once per training."""
    if j not in self.test_sets:
      size = self.runs[0].config.eval_batch_size
      num_batches = max(-(-len(task.test_index) // size)
                        for r in self.runs for task in r.tasks)
      sets = [evaluation.test_batches(r.tasks[j], size, num_batches)
              for r in self.runs]
      shared = all(_same(list(group)) for group in zip(*sets, strict=True))
      batches = self.place.batches(
          sets[0] if shared else hooklib.stack(sets), stacked=not shared)
      masks = self.place.configs(np.stack([r.tasks[j].logit_mask()
                                           for r in self.runs]))
      self.test_sets[j] = shared, batches, masks
    return self.test_sets[j]
