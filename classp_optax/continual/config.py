"""How each task trains: epochs or steps, batch sizes, seed, and the data
order those give."""

from collections.abc import Sequence
import dataclasses
import numbers

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train each task.

  Attributes:
    epochs: epochs per task: one number for all, or one per task.
    batch_size: examples per step; the last incomplete batch of an epoch is
      dropped. With data parallelism, a multiple of the data axis.
    eval_batch_size: examples per evaluation step.
    seed: seeds the data order (with the task and epoch) and what the
      method's hooks choose at random (EWC's Fisher sample, replay's
      buffer).
    steps_per_task: if set, every task trains for this many steps (epoch
      after epoch, the last one cut short) instead of ``epochs``.
  """

  epochs: int | Sequence[int] = 1
  batch_size: int = 32
  eval_batch_size: int = 1000
  seed: int = 0
  steps_per_task: int | None = None

  def __post_init__(self):
    """Each field checked (ValueError naming it and its range) and numpy
    integers made Python ints, so that the config hashes and prints alike."""
    fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
    epochs = self.epochs
    if isinstance(epochs, Sequence) and not isinstance(epochs, str):
      if not epochs:
        raise ValueError('TrainConfig.epochs must be an integer >= 1 or a '
                         'non-empty sequence of them (one per task), got ().')
      fix('epochs', tuple(_count('epochs', e) for e in epochs))
    else:
      fix('epochs', _count('epochs', epochs, ' or a sequence of them'))
    for name in ('batch_size', 'eval_batch_size'):
      fix(name, _count(name, getattr(self, name)))
    fix('seed', _count('seed', self.seed, low=0))
    if self.steps_per_task is not None:
      fix('steps_per_task', _count('steps_per_task', self.steps_per_task,
                                   ' or None'))

  def epochs_for(self, task: int) -> int:
    return self.epochs if isinstance(self.epochs, int) else self.epochs[task]

  def steps_for(self, task: int, num_train: int) -> int:
    """Steps of task ``task``, which has ``num_train`` training examples."""
    if self.steps_per_task is not None:
      return self.steps_per_task
    return num_train // self.batch_size * self.epochs_for(task)


def _count(name: str, value, more: str = '', low: int = 1) -> int:
  """``value`` as an int, or ValueError naming ``TrainConfig.<name>``."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < low):
    raise ValueError(f'TrainConfig.{name} must be an integer >= {low}{more}, '
                     f'got {value!r}.')
  return int(value)


def check_config(config: TrainConfig, tasks: Sequence, data_devices: int = 1
                 ) -> None:
  """ValueError, naming the setting and its range, unless ``tasks`` can
  train with ``config`` on ``data_devices`` devices a batch."""
  for name in ('batch_size', 'eval_batch_size'):
    value = getattr(config, name)
    if value % data_devices:
      raise ValueError(f'{name} must be a multiple of the {data_devices} '
                       f'devices a batch is split over, got {value}.')
  small = [t.name for t in tasks if t.num_train < config.batch_size]
  if small:
    raise ValueError(
        f'batch_size must be at most every task\'s training examples; '
        f'{small} have fewer than {config.batch_size}.')
  if not isinstance(config.epochs, int) and len(config.epochs) < len(tasks):
    raise ValueError(f'epochs lists {len(config.epochs)} values for '
                     f'{len(tasks)} tasks.')


def task_order(config: TrainConfig, t: int, num_train: int) -> np.ndarray:
  """``(steps, batch_size)`` positions in task ``t``'s training set: row ``s``
  is step ``s``'s batch. Each epoch is a permutation seeded by the seed, the
  task and the epoch; its last incomplete batch is dropped. With
  ``config.steps_per_task``, the epochs go on until that many steps."""
  steps_per_epoch = num_train // config.batch_size
  used = steps_per_epoch * config.batch_size
  steps = config.steps_for(t, num_train)
  return np.concatenate([
      np.random.default_rng([config.seed, t, epoch]).permutation(num_train)[
          :used].reshape(steps_per_epoch, config.batch_size)
      for epoch in range(-(-steps // steps_per_epoch))
  ])[:steps].astype(np.int32)
