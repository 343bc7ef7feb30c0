"""One generic continual-learning loop over a stream of tasks.

For each task: train for the given epochs with a jitted step, consolidate
(EWC, SI), evaluate on every task's test set to fill row ``i`` of the accuracy
matrix ``R``, and checkpoint. The data order depends only on the seed, the
task and the epoch, and the dropout RNG lives in the model's checkpointed
state, so a resumed run repeats exactly what an uninterrupted run does.
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
import optax
from tqdm.auto import tqdm

from classp_optax import empirical_fisher
from classp_optax import tree_bytes
from classp_optax.continual import metrics
from classp_optax.continual.checkpoint import RunCheckpointer
from classp_optax.continual.methods import Method
from classp_optax.continual.streams import Task

MASKED_LOGIT = -1e9


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
  """

  epochs: int | Sequence[int] = 1
  batch_size: int = 32
  eval_batch_size: int = 1000
  seed: int = 0
  fisher_samples: int = 1000

  def epochs_for(self, task: int) -> int:
    return self.epochs if isinstance(self.epochs, int) else self.epochs[task]


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
  model: nnx.Module | None = dataclasses.field(default=None, repr=False)
  opt_state: object = dataclasses.field(default=None, repr=False)

  @property
  def summary(self) -> dict:
    return metrics.summarize(self.accuracy)

  def to_json(self) -> dict:
    return dict(
        method=self.method, hyperparams=self.hyperparams,
        task_names=self.task_names, accuracy=self.accuracy.tolist(),
        state_bytes=self.state_bytes, wall_time=self.wall_time, **self.summary,
    )


def masked_cross_entropy(logits, labels, logit_mask):
  logits = jnp.where(logit_mask, logits, MASKED_LOGIT)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


@nnx.jit
def train_step(model, optimizer, x, y, logit_mask):
  def loss_fn(model):
    return masked_cross_entropy(model(x), y, logit_mask).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def correct_count(model, x, y, logit_mask, weight):
  logits = jnp.where(logit_mask, model(x), MASKED_LOGIT)
  return jnp.sum(weight * (jnp.argmax(logits, axis=-1) == y))


class _Placement:
  """Where arrays go: one device, or batches split over a mesh's 'data' axis
  with the model and optimizer replicated."""

  def __init__(self, mesh: Mesh | None):
    self.mesh = mesh
    self.num_devices = 1 if mesh is None else mesh.devices.size

  def batch(self, *arrays):
    if self.mesh is None:
      return tuple(jnp.asarray(a) for a in arrays)
    sharding = NamedSharding(self.mesh, P('data'))
    return tuple(jax.device_put(a, sharding) for a in arrays)

  def replicate(self, *nodes):
    if self.mesh is not None:
      state = nnx.state(nodes)
      nnx.update(nodes, jax.device_put(state, NamedSharding(self.mesh, P())))


def evaluate(model, task: Task, batch_size: int, placement=None) -> float:
  """Accuracy of ``model`` (in evaluation mode) on ``task``'s test set."""
  placement = placement or _Placement(None)
  x, y = task.test_set()
  mask = jnp.asarray(task.logit_mask())
  total = 0
  for start in range(0, len(y), batch_size):
    xb, yb = x[start:start + batch_size], y[start:start + batch_size]
    weight = np.ones(batch_size, np.float32)
    pad = batch_size - len(yb)
    if pad:  # one compiled shape for every batch
      weight[len(yb):] = 0
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
      yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
    total += int(correct_count(model, *placement.batch(xb, yb), mask,
                               *placement.batch(weight)))
  return total / len(y)


def task_fisher(model, task: Task, num_samples: int, seed: int):
  """The empirical Fisher of ``task``'s loss, the model in evaluation mode."""
  rng = np.random.default_rng([seed, 7919])
  positions = rng.permutation(task.num_train)[:num_samples]
  x, y = task.train_batch(np.sort(positions))
  mask = jnp.asarray(task.logit_mask())
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def example_loss(params, x, y):
    one = nnx.merge(graphdef, params, rest, copy=True)
    return masked_cross_entropy(one(x[None]), y[None], mask)[0]

  model.eval()
  try:
    return empirical_fisher(example_loss, params, jnp.asarray(x), jnp.asarray(y))
  finally:
    model.train()


def _consolidate(model, optimizer, method: Method, fisher):
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  new_state = method.consolidate(nnx.as_pure(optimizer.opt_state), params,
                                 lambda: nnx.as_pure(fisher()))
  nnx.update(optimizer.opt_state, nnx.state(new_state))


def _train_task(model, optimizer, t: int, task: Task, config: TrainConfig,
                placement: _Placement, after_step) -> None:
  """The epochs of task ``t``, in an order that depends only on the seed, the
  task and the epoch."""
  mask = jnp.asarray(task.logit_mask())
  steps_per_epoch = task.num_train // config.batch_size
  step = 0
  for epoch in range(config.epochs_for(t)):
    order = np.random.default_rng([config.seed, t, epoch]).permutation(
        task.num_train)
    for b in range(steps_per_epoch):
      x, y = task.train_batch(
          order[b * config.batch_size:(b + 1) * config.batch_size])
      loss = train_step(model, optimizer, *placement.batch(x, y), mask)
      step += 1
      after_step(step, loss)


def fingerprint(method: Method, stream_name: str, config: TrainConfig,
                model_name: str) -> dict:
  return dict(method=method.name, hyperparams=method.hyperparams,
              stream=stream_name, model=model_name,
              config=dataclasses.asdict(config))


def train_continual(
    make_model: Callable[[], nnx.Module],
    tasks: Sequence[Task],
    method: Method,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint_dir=None,
    run_fingerprint: dict | None = None,
    mesh: Mesh | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    progress: bool = False,
) -> RunResult:
  """Trains ``method`` on ``tasks`` in order and fills the accuracy matrix.

  Args:
    make_model: builds the freshly initialised model.
    tasks: the stream.
    method: the optimizer recipe.
    config: epochs, batch sizes, seed.
    checkpoint_dir: if given, a checkpoint is written after every task, and a
      run finding one there resumes after its last finished task.
    run_fingerprint: what identifies the run in its checkpoints; a resume
      with another fingerprint is refused. Defaults to method and config.
    mesh: a mesh with a ``'data'`` axis for data parallelism, or None.
    on_step: called as ``on_step(task, step, loss)`` after every step.
    progress: show progress bars.

  Returns:
    A :class:`RunResult`.
  """
  placement = _Placement(mesh)
  if config.batch_size % placement.num_devices:
    raise ValueError(
        f'batch_size must be a multiple of the {placement.num_devices} '
        f'devices, got {config.batch_size}.'
    )
  if config.eval_batch_size % placement.num_devices:
    raise ValueError(
        f'eval_batch_size must be a multiple of the {placement.num_devices} '
        f'devices, got {config.eval_batch_size}.'
    )
  small = [t.name for t in tasks if t.num_train < config.batch_size]
  if small:
    raise ValueError(
        f'batch_size must be at most every task\'s training examples; '
        f'{small} have fewer than {config.batch_size}.'
    )
  model = make_model()
  optimizer = nnx.Optimizer(model, method.optimizer_for_task(0), wrt=nnx.Param)
  num_tasks = len(tasks)
  accuracy = np.zeros((num_tasks, num_tasks))
  first_task, wall_time = 0, 0.0

  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = RunCheckpointer(checkpoint_dir, dict(
        run_fingerprint or fingerprint(method, 'custom', config, 'custom'),
        tasks=[task.name for task in tasks],
    ))
    if checkpointer.latest_task() is not None:
      optimizer.tx = method.optimizer_for_task(checkpointer.latest_task())
      record = checkpointer.restore(model, optimizer)
      first_task = record['task'] + 1
      rows = np.asarray(record['accuracy'])
      accuracy[:len(rows)] = rows
      wall_time = record['wall_time']
  placement.replicate(model, optimizer)

  def steps_for(t):
    return tasks[t].num_train // config.batch_size * config.epochs_for(t)

  bar = tqdm(total=sum(steps_for(t) for t in range(first_task, num_tasks)),
             desc=method.name, disable=not progress, leave=False)
  for t in range(first_task, num_tasks):
    start = time.perf_counter()
    task = tasks[t]
    if t > 0:
      optimizer.tx = method.optimizer_for_task(t)
      if method.reset_state:
        optimizer = nnx.Optimizer(model, optimizer.tx, wrt=nnx.Param)
        placement.replicate(optimizer)
    bar.set_postfix_str(task.name)

    def after_step(step, loss, t=t):
      bar.update()
      if on_step is not None:
        on_step(t, step, float(loss))

    _train_task(model, optimizer, t, task, config, placement, after_step)
    if method.consolidate is not None:
      _consolidate(model, optimizer, method, lambda task=task: task_fisher(
          model, task, config.fisher_samples, config.seed))
    model.eval()
    accuracy[t] = [evaluate(model, other, config.eval_batch_size, placement)
                   for other in tasks]
    model.train()
    wall_time += time.perf_counter() - start
    if checkpointer is not None:
      checkpointer.save(t, model, optimizer, dict(
          task=t, accuracy=accuracy[:t + 1].tolist(), wall_time=wall_time))

  bar.close()
  if checkpointer is not None:
    checkpointer.close()
  return RunResult(
      method=method.name, hyperparams=method.hyperparams,
      task_names=[task.name for task in tasks], accuracy=accuracy,
      state_bytes=tree_bytes(nnx.as_pure(optimizer.opt_state)),
      wall_time=wall_time, model=model,
      opt_state=nnx.as_pure(optimizer.opt_state),
  )
