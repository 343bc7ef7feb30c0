"""Task streams, named as in avalanche: permuted, split, and dataset sequences."""

from collections.abc import Sequence
import dataclasses

import numpy as np

from classp_optax.continual import datasets
from classp_optax.continual.datasets import Dataset

# van de Ven & Tolias, 2019, Three scenarios for continual learning,
# https://arxiv.org/abs/1904.07734
SCENARIOS = ('task', 'domain', 'class')
# Which outputs a class-incremental task trains: every class, or the classes
# seen so far (van de Ven & Tolias's "active classes").
TRAIN_OUTPUTS = ('all', 'seen')


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """One task of a stream.

  Attributes:
    name: a short label for tables and plots.
    dataset: the images and labels it draws from.
    train_index, test_index: the examples of ``dataset`` in this task.
    classes: the labels this task uses.
    own_head: if True the model is scored only on ``classes`` (task-
      incremental, multi-head); else on every output (shared head).
    permutation: a fixed permutation of the flattened pixels, or None.
    rotation: an angle in degrees (counter-clockwise, about the image's
      centre, nearest pixel) every image is rotated by, or None.
    label_map: if set, ``label_map[y]`` is the target for dataset label ``y``
      (domain-incremental split: the position of ``y`` in its task's
      classes; task- and class-incremental permuted: ``y`` plus the task's
      offset).
    train_masks: if set, a ``(num_outputs, num_outputs)`` boolean table
      whose row ``y`` names the outputs the training loss of an example
      labelled ``y`` is taken over, for every label of the stream (so that
      a batch may mix tasks, as joint training's does); if None, every
      example's is :meth:`logit_mask`.
  """

  name: str
  dataset: Dataset
  train_index: np.ndarray
  test_index: np.ndarray
  classes: tuple[int, ...]
  own_head: bool = False
  permutation: np.ndarray | None = None
  rotation: float | None = None
  label_map: np.ndarray | None = None
  train_masks: np.ndarray | None = None
  outputs: int | None = None
  parts: tuple['Task', ...] = ()

  @property
  def num_train(self) -> int:
    return len(self.train_index)

  @property
  def num_outputs(self) -> int:
    """The outputs the model needs: ``outputs`` if set, else the dataset's
    classes, or as many as ``label_map`` has targets."""
    if self.outputs is not None:
      return self.outputs
    if self.label_map is None:
      return self.dataset.num_classes
    return int(self.label_map.max()) + 1

  def _labels(self, labels: np.ndarray) -> np.ndarray:
    return labels if self.label_map is None else self.label_map[labels]

  def _inputs(self, images: np.ndarray) -> np.ndarray:
    if self.rotation is not None:
      # Imported here: loading SciPy costs every other command 0.2 to 0.4 s.
      from scipy import ndimage  # noqa: PLC0415
      images = ndimage.rotate(images, self.rotation, axes=(2, 1),
                              reshape=False, order=0)
    if self.permutation is None:
      return images
    flat = images.reshape(len(images), -1)[:, self.permutation]
    return flat.reshape(images.shape)

  def train_batch(self, positions: np.ndarray):
    """Images and labels at ``positions`` in this task's training set."""
    if self.parts:
      return self._parts_batch(np.asarray(positions))
    rows = self.train_index[positions]
    return (self._inputs(self.dataset.x_train[rows]),
            self._labels(self.dataset.y_train[rows]))

  def train_labels(self) -> np.ndarray:
    """The targets of this task's training examples, in order."""
    if self.parts:
      return np.concatenate([part.train_labels() for part in self.parts])
    return self._labels(self.dataset.y_train[self.train_index])

  def _parts_batch(self, positions: np.ndarray):
    starts = np.cumsum([0] + [part.num_train for part in self.parts])
    which = np.searchsorted(starts, positions, side='right') - 1
    x = np.empty((len(positions), *self.dataset.x_train.shape[1:]),
                 self.dataset.x_train.dtype)
    y = np.empty(len(positions), np.int32)
    for k, part in enumerate(self.parts):
      here = which == k
      if here.any():
        x[here], y[here] = part.train_batch(positions[here] - starts[k])
    return x, y

  def test_set(self):
    rows = self.test_index
    return (self._inputs(self.dataset.x_test[rows]),
            self._labels(self.dataset.y_test[rows]))

  def majority_accuracy(self) -> float:
    """The test accuracy of always answering the task's most frequent test
    label: what a model that learned nothing of the task scores at best."""
    labels = self._labels(self.dataset.y_test[self.test_index])
    return float(np.bincount(labels).max() / len(labels))

  def targets(self) -> np.ndarray:
    """The outputs that are targets of this task's classes."""
    return self._labels(np.asarray(self.classes))

  def logit_mask(self) -> np.ndarray:
    """Which outputs are scored: the targets of this task's classes (its
    own head), or all of them."""
    mask = np.zeros(self.num_outputs, bool)
    mask[self.targets() if self.own_head else slice(None)] = True
    return mask

  def train_logit_masks(self) -> np.ndarray:
    """Row ``y``: the outputs trained for an example labelled ``y``."""
    if self.train_masks is not None:
      return self.train_masks
    return np.broadcast_to(self.logit_mask(),
                           (self.num_outputs, self.num_outputs))


def _all(n):
  return np.arange(n)


def _check_scenario(scenario: str, train_outputs: str) -> None:
  if scenario not in SCENARIOS:
    raise ValueError(f'scenario must be one of {SCENARIOS}, got {scenario!r}.')
  if train_outputs not in TRAIN_OUTPUTS:
    raise ValueError(f'train_outputs must be one of {TRAIN_OUTPUTS}, got '
                     f'{train_outputs!r}.')
  if train_outputs == 'seen' and scenario != 'class':
    raise ValueError("train_outputs='seen' applies to the class scenario only, "
                     f'not {scenario!r}.')


def permuted(dataset: Dataset, num_tasks: int, seed: int = 0,
             scenario: str = 'domain', train_outputs: str = 'all',
             permute_first: bool = False) -> list[Task]:
  """PermutedMNIST-style tasks: task 0 the identity (unless
  ``permute_first``, as the DER paper's code does), then seeded
  permutations.

  Args:
    dataset: the data; every task draws on all of it.
    num_tasks: how many tasks.
    seed: chooses the permutations.
    scenario: as named by van de Ven & Tolias (2019), for ``C`` classes:

      * ``'domain'`` (the default): one head of ``C`` outputs shared by every
        task; the target is the digit, whatever the permutation.
      * ``'task'``: ``C`` outputs per task; task ``t``'s label ``y`` is
        output ``C * t + y``, and each task trains and is scored on its own
        ``C`` outputs (the task is known).
      * ``'class'``: one head of ``C * num_tasks`` outputs with those
        targets, every output scored (the task must be inferred).
    train_outputs: of the class-incremental scenario, the outputs each task
      trains: ``'all'``, or ``'seen'``, those of the tasks so far (as van de
      Ven & Tolias train).

  A fully connected network's initialisation does not depend on the order
  of its inputs, so an identity first task is, in distribution, any other
  permutation (their code permutes the first task too).
  """
  if num_tasks < 1:
    raise ValueError(f'num_tasks must be >= 1, got {num_tasks}.')
  _check_scenario(scenario, train_outputs)
  rng = np.random.default_rng(seed)
  num_pixels = int(np.prod(dataset.x_train.shape[1:]))
  per_task = dataset.num_classes
  classes = tuple(range(per_task))
  outputs = per_task * num_tasks
  # Row r of a task- or class-incremental training mask: the outputs
  # trained for target r.
  task_of_output = np.arange(outputs) // per_task
  tasks = []
  for t in range(num_tasks):
    permutation = (rng.permutation(num_pixels) if t or permute_first
                   else None)
    task = Task(
        name=f'{dataset.name} p{t}', dataset=dataset,
        train_index=_all(len(dataset.y_train)),
        test_index=_all(len(dataset.y_test)),
        classes=classes, permutation=permutation,
    )
    if scenario != 'domain':
      if scenario == 'task':
        masks = task_of_output[:, None] == task_of_output[None, :]
      elif train_outputs == 'seen':
        masks = np.broadcast_to(task_of_output <= t, (outputs, outputs))
      else:
        masks = np.ones((outputs, outputs), bool)
      task = dataclasses.replace(
          task, own_head=scenario == 'task', outputs=outputs,
          label_map=np.arange(per_task, dtype=np.int32) + per_task * t,
          train_masks=np.ascontiguousarray(masks))
    tasks.append(task)
  return tasks


def rotated(dataset: Dataset, num_tasks: int, seed: int = 0,
            degrees: tuple[float, float] = (0.0, 180.0)) -> list[Task]:
  """RotatedMNIST-style tasks, domain-incremental: task ``t`` is the whole
  dataset rotated by an angle drawn uniformly from ``degrees`` by ``seed``
  (as the DER paper's code draws one per task), one head for all."""
  if num_tasks < 1:
    raise ValueError(f'num_tasks must be >= 1, got {num_tasks}.')
  if not (len(degrees) == 2 and degrees[0] < degrees[1]):
    raise ValueError(f'degrees must be (low, high) with low < high, got '
                     f'{degrees}.')
  angles = np.random.default_rng(seed).uniform(*degrees, size=num_tasks)
  return [Task(name=f'{dataset.name} r{angle:.0f}', dataset=dataset,
               train_index=_all(len(dataset.y_train)),
               test_index=_all(len(dataset.y_test)),
               classes=tuple(range(dataset.num_classes)),
               rotation=float(angle))
          for angle in angles]


def split(
    dataset: Dataset,
    groups: Sequence[Sequence[int]] | None = None,
    scenario: str = 'class',
    train_outputs: str = 'all',
) -> list[Task]:
  """Split tasks: each task a group of classes (by default, pairs 0-1, 2-3...).

  Args:
    dataset: the data.
    groups: the classes of each task; disjoint.
    scenario: as named by van de Ven & Tolias (2019):

      * ``'task'``: task-incremental; one output per class, and each task is
        scored on its own classes only (a head per task; the task is known).
      * ``'domain'``: domain-incremental; one head shared by all tasks, with
        as many outputs as a task has classes, the target being the class's
        position in its task (for pairs 0-1, 2-3...: the class's parity).
      * ``'class'``: class-incremental; one head over every class, global
        labels, every output scored.
    train_outputs: of the class-incremental scenario, the outputs each task
      trains: ``'all'``, or ``'seen'``, the classes of the tasks so far (as
      van de Ven & Tolias train). Every output is scored either way.
  """
  _check_scenario(scenario, train_outputs)
  if groups is None:
    groups = [(c, c + 1) for c in range(0, dataset.num_classes - 1, 2)]
  if not (isinstance(groups, Sequence) and all(
      isinstance(g, Sequence) and g for g in groups)):
    raise ValueError('groups must be a sequence of class lists, one per task '
                     f'(such as [(0, 1), (2, 3)]), got {groups!r}.')
  seen = [c for g in groups for c in g]
  if len(seen) != len(set(seen)) or not set(seen) <= set(
      range(dataset.num_classes)):
    raise ValueError(
        f'groups must be disjoint classes in [0, {dataset.num_classes}), '
        f'got {groups}.'
    )
  label_map = None
  if scenario == 'domain':
    if len({len(g) for g in groups}) != 1:
      raise ValueError(
          f'the domain scenario needs groups of one size, got {groups}.')
    label_map = np.zeros(dataset.num_classes, np.int32)
    for g in groups:
      label_map[list(g)] = np.arange(len(g))
  tasks = []
  for i, g in enumerate(groups):
    task = Task(
        name=f'{dataset.name} {"-".join(map(str, g))}', dataset=dataset,
        train_index=np.flatnonzero(np.isin(dataset.y_train, g)),
        test_index=np.flatnonzero(np.isin(dataset.y_test, g)),
        classes=tuple(g), own_head=scenario == 'task', label_map=label_map,
    )
    masks = np.ones((task.num_outputs, task.num_outputs), bool)
    if scenario == 'task':  # each label trains its own task's outputs
      for group in groups:
        masks[list(group)] = np.isin(np.arange(task.num_outputs), group)
    elif train_outputs == 'seen':
      masks[:] = np.isin(np.arange(task.num_outputs),
                         [c for group in groups[:i + 1] for c in group])
    tasks.append(dataclasses.replace(task, train_masks=masks))
  return tasks


def sequence(*datasets: Dataset) -> list[Task]:
  """Whole datasets one after another (MNIST then Fashion-MNIST), shared head."""
  shapes = {d.x_train.shape[1:] for d in datasets}
  if len(shapes) != 1:
    raise ValueError(f'datasets must share an image shape, got {shapes}.')
  return [
      Task(name=d.name, dataset=d, train_index=_all(len(d.y_train)),
           test_index=_all(len(d.y_test)),
           classes=tuple(range(d.num_classes)))
      for d in datasets
  ]


def joint(tasks: Sequence[Task]) -> list[Task]:
  """Joint training's stream, the usual upper bound: task ``t`` trains on the
  training data of tasks ``0 .. t`` together (each example with its own
  task's permutation, targets and training outputs) and keeps task ``t``'s
  test set.

  The tasks must share their image shape and outputs, and their training
  masks must hold for every label (as :func:`split` and :func:`permuted`
  set them).
  """
  if not tasks:
    return []
  shapes = {task.dataset.x_train.shape[1:] for task in tasks}
  outputs = {task.num_outputs for task in tasks}
  if len(shapes) > 1 or len(outputs) > 1:
    raise ValueError(
        'joint training needs tasks of one image shape and one set of '
        f'outputs; got shapes {sorted(shapes)} and outputs {sorted(outputs)}.')
  if any(task.own_head and task.train_masks is None for task in tasks):
    raise ValueError(
        'joint training of tasks with their own heads needs their training '
        'masks for every label (Task.train_masks), as split() sets them.')
  return [
      dataclasses.replace(
          task, name=f'{task.name} (joint)',
          train_index=np.concatenate([u.train_index for u in tasks[:t + 1]]),
          classes=tuple(dict.fromkeys(c for u in tasks[:t + 1]
                                      for c in u.classes)),
          train_masks=task.train_logit_masks(), parts=tuple(tasks[:t + 1]))
      for t, task in enumerate(tasks)
  ]


def hold_out_validation(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
  """A dataset whose test split is ``fraction`` of the training data.

  For tuning: choose hyperparameters on this, never on the real test set.
  """
  if not 0 < fraction < 1:
    raise ValueError(f'fraction must be in (0, 1), got {fraction}.')
  order = np.random.default_rng(seed).permutation(len(dataset.y_train))
  n_val = int(round(fraction * len(order)))
  val, train = order[:n_val], order[n_val:]
  return Dataset(
      f'{dataset.name}-val', dataset.x_train[train], dataset.y_train[train],
      dataset.x_train[val], dataset.y_train[val], dataset.num_classes,
  )


def _on_new_datasets(tasks: Sequence[Task], make_copy) -> list[Task]:
  """The same tasks over ``make_copy`` of each distinct dataset, each task's
  rows chosen again by its classes."""
  copies = {}
  for task in tasks:
    if id(task.dataset) not in copies:
      copies[id(task.dataset)] = make_copy(task.dataset)
  new_tasks = []
  for task in tasks:
    new = copies[id(task.dataset)]
    new_tasks.append(dataclasses.replace(
        task, dataset=new,
        train_index=np.flatnonzero(np.isin(new.y_train, task.classes)),
        test_index=np.flatnonzero(np.isin(new.y_test, task.classes)),
    ))
  return new_tasks


def standardize_tasks(tasks: Sequence[Task]) -> list[Task]:
  """The same tasks over standardised copies of their datasets."""
  return _on_new_datasets(tasks, datasets.standardize)


def validation_tasks(tasks: Sequence[Task], fraction: float,
                     seed: int = 0) -> list[Task]:
  """The same tasks scored on ``fraction`` of their training data, held out.

  For choosing hyperparameters: the test sets are never seen.
  """
  return _on_new_datasets(
      tasks, lambda d: hold_out_validation(d, fraction, seed))
