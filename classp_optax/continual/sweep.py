"""Sweeps: K configurations of one method trained as one compiled program.

A continual-learning study is many small runs: hyperparameters x seeds. On
an accelerator, and even on a CPU, one small model leaves most of the
machine idle, and every run pays for its own dispatches. A sweep stacks the
K models and optimizer states along a leading axis and trains them with
``jax.vmap`` (:func:`steps.sweep_train_steps`): one dispatch runs a chunk of
steps of every configuration. Each configuration keeps its own
initialisation, data order, task stream and numeric hyperparameters; what
must be shared is what is compiled into the step (``Method.structure``: the
method and its static settings) and the batch size. The configuration axis
is split over the devices (a mesh axis ``'config'``): on several
accelerators each trains its share, and on a CPU split into devices
(``jax.config.update('jax_num_cpu_devices', n)`` before JAX starts) each
core does, which is where a sweep gains on a CPU: one small run does not
keep several cores busy, and a vmapped step costs about K single ones.

Between tasks each configuration is handled on its own, by the same code as
:func:`loop.train_continual` (consolidation, stiffness, capacity), and all
are scored on each test set by one vmapped call of the loop's evaluation,
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
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
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
from classp_optax.continual.loop import host_test_batches
from classp_optax.continual.loop import make_result
from classp_optax.continual.loop import start_task
from classp_optax.continual.loop import task_order
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


@jax.jit
def _stack(trees: list):
  """One tree of ``trees`` stacked along a new leading axis (one compiled
  call: stacking leaf by leaf costs a dispatch per leaf)."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@jax.jit
def _unstack(tree) -> list:
  """The inverse of :func:`_stack`, in one compiled call."""
  size = jax.tree.leaves(tree)[0].shape[0]
  return [jax.tree.map(lambda leaf, k=k: leaf[k], tree) for k in range(size)]


def _padded(items: list, size: int) -> list:
  """``items`` and copies of its last one, ``size`` in all."""
  return items + items[-1:] * (size - len(items))


def config_mesh(num_runs: int, devices=None) -> Mesh:
  """The mesh a sweep of ``num_runs`` configurations runs on: a ``'config'``
  axis over ``devices`` (default: every local device), at most one device
  per configuration."""
  devices = list(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError('devices must name at least one device.')
  return Mesh(np.array(devices[:min(num_runs, len(devices))]), ('config',))


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
    devices: Sequence[jax.Device] | None = None,
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
    devices: where to train (default: every local device). The
      configurations are split over at most one device each; when their
      number is not a multiple of the devices used, copies of the last
      configuration fill the gap and their results are dropped.

  Returns:
    One :class:`~classp_optax.continual.loop.RunResult` per configuration,
    in order. Its ``wall_time`` is the sweep's divided by the number of
    configurations: what each cost.
  """
  runs = list(runs)
  _check_sweep(runs, steps_per_call)
  num_runs, num_tasks = len(runs), len(runs[0].tasks)
  mesh = config_mesh(num_runs, devices)
  slots = -(-num_runs // mesh.size) * mesh.size  # configurations, padded
  by_config = NamedSharding(mesh, P('config'))
  replicated = NamedSharding(mesh, P())

  def spread(tree):
    """A stack of ``num_runs`` configurations, padded, split over the mesh."""
    return jax.device_put(_stack(_padded(list(tree), slots)), by_config)

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
  home = jax.devices()[0]  # where the models live between tasks
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
  test_sets: dict = {}

  def test_data(j):
    """Every configuration's test set ``j`` (once if they all share it) and
    output mask, put on the devices once per sweep."""
    if j not in test_sets:
      sets = [host_test_batches(r.tasks[j], r.config.eval_batch_size,
                                num_batches=num_eval_batches) for r in runs]
      shared = all(_same(list(arrays)) for arrays in zip(*sets, strict=True))
      test_sets[j] = (shared, jax.device_put(sets[0], replicated) if shared
                      else spread(sets),
                      spread(np.asarray(r.tasks[j].logit_mask()) for r in runs))
    return test_sets[j]

  def score_all(t):
    """Row ``t`` of every live configuration's accuracy matrix."""
    for model in models:
      model.eval()  # before the split: the graph definition holds the mode
    eval_graphdef = nnx.split(models[0])[0]
    states = spread(nnx.state(model) for model in models)
    for model in models:
      model.train()
    for j in range(num_tasks):
      shared, batches, masks = test_data(j)
      correct = np.asarray(compiled.sweep_correct_count(
          eval_graphdef, states, *batches, masks, shared_data=shared))
      for k, r in enumerate(runs):
        if diverged[k] is None:
          accuracy[k, t, j] = correct[k] / len(r.tasks[j].test_index)

  max_train = max(task.num_train for tasks in train_tasks for task in tasks)

  def train_data(t):
    """The configurations' data for task ``t``, once if they all share it."""
    x, y = zip(*(tasks[t].train_batch(np.arange(tasks[t].num_train))
                 for tasks in train_tasks), strict=True)
    masks = [tasks[t].train_logit_masks() for tasks in train_tasks]
    if _same(x) and _same(y) and _same(masks):
      return True, jax.device_put(
          (pad_rows(x[0], max_train), pad_rows(y[0], max_train), masks[0]),
          replicated)
    return False, spread(
        zip([pad_rows(a, max_train) for a in x],
            [pad_rows(a, max_train) for a in y], masks, strict=True))

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
      orders = _padded([task_order(r.config, t, train_tasks[k][t].num_train)
                        for k, r in enumerate(runs)], slots)
      task_steps = np.array(_padded(list(steps[:, t]), slots))
      states = spread(nnx.state(pair) for pair in pairs)
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

      for first in range(0, int(task_steps.max()), steps_per_call):
        counts = np.clip(task_steps - first, 0, steps_per_call)
        # Each configuration's own rows, even where the orders agree: on
        # XLA:CPU a shared order is slower (see sweep_train_steps).
        index = np.zeros((slots, steps_per_call, batch_size), np.int32)
        for k, order in enumerate(orders):
          index[k, :counts[k]] = order[first:first + counts[k]]
        one_count = (counts == counts[0]).all()
        states, losses = compiled.sweep_train_steps(
            graphdef, states, *data[:2], jax.device_put(index, by_config),
            (jax.device_put(np.int32(counts[0]), replicated) if one_count
             else jax.device_put(counts.astype(np.int32), by_config)),
            data[2], shared_data=shared)
        if pending is not None:
          read(pending)
        pending = (t, first, counts, losses)
      if pending is not None:
        read(pending)
      unstacked = _unstack(jax.device_put(states, home))[:num_runs]
      for k, (r, state) in enumerate(zip(runs, unstacked, strict=True)):
        nnx.update(pairs[k], state)
        if diverged[k] is not None:
          continue
        try:
          end_task(models[k], optimizers[k], r.method, r.tasks, t, r.config,
                   int(steps[k, t]), stiffness[k], capacity_used[k])
        except _Diverged as error:
          stop(k, error.record)
      score_all(t)
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
