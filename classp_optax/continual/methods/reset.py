"""``reset_state``: every task starts with a fresh optimizer state, keeping
the memory of earlier tasks.

What is memory is a property of a state's type: a state whose type sets
``task_memory = True`` (EWC's and SI's penalties) is carried over; the
hyperparameters ``optax.inject_hyperparams`` holds are settings, carried
over too.
"""

import jax
import optax

from classp_optax import _hyperparams
from classp_optax._state_search import find_all
from classp_optax._state_search import replace_node
from classp_optax.continual import hooks as hooklib


def is_task_memory(node) -> bool:
  return bool(getattr(type(node), 'task_memory', False))


def fresh_state(tx: optax.GradientTransformation, params, old_state):
  """``tx.init(params)`` with every task-memory state of ``old_state``
  carried over, and its injected hyperparameters."""
  new_state = jax.tree.map(
      lambda new, old: old if is_task_memory(old) else new,
      tx.init(params), old_state, is_leaf=is_task_memory)
  for old, new in zip(find_all(old_state, _hyperparams.INJECTED_STATES),
                      find_all(new_state, _hyperparams.INJECTED_STATES),
                      strict=True):
    new_state = replace_node(new_state, new,
                             new._replace(hyperparams=old.hyperparams))
  return new_state


class ResetState(hooklib.Hook):
  """Every task starts with a fresh optimizer state (:func:`fresh_state`)."""

  def start_task(self, state, task, tx):
    return state._replace(opt_state=fresh_state(tx, state.params,
                                                state.opt_state))
