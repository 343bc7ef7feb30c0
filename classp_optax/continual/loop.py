"""One generic continual-learning loop over a stream of tasks.

For each task: train for the given epochs, consolidate (EWC, SI), evaluate on
every task's test set to fill row ``i`` of the accuracy matrix ``R``, and
checkpoint. Long tasks are also checkpointed every so many steps or seconds.

It runs at JAX's speed: each task's data goes to the device once, and each
dispatch runs many steps (:func:`steps.train_steps`), each gathering its batch
on the device by an index array; test sets are prepared once per run and
each is scored in one compiled call. Every compiled function compiles once
per run (the loop pads shapes that differ between tasks). The data order
depends only on the seed, the task and the epoch, and the dropout RNG lives
in the model's checkpointed state, so a resumed run repeats exactly what an
uninterrupted run does.
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import functools
import math
import time
import warnings

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
from tqdm.auto import tqdm

from classp_optax import ClasspState
from classp_optax import classp_stats
from classp_optax import empirical_fisher
from classp_optax import set_hyperparams
from classp_optax import tree_bytes
from classp_optax._padding import pad_rows
from classp_optax._state_search import find_all
from classp_optax.continual import metrics
from classp_optax.continual import steps as compiled
from classp_optax.continual import streams
from classp_optax.continual.checkpoint import RunCheckpointer
from classp_optax.continual.methods import Method
from classp_optax.continual.methods import fresh_state
from classp_optax.continual.streams import Task

# A task learnt to less than this above its majority-class accuracy is marked
# as not learnt.
CHANCE_MARGIN = 0.05
# Train steps per dispatch, at most. The loss is checked for finiteness, the
# progress reported and a due checkpoint written between dispatches.
STEPS_PER_CALL = 100


def default_steps_per_call(model: nnx.Module) -> int:
  """:data:`STEPS_PER_CALL`, or 1 for a convolutional model on the CPU, where
  XLA runs a convolution's gradient an order of magnitude slower inside a
  loop (jax-ml/jax#12868): one step per dispatch is then the fastest."""
  has_conv = any(isinstance(node, nnx.Conv) for _, node in nnx.iter_graph(model))
  return 1 if has_conv and jax.default_backend() == 'cpu' else STEPS_PER_CALL


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train each task.

  Attributes:
    epochs: epochs per task: one number for all, or one per task.
    batch_size: examples per step; the last incomplete batch of an epoch is
      dropped. With data parallelism, a multiple of the device count.
    eval_batch_size: examples per evaluation step.
    seed: seeds the data order (with the task and epoch).
    fisher_samples: training examples of a task for a Fisher (EWC).
    steps_per_task: if set, every task trains for this many steps (epoch
      after epoch, the last one cut short) instead of ``epochs``.
  """

  epochs: int | Sequence[int] = 1
  batch_size: int = 32
  eval_batch_size: int = 1000
  seed: int = 0
  fisher_samples: int = 1000
  steps_per_task: int | None = None

  def epochs_for(self, task: int) -> int:
    return self.epochs if isinstance(self.epochs, int) else self.epochs[task]

  def steps_for(self, task: int, num_train: int) -> int:
    """Steps of task ``task``, which has ``num_train`` training examples."""
    if self.steps_per_task is not None:
      return self.steps_per_task
    return num_train // self.batch_size * self.epochs_for(task)


@dataclasses.dataclass
class RunResult:
  """What one method did on one stream, with the trained model and the final
  optimizer state (a plain Optax pytree)."""

  method: str
  hyperparams: dict
  task_names: list[str]
  accuracy: np.ndarray  # R[i, j]
  state_bytes: int
  wall_time: float
  stiffness: list = dataclasses.field(default_factory=list)
  stiffness_bound: float | None = None
  capacity_used: list = dataclasses.field(default_factory=list)
  majority_accuracy: list = dataclasses.field(default_factory=list)
  diverged: dict | None = None
  # In a sweep, what sets this run apart from the others: the swept
  # hyperparameters and the seed.
  swept: dict = dataclasses.field(default_factory=dict)
  model: nnx.Module | None = dataclasses.field(default=None, repr=False)
  opt_state: object = dataclasses.field(default=None, repr=False)

  @property
  def label(self) -> str:
    """The method's label, and in a sweep what sets this run apart:
    ``classp learning_rate=0.01 seed=1``."""
    return ' '.join([self.method, *(f'{k}={v}' for k, v in self.swept.items())])

  @property
  def summary(self) -> dict:
    """The metrics of :mod:`metrics`; all None for a run that diverged."""
    if self.diverged is not None:
      return dict.fromkeys(metrics.summarize(np.zeros((1, 1))))
    return metrics.summarize(self.accuracy)

  @property
  def not_learnt(self) -> list[int]:
    """The tasks whose accuracy just after training them is within
    :data:`CHANCE_MARGIN` of always answering their most frequent label."""
    return [j for j, base in enumerate(self.majority_accuracy)
            if np.isfinite(self.accuracy[j, j])
            and self.accuracy[j, j] < base + CHANCE_MARGIN]

  def to_json(self) -> dict:
    return dict(
        method=self.method, hyperparams=self.hyperparams,
        task_names=self.task_names,
        accuracy=np.where(np.isfinite(self.accuracy), self.accuracy,
                          None).tolist(),
        state_bytes=self.state_bytes, wall_time=self.wall_time,
        stiffness=self.stiffness, stiffness_bound=self.stiffness_bound,
        capacity_used=self.capacity_used,
        majority_accuracy=self.majority_accuracy, not_learnt=self.not_learnt,
        diverged=self.diverged, swept=self.swept, **self.summary,
    )


class DivergenceWarning(UserWarning):
  """A run's loss or state became non-finite; the run stopped there."""


class _Diverged(Exception):

  def __init__(self, task: int, step: int, what: str):
    super().__init__(task, step, what)
    self.record = dict(task=task, step=step, what=what)


@jax.jit
def _finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _all_finite(tree) -> bool:
  """Whether every float in ``tree`` is finite: one compiled reduction and
  one transfer at a task's end, not one of each per leaf."""
  return bool(_finite(tree))


@jax.jit
def _capacity_used(opt_state) -> jax.Array:
  return classp_stats(opt_state).capacity_used


class _Placement:
  """Where arrays go: one device, or batches split over a mesh's 'data' axis
  with the model, the optimizer and each task's data replicated."""

  def __init__(self, mesh: Mesh | None):
    self.mesh = mesh
    self.num_devices = 1 if mesh is None else mesh.devices.size

  def _put(self, spec, *arrays):
    if self.mesh is None:
      return tuple(jnp.asarray(a) for a in arrays)
    sharding = NamedSharding(self.mesh, spec)
    return tuple(jax.device_put(a, sharding) for a in arrays)

  def replicated(self, *arrays):
    return self._put(P(), *arrays)

  def batch_rows(self, *arrays):
    """Arrays of shape ``(rows, batch, ...)``, each batch split."""
    return self._put(P(None, 'data'), *arrays)

  @property
  def batch_sharding(self):
    return None if self.mesh is None else NamedSharding(self.mesh, P('data'))

  def replicate(self, *nodes):
    if self.mesh is not None:
      state = nnx.state(nodes)
      nnx.update(nodes, jax.device_put(state, NamedSharding(self.mesh, P())))


def host_test_batches(task: Task, batch_size: int,
                      num_batches: int | None = None) -> tuple:
  """:func:`test_batches` as NumPy arrays, on the host."""
  x, y = task.test_set()
  num_batches = num_batches or -(-len(y) // batch_size)
  rows = num_batches * batch_size
  valid = np.arange(rows) < len(y)
  return tuple(a.reshape(num_batches, batch_size, *a.shape[1:])
               for a in (pad_rows(x, rows), pad_rows(y, rows), valid))


def test_batches(task: Task, batch_size: int, placement=None,
                 num_batches: int | None = None) -> tuple:
  """``task``'s test set on the device as ``(inputs, labels, valid)`` stacks of
  shape ``(num_batches, batch_size, ...)``, padded with invalid examples, so
  that one compiled evaluation serves every task. Made once per run: a
  permuted task's inputs are permuted and copied once, not at every
  evaluation."""
  placement = placement or _Placement(None)
  return placement.batch_rows(
      *host_test_batches(task, batch_size, num_batches))


def evaluate(model, task: Task, batch_size: int, placement=None,
             batches: tuple | None = None) -> float:
  """Accuracy of ``model`` (in evaluation mode) on ``task``'s test set, in
  one compiled call, from ``batches`` (see :func:`test_batches`) when
  given."""
  if batches is None:
    batches = test_batches(task, batch_size, placement)
  return _accuracy(*nnx.split(model), task, batches)


def _accuracy(graphdef, state, task: Task, batches: tuple) -> float:
  """:func:`evaluate` on a model already split (in evaluation mode)."""
  mask = jnp.asarray(task.logit_mask())
  return int(compiled.correct_count(graphdef, state, *batches, mask)) / len(
      task.test_index)


def task_fisher(model, task: Task, num_samples: int, seed: int):
  """The empirical Fisher of ``task``'s loss, the model in evaluation mode;
  compiled once for all the tasks of a run."""
  rng = np.random.default_rng([seed, 7919])
  positions = rng.permutation(task.num_train)[:num_samples]
  x, y = task.train_batch(np.sort(positions))
  masks = jnp.asarray(task.train_logit_masks())
  model.eval()  # before the split: the graph definition holds the mode
  try:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  finally:
    model.train()
  # The examples stay NumPy arrays: empirical_fisher pads the last chunk on
  # the host, so that tasks of different sizes share its compiled work.
  return empirical_fisher(compiled.fisher_example_loss(graphdef), params,
                          x, y, rest, masks)


def task_order(config: 'TrainConfig', t: int, num_train: int) -> np.ndarray:
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


class StiffnessWarning(UserWarning):
  """A penalty is too stiff for the learning rate: SGD on it oscillates or
  diverges."""


def _replace_opt_state(model, optimizer, change):
  """Sets the optimizer's state to ``change(opt_state, params)``, both as
  plain arrays, and returns it."""
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  new_state = change(nnx.as_pure(optimizer.opt_state), params)
  nnx.update(optimizer.opt_state, nnx.state(new_state))
  return new_state


def _consolidate(model, optimizer, method: Method, fisher):
  new_state = _replace_opt_state(
      model, optimizer, lambda opt_state, params: method.consolidate(
          opt_state, params, lambda: nnx.as_pure(fisher())))
  if method.stiffness is None:
    return None
  return method.stiffness(new_state)


def _warn_if_stiff(method: Method, task: int, value: float) -> None:
  if value >= method.stiffness_bound:
    warnings.warn(
        f'{method.name}: after task {task}, learning_rate x the penalty\'s '
        f'largest curvature is {value:.3g}, at or past {method.stiffness_bound:g},'
        ' where SGD on the penalty oscillates or diverges. Use a smaller '
        'strength, a smaller learning rate or an adaptive optimizer.',
        StiffnessWarning, stacklevel=3)


def start_task(model, optimizer, method: Method, t: int,
               resuming_mid_task: bool = False) -> None:
  """What a task starts with: a fresh optimizer state if the method resets
  it (keeping a penalty's), and the method's hyperparameters for task ``t``."""
  if t > 0 and method.reset_state and not resuming_mid_task:
    _replace_opt_state(model, optimizer, lambda opt_state, params:
                       fresh_state(optimizer.tx, params, opt_state))
  if method.hyperparams_for_task is not None:
    values = method.hyperparams_for_task(t)
    _replace_opt_state(model, optimizer, lambda opt_state, _, v=values:
                       set_hyperparams(opt_state, **v))


def end_task(model, optimizer, method: Method, tasks: Sequence[Task], t: int,
             config: TrainConfig, steps_done: int, stiffness: list,
             capacity_used: list) -> None:
  """What follows training task ``t``: the check that the state is finite,
  the consolidation (EWC, SI) with its stiffness (appended to
  ``stiffness``, with a warning past the bound), and CLASSP's capacity used
  (appended to ``capacity_used``). Raises _Diverged at a non-finite state."""
  if not _all_finite(nnx.state((model, optimizer))):
    raise _Diverged(t, steps_done, 'the weights or optimizer state')
  if method.consolidate is not None:
    value = _consolidate(model, optimizer, method, functools.partial(
        task_fisher, model, tasks[t], config.fisher_samples, config.seed))
    if not _all_finite(nnx.state(optimizer)):
      raise _Diverged(t, steps_done, 'the optimizer state after consolidation')
    if value is not None:
      stiffness.append(value)
      if t < len(tasks) - 1:  # no training follows the last consolidation
        _warn_if_stiff(method, t, value)
  opt_state = nnx.as_pure(optimizer.opt_state)
  if find_all(opt_state, ClasspState):
    capacity_used.append(float(_capacity_used(opt_state)))


def score(model, tasks: Sequence[Task], batches_of: Callable) -> list[float]:
  """Row of the accuracy matrix: ``model``'s accuracy on every task, from
  ``batches_of(j)`` (:func:`test_batches` of task ``j``)."""
  model.eval()  # before the split: the graph definition holds the mode
  graphdef, state = nnx.split(model)
  model.train()
  return [_accuracy(graphdef, state, task, batches_of(j))
          for j, task in enumerate(tasks)]


def make_result(method: Method, tasks: Sequence[Task], accuracy: np.ndarray,
                model, optimizer, wall_time: float, stiffness: list,
                capacity_used: list, diverged: dict | None) -> RunResult:
  return RunResult(
      method=method.name, hyperparams=method.hyperparams,
      task_names=[task.name for task in tasks], accuracy=accuracy,
      state_bytes=tree_bytes(nnx.as_pure(optimizer.opt_state)),
      wall_time=wall_time, stiffness=stiffness, capacity_used=capacity_used,
      stiffness_bound=(method.stiffness_bound if method.stiffness
                       and math.isfinite(method.stiffness_bound) else None),
      majority_accuracy=[task.majority_accuracy() for task in tasks],
      diverged=diverged, model=model,
      opt_state=nnx.as_pure(optimizer.opt_state),
  )


def warn_diverged(name: str, record: dict) -> None:
  warnings.warn(
      f'{name} diverged in task {record["task"]} at step '
      f'{record["step"]}: {record["what"]} is not finite. The run '
      'stops here; its accuracies are not reported.',
      DivergenceWarning, stacklevel=3)


def _train_task(model, optimizer, order: np.ndarray, data: tuple,
                logit_masks, placement: _Placement, first_step: int,
                steps_per_call: int, progress) -> None:
  """Steps ``first_step`` onwards of a task whose batches are the rows of
  ``order`` (positions in ``data``, the task's training set on the device).

  Each dispatch runs up to ``steps_per_call`` steps, ending early where
  ``progress.chunk_end(step)`` says. The model and optimizer are split once;
  a dispatch's losses are read (``progress.report``) while the next one
  runs, so the device never waits for the host, except where a checkpoint
  is due (``progress.save_due``): then the state is written back first.
  """
  graphdef, state = nnx.split((model, optimizer))
  pending = None  # (first step, count, losses) of a dispatch not yet read

  def read(pending):
    first, count, losses = pending
    progress.report(first, np.asarray(losses)[:count])

  step = first_step
  try:
    while step < len(order):
      count = min(steps_per_call, progress.chunk_end(step) - step)
      index = np.zeros((steps_per_call, order.shape[1]), np.int32)
      index[:count] = order[step:step + count]
      state, losses = compiled.train_steps(
          graphdef, state, *data, *placement.batch_rows(index), count,
          logit_masks, batch_sharding=placement.batch_sharding)
      if pending is not None:
        read(pending)
      pending, step = (step, count, losses), step + count
      if step < len(order) and progress.save_due(step):
        read(pending)
        pending = None
        nnx.update((model, optimizer), state)
        progress.save(step)
    if pending is not None:
      read(pending)
  finally:
    nnx.update((model, optimizer), state)


def fingerprint(method: Method, stream_name: str, config: TrainConfig,
                model_name: str) -> dict:
  return dict(method=method.name, hyperparams=method.hyperparams,
              stream=stream_name, model=model_name,
              config=dataclasses.asdict(config))


def check_run(config: TrainConfig, tasks: Sequence[Task], num_devices: int = 1,
              checkpoint_every_steps: int | None = None,
              checkpoint_every_seconds: float | None = None,
              steps_per_call: int | None = None) -> None:
  """ValueError, naming the argument and its range, unless a run of
  ``tasks`` with these settings can start."""
  if config.batch_size % num_devices:
    raise ValueError(
        f'batch_size must be a multiple of the {num_devices} '
        f'devices, got {config.batch_size}.'
    )
  if config.eval_batch_size % num_devices:
    raise ValueError(
        f'eval_batch_size must be a multiple of the {num_devices} '
        f'devices, got {config.eval_batch_size}.'
    )
  small = [t.name for t in tasks if t.num_train < config.batch_size]
  if small:
    raise ValueError(
        f'batch_size must be at most every task\'s training examples; '
        f'{small} have fewer than {config.batch_size}.'
    )
  if checkpoint_every_steps is not None and checkpoint_every_steps < 1:
    raise ValueError('checkpoint_every_steps must be None or >= 1, got '
                     f'{checkpoint_every_steps}.')
  if checkpoint_every_seconds is not None and not checkpoint_every_seconds > 0:
    raise ValueError('checkpoint_every_seconds must be None or > 0, got '
                     f'{checkpoint_every_seconds}.')
  if config.steps_per_task is not None and (
      isinstance(config.steps_per_task, bool)
      or not isinstance(config.steps_per_task, int)
      or config.steps_per_task < 1):
    raise ValueError('steps_per_task must be None or an integer >= 1, got '
                     f'{config.steps_per_task!r}.')
  if steps_per_call is not None and (
      isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int)
      or steps_per_call < 1):
    raise ValueError(f'steps_per_call must be None or an integer >= 1, got '
                     f'{steps_per_call!r}.')


def train_continual(
    make_model: Callable[[], nnx.Module],
    tasks: Sequence[Task],
    method: Method,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint_dir=None,
    run_fingerprint: dict | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = 300.0,
    mesh: Mesh | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    progress: bool = False,
    steps_per_call: int | None = None,
) -> RunResult:
  """Trains ``method`` on ``tasks`` in order and fills the accuracy matrix.

  Args:
    make_model: builds the freshly initialised model.
    tasks: the stream.
    method: the optimizer recipe.
    config: epochs or steps per task, batch sizes, seed.
    checkpoint_dir: if given, a checkpoint is written after every task (and
      within tasks, see below), and a run finding one there resumes from it.
    run_fingerprint: what identifies the run in its checkpoints; a resume
      with another fingerprint is refused. Defaults to method and config.
    checkpoint_every_steps: also checkpoint every this many steps of a task.
    checkpoint_every_seconds: also checkpoint within a task once this much
      time has passed since the last checkpoint (None: never). A killed run
      loses at most this much work.
    mesh: a mesh with a ``'data'`` axis for data parallelism, or None.
    on_step: called as ``on_step(task, step, loss)`` for every step, with
      ``step`` counted from 1 within the task, after the dispatch that ran it
      and before any checkpoint that follows.
    progress: show progress bars.
    steps_per_call: train steps per dispatch, at most; the results do not
      depend on it. Default: :func:`default_steps_per_call`.

  Returns:
    A :class:`RunResult`.
  """
  placement = _Placement(mesh)
  check_run(config, tasks, placement.num_devices, checkpoint_every_steps,
            checkpoint_every_seconds, steps_per_call)
  model = make_model()
  steps_per_call = steps_per_call or default_steps_per_call(model)
  optimizer = nnx.Optimizer(model, method.optimizer, wrt=nnx.Param)
  num_tasks = len(tasks)
  accuracy = np.zeros((num_tasks, num_tasks))
  stiffness: list = []
  capacity_used: list = []  # CLASSP's, after each task

  # What each task trains on: the task, or for joint training every task
  # so far; it is scored on the tasks as they are.
  train_tasks = streams.joint(tasks) if method.joint else list(tasks)

  def steps_for(t):
    return config.steps_for(t, train_tasks[t].num_train)

  # Where the run stands: task `first_task`, its first `first_step` steps done.
  first_task, first_step, wall_time = 0, 0, 0.0
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, dict(
        run_fingerprint or fingerprint(method, 'custom', config, 'custom'),
        tasks=[task.name for task in tasks],
    ))
    if checkpointer.latest() is not None:
      record = checkpointer.restore(model, optimizer)
      first_task, first_step = record['task'], record['task_step']
      if first_step == steps_for(first_task):  # the task was finished
        first_task, first_step = first_task + 1, 0
      rows = np.asarray(record['accuracy']).reshape(-1, num_tasks)
      accuracy[:len(rows)] = rows
      stiffness = record['stiffness']
      capacity_used = record.get('capacity_used', [])
      wall_time = record['wall_time']
  placement.replicate(model, optimizer)

  def save(t, task_step, elapsed):
    finished = task_step == steps_for(t)
    checkpointer.save(
        sum(steps_for(u) for u in range(t)) + task_step, model, optimizer,
        dict(task=t, task_step=task_step,
             accuracy=accuracy[:t + 1 if finished else t].tolist(),
             stiffness=stiffness, capacity_used=capacity_used,
             wall_time=elapsed))

  class Progress:
    """A task's progress: where dispatches end, what follows each (the
    progress bar, ``on_step``, the check that the losses are finite), and
    the checkpoints due within the task."""

    def __init__(self, t: int, elapsed_before: float):
      self.t, self.elapsed_before = t, elapsed_before
      self.start = self.last_save = time.perf_counter()

    def chunk_end(self, step: int) -> int:
      """Where the dispatch from ``step`` must stop: the task's end, or the
      next multiple of ``checkpoint_every_steps``."""
      end = steps_for(self.t)
      if checkpointer is not None and checkpoint_every_steps:
        end = min(end, (step // checkpoint_every_steps + 1)
                  * checkpoint_every_steps)
      return end

    def report(self, first: int, losses: np.ndarray) -> None:
      """The progress bar and ``on_step`` for steps ``first + 1`` onwards;
      raises _Diverged at the first step whose loss is not finite."""
      bar.update(len(losses))
      if on_step is not None:
        for step, loss in enumerate(losses, first + 1):
          on_step(self.t, step, float(loss))
      finite = np.isfinite(losses)
      if not finite.all():
        raise _Diverged(self.t, first + 1 + int(np.argmin(finite)), 'the loss')

    def save_due(self, step: int) -> bool:
      """Whether a checkpoint is due after ``step`` (not the task's last)."""
      if checkpointer is None:
        return False
      return bool(
          (checkpoint_every_steps and step % checkpoint_every_steps == 0)
          or (checkpoint_every_seconds is not None and time.perf_counter()
              - self.last_save >= checkpoint_every_seconds))

    def save(self, step: int) -> None:
      now = time.perf_counter()
      save(self.t, step, self.elapsed_before + now - self.start)
      self.last_save = time.perf_counter()

  # Each test set on the device once, in as many batches as the largest.
  num_eval_batches = max(-(-len(task.test_index) // config.eval_batch_size)
                         for task in tasks)
  eval_batches = {}

  def batches_of(j):
    if j not in eval_batches:
      eval_batches[j] = test_batches(tasks[j], config.eval_batch_size,
                                     placement, num_eval_batches)
    return eval_batches[j]

  # Each task's training data is padded to the largest task's size, so that
  # one compiled train step serves them all.
  max_train = max(task.num_train for task in train_tasks)

  def train_data(task):
    x, y = task.train_batch(np.arange(task.num_train))
    return placement.replicated(pad_rows(x, max_train),
                                pad_rows(y, max_train))

  diverged = None
  bar = tqdm(total=sum(steps_for(t) for t in range(first_task, num_tasks))
             - first_step, desc=method.name, disable=not progress, leave=False)
  try:
    for t in range(first_task, num_tasks):
      progress_t = Progress(t, wall_time)
      task = tasks[t]
      resuming_mid_task = t == first_task and first_step > 0
      start_task(model, optimizer, method, t, resuming_mid_task)
      placement.replicate(optimizer)
      bar.set_postfix_str(task.name)
      _train_task(model, optimizer,
                  task_order(config, t, train_tasks[t].num_train),
                  train_data(train_tasks[t]),
                  placement.replicated(train_tasks[t].train_logit_masks())[0],
                  placement, first_step if resuming_mid_task else 0,
                  steps_per_call, progress_t)
      end_task(model, optimizer, method, tasks, t, config, steps_for(t),
               stiffness, capacity_used)
      accuracy[t] = score(model, tasks, batches_of)
      wall_time += time.perf_counter() - progress_t.start
      if checkpointer is not None:
        save(t, steps_for(t), wall_time)
  except _Diverged as stop:
    diverged = stop.record
    accuracy[diverged['task']:] = np.nan
    warn_diverged(method.name, diverged)
  finally:
    bar.close()
    if checkpointer is not None:
      checkpointer.close()
  return make_result(method, tasks, accuracy, model, optimizer, wall_time,
                     stiffness, capacity_used, diverged)
