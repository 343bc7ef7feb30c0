"""Cheap, jittable read-outs of a CLASSP optimizer's state."""

from typing import NamedTuple
import warnings

import jax
import jax.numpy as jnp
import optax

from classp_optax import _state_search
from classp_optax._classp import ClasspState


class ClasspStats(NamedTuple):
  """What a CLASSP state says about the network's capacity.

  Attributes:
    mean_grad_sum: the mean of ``grad_sum`` over all weights (the reference
      implementation's ``average_grad_sum``).
    capacity_used: the fraction of weights with ``grad_sum > 0``, that is,
      that some step has ever updated.
    fraction_updated: the fraction of weights whose update is non-zero in the
      ``updates`` given to :func:`classp_stats`; ``None`` without updates.
  """

  mean_grad_sum: jax.Array
  capacity_used: jax.Array
  fraction_updated: jax.Array | None


def find_classp_state(opt_state) -> ClasspState:
  """The one :class:`ClasspState` inside an optimizer state (chain, inject...)."""
  return _state_search.find_unique(opt_state, ClasspState, 'ClasspState')


def _fraction(tree, predicate) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.asarray(jnp.nan, jnp.float32)
  hits = sum(jnp.sum(predicate(x), dtype=jnp.int32) for x in leaves)
  return hits / optax.tree.size(tree)


def classp_stats(opt_state, updates=None) -> ClasspStats:
  """Summarises ``grad_sum`` and, given ``updates``, how sparse a step was.

  Args:
    opt_state: a :class:`ClasspState`, or any optimizer state holding exactly
      one (``classp``'s chain, ``inject_hyperparams``, ``masked``...).
    updates: optionally, the updates of one step.

  Returns:
    A :class:`ClasspStats`. Works under ``jax.jit``.
  """
  grad_sum = find_classp_state(opt_state).grad_sum
  leaves = jax.tree.leaves(grad_sum)
  total = sum(jnp.sum(x, dtype=jnp.float32) for x in leaves)
  return ClasspStats(
      mean_grad_sum=total / max(optax.tree.size(grad_sum), 1),
      capacity_used=_fraction(grad_sum, lambda x: x > 0),
      fraction_updated=(
          None if updates is None else _fraction(updates, lambda x: x != 0)
      ),
  )


class FrozenWeightsWarning(UserWarning):
  """A CLASSP optimizer has moved no weight: its threshold is above every
  squared gradient it has seen."""


def threshold_for(grads, fraction: float) -> float:
  """The CLASSP ``threshold`` that lets about ``fraction`` of the weights
  with these gradients move: the ``1 - fraction`` quantile of ``g*g`` over
  every weight (the gate is ``g*g > threshold``, element by element).

  Take ``grads`` from a few batches of the first task; gradients shrink as a
  task is learnt, so a threshold chosen at the start lets fewer through
  later. Not jittable (it returns a Python float).
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}.')
  squares = jnp.concatenate([jnp.ravel(jnp.abs(g).astype(jnp.float32) ** 2)
                             for g in jax.tree.leaves(grads)])
  return float(jnp.quantile(squares, 1.0 - fraction, method='lower'))


def check_capacity(opt_state, grads=None) -> ClasspStats:
  """:func:`classp_stats` of ``opt_state``, with a
  :class:`FrozenWeightsWarning` if no weight has ever moved: call it after a
  task (or a few steps) of your own loop. Given ``grads`` (a recent
  gradient), the warning names their ``g*g`` and a threshold that lets a
  tenth of the weights move. Not jittable."""
  stats = classp_stats(opt_state)
  if float(stats.capacity_used) == 0.0:
    hint = ''
    if grads is not None:
      largest = max(float(jnp.max(jnp.abs(g) ** 2))
                    for g in jax.tree.leaves(grads))
      hint = (f' These gradients\' largest g*g is {largest:.3g}; '
              f'threshold_for(grads, 0.1) = {threshold_for(grads, 0.1):.3g} '
              'lets a tenth of the weights move.')
    warnings.warn(
        'CLASSP has moved no weight: every g*g so far was at or below its '
        'threshold, so nothing learns. Lower the threshold (0 lets every '
        'weight with a gradient move), or choose it from the gradients with '
        f'classp_optax.threshold_for(grads, fraction).{hint}',
        FrozenWeightsWarning, stacklevel=2)
  return stats


def tree_bytes(tree) -> int:
  """Bytes held by a pytree's arrays: an optimizer state's memory footprint.

  A Python ``int``, computed from shapes and dtypes only, so it costs nothing
  and also works on ``jax.ShapeDtypeStruct`` leaves and inside ``jax.jit``.
  """
  return sum(
      int(x.size) * jnp.dtype(x.dtype).itemsize
      for x in jax.tree.leaves(tree)
      if hasattr(x, 'dtype')
  )
