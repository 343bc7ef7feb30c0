"""What a method does besides its optimizer's update: hooks the engine calls.

A method (:class:`~classp_optax.continual.method.Method`) is an Optax
transform and a tuple of hooks. The engine calls every hook at every event
and knows no method: CLASSP's per-task schedule, EWC's and SI's
consolidation, a replay buffer and the read-outs after each task are all
hooks. The events, in the order of a run:

* :meth:`Hook.train_stream` (host): the tasks as trained (joint training
  trains task ``t`` on tasks ``0 .. t``).
* :meth:`Hook.init`: the hook's own state (a replay buffer), kept with the
  optimizer's and checkpointed with it.
* :meth:`Hook.start_task`: before a task's first step.
* Inside every train step, in this order: :meth:`Hook.batch`, what the
  step trains on (the stream's batch, then any rows a hook appends);
  :meth:`Hook.loss`, a term added to the step's loss (a distillation, a
  buffer's loss), differentiated with it; :meth:`Hook.gradients`, a change
  to the gradient before the optimizer sees it (a projection); and
  :meth:`Hook.after_step`, after the update (a buffer's insertion, with
  the outputs the step computed).
* :meth:`Hook.plan` (host), then :meth:`Hook.end_task`: after a task's last
  step; ``plan`` chooses on the host what ``end_task`` needs (which
  examples), ``end_task`` does it on the device; :meth:`Hook.pad_plan`
  gives the configurations of a sweep plans of one shape.
* :meth:`Hook.readouts`, then :meth:`Hook.warnings` (host): numbers recorded
  after each task, and warnings about them.

A hook is a pytree (``flax.struct.PyTreeNode``): its numeric settings are
leaves and what is compiled in (modes, sizes, bounds) is static. The
configurations of a sweep stack their hooks, and the engine runs each event
under ``jax.vmap``: every pure event sees one configuration.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from flax import nnx
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np


class TrainState(NamedTuple):
  """Everything a configuration carries from step to step (and into its
  checkpoints): the model's weights and other variables (dropout's RNG),
  the optimizer's state and each hook's own state, in the hooks' order."""

  params: Any
  rest: Any
  opt_state: Any
  extras: tuple


class HookState(NamedTuple):
  """What a hook reads and changes: the weights, the optimizer's state and
  its own state."""

  params: Any
  opt_state: Any
  extra: Any


class TaskData(NamedTuple):
  """A task's training data on the device, as a hook sees it.

  Attributes:
    inputs, labels: the task's training examples (padded past its size).
    train_masks: ``(labels, outputs)``; row ``y`` names the outputs the loss
      of an example labelled ``y`` is taken over.
    task: the task's index (traced).
  """

  inputs: jax.Array
  labels: jax.Array
  train_masks: jax.Array
  task: jax.Array


class Model(NamedTuple):
  """The model in evaluation mode, for hooks that differentiate it at a
  task's end (EWC's Fisher): ``graphdef`` and the variables other than the
  weights are fixed, the weights are an argument."""

  graphdef: nnx.GraphDef
  rest: Any
  example_loss: Callable

  def outputs(self, params, inputs):
    return nnx.merge(self.graphdef, params, self.rest, copy=True)(inputs)

  def loss(self, params, inputs, labels, train_masks):
    """Each example's loss, as the train step takes it."""
    return self.example_loss(self.outputs(params, inputs), labels, train_masks)


class Step(NamedTuple):
  """A train step as a hook sees it.

  Attributes:
    data: the task's data.
    model: the model in training mode (``model.outputs(params, inputs)``,
      ``model.loss(params, inputs, labels, train_masks)``).
    params: the weights: traced and differentiated in :meth:`Hook.loss`,
      the weights before the update in the later events.
    inputs, labels: the batch as trained; its first ``stream`` rows are the
      stream's batch, the rest what hooks appended.
    stream: the stream's batch size.
    outputs: the model's outputs on ``inputs``, computed with ``params``
      (with the gradient in :meth:`Hook.loss`, without it later).
  """

  data: TaskData
  model: Model
  params: Any
  inputs: jax.Array
  labels: jax.Array
  stream: int
  outputs: jax.Array


class Hook(struct.PyTreeNode):
  """A hook that does nothing at every event; subclasses override some."""

  def train_stream(self, tasks: list) -> list:
    return tasks

  def init(self, params, seed: int, tasks: list):
    """This hook's state for weights ``params``, the run's seed and its
    stream ``tasks`` (as trained)."""
    del params, seed, tasks
    return ()

  def start_task(self, state: HookState, task, tx) -> HookState:
    """Before task ``task`` trains; ``tx`` is the method's optimizer."""
    del task, tx
    return state

  def batch(self, extra, data: TaskData, x, y, weights):
    """What a step trains on, from its batch ``x, y``: ``(x, y, weights,
    extra)``. ``weights`` None means the mean of the examples' losses; else
    the loss is ``sum(weights * losses)``."""
    del data
    return x, y, weights, extra

  def loss(self, extra, step: Step):
    """``(term, extra)``: a scalar added to the step's loss and
    differentiated with it (``step.params`` is traced)."""
    del step
    return jnp.float32(0.0), extra

  def gradients(self, extra, step: Step, grads):
    """``(grads, extra)``: the gradient the optimizer is given."""
    del step
    return grads, extra

  def after_step(self, extra, step: Step):
    """This hook's state after the update; ``step`` holds the weights and
    outputs from before it."""
    del step
    return extra

  def plan(self, tasks: list, t: int, seed: int):
    """Host arrays for :meth:`end_task` of task ``t`` of the stream
    ``tasks`` (:class:`~classp_optax.continual.streams.Task`, as trained);
    the same shapes for every task."""
    del tasks, t, seed
    return ()

  def pad_plan(self, plan, length: int):
    """``plan`` with ``length`` rows, the added ones changing nothing. The
    configurations of a sweep may have streams of other sizes (seeds whose
    tasks differ in length); where their plans differ in shape, the engine
    has each padded to the longest. A hook whose plan's length follows its
    stream pads it here; by default plans must agree."""
    del plan, length
    raise ValueError(
        f'{type(self).__name__}.plan gives the configurations of one sweep '
        'plans of other shapes: give the hook pad_plan(plan, length), or '
        'sweep streams whose tasks have the same sizes.')

  def end_task(self, state: HookState, data: TaskData, model: Model,
               plan) -> HookState:
    """After task ``data.task`` trained."""
    del data, model, plan
    return state

  def readouts(self, state: HookState) -> dict:
    """Numbers recorded after each task, by name."""
    del state
    return {}

  def bounds(self) -> dict:
    """``{readout: the value past which it warns}``, for the records."""
    return {}

  def warnings(self, values: dict, t: int, label: str,
               trains_after: bool) -> list:
    """``[(category, message)]`` for the read-outs ``values`` after task
    ``t`` of method ``label``; ``trains_after``: a task follows."""
    del values, t, label, trains_after
    return []


def task_plans(runs, streams: list, t: int) -> list[tuple]:
  """Each run's plans for the end of task ``t`` (one per hook) on its
  ``streams`` entry, of one shape across the runs: a hook's plans of other
  shapes are padded (:meth:`Hook.pad_plan`) to the longest."""
  plans = [[hook.plan(tasks, t, r.config.seed) for hook in r.method.hooks]
           for r, tasks in zip(runs, streams, strict=True)]
  for h in range(len(plans[0])):
    if len({_shapes(p[h]) for p in plans}) > 1:
      length = max(np.shape(x)[0] for p in plans
                   for x in jax.tree.leaves(p[h]) if np.ndim(x))
      for r, p in zip(runs, plans, strict=True):
        p[h] = r.method.hooks[h].pad_plan(p[h], length)
  return [tuple(p) for p in plans]


def checked_streams(runs) -> list:
  """Each run's tasks as its method trains them, once a sweep's plans of
  every task are known to take one shape (else ValueError naming the hook,
  :func:`task_plans`): checked before anything trains."""
  streams = [r.method.train_stream(list(r.tasks)) for r in runs]
  for t in range(len(streams[0]) if len(runs) > 1 else 0):
    task_plans(runs, streams, t)
  return streams


def _shapes(plan) -> tuple:
  return tuple(np.shape(x) for x in jax.tree.leaves(plan))


def each(hooks, state: TrainState, event: Callable) -> TrainState:
  """``state`` after ``event(hook, HookState)`` of every hook in turn."""
  extras = list(state.extras)
  for k, hook in enumerate(hooks):
    seen = event(hook, HookState(state.params, state.opt_state, extras[k]))
    state = state._replace(params=seen.params, opt_state=seen.opt_state)
    extras[k] = seen.extra
  return state._replace(extras=tuple(extras))


def readouts(hooks, state: TrainState) -> dict:
  """Every hook's read-outs, by name; ValueError where two hooks read out
  the same name (one would hide the other)."""
  values, owners = {}, {}
  for hook, extra in zip(hooks, state.extras, strict=True):
    for name, value in hook.readouts(HookState(state.params, state.opt_state,
                                               extra)).items():
      if name in values:
        raise ValueError(
            f'hooks {owners[name]} and {type(hook).__name__} both read out '
            f'{name!r}; give one of them another name.')
      values[name], owners[name] = value, type(hook).__name__
  return values


def overrides(hook: Hook, event: str) -> bool:
  """Whether ``hook`` does something at ``event``: the engine calls only
  those, so that a method without them compiles the step it would
  without the event."""
  return getattr(type(hook), event) is not getattr(Hook, event)


def acts_at_task_end(hook: Hook) -> bool:
  """Whether ``hook`` does anything after a task (plans, changes the state
  or reads out): if no hook does, the engine compiles no end-of-task
  program."""
  return any(overrides(hook, event)
             for event in ('plan', 'end_task', 'readouts'))


@jax.jit
def stack(trees: list):
  """``trees`` (one per configuration, one structure) stacked leaf by leaf
  along a new leading axis, in one compiled call."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def all_finite(tree) -> jax.Array:
  """Whether every float in ``tree`` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)
