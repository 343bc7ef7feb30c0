"""Experience replay: stored training examples replayed beside every batch,
on any optimizer.

The buffer keeps at most ``budget`` training examples of every class seen,
where a class is a target of a task (a digit of a split task; a digit of
one permutation of a permuted stream). At each task's end it stores a
class-balanced random choice: ``budget`` examples of each of the task's
classes (all of a class that has fewer), seeded by the run's seed and the
task. At a task's end all of its data is at hand, so every class gets its
full share and earlier classes are never evicted; reservoir sampling is
for streams without task boundaries, and keeps classes in proportion to
their frequency instead. The buffer lives on the device, in the hook's
state, and so in every checkpoint.

Each step trains on its batch and an equally large batch drawn uniformly
(with replacement) from the examples stored, the two losses weighted as van
de Ven & Tolias's code weighs them (GMvandeVen/continual-learning,
``loss_total = rnt * loss_cur + (1 - rnt) * loss_replay`` with ``rnt`` one
over the number of tasks so far): while training task ``t`` (from 0), the
current batch's mean loss by ``1 / (t + 1)`` and the replayed batch's by
``t / (t + 1)``. A replayed example's loss is taken over the outputs the
current task trains for its target (``Task.train_masks``): its own task's
outputs in the task-incremental scenario, every class seen so far in the
class-incremental one.
"""

from typing import NamedTuple

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from classp_optax.continual import hooks as hooklib
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate
from classp_optax.continual.settings import Integer
from classp_optax.continual.settings import Setting


class ReplayBuffer(NamedTuple):
  """The stored examples: ``inputs`` and ``labels`` in slots, ``stored``
  True where a slot holds one; ``key`` draws the replayed batches."""

  inputs: jax.Array
  labels: jax.Array
  stored: jax.Array
  key: jax.Array


def _class_counts(tasks: list) -> list[int]:
  return [len(task.classes) for task in tasks]


class Replay(hooklib.Hook):
  """Replay of at most ``budget`` stored examples per class."""

  budget: int = struct.field(pytree_node=False, default=100)

  def _slots(self, tasks: list) -> tuple[np.ndarray, int]:
    """Where each task's slots start, and the most slots one task has."""
    counts = np.array(_class_counts(tasks)) * self.budget
    return np.concatenate([[0], np.cumsum(counts)]), int(counts.max())

  def init(self, params, seed, tasks):
    if not self.budget:
      return ()
    starts, _ = self._slots(tasks)
    x, y = tasks[0].train_batch(np.arange(1))
    return ReplayBuffer(
        inputs=np.zeros((starts[-1], *x.shape[1:]), x.dtype),
        labels=np.zeros(starts[-1], y.dtype),
        stored=np.zeros(starts[-1], bool),
        key=np.asarray(jax.random.key_data(
            jax.random.fold_in(jax.random.key(seed), 104729))))

  def plan(self, tasks, t, seed):
    """``(positions, slots)``: which of task ``t``'s training examples go
    to which slots; a slot past the buffer's end marks padding."""
    if not self.budget:
      return ()
    starts, most = self._slots(tasks)
    labels = tasks[t].train_labels()
    rng = np.random.default_rng([seed, t, 104729])
    positions = np.zeros(most, np.int32)
    slots = np.full(most, starts[-1], np.int32)  # past the end: dropped
    filled = 0
    for c, target in enumerate(np.unique(labels)):
      chosen = rng.permutation(np.flatnonzero(labels == target))[:self.budget]
      positions[filled:filled + len(chosen)] = np.sort(chosen)
      slots[filled:filled + len(chosen)] = (starts[t] + c * self.budget
                                            + np.arange(len(chosen)))
      filled += len(chosen)
    return positions, slots

  def end_task(self, state, data, model, plan):
    if not self.budget:
      return state
    positions, slots = plan
    buffer = state.extra
    return state._replace(extra=buffer._replace(
        inputs=buffer.inputs.at[slots].set(data.inputs[positions], mode='drop'),
        labels=buffer.labels.at[slots].set(data.labels[positions], mode='drop'),
        stored=buffer.stored.at[slots].set(True, mode='drop')))

  def batch(self, extra, data, x, y, weights):
    if not self.budget:
      return x, y, weights, extra
    key, draw = jax.random.split(jax.random.wrap_key_data(extra.key))
    count = jnp.sum(extra.stored)
    chosen = jax.random.choice(
        draw, len(extra.stored), (len(y),),
        p=jnp.where(count > 0, extra.stored / jnp.maximum(count, 1), 1.0))
    current = 1.0 / (data.task + 1.0)
    size = len(y)
    weights = jnp.concatenate([jnp.full(size, current / size),
                               jnp.full(size, (1.0 - current) / size)])
    return (jnp.concatenate([x, extra.inputs[chosen]]),
            jnp.concatenate([y, extra.labels[chosen]]), weights,
            extra._replace(key=jax.random.key_data(key)))

  def readouts(self, state):
    if not self.budget:
      return {}
    return {'stored': jnp.sum(state.extra.stored).astype(jnp.float32)}


def replay_method(budget, learning_rate, optimizer, **settings):
  """Experience replay of at most ``budget`` stored examples per class, on
  an optimizer of the table (Adam by default, as van de Ven & Tolias
  train)."""
  values = dict(settings, optimizer=optimizer, learning_rate=learning_rate)
  return optimizers.on_optimizer(
      'replay', optimizers.build, values, recorded=dict(budget=budget),
      hooks=(Replay(budget=budget),))[0]


register_method('replay', replay_method, (
    Setting('budget', 100, 'stored examples per class', Integer(0)),
    learning_rate(1e-3, (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    optimizers.optimizer_setting('adam'),
), on_optimizer=True)
