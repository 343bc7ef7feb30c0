"""The methods compared: CLASSP, EWC, SI, and Optax's SGD, Adam and AdaGrad.

A :class:`Method` gives the optimizer for each task. The loop keeps one
optimizer state across tasks (unless ``reset_state`` is set), so a method may
change hyperparameters between tasks as long as its state's structure stays
the same, as CLASSP's does.
"""

from collections.abc import Callable
import dataclasses

import optax

from classp_optax import _ewc
from classp_optax import _si
from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si


@dataclasses.dataclass(frozen=True)
class Method:
  """A named optimizer recipe for a stream of tasks.

  Attributes:
    name: the label in tables and plots.
    hyperparams: everything that defines it, for records and checkpoints.
    optimizer_for_task: task index -> the Optax transform for that task.
    consolidate: if set, called at the end of every task as
      ``consolidate(opt_state, params, fisher)`` and returning the new optimizer
      state; ``fisher()`` computes the task's empirical Fisher (in evaluation
      mode) only if called.
    reset_state: start every task with a fresh optimizer state.
  """

  name: str
  hyperparams: dict
  optimizer_for_task: Callable[[int], optax.GradientTransformation]
  consolidate: Callable | None = None
  reset_state: bool = False


def classp_method(
    learning_rate: float = 0.1,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
    decay_from_task: int = 1,
    later_threshold: float | None = 0.0,
    later_learning_rate: float | None = None,
) -> Method:
  """CLASSP with the paper's schedule.

  Tasks before ``decay_from_task`` take plain steps (``apply_decay=False``)
  with ``threshold``; later tasks take decayed steps with ``later_threshold``
  and ``later_learning_rate`` (each defaulting to the first task's value when
  None). ``decay_from_task=0`` decays from the start.
  """
  hyperparams = dict(
      learning_rate=learning_rate, threshold=threshold, power=power, eps=eps,
      decay_from_task=decay_from_task, later_threshold=later_threshold,
      later_learning_rate=later_learning_rate,
  )
  classp(learning_rate, threshold=threshold, power=power, eps=eps)  # checks
  if decay_from_task < 0:
    raise ValueError(f'decay_from_task must be >= 0, got {decay_from_task}.')

  def optimizer_for_task(task: int) -> optax.GradientTransformation:
    if task < decay_from_task:
      return classp(learning_rate, threshold=threshold, power=power, eps=eps,
                    apply_decay=False)
    return classp(
        learning_rate if later_learning_rate is None else later_learning_rate,
        threshold=threshold if later_threshold is None else later_threshold,
        power=power, eps=eps, apply_decay=True,
    )

  return Method('classp', hyperparams, optimizer_for_task)


def ewc_method(
    learning_rate: float = 0.1,
    strength: float = 5000.0,
    mode: str = 'separate',
    decay: float = 1.0,
    momentum: float = 0.0,
) -> Method:
  """EWC's penalty on top of SGD (with optional momentum)."""
  _ewc.check_consolidation(mode, decay)
  tx = optax.chain(
      add_ewc_penalty(strength),
      optax.sgd(learning_rate, momentum=momentum or None),
  )

  def consolidate(opt_state, params, fisher):
    return consolidate_ewc(opt_state, params, fisher(), mode=mode, decay=decay)

  return Method(
      'ewc',
      dict(learning_rate=learning_rate, strength=strength, mode=mode,
           decay=decay, momentum=momentum),
      lambda task: tx, consolidate=consolidate,
  )


def si_method(
    learning_rate: float = 0.1,
    strength: float = 1.0,
    damping: float = 0.1,
    momentum: float = 0.0,
) -> Method:
  """Synaptic Intelligence's penalty on top of SGD (with optional momentum)."""
  _si.check_damping(damping)
  tx = optax.chain(
      add_si_penalty(strength),
      optax.sgd(learning_rate, momentum=momentum or None),
  )

  def consolidate(opt_state, params, fisher):
    del fisher  # SI's importance comes from the path integral instead
    return consolidate_si(opt_state, params, damping)

  return Method(
      'si',
      dict(learning_rate=learning_rate, strength=strength, damping=damping,
           momentum=momentum),
      lambda task: tx, consolidate=consolidate,
  )


def _optax_method(name: str, factory, **hyperparams) -> Method:
  tx = factory(**hyperparams)
  return Method(name, hyperparams, lambda task: tx)


def sgd_method(learning_rate: float = 0.1, momentum: float = 0.0) -> Method:
  return _optax_method('sgd', lambda learning_rate, momentum: optax.sgd(
      learning_rate, momentum=momentum or None),
      learning_rate=learning_rate, momentum=momentum)


def adam_method(learning_rate: float = 1e-3) -> Method:
  return _optax_method('adam', optax.adam, learning_rate=learning_rate)


def adagrad_method(learning_rate: float = 0.1) -> Method:
  return _optax_method('adagrad', optax.adagrad, learning_rate=learning_rate)


METHODS = {
    'classp': classp_method,
    'ewc': ewc_method,
    'si': si_method,
    'sgd': sgd_method,
    'adam': adam_method,
    'adagrad': adagrad_method,
}


def make_method(name: str, **hyperparams) -> Method:
  """A method by name; unknown names and hyperparameters are errors.

  Every method also takes ``reset_state`` (a bool): start each task with a
  fresh optimizer state. It is recorded in the hyperparameters when given.
  """
  if name not in METHODS:
    raise ValueError(f'method must be one of {sorted(METHODS)}, got {name!r}.')
  reset_state = hyperparams.pop('reset_state', None)
  if reset_state is not None and not isinstance(reset_state, bool):
    raise ValueError(f'{name}: reset_state must be True or False, got '
                     f'{reset_state!r}.')
  try:
    method = METHODS[name](**hyperparams)
  except TypeError as e:
    raise ValueError(f'{name}: {e}') from e
  if reset_state is None:
    return method
  return dataclasses.replace(
      method, reset_state=reset_state,
      hyperparams={**method.hyperparams, 'reset_state': reset_state})
