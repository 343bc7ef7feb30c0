"""What the engine trains: :class:`Run` configurations, and the checks
that they can train together as one program, made before anything is
built."""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses

from flax import nnx
import jax
import numpy as np

from classp_optax.continual import datasets
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.config import check_config
from classp_optax.continual.method import Method
from classp_optax.continual.streams import Task


@dataclasses.dataclass(frozen=True)
class Run:
  """One configuration: a model, a stream, a method and how to train it."""

  make_model: Callable[[], nnx.Module]
  tasks: Sequence[Task]
  method: Method
  config: TrainConfig = TrainConfig()


def _check_count(name: str, value) -> None:
  if value is not None and (isinstance(value, bool)
                            or not isinstance(value, int) or value < 1):
    raise ValueError(f'{name} must be None or an integer >= 1, got {value!r}.')


def check_structure(methods: Sequence[Method]) -> None:
  """ValueError unless ``methods`` can train as one program: one
  ``Method.sweep_structure``, so that only their numeric values differ."""
  structures = [method.sweep_structure for method in methods]
  if len(methods) > 1 and (None in structures or len(set(structures)) > 1):
    raise ValueError(
        'runs must share one Method.structure and the hooks\' static '
        'settings (only numeric hyperparameters may differ); got '
        f'{sorted(set(map(str, structures)))}.')


def check_runs(runs: Sequence[Run], data_devices: int = 1,
               checkpoint_every_steps=None, checkpoint_every_seconds=None,
               steps_per_call=None) -> None:
  """ValueError, naming the setting and its range, unless ``runs`` can
  train together with these settings; nothing is built before."""
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
    check_config(r.config, r.tasks, data_devices)
  _check_count('checkpoint_every_steps', checkpoint_every_steps)
  if checkpoint_every_seconds is not None and not checkpoint_every_seconds > 0:
    raise ValueError('checkpoint_every_seconds must be None or > 0, got '
                     f'{checkpoint_every_seconds}.')
  _check_count('steps_per_call', steps_per_call)


def check_model(model: nnx.Module, tasks: Sequence[Task],
                classifies: bool = True) -> None:
  """ValueError, naming the shapes, unless ``model`` takes every task's
  inputs and gives the outputs they need (and, if it ``classifies``, the
  labels are integers): traced, nothing compiled."""
  graphdef, state = nnx.split(model)
  for task in tasks:
    x, y = task.train_batch(np.arange(1))
    if classifies:
      datasets.check_labels(y, f'task {task.name!r}: the dataset\'s y_train')
    spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    try:
      out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, spec)
    except Exception as error:  # what the model raised is the cause below
      raise ValueError(
          f'make_model\'s model does not take task {task.name!r}\'s inputs '
          f'of shape {x.shape[1:]} ({x.dtype}); build it for that shape, such '
          f'as models.make_model(\'mlp\', {x.shape[1:]}, '
          f'{task.num_outputs}, seed=0).') from error
    if out.shape != (1, task.num_outputs):
      raise ValueError(
          f'make_model\'s model gives outputs of shape {out.shape[1:]} '
          f'({out.shape[-1]} outputs), but task {task.name!r} needs '
          f'{task.num_outputs} (Task.num_outputs): build the model with '
          f'{task.num_outputs} outputs.')


def default_fingerprint(runs: Sequence[Run]) -> dict:
  """What identifies ``runs`` in their checkpoints, by default."""
  return dict(runs=[dict(method=r.method.label, hyperparams=r.method.hyperparams,
                         config=dataclasses.asdict(r.config),
                         tasks=[task.name for task in r.tasks]) for r in runs])
