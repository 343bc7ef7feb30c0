"""Sweeps: K configurations of one method trained as one compiled program.

A continual-learning study is many small runs: hyperparameters x seeds. On
an accelerator, and even on a CPU, one small model leaves most of the
machine idle, and every run pays for its own dispatches. A sweep stacks the
K models and optimizer states along a leading axis and trains them with
``jax.vmap`` (:func:`steps.sweep_train_steps`): one dispatch runs a chunk of
steps of every configuration. Each configuration keeps its own
initialisation, data order, task stream and numeric hyperparameters; what
must be shared is what is compiled into the step (``Method.structure``: the
method and its static settings) and the batch size.

Between tasks each configuration is handled on its own, by the same code as
:func:`loop.train_continual` (consolidation, stiffness, capacity, scoring),
so per configuration a sweep gives what K separate runs give, to float
rounding (a vmapped matmul may round differently). A configuration whose
loss or state becomes non-finite stops (``diverged`` in its result) while
the others go on. Checkpoints, after every task, hold every configuration's
state; a resumed sweep goes on from the last finished task.
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from classp_optax._padding import pad_rows
from classp_optax.continual import steps as compiled
from classp_optax.continual import streams
from classp_optax.continual.checkpoint import RunCheckpointer
from classp_optax.continual.loop import RunResult
from classp_optax.continual.loop import TrainConfig
from classp_optax.continual.loop import _Diverged
from classp_optax.continual.loop import check_run
from classp_optax.continual.loop import default_steps_per_call
from classp_optax.continual.loop import end_task
from classp_optax.continual.loop import fingerprint
from classp_optax.continual.loop import make_result
from classp_optax.continual.loop import score
from classp_optax.continual.loop import start_task
from classp_optax.continual.loop import task_order
from classp_optax.continual.loop import test_batches
from classp_optax.continual.loop import warn_diverged
from classp_optax.continual.methods import Method
from classp_optax.continual.streams import Task


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One configuration of a sweep: what :func:`loop.train_continual` takes."""

  make_model: Callable[[], nnx.Module]
  tasks: Sequence[Task]
  method: Method
  config: TrainConfig = TrainConfig()


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _signature(tree) -> list:
  return [(jax.tree_util.keystr(path), leaf.shape, leaf.dtype)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_structure(methods: Sequence[Method]) -> None:
  """ValueError unless ``methods`` can be swept together: one
  ``Method.structure``, so that only their states differ."""
  structures = [method.structure for method in methods]
  if None in structures or len(set(structures)) > 1:
    raise ValueError(
        'runs must share one Method.structure (the method and the settings '
        'compiled into its step; only numeric hyperparameters may differ); '
        f'got {sorted(set(map(str, structures)))}.')


def _check_sweep(runs: Sequence[SweepRun], steps_per_call) -> None:
  if not runs:
    raise ValueError('runs must hold at least one configuration.')
  check_structure([r.method for r in runs])
  for name in ('batch_size', 'eval_batch_size'):
    values = sorted({getattr(r.config, name) for r in runs})
    if len(values) > 1:
      raise ValueError(f'runs must share config.{name}; got {values}.')
  lengths = sorted({len(r.tasks) for r in runs})
  if len(lengths) > 1:
    raise ValueError(f'runs must have as many tasks each; got {lengths}.')
  for r in runs:
    check_run(r.config, r.tasks, steps_per_call=steps_per_call)


def _same(arrays: list[np.ndarray]) -> bool:
  return all(a.shape == arrays[0].shape and np.array_equal(a, arrays[0])
             for a in arrays[1:])


def train_sweep(
    runs: Sequence[SweepRun],
    *,
    checkpoint_dir=None,
    run_fingerprint: dict | None = None,
    progress: bool = False,
    steps_per_call: int | None = None,
) -> list[RunResult]:
  """Trains every configuration of ``runs`` on its stream, all at once.

  Args:
    runs: the configurations; they share ``method.structure``, the batch
      sizes and the number of tasks (ValueError otherwise, before anything
      is built).
    checkpoint_dir: if given, every configuration's state is saved there
      after every task, and a sweep finding a checkpoint resumes from it.
    run_fingerprint: what identifies the sweep in its checkpoints.
    progress: show a progress bar.
    steps_per_call: train steps per dispatch, at most.

  Returns:
    One :class:`~classp_optax.continual.loop.RunResult` per configuration,
    in order. Its ``wall_time`` is the sweep's divided by the number of
    configurations: what each cost.
  """
  runs = list(runs)
  _check_sweep(runs, steps_per_call)
  num_runs, num_tasks = len(runs), len(runs[0].tasks)
  models = [r.make_model() for r in runs]
  optimizers = [nnx.Optimizer(m, r.method.optimizer, wrt=nnx.Param)
                for m, r in zip(models, runs, strict=True)]
  pairs = list(zip(models, optimizers, strict=True))
  signatures = [_signature(nnx.state(pair)) for pair in pairs]
  for k, signature in enumerate(signatures):
    if signature != signatures[0]:
      raise ValueError(
          f'runs[{k}] builds a model or optimizer state of another shape '
          'than runs[0]; a sweep stacks them.')
  steps_per_call = steps_per_call or default_steps_per_call(models[0])
  # The step reads every numeric hyperparameter from the state, so the
  # first configuration's graph definition serves them all.
  graphdef = nnx.split((models[0], optimizers[0]))[0]
  train_tasks = [streams.joint(r.tasks) if r.method.joint else list(r.tasks)
                 for r in runs]
  steps = np.array([[r.config.steps_for(t, train_tasks[k][t].num_train)
                     for t in range(num_tasks)] for k, r in enumerate(runs)])
  accuracy = np.zeros((num_runs, num_tasks, num_tasks))
  stiffness = [[] for _ in runs]
  capacity_used = [[] for _ in runs]
  diverged: list = [None] * num_runs
  first_task, wall_time = 0, 0.0

  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, dict(
        run_fingerprint or dict(sweep=[
            fingerprint(r.method, 'custom', r.config, 'custom') for r in runs]),
        tasks=[[task.name for task in r.tasks] for r in runs]))
    if checkpointer.latest() is not None:
      record = checkpointer.restore(tuple(models), tuple(optimizers))
      first_task = record['task'] + 1
      accuracy[:, :first_task] = np.asarray(record['accuracy'], float)
      stiffness, capacity_used = record['stiffness'], record['capacity_used']
      diverged, wall_time = record['diverged'], record['wall_time']

  num_eval_batches = max(
      -(-len(task.test_index) // runs[0].config.eval_batch_size)
      for r in runs for task in r.tasks)
  eval_batches: dict = {}

  def batches_of(k):
    def batches(j):
      if (k, j) not in eval_batches:
        eval_batches[k, j] = test_batches(
            runs[k].tasks[j], runs[k].config.eval_batch_size,
            num_batches=num_eval_batches)
      return eval_batches[k, j]
    return batches

  max_train = max(task.num_train for tasks in train_tasks for task in tasks)

  def train_data(t):
    """The configurations' data for task ``t``, once if they all share it."""
    x, y = zip(*(tasks[t].train_batch(np.arange(tasks[t].num_train))
                 for tasks in train_tasks), strict=True)
    masks = [tasks[t].train_logit_masks() for tasks in train_tasks]
    if _same(x) and _same(y) and _same(masks):
      return True, (jnp.asarray(pad_rows(x[0], max_train)),
                    jnp.asarray(pad_rows(y[0], max_train)),
                    jnp.asarray(masks[0]))
    return False, (jnp.asarray(np.stack([pad_rows(a, max_train) for a in x])),
                   jnp.asarray(np.stack([pad_rows(a, max_train) for a in y])),
                   jnp.asarray(np.stack(masks)))

  def stop(k, record):
    diverged[k] = record
    accuracy[k, record['task']:] = np.nan
    warn_diverged(runs[k].method.name, record)

  batch_size = runs[0].config.batch_size
  bar = tqdm(total=int(steps[:, first_task:].max(axis=0).sum()),
             desc=f'{runs[0].method.name} x{num_runs}', disable=not progress,
             leave=False)
  try:
    for t in range(first_task, num_tasks):
      start = time.perf_counter()
      for k, r in enumerate(runs):
        start_task(models[k], optimizers[k], r.method, t)
      shared, data = train_data(t)
      orders = [task_order(r.config, t, train_tasks[k][t].num_train)
                for k, r in enumerate(runs)]
      states = _stack([nnx.state(pair) for pair in pairs])
      pending = None

      def read(pending):
        t, first, counts, losses = pending
        losses = np.asarray(losses)
        for k in range(num_runs):
          finite = np.isfinite(losses[k, :counts[k]])
          if diverged[k] is None and not finite.all():
            stop(k, dict(task=t, step=first + 1 + int(np.argmin(finite)),
                         what='the loss'))
        bar.update(int(counts.max()))

      for first in range(0, int(steps[:, t].max()), steps_per_call):
        counts = np.clip(steps[:, t] - first, 0, steps_per_call)
        index = np.zeros((num_runs, steps_per_call, batch_size), np.int32)
        for k, order in enumerate(orders):
          index[k, :counts[k]] = order[first:first + counts[k]]
        if shared and (index == index[0]).all():
          index = index[0]  # one order for all: each batch gathered once
        states, losses = compiled.sweep_train_steps(
            graphdef, states, *data[:2], jnp.asarray(index),
            jnp.asarray((counts[0] if (counts == counts[0]).all() else counts
                         ).astype(np.int32)), data[2], shared_data=shared)
        if pending is not None:
          read(pending)
        pending = (t, first, counts, losses)
      if pending is not None:
        read(pending)
      for k, r in enumerate(runs):
        nnx.update(pairs[k], jax.tree.map(lambda leaf, k=k: leaf[k], states))
        if diverged[k] is not None:
          continue
        try:
          end_task(models[k], optimizers[k], r.method, r.tasks, t, r.config,
                   int(steps[k, t]), stiffness[k], capacity_used[k])
        except _Diverged as error:
          stop(k, error.record)
          continue
        accuracy[k, t] = score(models[k], r.tasks, batches_of(k))
      wall_time += time.perf_counter() - start
      if checkpointer is not None:
        checkpointer.save(
            t, tuple(models), tuple(optimizers),
            dict(task=t, accuracy=np.where(
                np.isfinite(accuracy[:, :t + 1]), accuracy[:, :t + 1],
                None).tolist(),
                 stiffness=stiffness, capacity_used=capacity_used,
                 diverged=diverged, wall_time=wall_time))
  finally:
    bar.close()
    if checkpointer is not None:
      checkpointer.close()
  return [make_result(r.method, r.tasks, accuracy[k], models[k], optimizers[k],
                      wall_time / num_runs, stiffness[k], capacity_used[k],
                      diverged[k]) for k, r in enumerate(runs)]
