"""The methods compared: CLASSP, EWC, SI, Optax's SGD, Adam and AdaGrad, and
joint training (the upper bound).

A :class:`Method` gives one Optax transform for the whole run, and the
loop keeps one optimizer state across tasks (unless ``reset_state`` is set).
A method that changes hyperparameters between tasks, as CLASSP's paper
schedule does, injects them (``optax.inject_hyperparams``) and names their
values for each task; the loop sets them in the state at each task's start
(:func:`classp_optax.set_hyperparams`), so the train step compiles once per
run.

Every factory checks every hyperparameter when it is called, naming it as
``method.name`` with its accepted range, so that a bad ``--set`` stops a run
before any data is loaded. The defaults are stable on every built-in
benchmark; the benchmarks' own defaults (``suites.py``) are the ones chosen
on validation data by ``benchmarks/tune.py``.
"""

from collections.abc import Callable
import dataclasses
import math
import numbers

import jax
import numpy as np
import optax

from classp_optax import _checks
from classp_optax import _ewc
from classp_optax import _si
from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si
from classp_optax._state_search import find_all
from classp_optax._state_search import find_unique
from classp_optax._state_search import replace_node


@dataclasses.dataclass(frozen=True)
class Method:
  """A named optimizer recipe for a stream of tasks.

  Attributes:
    name: the label in tables, plots and checkpoint folders: the method's
      name, or ``name:variant`` for a labelled variant.
    hyperparams: everything that defines it, for records and checkpoints.
    optimizer: the Optax transform, the same for every task.
    hyperparams_for_task: if set, task index -> values of ``optimizer``'s
      injected hyperparameters for that task.
    consolidate: if set, called at the end of every task as
      ``consolidate(opt_state, params, fisher)`` and returning the new optimizer
      state; ``fisher()`` computes the task's empirical Fisher (in evaluation
      mode) only if called.
    reset_state: start every task with a fresh state for the optimizer; a
      penalty's state (EWC's Fisher and anchors, SI's importances) is kept,
      since it is the memory of the earlier tasks.
    joint: train task ``t`` on the data of tasks ``0 .. t`` together
      (:func:`~classp_optax.continual.streams.joint`): the upper bound.
    stiffness: if set, ``stiffness(opt_state)`` gives the largest product of
      the learning rate and the penalty's curvature on any weight, and
      ``stiffness_bound`` the value past which SGD on the penalty oscillates
      or diverges (infinite for optimizers that normalise their steps).
    structure: what the compiled train step depends on besides the
      optimizer's state: the transform and its static settings. Every
      numeric hyperparameter is injected (``optax.inject_hyperparams``), so
      methods of one structure differ only in their state, and a sweep
      (:func:`~classp_optax.continual.sweep.train_sweep`) trains them in one
      program. None: not known, never swept.
  """

  name: str
  hyperparams: dict
  optimizer: optax.GradientTransformation
  hyperparams_for_task: Callable[[int], dict] | None = None
  consolidate: Callable | None = None
  reset_state: bool = False
  joint: bool = False
  stiffness: Callable | None = None
  stiffness_bound: float = 2.0
  structure: tuple | None = None

  @property
  def kind(self) -> str:
    """The method's name without its variant label: ``classp`` of
    ``classp:paper``."""
    return self.name.partition(':')[0]


# The penalty states that reset_state keeps.
PENALTY_STATES = (_ewc.EwcState, _si.SiState)


def fresh_state(tx: optax.GradientTransformation, params, old_state):
  """``tx.init(params)`` with the penalty state of ``old_state`` carried over."""
  new_state = tx.init(params)
  for kind in PENALTY_STATES:
    if find_all(old_state, kind):
      new_state = replace_node(new_state,
                               find_unique(new_state, kind, kind.__name__),
                               find_unique(old_state, kind, kind.__name__))
  return new_state


def _positive(method: str, name: str, value) -> None:
  _checks.check_scalar(f'{method}.{name}', value, low=0.0, low_inclusive=False,
                       high_inclusive=False)


def _non_negative(method: str, name: str, value) -> None:
  _checks.check_scalar(f'{method}.{name}', value, low=0.0, high_inclusive=False)


def _momentum(method: str, value) -> None:
  _checks.check_scalar(f'{method}.momentum', value, low=0.0, high=1.0,
                       high_inclusive=False)


def _injected(factory: Callable, static_args: tuple = (), **hyperparams
              ) -> tuple[optax.GradientTransformation, tuple]:
  """``factory(**hyperparams)`` with its numeric hyperparameters in the state
  (``optax.inject_hyperparams``), and the structure of the result: the
  factory and the settings compiled into its update (``static_args``, and
  whatever is not a number: names, flags, None)."""
  tx = optax.inject_hyperparams(factory, static_args=static_args)(**hyperparams)
  static = tuple(sorted(
      (name, value) for name, value in hyperparams.items()
      if name in static_args or isinstance(value, bool)
      or not isinstance(value, (numbers.Number, jax.Array, np.ndarray))))
  return tx, (factory.__name__, static)


def _inner_tx(optimizer: str, learning_rate, momentum=None, threshold=None,
              power=None, eps=None) -> optax.GradientTransformation:
  """The optimizer named ``optimizer``; a factory for ``inject_hyperparams``
  (the settings it does not use are None)."""
  if optimizer == 'sgd':
    return optax.sgd(learning_rate, momentum=momentum)
  if optimizer == 'classp':
    return classp(learning_rate, threshold=threshold, power=power, eps=eps)
  return (optax.adam if optimizer == 'adam' else optax.adagrad)(learning_rate)


def _ewc_tx(strength, optimizer: str, learning_rate, momentum=None,
            threshold=None, power=None, eps=None):
  return optax.chain(add_ewc_penalty(strength), _inner_tx(
      optimizer, learning_rate, momentum, threshold, power, eps))


def _si_tx(strength, optimizer: str, learning_rate, momentum=None,
           threshold=None, power=None, eps=None):
  return optax.chain(add_si_penalty(strength), _inner_tx(
      optimizer, learning_rate, momentum, threshold, power, eps))


def _inner_settings(optimizer: str, learning_rate, momentum, threshold, power,
                    eps) -> dict:
  """The arguments of :func:`_inner_tx` that ``optimizer`` takes; a momentum
  of 0 is None, so that plain SGD keeps no trace."""
  settings = dict(optimizer=optimizer, learning_rate=learning_rate)
  if optimizer == 'sgd':
    settings['momentum'] = momentum or None
  if optimizer == 'classp':
    settings.update(threshold=threshold, power=power, eps=eps)
  return settings


def _sgd_bound(momentum: float) -> float:
  """Heavy-ball SGD on a quadratic of curvature k is stable while
  ``lr * k < 2 (1 + momentum)``."""
  return 2.0 * (1.0 + momentum)


def _static_power(optimizer: str) -> tuple:
  """CLASSP's power picks its compiled path (1 and 2 take no ``pow``)."""
  return ('power',) if optimizer == 'classp' else ()


_tree_max = jax.jit(optax.tree.max)


def _max_leaf(tree) -> float:
  """The largest value in ``tree`` (0 if it has none): one compiled call and
  one transfer, not one of each per leaf."""
  if not any(x.size for x in jax.tree.leaves(tree)):
    return 0.0
  return float(_tree_max(tree))


def classp_method(
    learning_rate: float = 0.1,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
    decay_from_task: int = 1,
    later_threshold: float | None = 0.0,
    later_learning_rate: float | None = None,
    relative_threshold: bool = False,
) -> Method:
  """CLASSP with the paper's schedule.

  Tasks before ``decay_from_task`` take plain steps (``apply_decay=False``)
  with ``threshold``; later tasks take decayed steps with ``later_threshold``
  and ``later_learning_rate`` (each defaulting to the first task's value when
  None). ``decay_from_task=0`` decays from the start. With
  ``relative_threshold`` both thresholds are multiples of each tensor's mean
  squared gradient (see :func:`classp_optax.scale_by_classp`).
  """
  _positive('classp', 'learning_rate', learning_rate)
  _non_negative('classp', 'threshold', threshold)
  _positive('classp', 'power', power)
  _non_negative('classp', 'eps', eps)
  if later_threshold is not None:
    _non_negative('classp', 'later_threshold', later_threshold)
  if later_learning_rate is not None:
    _positive('classp', 'later_learning_rate', later_learning_rate)
  _checks.check_bool('classp.relative_threshold', relative_threshold)
  if (isinstance(decay_from_task, bool)
      or not isinstance(decay_from_task, numbers.Integral)
      or decay_from_task < 0):
    raise ValueError('classp.decay_from_task must be an integer >= 0, got '
                     f'{decay_from_task!r}.')
  hyperparams = dict(
      learning_rate=learning_rate, threshold=threshold, power=power, eps=eps,
      decay_from_task=decay_from_task, later_threshold=later_threshold,
      later_learning_rate=later_learning_rate,
      relative_threshold=relative_threshold,
  )

  def hyperparams_for_task(task: int) -> dict:
    if task < decay_from_task:
      return dict(learning_rate=learning_rate, threshold=threshold,
                  apply_decay=False)
    return dict(
        learning_rate=(learning_rate if later_learning_rate is None
                       else later_learning_rate),
        threshold=threshold if later_threshold is None else later_threshold,
        apply_decay=True,
    )

  # One transform for every task; the schedule lives in its state.
  # apply_decay is a NumPy array (injected as a number, not a static flag):
  # a JAX array would be one buffer that every init puts in its state, and
  # donating one run's state would delete it from the next run's.
  tx, structure = _injected(
      classp, static_args=('power',), power=power, eps=eps,
      relative_threshold=relative_threshold, **{
          name: np.asarray(value) if name == 'apply_decay' else value
          for name, value in hyperparams_for_task(0).items()})
  return Method('classp', hyperparams, tx, hyperparams_for_task,
                structure=structure)


# The optimizers a penalty (EWC, SI) can run on, by name.
INNER_OPTIMIZERS = ('sgd', 'adam', 'adagrad', 'classp')


def _inner(method: str, optimizer: str, learning_rate, momentum, threshold,
           power, eps) -> tuple[dict, dict, float]:
  """The arguments of :func:`_inner_tx` for the optimizer under a penalty,
  the hyperparameters that define it, and the stiffness bound past which it
  oscillates on the penalty (plain SGD: 2 (1 + momentum); the adaptive ones
  normalise their steps: none)."""
  if optimizer not in INNER_OPTIMIZERS:
    raise ValueError(f'{method}.optimizer must be one of {INNER_OPTIMIZERS}, '
                     f'got {optimizer!r}.')
  _positive(method, 'learning_rate', learning_rate)
  _momentum(method, momentum)
  _non_negative(method, 'threshold', threshold)
  _positive(method, 'power', power)
  _non_negative(method, 'eps', eps)
  if momentum and optimizer != 'sgd':
    raise ValueError(f'{method}.momentum applies to optimizer=sgd only, not '
                     f'{optimizer}.')
  classp_settings = dict(threshold=threshold, power=power, eps=eps)
  if (optimizer != 'classp'
      and classp_settings != dict(threshold=0.0, power=1.0, eps=1e-5)):
    raise ValueError(f'{method}.threshold, power and eps apply to '
                     f'optimizer=classp only, not {optimizer}.')
  tx_settings = _inner_settings(optimizer, learning_rate, momentum, threshold,
                                power, eps)
  if optimizer == 'sgd':
    return tx_settings, dict(momentum=momentum), _sgd_bound(momentum)
  if optimizer == 'classp':
    return tx_settings, classp_settings, math.inf
  return tx_settings, {}, math.inf


def ewc_method(
    learning_rate: float = 0.03,
    strength: float = 100.0,
    mode: str = 'separate',
    decay: float = 1.0,
    optimizer: str = 'sgd',
    momentum: float = 0.0,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
) -> Method:
  """EWC's penalty on top of an optimizer: SGD (with optional momentum) by
  default, or Adam, AdaGrad or CLASSP (``threshold``, ``power``, ``eps``).

  The penalty's curvature on weight ``i`` is ``strength * F_i``, so SGD stays
  stable while ``learning_rate * strength * max F < 2 (1 + momentum)``.
  """
  tx_settings, inner_settings, bound = _inner(
      'ewc', optimizer, learning_rate, momentum, threshold, power, eps)
  _non_negative('ewc', 'strength', strength)
  if mode not in _ewc.EWC_MODES:
    raise ValueError(f'ewc.mode must be one of {_ewc.EWC_MODES}, got {mode!r}.')
  _checks.check_scalar('ewc.decay', decay, low=0.0, high=1.0)
  tx, structure = _injected(_ewc_tx, _static_power(optimizer),
                            strength=strength, **tx_settings)

  def consolidate(opt_state, params, fisher):
    return consolidate_ewc(opt_state, params, fisher(), mode=mode, decay=decay)

  def stiffness(opt_state):
    fisher = find_unique(opt_state, _ewc.EwcState, 'EwcState').fisher
    return learning_rate * strength * _max_leaf(fisher)

  return Method(
      'ewc',
      dict(learning_rate=learning_rate, strength=strength, mode=mode,
           decay=decay, optimizer=optimizer, **inner_settings),
      tx, consolidate=consolidate, stiffness=stiffness, stiffness_bound=bound,
      structure=structure,
  )


def si_method(
    learning_rate: float = 0.03,
    strength: float = 1.0,
    damping: float = 0.1,
    optimizer: str = 'sgd',
    momentum: float = 0.0,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
) -> Method:
  """Synaptic Intelligence's penalty on top of an optimizer, as for
  :func:`ewc_method`. The penalty's curvature on weight ``i`` is
  ``2 * strength * Omega_i``."""
  tx_settings, inner_settings, bound = _inner(
      'si', optimizer, learning_rate, momentum, threshold, power, eps)
  _non_negative('si', 'strength', strength)
  _positive('si', 'damping', damping)
  tx, structure = _injected(_si_tx, _static_power(optimizer),
                            strength=strength, **tx_settings)

  def consolidate(opt_state, params, fisher):
    del fisher  # SI's importance comes from the path integral instead
    return consolidate_si(opt_state, params, damping)

  def stiffness(opt_state):
    importance = find_unique(opt_state, _si.SiState, 'SiState').importance
    return learning_rate * 2.0 * strength * _max_leaf(importance)

  return Method(
      'si',
      dict(learning_rate=learning_rate, strength=strength, damping=damping,
           optimizer=optimizer, **inner_settings),
      tx, consolidate=consolidate, stiffness=stiffness, stiffness_bound=bound,
      structure=structure,
  )


def sgd_method(learning_rate: float = 0.03, momentum: float = 0.0) -> Method:
  _positive('sgd', 'learning_rate', learning_rate)
  _momentum('sgd', momentum)
  tx, structure = _injected(_inner_tx, **_inner_settings(
      'sgd', learning_rate, momentum, None, None, None))
  return Method('sgd', dict(learning_rate=learning_rate, momentum=momentum),
                tx, structure=structure)


def _plain_method(name: str, learning_rate: float) -> Method:
  _positive(name, 'learning_rate', learning_rate)
  tx, structure = _injected(_inner_tx, optimizer=name,
                            learning_rate=learning_rate)
  return Method(name, dict(learning_rate=learning_rate), tx,
                structure=structure)


def adam_method(learning_rate: float = 1e-3) -> Method:
  return _plain_method('adam', learning_rate)


def adagrad_method(learning_rate: float = 0.03) -> Method:
  return _plain_method('adagrad', learning_rate)


def joint_method(
    learning_rate: float = 0.03,
    optimizer: str = 'sgd',
    momentum: float = 0.0,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
) -> Method:
  """Joint training, the usual upper bound: each task trains on the data of
  every task so far together, with an optimizer as for :func:`ewc_method`
  (van de Ven & Tolias's "offline" and "joint" rows use Adam)."""
  tx_settings, inner_settings, _ = _inner(
      'joint', optimizer, learning_rate, momentum, threshold, power, eps)
  tx, structure = _injected(_inner_tx, _static_power(optimizer), **tx_settings)
  return Method('joint', dict(learning_rate=learning_rate, optimizer=optimizer,
                              **inner_settings), tx, joint=True,
                structure=structure)


METHODS = {
    'classp': classp_method,
    'ewc': ewc_method,
    'si': si_method,
    'sgd': sgd_method,
    'adam': adam_method,
    'adagrad': adagrad_method,
    'joint': joint_method,
}


def split_label(spec: str) -> tuple[str, str]:
  """``'classp:paper'`` -> ``('classp', 'classp:paper')``; ``'adam'`` ->
  ``('adam', 'adam')``. ValueError for an unknown method or an empty label."""
  kind, colon, variant = spec.partition(':')
  if kind not in METHODS:
    raise ValueError(
        f'method must be one of {sorted(METHODS)}, optionally with a label '
        f'as in classp:paper; got {spec!r}.')
  if colon and not variant.replace('-', '').replace('_', '').isalnum():
    raise ValueError(
        f'a method label takes letters, digits, - and _, as in classp:paper; '
        f'got {spec!r}.')
  return kind, spec


def make_method(name: str, **hyperparams) -> Method:
  """A method by name, or a labelled variant ``name:label`` of one.

  Unknown names and hyperparameters, and values out of range, are errors
  that name the hyperparameter. Every method also takes ``reset_state`` (a
  bool): start each task with a fresh optimizer state, keeping a penalty's
  state. It is recorded in the hyperparameters when given.
  """
  kind, label = split_label(name)
  reset_state = hyperparams.pop('reset_state', None)
  if reset_state is not None and not isinstance(reset_state, bool):
    raise ValueError(f'{kind}.reset_state must be True or False, got '
                     f'{reset_state!r}.')
  try:
    method = METHODS[kind](**hyperparams)
  except TypeError as e:
    raise ValueError(f'{kind}: {e}') from e
  method = dataclasses.replace(method, name=label)
  if reset_state is None:
    return method
  return dataclasses.replace(
      method, reset_state=reset_state,
      hyperparams={**method.hyperparams, 'reset_state': reset_state})
