"""The methods compared: CLASSP, EWC, SI, Optax's SGD, Adam and AdaGrad,
experience replay, and joint training (the upper bound).

A :class:`Method` gives one Optax transform for the whole run, whose state
the engine keeps across tasks, and the hooks (:mod:`hooks`) that act
between tasks: CLASSP's paper schedule sets injected hyperparameters
(``optax.inject_hyperparams``, :func:`classp_optax.set_hyperparams`) at
each task's start, so the train step compiles once per run; EWC and SI
consolidate at each task's end and report their stiffness; ``reset_state``
gives each task a fresh optimizer state.

Every factory checks every hyperparameter when it is called, naming it as
``method.name`` with its accepted range, so that a bad ``--set`` stops a run
before any data is loaded. The defaults are stable on every built-in
benchmark; the benchmarks' own defaults (``suites.py``) are the ones chosen
on validation data by ``benchmarks/tune.py``.
"""

from collections.abc import Callable
import dataclasses
import difflib
import inspect
import math
import numbers

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from classp_optax import _checks
from classp_optax import _ewc
from classp_optax import _hyperparams
from classp_optax import _si
from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax import classp_stats
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si
from classp_optax import set_hyperparams
from classp_optax._state_search import find_all
from classp_optax._state_search import find_unique
from classp_optax._state_search import real_zeros_like
from classp_optax._state_search import replace_node
from classp_optax.continual import hooks as hooklib
from classp_optax.continual import streams
from classp_optax.continual.replay import Replay


@dataclasses.dataclass(frozen=True)
class Method:
  """A labelled optimizer recipe for a stream of tasks: one Optax transform
  for the whole run and the hooks that act between its steps and tasks.

  Attributes:
    label: the method's name in tables, plots and checkpoint folders:
      ``classp``, or ``classp:paper`` for a labelled variant.
    hyperparams: everything that defines it, for records and checkpoints.
    optimizer: the Optax transform, the same for every task; its state is
      carried across tasks.
    hooks: what it does besides the update (:mod:`hooks`): CLASSP's per-task
      schedule, a penalty's consolidation, a fresh state per task, joint
      training's stream, read-outs.
    structure: what the compiled step depends on besides the states: the
      transform and its static settings. Every numeric hyperparameter is
      injected (``optax.inject_hyperparams``) or a leaf of a hook, so
      methods of one structure differ only in values, and a sweep trains
      them in one program. None: not known, never swept.
  """

  label: str
  hyperparams: dict
  optimizer: optax.GradientTransformation
  hooks: tuple = ()
  structure: tuple | None = None

  @property
  def name(self) -> str:
    """The method's name without its variant label: ``classp`` of
    ``classp:paper``."""
    return self.label.partition(':')[0]

  @property
  def sweep_structure(self):
    """What a sweep's methods must share: :attr:`structure` and the hooks'
    static settings; None if :attr:`structure` is."""
    if self.structure is None:
      return None
    return self.structure, jax.tree.structure(self.hooks)

  def train_stream(self, tasks: list) -> list:
    """The tasks as this method trains them."""
    for hook in self.hooks:
      tasks = hook.train_stream(tasks)
    return tasks


# The penalty states that a fresh optimizer state keeps.
PENALTY_STATES = (_ewc.EwcState, _si.SiState)


def fresh_state(tx: optax.GradientTransformation, params, old_state):
  """``tx.init(params)`` with the penalty state of ``old_state`` carried over
  (the memory of the tasks), and its injected hyperparameters (settings,
  not memory)."""
  new_state = tx.init(params)
  kinds = (*PENALTY_STATES, *_hyperparams.INJECTED_STATES)
  for kind in kinds:
    if find_all(old_state, kind):
      new = find_unique(new_state, kind, kind.__name__)
      old = find_unique(old_state, kind, kind.__name__)
      if kind in _hyperparams.INJECTED_STATES:
        old = new._replace(hyperparams=old.hyperparams)
      new_state = replace_node(new_state, new, old)
  return new_state


class ResetState(hooklib.Hook):
  """Every task starts with a fresh optimizer state (:func:`fresh_state`)."""

  def start_task(self, state, task, tx):
    return state._replace(opt_state=fresh_state(tx, state.params,
                                                state.opt_state))


class ClasspSchedule(hooklib.Hook):
  """CLASSP's paper schedule: plain steps before ``decay_from_task``, then
  decayed ones with the later learning rate and threshold."""

  learning_rate: float
  threshold: float
  later_learning_rate: float
  later_threshold: float
  decay_from_task: int

  def hyperparams_for_task(self, task):
    """The injected values for task ``task`` (an int, or traced)."""
    decayed = jnp.asarray(task) >= self.decay_from_task
    return dict(
        learning_rate=jnp.where(decayed, self.later_learning_rate,
                                self.learning_rate),
        threshold=jnp.where(decayed, self.later_threshold, self.threshold),
        apply_decay=decayed)

  def start_task(self, state, task, tx):
    return state._replace(opt_state=set_hyperparams(
        state.opt_state, **self.hyperparams_for_task(task)))


class CapacityUsed(hooklib.Hook):
  """Records CLASSP's capacity used (the fraction of weights ever updated)
  after each task."""

  def readouts(self, state):
    return {'capacity_used': classp_stats(state.opt_state).capacity_used}


class JointStream(hooklib.Hook):
  """Joint training: task ``t`` trains on tasks ``0 .. t`` together."""

  def train_stream(self, tasks):
    return streams.joint(tasks)


class StiffnessWarning(UserWarning):
  """A penalty is too stiff for the learning rate: SGD on it oscillates or
  diverges."""


def _injected_value(opt_state, name: str):
  return find_unique(opt_state, _hyperparams.INJECTED_STATES,
                     'injected state').hyperparams[name]


class Stiffness(hooklib.Hook):
  """A penalty's stiffness after each task: the largest product of the
  learning rate and the penalty's curvature on any weight, ``scale x
  learning_rate x strength x max(weight)``, where ``weight`` is the field
  ``field`` of the penalty's state ``state``. Past ``bound`` SGD on the
  penalty oscillates or diverges (infinite for optimizers that normalise
  their steps)."""

  bound: float = struct.field(pytree_node=False)
  state: type = struct.field(pytree_node=False)
  field: str = struct.field(pytree_node=False)
  scale: float = struct.field(pytree_node=False, default=1.0)

  def readouts(self, state):
    penalty = find_unique(state.opt_state, self.state, self.state.__name__)
    return {'stiffness': self.scale * optax.tree.max(getattr(penalty,
                                                             self.field))
            * _injected_value(state.opt_state, 'learning_rate')
            * _injected_value(state.opt_state, 'strength')}

  def bounds(self):
    return {'stiffness': self.bound} if math.isfinite(self.bound) else {}

  def warnings(self, values, t, label, trains_after):
    value = values['stiffness']
    if not trains_after or value < self.bound:
      return []
    return [(StiffnessWarning, (
        f'{label}: after task {t}, learning_rate x the penalty\'s largest '
        f'curvature is {value:.3g}, at or past {self.bound:g}, where SGD on '
        f'the penalty oscillates or diverges. Divide {label}.strength or '
        f'{label}.learning_rate by more than {value / self.bound:.3g} (for '
        f'example --set {label}.strength=...), or use an adaptive optimizer '
        f'(--set {label}.optimizer=adam).'))]


class EwcConsolidation(hooklib.Hook):
  """EWC's consolidation at each task's end: the empirical Fisher of
  ``fisher_samples`` of the task's training examples (seeded by the run's
  seed), in evaluation mode."""

  decay: float = 1.0
  mode: str = struct.field(pytree_node=False, default='separate')
  fisher_samples: int = struct.field(pytree_node=False, default=1000)

  def plan(self, tasks, t, seed):
    chosen = np.random.default_rng([seed, 7919]).permutation(
        tasks[t].num_train)
    chosen = np.sort(chosen[:self.fisher_samples])
    positions = np.zeros(self.fisher_samples, np.int32)
    weights = np.zeros(self.fisher_samples, np.float32)
    positions[:len(chosen)], weights[:len(chosen)] = chosen, 1.0
    return positions, weights

  def end_task(self, state, data, model, plan):
    fisher = empirical_fisher_of(model, state.params, data, *plan)
    return state._replace(opt_state=consolidate_ewc(
        state.opt_state, state.params, fisher, mode=self.mode,
        decay=self.decay))


class SiConsolidation(hooklib.Hook):
  """SI's consolidation at each task's end: importances from the path
  integral."""

  damping: float = 0.1

  def end_task(self, state, data, model, plan):
    return state._replace(opt_state=consolidate_si(
        state.opt_state, state.params, self.damping))


def empirical_fisher_of(model: hooklib.Model, params, data: hooklib.TaskData,
                        positions, weights, chunk: int = 256):
  """The diagonal empirical Fisher of the examples at ``positions`` of
  ``data`` weighted by ``weights`` (0 on padding): their weighted mean
  squared per-example gradient, in chunks of ``chunk`` examples (unrolled:
  XLA:CPU is slow on a convolution's gradient inside a loop)."""

  def example_loss(params, x, y, train_masks):
    return model.loss(params, x[None], y[None], train_masks)[0]

  total = real_zeros_like(params)
  for start in range(0, len(positions), chunk):
    rows = positions[start:start + chunk]
    total = jax.tree.map(jnp.add, total, _ewc.squared_gradient_sum(
        example_loss, params, data.inputs[rows], data.labels[rows],
        weights[start:start + chunk], (data.train_masks,)))
  return jax.tree.map(lambda f: f / jnp.sum(weights), total)


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

  schedule = ClasspSchedule(
      learning_rate=learning_rate, threshold=threshold,
      later_learning_rate=(learning_rate if later_learning_rate is None
                           else later_learning_rate),
      later_threshold=threshold if later_threshold is None else later_threshold,
      decay_from_task=decay_from_task)
  # One transform for every task; the schedule lives in its state.
  # Its values are NumPy arrays (apply_decay injected as a number, not a
  # static flag): a JAX array would be one buffer that every init puts in
  # its state, and donating one run's state would delete it from the next's.
  tx, structure = _injected(
      classp, static_args=('power',), power=power, eps=eps,
      relative_threshold=relative_threshold, **{
          name: np.asarray(value)
          for name, value in schedule.hyperparams_for_task(0).items()})
  return Method('classp', hyperparams, tx, (schedule, CapacityUsed()),
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


def _inner_hooks(optimizer: str) -> tuple:
  """The read-outs of the optimizer under a penalty or joint training."""
  return (CapacityUsed(),) if optimizer == 'classp' else ()


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
    fisher_samples: int = 1000,
) -> Method:
  """EWC's penalty on top of an optimizer: SGD (with optional momentum) by
  default, or Adam, AdaGrad or CLASSP (``threshold``, ``power``, ``eps``).

  Each task's Fisher is taken on ``fisher_samples`` of its training
  examples. The penalty's curvature on weight ``i`` is ``strength * F_i``,
  so SGD stays stable while ``learning_rate * strength * max F < 2 (1 +
  momentum)``.
  """
  tx_settings, inner_settings, bound = _inner(
      'ewc', optimizer, learning_rate, momentum, threshold, power, eps)
  _non_negative('ewc', 'strength', strength)
  if mode not in _ewc.EWC_MODES:
    raise ValueError(f'ewc.mode must be one of {_ewc.EWC_MODES}, got {mode!r}.')
  _checks.check_scalar('ewc.decay', decay, low=0.0, high=1.0)
  _checks.check_integer('ewc.fisher_samples', fisher_samples, low=1)
  tx, structure = _injected(_ewc_tx, _static_power(optimizer),
                            strength=strength, **tx_settings)
  hooks = (EwcConsolidation(decay=decay, mode=mode,
                            fisher_samples=fisher_samples),
           Stiffness(bound=bound, state=_ewc.EwcState, field='fisher'),
           *_inner_hooks(optimizer))
  return Method(
      'ewc',
      dict(learning_rate=learning_rate, strength=strength, mode=mode,
           decay=decay, optimizer=optimizer, **inner_settings,
           fisher_samples=fisher_samples),
      tx, hooks, structure=structure)


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
  return Method(
      'si',
      dict(learning_rate=learning_rate, strength=strength, damping=damping,
           optimizer=optimizer, **inner_settings),
      tx, (SiConsolidation(damping=damping),
           Stiffness(bound=bound, state=_si.SiState, field='importance',
                     scale=2.0), *_inner_hooks(optimizer)), structure=structure)


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
  return _on_inner('joint', {}, (JointStream(),), learning_rate, optimizer,
                   momentum, threshold, power, eps)


def replay_method(
    budget: int = 100,
    learning_rate: float = 1e-3,
    optimizer: str = 'adam',
    momentum: float = 0.0,
    threshold: float = 0.0,
    power: float = 1.0,
    eps: float = 1e-5,
) -> Method:
  """Experience replay (:mod:`replay`) of at most ``budget`` stored
  examples per class, on an optimizer as for :func:`ewc_method` (Adam by
  default, as van de Ven & Tolias train)."""
  _checks.check_integer('replay.budget', budget, low=0)
  return _on_inner('replay', dict(budget=budget), (Replay(budget=budget),),
                   learning_rate, optimizer, momentum, threshold, power, eps)


def _on_inner(name, settings, hooks, learning_rate, optimizer, momentum,
              threshold, power, eps) -> Method:
  """A method that is its hooks on an inner optimizer, with no penalty."""
  tx_settings, inner_settings, _ = _inner(
      name, optimizer, learning_rate, momentum, threshold, power, eps)
  tx, structure = _injected(_inner_tx, _static_power(optimizer), **tx_settings)
  return Method(name, dict(**settings, learning_rate=learning_rate,
                           optimizer=optimizer, **inner_settings), tx,
                (*hooks, *_inner_hooks(optimizer)), structure=structure)


METHODS = {
    'classp': classp_method,
    'ewc': ewc_method,
    'si': si_method,
    'sgd': sgd_method,
    'adam': adam_method,
    'adagrad': adagrad_method,
    'joint': joint_method,
    'replay': replay_method,
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


# Every setting of every method: the values it accepts (as its error states
# them) and what it does.
SETTINGS = {
    'learning_rate': ('(0.0, inf)', 'step size'),
    'threshold': ('[0.0, inf)', "CLASSP's gate: a weight moves only where "
                  'g*g > threshold'),
    'power': ('(0.0, inf)', "CLASSP's p: grad_sum += |g|**p, steps divided "
              'by its p-th root'),
    'eps': ('[0.0, inf)', "added to CLASSP's grad_sum inside the root"),
    'decay_from_task': ('an integer >= 0', 'the first task with decayed '
                        "steps (CLASSP's apply_decay); earlier tasks take "
                        'plain steps'),
    'later_threshold': ('[0.0, inf)', "the threshold from decay_from_task on "
                        "(None: the first task's)"),
    'later_learning_rate': ('(0.0, inf)', 'the learning rate from '
                            "decay_from_task on (None: the first task's)"),
    'relative_threshold': ('True or False', 'threshold as a multiple of '
                           "each tensor's mean g*g"),
    'strength': ('[0.0, inf)', "the penalty's weight (EWC's lambda, SI's c)"),
    'mode': ("('separate', 'online')", "one penalty per task, or online "
             "EWC's decayed one"),
    'decay': ('[0.0, 1.0]', "online EWC's gamma"),
    'optimizer': ("('sgd', 'adam', 'adagrad', 'classp')", 'the optimizer '
                  'under the penalty, replay or joint training'),
    'momentum': ('[0.0, 1.0)', "SGD's momentum"),
    'damping': ('(0.0, inf)', "SI's xi"),
    'fisher_samples': ('an integer >= 1', 'training examples in each '
                       "task's Fisher"),
    'budget': ('an integer >= 0', 'stored examples per class'),
    'reset_state': ('True or False', 'a fresh optimizer state every task '
                    "(a penalty's memory kept)"),
}


def describe(label: str, defaults: dict) -> str:
  """Method ``label``'s settings, one a line: its value by default (the
  factory's, or ``defaults``), the values it accepts, what it does."""
  lines = [f'{label}:']
  for name, default in settings_of(label).items():
    accepted, meaning = SETTINGS[name]
    setting = f'{label}.{name}={defaults.get(name, default)!r}'
    lines.append(f'  {setting:<34} {accepted:<37} {meaning}')
  return '\n'.join(lines)


def settings_of(name: str) -> dict:
  """``{setting: default}`` of method ``name`` (``classp`` or a labelled
  ``classp:paper``), ``reset_state`` included."""
  factory = METHODS[split_label(name)[0]]
  return {**{p.name: p.default
             for p in inspect.signature(factory).parameters.values()},
          'reset_state': False}


def _check_names(label: str, hyperparams: dict) -> None:
  known = settings_of(label)
  for name in hyperparams:
    if name not in known:
      close = difflib.get_close_matches(name, known, n=1) or [
          k for k in known if ''.join(w[0] for w in k.split('_')) == name]
      hint = f' Did you mean {label}.{close[0]}?' if close else ''
      raise ValueError(
          f'{label} has no setting {name!r}.{hint} Its settings: '
          f'{", ".join(known)}.')


def make_method(name: str, **hyperparams) -> Method:
  """A method by name, or a labelled variant ``name:label`` of one.

  Unknown names and hyperparameters (with the closest known one), and
  values out of range, are errors that name the hyperparameter. Every
  method also takes ``reset_state`` (a bool): start each task with a fresh
  optimizer state, keeping a penalty's state. It is recorded in the
  hyperparameters when given.
  """
  kind, label = split_label(name)
  _check_names(label, hyperparams)
  reset_state = hyperparams.pop('reset_state', None)
  if reset_state is not None and not isinstance(reset_state, bool):
    raise ValueError(f'{label}.reset_state must be True or False, got '
                     f'{reset_state!r}.')
  method = dataclasses.replace(METHODS[kind](**hyperparams), label=label)
  if reset_state is None:
    return method
  return dataclasses.replace(
      method, hooks=(ResetState(),) * reset_state + method.hooks,
      hyperparams={**method.hyperparams, 'reset_state': reset_state})
