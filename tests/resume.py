"""A run killed mid-task and resumed from its checkpoints, for the tests
that check that a method's state is part of the run like any other."""

import pytest

from classp_optax.continual import train


class Interrupted(Exception):
  """Raised from ``on_step`` to kill a run where a test chooses."""


def killed_and_resumed(run, folder, at=(1, 10), every=4):
  """The result of ``run`` killed at step ``at = (task, step)`` (with a
  checkpoint every ``every`` steps) and then resumed from ``folder``."""

  def kill(task, step, losses):
    del losses
    if (task, step) == at:
      raise Interrupted

  with pytest.raises(Interrupted):
    train(run, checkpoint_dir=folder, checkpoint_every_steps=every,
          on_step=kill)
  return train(run, checkpoint_dir=folder)
