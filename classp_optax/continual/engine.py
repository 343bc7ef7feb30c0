"""The training engine: K configurations of a method, each on its own
stream of tasks, trained as one program. A single run is a sweep of one.

For each task, every configuration goes through the same events: its
method's hooks start the task (CLASSP's schedule, a fresh state), the train
steps run (many per dispatch, each gathering its batch on the device by an
index array, the configurations under ``jax.vmap``), the hooks end the task
(EWC's and SI's consolidation, a replay buffer) and give their read-outs,
and the model is scored on every task's test set: row ``t`` of its accuracy
matrix ``R``. The engine knows no method: everything a method does besides
its optimizer's update is a hook (:mod:`hooks`).

Each configuration keeps its own initialisation, data order, stream and
numeric hyperparameters; they share what is compiled into the step (the
method's ``sweep_structure``) and the batch sizes. The configurations are
split over a mesh's ``'config'`` axis and each one's batches over its
``'data'`` axis (:mod:`placement`). A configuration whose loss or state
becomes non-finite stops (its result says where) while the others go on.

Checkpoints hold every configuration's state, after every task and, within
a task, every ``checkpoint_every_steps`` steps or ``checkpoint_every_seconds``
seconds; they are numbered by the run's step. The data order depends only
on the seed, the task and the epoch, and every random draw lives in the
checkpointed state, so a resumed run repeats exactly what an uninterrupted
run does.
"""

from collections.abc import Callable
from collections.abc import Sequence
import contextlib
import functools
import time
import warnings

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
from tqdm.auto import tqdm

from classp_optax import tree_bytes
from classp_optax.continual import evaluation
from classp_optax.continual import feeding
from classp_optax.continual import hooks as hooklib
from classp_optax.continual import placement as placing
from classp_optax.continual import provenance
from classp_optax.continual import steps as compiled
from classp_optax.continual.checkpoint import RunCheckpointer
from classp_optax.continual.config import task_order
from classp_optax.continual.ledger import Clock
from classp_optax.continual.ledger import Ledger
from classp_optax.continual.ledger import user_stacklevel
from classp_optax.continual.method import Method
from classp_optax.continual.results import RunResult
from classp_optax.continual.runs import Run
from classp_optax.continual.runs import check_model
from classp_optax.continual.runs import check_runs
from classp_optax.continual.runs import default_fingerprint

# Train steps per dispatch, at most. The losses are checked for
# finiteness, the progress reported and a due checkpoint written between
# dispatches.
STEPS_PER_CALL = 100


def default_steps_per_call(model: nnx.Module) -> int:
  """:data:`STEPS_PER_CALL`, or 1 for a convolutional model on the CPU, where
  XLA runs a convolution's gradient an order of magnitude slower inside a
  loop (jax-ml/jax#12868): one step per dispatch is then the fastest."""
  has_conv = any(isinstance(node, nnx.Conv) for _, node in nnx.iter_graph(model))
  return 1 if has_conv and jax.default_backend() == 'cpu' else STEPS_PER_CALL


def _pure_state(model: nnx.Module, method: Method, seed: int, tasks: list
                ) -> hooklib.TrainState:
  params, rest = nnx.as_pure(nnx.split(model, nnx.Param, ...)[1:])
  return hooklib.TrainState(
      params, rest, method.optimizer.init(params),
      tuple(hook.init(params, seed, tasks) for hook in method.hooks))


def _signature(tree) -> list:
  return [(jax.tree_util.keystr(path), leaf.shape, leaf.dtype)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


class _Engine:
  """One training of ``runs``: what stays fixed through it, and the host
  side of every phase. The device side is :mod:`steps`."""

  def __init__(self, runs, mesh, example_loss, example_score, checkpointer,
               checkpoint_every_steps, checkpoint_every_seconds, on_step,
               progress, steps_per_call):
    self.runs = runs
    self.place = placing.Placement(mesh, len(runs))
    self.example_loss, self.example_score = example_loss, example_score
    self.checkpointer = checkpointer
    self.every_steps, self.every_seconds = (checkpoint_every_steps,
                                            checkpoint_every_seconds)
    self.on_step, self.show_progress = on_step, progress
    self.train_tasks = hooklib.checked_streams(runs)
    self.num_tasks = len(runs[0].tasks)
    self.steps = np.array([[r.config.steps_for(t, tasks[t].num_train)
                            for t in range(self.num_tasks)]
                           for r, tasks in zip(runs, self.train_tasks,
                                               strict=True)])
    self.timeline = self.steps.max(axis=0)
    self.ledger = Ledger.empty(len(runs), self.num_tasks)
    self.made_with = provenance.made_with()  # the code the run starts with
    self.models = [r.make_model() for r in runs]
    check_model(self.models[0], self.train_tasks[0],
                classifies=example_loss is compiled.masked_cross_entropy)
    self.steps_per_call = steps_per_call or default_steps_per_call(
        self.models[0])
    self._build_program()
    self.feed = feeding.Feeder(self.place, runs, self.train_tasks)

  def _build_program(self) -> None:
    """The graph definitions, the hooks and the initial states, stacked."""
    model = self.models[0]
    self.graphdef = nnx.split(model, nnx.Param, ...)[0]
    model.eval()  # before the split: the graph definition holds the mode
    self.eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
    model.train()
    states = [_pure_state(m, r.method, r.config.seed, tasks)
              for m, r, tasks in zip(self.models, self.runs, self.train_tasks,
                                     strict=True)]
    signatures = [_signature(state) for state in states]
    for k, signature in enumerate(signatures):
      if signature != signatures[0]:
        raise ValueError(
            f'runs[{k}] builds a model or optimizer state of another shape '
            'than runs[0]; a sweep stacks them.')
    jax.eval_shape(functools.partial(hooklib.readouts,
                                     self.runs[0].method.hooks), states[0])
    self.initial_state = hooklib.stack(states)
    self.hooks = self.place.configs(hooklib.stack(
        [r.method.hooks for r in self.runs]))
    self.tx = self.runs[0].method.optimizer

  # The phases of a task.

  def _dispatch(self, state, data, shared, orders, t, step, count):
    """Steps ``step .. step + count - 1`` of task ``t``: the new state and
    ``(first step, counts, losses)`` to read."""
    counts = np.clip(self.steps[:, t] - step, 0, count).astype(np.int32)
    index = np.zeros((len(orders), self.steps_per_call,
                      self.runs[0].config.batch_size), np.int32)
    for k, order in enumerate(orders):
      index[k, :counts[k]] = order[step:step + counts[k]]
    one_count = bool((counts == counts[0]).all())
    state, losses = compiled.train_steps(
        self.graphdef, self.tx, self.example_loss, self.hooks, state, data,
        self.place.batches(index, stacked=True),
        (self.place.shared(np.int32(count)) if one_count
         else self.place.configs(counts)),
        shared_data=shared, batch_sharding=self.place.batch_sharding)
    return state, (step, counts, losses)

  def _read(self, t: int, dispatched) -> None:
    """A dispatch's losses: progress, ``on_step``, and each configuration
    stopped at its first step whose loss is not finite."""
    first, counts, losses = dispatched
    losses = np.asarray(losses)[:len(self.runs)]
    taken = int(counts.max())
    self.bar.update(taken)
    if self.on_step is not None:
      for i in range(taken):
        self.on_step(t, first + i + 1, np.where(i < counts, losses[:, i],
                                                np.nan))
    for k in self.ledger.live:
      finite = np.isfinite(losses[k, :counts[k]])
      if not finite.all():
        self.ledger.stop(k, dict(task=t, step=first + 1 + int(np.argmin(
            finite)), what='the loss'), self.runs[k].method.label)

  def _train_task(self, state, t: int, first_step: int, clock):
    """Task ``t`` from step ``first_step`` on; a dispatch's losses are read
    while the next one runs, except where a checkpoint is due."""
    shared, data = self.feed.task_data(t)
    orders = [task_order(r.config, t, tasks[t].num_train)
              for r, tasks in zip(self.runs, self.train_tasks, strict=True)]
    end, step, pending = int(self.timeline[t]), first_step, None
    while step < end and self.ledger.live:
      count = min(self.steps_per_call, self._chunk_end(step, end) - step)
      state, dispatched = self._dispatch(state, data, shared, orders, t, step,
                                         count)
      if pending is not None:
        self._read(t, pending)
      pending, step = dispatched, step + count
      if step < end and clock.save_due(step, self.every_steps,
                                       self.every_seconds):
        self._read(t, pending)
        pending = None
        self.ledger.wall_time = clock.elapsed()
        self._save(state, t, step, clock)
    if pending is not None:
      self._read(t, pending)
    return state, shared, data

  def _chunk_end(self, step: int, end: int) -> int:
    """Where a dispatch from ``step`` stops: the task's end, or the next
    multiple of ``checkpoint_every_steps``."""
    if self.checkpointer is None or not self.every_steps:
      return end
    return min(end, (step // self.every_steps + 1) * self.every_steps)

  def _end_task(self, state, t: int, shared: bool, data):
    """The hooks' end of task ``t``, the finiteness checks and read-outs."""
    state, values, before, after = self._end_task_program(state, t, shared,
                                                          data)
    values = jax.tree.map(np.asarray, values)
    before, after = np.asarray(before), np.asarray(after)
    for k in self.ledger.live:
      step, label = int(self.steps[k, t]), self.runs[k].method.label
      if not before[k] or not after[k]:
        self.ledger.stop(k, dict(task=t, step=step, what=(
            'the weights or optimizer state' if not before[k]
            else 'the optimizer state after its hooks')), label)
        continue
      mine = {name: float(v[k]) for name, v in values.items()}
      for name, value in mine.items():
        self.ledger.readouts[k].setdefault(name, []).append(value)
      for hook in self.runs[k].method.hooks:
        for category, message in hook.warnings(
            mine, t, label, trains_after=t < self.num_tasks - 1):
          warnings.warn(message, category, stacklevel=user_stacklevel())
    return state

  def _end_task_program(self, state, t: int, shared: bool, data):
    """The hooks' end of task ``t``: the new state, the read-outs, and
    whether the state was finite before and after; only the finiteness
    check where no hook acts there."""
    if not any(map(hooklib.acts_at_task_end, self.runs[0].method.hooks)):
      finite = compiled.finite_states(state)
      return state, {}, finite, finite
    plans = self.place.configs(hooklib.stack(
        hooklib.task_plans(self.runs, self.train_tasks, t)))
    return compiled.end_tasks(self.eval_graphdef, self.example_loss,
                              self.hooks, state, data, plans,
                              shared_data=shared)

  def _score(self, state, t: int) -> None:
    """Row ``t`` of every live configuration's accuracy matrix."""
    for j in range(self.num_tasks):
      shared, (inputs, labels, valid), masks = self.feed.test_set(j)
      scores = np.asarray(compiled.correct_counts(
          self.eval_graphdef, self.example_score, state.params, state.rest,
          inputs, labels, valid, masks, shared_data=shared))
      for k in self.ledger.live:
        self.ledger.accuracy[k, t, j] = float(scores[k]) / len(
            self.runs[k].tasks[j].test_index)

  # Checkpoints.

  def _save(self, state, t: int, task_step: int, clock) -> None:
    finished = task_step == self.timeline[t]
    record = dict(self.ledger.to_record(t + 1 if finished else t), task=t,
                  task_step=task_step)
    self.checkpointer.save(int(self.timeline[:t].sum()) + task_step,
                           self.place.unpad(state), record)
    clock.saved()

  def _restore(self):
    """``(state, first task, first step)`` from the last checkpoint, or
    from the start."""
    if self.checkpointer is None or self.checkpointer.latest() is None:
      return self.initial_state, 0, 0
    state, record = self.checkpointer.restore(
        placing.unstack(self.initial_state, len(self.runs)))
    state = hooklib.stack(state)
    self.ledger.load(record)
    t, step = record['task'], record['task_step']
    if step == self.timeline[t]:  # the task was finished
      t, step = t + 1, 0
    return state, t, step

  # The run.

  def run(self) -> list[RunResult]:
    state, first_task, first_step = self._restore()
    state = self.place.configs(state)
    clock = Clock(self.ledger.wall_time)
    self.bar = tqdm(total=int(self.timeline[first_task:].sum()) - first_step,
                    desc=self.runs[0].method.label
                    + (f' x{len(self.runs)}' if len(self.runs) > 1 else ''),
                    disable=not self.show_progress, leave=False)
    try:
      for t in range(first_task, self.num_tasks):
        if not self.ledger.live:
          break
        with self._phase('train'):
          if t > first_task or first_step == 0:
            state = compiled.start_tasks(self.tx, self.hooks, state,
                                         jnp.int32(t))
          state, shared, data = self._train_task(
              state, t, first_step if t == first_task else 0, clock)
        with self._phase('end_task'):
          state = self._end_task(state, t, shared, data)
        with self._phase('evaluation'):
          self._score(state, t)
        self.ledger.wall_time = clock.elapsed()
        if self.checkpointer is not None:
          self._save(state, t, int(self.timeline[t]), clock)
    finally:
      self.bar.close()
      if self.checkpointer is not None:
        self.checkpointer.close()
    return self._results(self.place.unpad(state))

  @contextlib.contextmanager
  def _phase(self, name: str):
    """Adds the time of the block to phase ``name``; each phase ends by
    reading its results on the host, so its work is done when it ends."""
    start = time.perf_counter()
    yield
    self.ledger.phases[name] += time.perf_counter() - start

  def _results(self, states: list) -> list[RunResult]:
    results = []
    for k, (r, mine) in enumerate(zip(self.runs, states, strict=True)):
      bounds = {}
      for hook in r.method.hooks:
        bounds.update(hook.bounds())
      results.append(RunResult(
          method=r.method.label, hyperparams=r.method.hyperparams,
          task_names=[task.name for task in r.tasks],
          accuracy=self.ledger.accuracy[k],
          state_bytes=tree_bytes((mine.opt_state, mine.extras)),
          wall_time=self.ledger.wall_time / len(self.runs),
          phase_seconds={name: seconds / len(self.runs)
                         for name, seconds in self.ledger.phases.items()},
          readouts=self.ledger.readouts[k], bounds=bounds,
          majority_accuracy=[evaluation.majority_accuracy(task)
                             for task in r.tasks],
          diverged=self.ledger.diverged[k], made_with=self.made_with,
          model=nnx.merge(self.graphdef, mine.params, mine.rest),
          opt_state=mine.opt_state, hook_states=mine.extras))
    return results


def train(
    runs: Run | Sequence[Run],
    *,
    example_loss: Callable = compiled.masked_cross_entropy,
    example_score: Callable = compiled.correct,
    checkpoint_dir=None,
    fingerprint: dict | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = 300.0,
    mesh: Mesh | None = None,
    on_step: Callable[[int, int, np.ndarray], None] | None = None,
    progress: bool = False,
    steps_per_call: int | None = None,
) -> list[RunResult]:
  """Trains every configuration of ``runs`` on its stream, all at once: the
  one way to train, a single run being a sweep of one.

  Args:
    runs: a :class:`Run`, or the configurations; they share the method's
      ``sweep_structure``, the batch sizes and the number of tasks
      (ValueError otherwise, before anything is built).
    example_loss: ``example_loss(outputs, targets, train_masks)``, each
      example's loss (default: cross-entropy over the outputs row
      ``targets[i]`` of ``train_masks`` names). A step minimises their mean
      (or the weighted sum a method's hooks ask for).
    example_score: ``example_score(outputs, targets, logit_mask)``, each
      test example's score; ``R`` holds their means (default: accuracy).
    checkpoint_dir: if given, checkpoints go there (after every task and
      within tasks, see below), and a run finding one there resumes from it.
    fingerprint: what identifies the run in its checkpoints; a resume with
      another is refused. Default: :func:`default_fingerprint`.
    checkpoint_every_steps: also checkpoint every this many steps of a task.
    checkpoint_every_seconds: also checkpoint within a task once this much
      time has passed since the last checkpoint (None: never).
    mesh: where to train: a mesh of :data:`placement.AXES` (or of one
      ``'data'`` axis, to split a single run's batches); default: one
      local device per configuration as far as they go
      (:func:`placement.mesh_for`), batches not split, so that results do
      not depend on how many devices there are.
    on_step: called as ``on_step(task, step, losses)`` for every step, with
      ``step`` counted from 1 within the task and ``losses`` one per
      configuration (NaN for one whose task has ended), after the dispatch
      that ran it and before any checkpoint that follows.
    progress: show a progress bar.
    steps_per_call: train steps per dispatch, at most; the results do not
      depend on it. Default: :func:`default_steps_per_call`.

  Returns:
    The :class:`RunResult` of a single ``Run``; else one per configuration,
    in order. Its ``wall_time``
    is the run's divided by the number of configurations.
  """
  single = isinstance(runs, Run)
  runs = [runs] if single else list(runs)
  if not runs:
    raise ValueError('train: runs is empty; give at least one Run.')
  mesh = (placing.mesh_for(len(runs), jax.local_devices()[:len(runs)])
          if mesh is None else placing.as_engine_mesh(mesh))
  check_runs(runs, mesh.shape['data'], checkpoint_every_steps,
             checkpoint_every_seconds, steps_per_call)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(
        checkpoint_dir, fingerprint or default_fingerprint(runs))
  results = _Engine(runs, mesh, example_loss, example_score, checkpointer,
                    checkpoint_every_steps, checkpoint_every_seconds, on_step,
                    progress, steps_per_call).run()
  return results[0] if single else results
