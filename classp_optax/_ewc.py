"""Elastic Weight Consolidation as an Optax transform.

Kirkpatrick et al., 2017, Overcoming catastrophic forgetting in neural
networks, https://arxiv.org/abs/1612.00796; online mode as in Schwarz et al.,
2018, Progress & Compress, https://arxiv.org/abs/1805.06370.
"""

from collections.abc import Callable
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from classp_optax import _checks
from classp_optax import _state_search
from classp_optax._padding import pad_rows

EWC_MODES = ('separate', 'online')


class EwcState(NamedTuple):
  """State of :func:`add_ewc_penalty`.

  Attributes:
    fisher: the diagonal Fisher to weigh the penalty with: in ``separate`` mode
      the sum of every consolidated task's Fisher, in ``online`` mode their
      decayed running sum.
    fisher_anchor: ``fisher`` times the anchor weights: in ``separate`` mode
      the sum of each task's Fisher times that task's consolidated weights.
  """

  fisher: optax.Updates
  fisher_anchor: optax.Updates

  # What a fresh optimizer state keeps (reset_state): the memory of tasks.
  task_memory = True


def add_ewc_penalty(strength: float) -> optax.GradientTransformation:
  r"""Adds the gradient of the EWC penalty to the updates.

  .. math::

    g \leftarrow g + \lambda \sum_t F_t \odot (w - w^*_t)
      = g + \lambda \, (F \odot w - A)

  where :math:`\lambda` is ``strength``, :math:`F_t` and :math:`w^*_t` are the
  diagonal Fisher and the weights consolidated after task :math:`t`,
  :math:`F = \sum_t F_t` is ``state.fisher`` and
  :math:`A = \sum_t F_t \odot w^*_t` is ``state.fisher_anchor``. This is the
  gradient of :math:`\frac{\lambda}{2} \sum_t \sum_i F_{t,i}(w_i - w^*_{t,i})^2`,
  kept in two arrays whatever the number of tasks. Until the first
  :func:`consolidate_ewc` the penalty is zero. Chain it before the optimizer:
  ``optax.chain(add_ewc_penalty(5000.0), optax.sgd(0.1))``.

  Args:
    strength: :math:`\lambda \ge 0`.

  Returns:
    A :class:`optax.GradientTransformation` that needs ``params`` in
    ``update``; its state is an :class:`EwcState`.
  """
  _checks.check_scalar('strength', strength, low=0.0, high_inclusive=False)

  def init_fn(params):
    return EwcState(
        fisher=_state_search.real_zeros_like(params),
        fisher_anchor=optax.tree.zeros_like(params),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('add_ewc_penalty needs params in update().')
    _checks.check_state('add_ewc_penalty', state, EwcState)
    _checks.check_like('updates', updates, 'fisher', state.fisher)
    _checks.check_like('params', params, 'updates', updates)
    updates = jax.tree.map(
        lambda g, f, a, w: g + strength * (f * w - a).astype(g.dtype),
        updates, state.fisher, state.fisher_anchor, params,
    )
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def check_consolidation(mode, decay) -> None:
  """ValueError unless ``mode`` is one of :data:`EWC_MODES` and ``decay`` is
  in [0, 1]; for checking a method's settings before any task is trained."""
  if mode not in EWC_MODES:
    raise ValueError(f'mode must be one of {EWC_MODES}, got {mode!r}.')
  _checks.check_scalar('decay', decay, low=0.0, high=1.0)


def consolidate_ewc(opt_state, params, fisher, mode='separate', decay=1.0):
  r"""Consolidates a finished task: anchors ``params`` with weight ``fisher``.

  Call it at each task boundary with the weights after the task and their
  diagonal Fisher (see :func:`empirical_fisher`).

  * ``separate``: one penalty per past task; :math:`F \mathrel{+}= F_t`,
    :math:`A \mathrel{+}= F_t \odot w^*_t`.
  * ``online``: one penalty on the latest weights with a decayed Fisher;
    :math:`F \leftarrow \gamma F + F_t`, :math:`A \leftarrow F \odot w^*_t`.

  Args:
    opt_state: a state holding exactly one :class:`EwcState`.
    params: the weights at the end of the task, :math:`w^*_t`.
    fisher: their diagonal Fisher, :math:`F_t`, shaped like ``params``.
    mode: ``'separate'`` or ``'online'``.
    decay: :math:`\gamma \in [0, 1]`, used by ``online`` mode.

  Returns:
    ``opt_state`` with a new :class:`EwcState`.
  """
  check_consolidation(mode, decay)
  old = _state_search.find_unique(opt_state, EwcState, 'EwcState')
  _checks.check_like('params', params, 'the EWC state', old.fisher)
  _checks.check_like('fisher', fisher, 'params', params)
  return _state_search.replace_node(
      opt_state, old, _consolidated(old, params, fisher, decay, mode=mode))


@functools.partial(jax.jit, static_argnames='mode')
def _consolidated(old: EwcState, params, fisher, decay, mode: str) -> EwcState:
  """The new state of :func:`consolidate_ewc`, one compiled call."""
  if mode == 'separate':
    return EwcState(
        fisher=jax.tree.map(jnp.add, old.fisher, fisher),
        fisher_anchor=jax.tree.map(
            lambda a, f, w: a + f * w, old.fisher_anchor, fisher, params
        ),
    )
  total = jax.tree.map(lambda f_old, f: decay * f_old + f, old.fisher, fisher)
  return EwcState(
      fisher=total, fisher_anchor=jax.tree.map(jnp.multiply, total, params)
  )


@functools.partial(jax.jit, static_argnums=0)
def squared_gradient_sum(example_loss, params, inputs, labels, weight, args):
  """``sum_n weight_n |d example_loss(params, x_n, y_n, *args) / d params|^2``;
  compiled once per ``example_loss`` and shape."""
  in_axes = (None, 0, 0) + (None,) * len(args)
  grads = jax.vmap(jax.grad(example_loss), in_axes=in_axes)(
      params, inputs, labels, *args)
  return jax.tree.map(  # |g|**2, real also for complex parameters
      lambda g: jnp.tensordot(weight, jnp.real(g * jnp.conj(g)), axes=1),
      grads,
  )


def empirical_fisher(
    example_loss: Callable,
    params,
    inputs,
    labels,
    *args,
    batch_size: int = 256,
):
  r"""The diagonal empirical Fisher: the mean of per-example squared gradients.

  .. math::

    F_i = \frac{1}{N} \sum_{n=1}^{N}
      \left(\frac{\partial \ell(w; x_n, y_n)}{\partial w_i}\right)^2

  with :math:`\ell` the negative log-likelihood of the *true* label
  :math:`y_n` (the empirical Fisher; the true Fisher would sample
  :math:`y` from the model). Each example's gradient is squared on its own:
  the square of a batch-mean gradient would underestimate :math:`F` by about
  the batch size. Evaluate the model in evaluation mode (no dropout).

  The work is compiled once per ``example_loss`` (and shapes): chunks of
  ``batch_size`` examples, the last padded. Pass what changes from call to
  call (a task's output mask, a model's non-trainable state) in ``args``
  rather than in a new closure, and a loop over tasks compiles once.

  Args:
    example_loss: ``example_loss(params, x, y, *args) -> scalar`` for one
      example.
    params: the weights to differentiate.
    inputs: examples, stacked on the leading axis. NumPy arrays are chunked
      and padded on the host: then inputs of any length share the compiled
      work.
    labels: their labels.
    *args: further arguments of ``example_loss``, the same for every example.
    batch_size: examples per vectorised chunk; bounds memory only.

  Returns:
    A pytree like ``params``.
  """
  n = len(inputs)
  total = _state_search.real_zeros_like(params)
  for start in range(0, n, batch_size):
    x, y = inputs[start:start + batch_size], labels[start:start + batch_size]
    weight = np.ones(batch_size, np.float32)
    if len(x) < batch_size:  # pad, so that one compiled chunk serves all
      weight[len(x):] = 0.0
      x, y = pad_rows(x, batch_size), pad_rows(y, batch_size)
    total = jax.tree.map(
        jnp.add, total,
        squared_gradient_sum(example_loss, params, x, y, weight, args))
  return jax.tree.map(lambda f: f / n, total)
