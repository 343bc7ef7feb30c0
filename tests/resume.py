"""A run killed mid-task and resumed from its checkpoints, for the tests
that check that a method's state is part of the run like any other."""

import pytest

from classp_optax.continual import train


class Interrupted(Exception):
  """Raised from ``on_step`` to kill a run where a test chooses."""


def killed_and_resumed(runs, folder, at=(1, 10), trained=None, **options):
  """``runs`` (one run or a list, as :func:`train` takes them) killed at step
  ``at = (task, step)``, then resumed from ``folder``; both calls take
  ``options`` (by default a checkpoint every 4 steps). The resumed run's
  steps, as ``(task, step)``, are appended to ``trained`` if it is a list."""
  options.setdefault('checkpoint_every_steps', 4)

  def kill(task, step, losses):
    del losses
    if (task, step) == at:
      raise Interrupted

  def record(task, step, losses):
    del losses
    if trained is not None:
      trained.append((task, step))

  with pytest.raises(Interrupted):
    train(runs, checkpoint_dir=folder, on_step=kill, **options)
  return train(runs, checkpoint_dir=folder, on_step=record, **options)
