"""EWC and Synaptic Intelligence: a penalty that pulls the weights toward
earlier tasks' solutions, on an optimizer of the table (SGD by default).

Each consolidates at a task's end and reports its stiffness: the largest
product of the learning rate and the penalty's curvature, past which SGD
on the penalty oscillates or diverges.
"""

import math

from flax import struct
import jax
import numpy as np
import optax

from classp_optax import _ewc
from classp_optax import _hyperparams
from classp_optax import _si
from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si
from classp_optax._state_search import find_unique
from classp_optax.continual import hooks as hooklib
from classp_optax.continual.methods import fisher as fisher_lib
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate
from classp_optax.continual.settings import Integer
from classp_optax.continual.settings import OneOf
from classp_optax.continual.settings import Real
from classp_optax.continual.settings import Setting
from classp_optax.continual.settings import how_to_set
from classp_optax.continual.settings import non_negative
from classp_optax.continual.settings import positive


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
        f'{label}.learning_rate by more than {value / self.bound:.3g} '
        f'({how_to_set(label, "strength")}), or use an adaptive '
        f'optimizer ({how_to_set(label, "optimizer", "adam")}).'))]


class EwcConsolidation(hooklib.Hook):
  """EWC's consolidation at each task's end: the diagonal Fisher of kind
  ``fisher`` (:mod:`fisher`) on ``fisher_samples`` of the task's training
  examples (chosen and, for ``sampled``, labelled by the run's seed), in
  evaluation mode."""

  decay: float = 1.0
  mode: str = struct.field(pytree_node=False, default='separate')
  fisher_samples: int = struct.field(pytree_node=False, default=1000)
  fisher: str = struct.field(pytree_node=False, default='empirical')

  def plan(self, tasks, t, seed):
    """The examples of task ``t`` the Fisher is taken on (all of them when
    ``fisher_samples`` is past its size), padded with zero weights to one
    size for every task: ``fisher_samples`` or the largest task's."""
    size = min(self.fisher_samples, max(task.num_train for task in tasks))
    chosen = np.random.default_rng([seed, 7919]).permutation(
        tasks[t].num_train)
    chosen = np.sort(chosen[:size])
    positions = np.zeros(size, np.int32)
    weights = np.zeros(size, np.float32)
    positions[:len(chosen)], weights[:len(chosen)] = chosen, 1.0
    return positions, weights, np.asarray([seed, t], np.uint32)

  def pad_plan(self, plan, length):
    """More examples of weight 0: they add exact zeros to the Fisher."""
    positions, weights, seed = plan
    more = (0, length - len(positions))
    return np.pad(positions, more), np.pad(weights, more), seed

  def end_task(self, state, data, model, plan):
    positions, weights, seed = plan
    key = jax.random.fold_in(jax.random.key(seed[0]), seed[1])
    fisher = fisher_lib.fisher_of(self.fisher, model, state.params, data,
                                  positions, weights, key)
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


def _ewc_tx(strength, optimizer: str, learning_rate, **settings):
  return optax.chain(add_ewc_penalty(strength),
                     optimizers.build(optimizer, learning_rate, **settings))


def _si_tx(strength, optimizer: str, learning_rate, **settings):
  return optax.chain(add_si_penalty(strength),
                     optimizers.build(optimizer, learning_rate, **settings))


def ewc_method(learning_rate, strength, mode, decay, optimizer,
               fisher_samples, fisher, **settings):
  """EWC's penalty on an optimizer. Each task's Fisher, of kind ``fisher``,
  is taken on ``fisher_samples`` of its training examples. The penalty's
  curvature on weight ``i`` is ``strength * F_i``, so SGD stays stable while
  ``learning_rate * strength * max F < 2 (1 + momentum)``."""
  values = dict(settings, optimizer=optimizer, learning_rate=learning_rate)
  consolidation = EwcConsolidation(decay=decay, mode=mode,
                                   fisher_samples=fisher_samples, fisher=fisher)
  method, bound = optimizers.on_optimizer(
      'ewc', _ewc_tx, values, injected=dict(strength=strength),
      recorded=dict(mode=mode, decay=decay, fisher_samples=fisher_samples,
                    fisher=fisher))
  return optimizers.with_hooks(method, consolidation, Stiffness(
      bound=bound, state=_ewc.EwcState, field='fisher'))


def si_method(learning_rate, strength, damping, optimizer, **settings):
  """Synaptic Intelligence's penalty on an optimizer. The penalty's
  curvature on weight ``i`` is ``2 * strength * Omega_i``."""
  values = dict(settings, optimizer=optimizer, learning_rate=learning_rate)
  method, bound = optimizers.on_optimizer(
      'si', _si_tx, values, injected=dict(strength=strength),
      recorded=dict(damping=damping))
  return optimizers.with_hooks(method, SiConsolidation(damping=damping),
                               Stiffness(bound=bound, state=_si.SiState,
                                         field='importance', scale=2.0))


STRENGTH = non_negative('strength', 100.0, "the penalty's weight (EWC's "
                        "lambda, SI's c)")
register_method('ewc', ewc_method, (
    learning_rate(0.03, (0.01, 0.03, 0.1)),
    STRENGTH.but(grid=(10.0, 1000.0)),
    Setting('mode', 'separate', "one penalty per task, or online EWC's "
            'decayed one', OneOf(_ewc.EWC_MODES)),
    Setting('decay', 1.0, "online EWC's gamma", Real(0.0, 1.0)),
    optimizers.optimizer_setting('sgd'),
    Setting('fisher_samples', 1000, "training examples in each task's "
            'Fisher (past its size: every one)', Integer(1)),
    Setting('fisher', 'empirical', "the Fisher's labels: the true one, the "
            "model's most probable, one drawn from it, or all (exact)",
            OneOf(fisher_lib.KINDS)),
), on_optimizer=True)
register_method('si', si_method, (
    learning_rate(0.03, (0.01, 0.03, 0.1)),
    STRENGTH.but(default=1.0, grid=(1.0, 10.0)),
    positive('damping', 0.1, "SI's xi"),
    optimizers.optimizer_setting('sgd'),
), on_optimizer=True)
