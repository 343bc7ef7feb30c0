"""What the engine's host side records of a run as it goes: each
configuration's accuracy matrix, read-outs and divergence, where the time
went, and the clock that says when a checkpoint is due. Checkpoints hold
the record, so a resumed run continues it."""

import dataclasses
import os
import sys
import time
import warnings

import numpy as np

from classp_optax.continual.results import DivergenceWarning
from classp_optax.continual.settings import how_to_set

# What a run's time is spent on (RunResult.phase_seconds).
PHASES = ('train', 'end_task', 'evaluation')


@dataclasses.dataclass
class Ledger:
  """What the host records of every configuration as the run goes."""

  accuracy: np.ndarray  # (K, T, T)
  readouts: list  # per configuration, {name: [value after each task]}
  diverged: list  # per configuration, where it stopped, or None
  wall_time: float = 0.0
  # Seconds in each phase: training (the task's start and its steps), the
  # hooks' end of the task, and scoring the test sets.
  phases: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(
      PHASES, 0.0))

  @classmethod
  def empty(cls, num_configs: int, num_tasks: int) -> 'Ledger':
    return cls(np.zeros((num_configs, num_tasks, num_tasks)),
               [{} for _ in range(num_configs)], [None] * num_configs)

  @property
  def live(self) -> list[int]:
    return [k for k, d in enumerate(self.diverged) if d is None]

  def stop(self, k: int, record: dict, label: str) -> None:
    """Configuration ``k`` diverged where ``record`` says: it stops there."""
    if self.diverged[k] is not None:
      return
    self.diverged[k] = record
    self.accuracy[k, record['task']:] = np.nan
    warnings.warn(
        f'{label} diverged in task {record["task"]} at step {record["step"]}: '
        f'{record["what"]} is not finite. The run stops here; its accuracies '
        'are not reported (its summary is NaN). A smaller step usually '
        f'mends it: {how_to_set(label.split()[0], "learning_rate")}.',
        DivergenceWarning, stacklevel=user_stacklevel())

  def to_record(self, rows: int) -> dict:
    """The checkpoint's record, with the first ``rows`` rows of each
    accuracy matrix."""
    kept = self.accuracy[:, :rows]
    return dict(accuracy=np.where(np.isfinite(kept), kept, None).tolist(),
                readouts=self.readouts, diverged=self.diverged,
                wall_time=self.wall_time, phases=self.phases)

  def load(self, record: dict) -> None:
    rows = np.asarray(record['accuracy'], float).reshape(
        len(self.accuracy), -1, self.accuracy.shape[-1])
    self.accuracy[:, :rows.shape[1]] = rows
    self.readouts, self.diverged = record['readouts'], record['diverged']
    self.wall_time = record['wall_time']
    self.phases = record.get('phases', self.phases)


_PACKAGE_DIR = os.path.dirname(__file__)


def user_stacklevel() -> int:
  """The ``stacklevel`` that makes a warning issued by the caller point at
  the first frame outside this toolkit: the user's call."""
  frame, level = sys._getframe(1), 1
  while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
    frame, level = frame.f_back, level + 1
  return level


class Clock:
  """Wall time of the run (across resumes) and time since the last save."""

  def __init__(self, elapsed_before: float):
    self.elapsed_before = elapsed_before
    self.start = self.last_save = time.perf_counter()

  def elapsed(self) -> float:
    return self.elapsed_before + time.perf_counter() - self.start

  def saved(self) -> None:
    self.last_save = time.perf_counter()

  def save_due(self, step: int, every_steps, every_seconds) -> bool:
    return bool((every_steps and step % every_steps == 0)
                or (every_seconds is not None and time.perf_counter()
                    - self.last_save >= every_seconds))
