"""What a run gives: its accuracy matrix, read-outs, and how it ended."""

import dataclasses
import math

from flax import nnx
import numpy as np

from classp_optax.continual import metrics

# A task learnt to less than this above its majority-class accuracy is marked
# as not learnt.
CHANCE_MARGIN = 0.05


class DivergenceWarning(UserWarning):
  """A run's loss or state became non-finite; the run stopped there."""


@dataclasses.dataclass
class RunResult:
  """What one configuration of a method did on its stream, with the trained
  model, the final optimizer state (a plain Optax pytree) and the method's
  hooks' states (a replay buffer).

  Attributes:
    method: the method's label (``classp`` or ``classp:paper``).
    accuracy: ``R[i, j]``, the score on task ``j`` after training task
      ``i``; NaN from the task where the run diverged.
    state_bytes: what the method keeps besides the weights: the
      optimizer's state and the hooks' (a replay buffer).
    readouts: ``{name: [value after each task]}``, every read-out of the
      method's hooks (``stiffness``, ``capacity_used``, a buffer's
      ``stored``); ``bounds`` the values past which they warn. Both are in
      ``to_json``.
    majority_accuracy: per task, the accuracy of always answering its most
      frequent test label (None for targets that are not labels).
    diverged: where the run stopped, or None.
    swept: in a sweep, what sets this run apart: the swept hyperparameters
      and the seed.
    phase_seconds: where ``wall_time`` went: ``train`` (the tasks' starts
      and steps), ``end_task`` (the hooks' end of each task), ``evaluation``
      (scoring the test sets), divided as ``wall_time`` is.
    made_with: what made the run (:func:`provenance.made_with`: versions
      and the source's git commit), read as training starts.
  """

  method: str
  hyperparams: dict
  task_names: list[str]
  accuracy: np.ndarray
  state_bytes: int
  wall_time: float
  readouts: dict = dataclasses.field(default_factory=dict)
  bounds: dict = dataclasses.field(default_factory=dict)
  majority_accuracy: list = dataclasses.field(default_factory=list)
  diverged: dict | None = None
  swept: dict = dataclasses.field(default_factory=dict)
  phase_seconds: dict = dataclasses.field(default_factory=dict)
  made_with: dict = dataclasses.field(default_factory=dict)
  model: nnx.Module | None = dataclasses.field(default=None, repr=False)
  opt_state: object = dataclasses.field(default=None, repr=False)
  hook_states: tuple = dataclasses.field(default=(), repr=False)

  @property
  def stiffness(self) -> list:
    return self.readouts.get('stiffness', [])

  @property
  def capacity_used(self) -> list:
    return self.readouts.get('capacity_used', [])

  @property
  def label(self) -> str:
    """The method's label, and in a sweep what sets this run apart:
    ``classp learning_rate=0.01 seed=1``."""
    return ' '.join([self.method, *(f'{k}={v}' for k, v in self.swept.items())])

  @property
  def summary(self) -> dict:
    """The metrics of :mod:`metrics`; all NaN for a run that diverged, whose
    :attr:`status` says where, so that no number stands for a result."""
    if self.diverged is not None:
      return dict.fromkeys(metrics.summarize(np.zeros((1, 1))), math.nan)
    return metrics.summarize(self.accuracy)

  @property
  def status(self) -> str:
    """``'finished'``, or where the run diverged: ``'diverged in task 1 at
    step 13 (loss not finite): no result'``."""
    if self.diverged is None:
      return 'finished'
    d = self.diverged
    return (f'diverged in task {d["task"]} at step {d["step"]} ({d["what"]} '
            'not finite): no result')

  @property
  def not_learnt(self) -> list[int]:
    """The tasks whose accuracy just after training them is within
    :data:`CHANCE_MARGIN` of always answering their most frequent label."""
    return [j for j, base in enumerate(self.majority_accuracy)
            if base is not None and np.isfinite(self.accuracy[j, j])
            and self.accuracy[j, j] < base + CHANCE_MARGIN]

  @classmethod
  def from_json(cls, row: dict) -> 'RunResult':
    """A result as :meth:`to_json` wrote it, without model and state."""
    return cls(
        method=row['method'], hyperparams=row['hyperparams'],
        task_names=row['task_names'],
        accuracy=np.array(row['accuracy'], dtype=float),
        state_bytes=row['state_bytes'], wall_time=row['wall_time'],
        readouts=row.get('readouts', {}),
        bounds=row.get('bounds', {'stiffness': row['stiffness_bound']}
                       if row.get('stiffness_bound') is not None else {}),
        majority_accuracy=row['majority_accuracy'], diverged=row['diverged'],
        swept=row.get('swept', {}), phase_seconds=row.get('phase_seconds', {}),
        made_with=row.get('made_with', {}))

  def to_json(self) -> dict:
    return dict(
        method=self.method, hyperparams=self.hyperparams,
        task_names=self.task_names,
        accuracy=np.where(np.isfinite(self.accuracy), self.accuracy,
                          None).tolist(),
        state_bytes=self.state_bytes, wall_time=self.wall_time,
        stiffness=self.stiffness,
        stiffness_bound=self.bounds.get('stiffness'),
        capacity_used=self.capacity_used, readouts=self.readouts,
        bounds=self.bounds,
        majority_accuracy=self.majority_accuracy, not_learnt=self.not_learnt,
        diverged=self.diverged, swept=self.swept,
        phase_seconds=self.phase_seconds, made_with=self.made_with,
        status=self.status,
        **{k: None if math.isnan(v) else v for k, v in self.summary.items()},
    )
