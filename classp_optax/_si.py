"""Synaptic Intelligence as an Optax transform.

Zenke, Poole and Ganguli, 2017, Continual Learning Through Synaptic
Intelligence, https://arxiv.org/abs/1703.04200
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from classp_optax import _checks
from classp_optax import _state_search


class SiState(NamedTuple):
  """State of :func:`add_si_penalty`.

  Attributes:
    importance: :math:`\\Omega`, each weight's consolidated importance.
    anchor: the weights at the last consolidation (the task's start).
    path_integral: :math:`\\omega`, the current task's ``-sum g * dw``.
    previous_params: the weights at the previous step.
    previous_grads: the task-loss gradient of the previous step.
  """

  importance: optax.Updates
  anchor: optax.Updates
  path_integral: optax.Updates
  previous_params: optax.Updates
  previous_grads: optax.Updates

  # What a fresh optimizer state keeps (reset_state): the memory of tasks.
  task_memory = True


def _copy(tree):
  """New buffers with ``tree``'s values: the state must not share buffers with
  the parameters (or itself), so that a step can donate both."""
  return jax.tree.map(jnp.copy, tree)


def _path_integral(state: SiState, params):
  """The path integral, with the move from the previous weights to ``params``:
  ``- Re(conj(g) * dw)``, the loss change to first order, real also for
  complex parameters."""
  return jax.tree.map(
      lambda o, g, w, w0: o - jnp.real(jnp.conj(g) * (w - w0)),
      state.path_integral, state.previous_grads, params, state.previous_params)


@jax.jit
def _new_importance(state: SiState, params, damping):
  r""":math:`\Omega + \max(\omega, 0) / (\Delta^2 + \xi)`, one compiled call
  (not a dispatch per operation and leaf)."""
  path = _path_integral(state, params)
  return jax.tree.map(
      lambda om, p, w, a: om + jnp.maximum(p, 0) / (
          jnp.real((w - a) * jnp.conj(w - a)) + damping),
      state.importance, path, params, state.anchor)


def add_si_penalty(strength: float) -> optax.GradientTransformation:
  r"""Adds the gradient of the SI penalty and tracks each weight's path integral.

  .. math::

    g \leftarrow g + 2c\, \Omega \odot (w - \tilde w), \qquad
    \omega \mathrel{+}= -g_{t-1} \odot (w_t - w_{t-1})

  where :math:`c` is ``strength``, :math:`\tilde w` the weights at the last
  :func:`consolidate_si`, and :math:`g` the task loss's gradient (the
  updates *before* the penalty is added). Chain it first:
  ``optax.chain(add_si_penalty(0.1), optax.sgd(0.1))``. The state holds five
  arrays per parameter.

  Args:
    strength: :math:`c \ge 0`.

  Returns:
    A :class:`optax.GradientTransformation` that needs ``params`` in
    ``update``; its state is an :class:`SiState`.
  """
  _checks.check_scalar('strength', strength, low=0.0, high_inclusive=False)

  def init_fn(params):
    return SiState(importance=_state_search.real_zeros_like(params),
                   anchor=_copy(params),
                   path_integral=_state_search.real_zeros_like(params),
                   previous_params=_copy(params),
                   previous_grads=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('add_si_penalty needs params in update().')
    _checks.check_state('add_si_penalty', state, SiState)
    _checks.check_like('updates', updates, 'importance', state.importance)
    _checks.check_like('params', params, 'updates', updates)
    path = _path_integral(state, params)
    penalised = jax.tree.map(
        lambda g, om, w, a: g + (2 * strength * om * (w - a)).astype(g.dtype),
        updates, state.importance, params, state.anchor)
    return penalised, state._replace(path_integral=path, previous_params=params,
                                     previous_grads=updates)

  return optax.GradientTransformation(init_fn, update_fn)


def check_damping(damping) -> None:
  """ValueError unless ``damping`` is in (0, inf)."""
  _checks.check_scalar('damping', damping, low=0.0, low_inclusive=False,
                       high_inclusive=False)


def consolidate_si(opt_state, params, damping: float = 0.1):
  r"""Ends a task: :math:`\Omega \mathrel{+}= \max(\omega, 0) / (\Delta^2 + \xi)`.

  :math:`\Delta = w - \tilde w` is how far each weight moved during the task and
  :math:`\xi` is ``damping``; the path integral includes the task's last step.
  Negative path integrals (a weight whose moves raised the loss) add no
  importance. Then :math:`\tilde w \leftarrow w` and :math:`\omega \leftarrow 0`.

  Args:
    opt_state: a state holding exactly one :class:`SiState`.
    params: the weights at the end of the task.
    damping: :math:`\xi > 0`.

  Returns:
    ``opt_state`` with the new :class:`SiState`.
  """
  check_damping(damping)
  old = _state_search.find_unique(opt_state, SiState, 'SiState')
  _checks.check_like('params', params, 'the SI state', old.anchor)
  importance = _new_importance(old, params, damping)
  new = SiState(importance=importance, anchor=_copy(params),
                path_integral=_state_search.real_zeros_like(params),
                previous_params=_copy(params),
                previous_grads=optax.tree.zeros_like(params))
  return _state_search.replace_node(opt_state, old, new)
