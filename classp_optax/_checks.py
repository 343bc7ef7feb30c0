"""Argument checks shared by the transforms' factories.

Factories run twice under ``optax.inject_hyperparams``: once with concrete values
(at ``init``) and again inside ``update`` with traced ones. A traced value cannot
be compared in Python, so it is checked only when it is concrete; the concrete
call at ``init`` has already checked the value the user gave.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value) -> bool:
  return isinstance(value, jax.core.Tracer)


def check_scalar(
    name: str,
    value,
    *,
    low: float,
    high: float = math.inf,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
  """Raises ``ValueError`` unless ``value`` is a real number in the given range."""
  low_bracket = '[' if low_inclusive else '('
  high_bracket = ']' if high_inclusive else ')'
  accepted = f'a real number in {low_bracket}{low}, {high}{high_bracket}'
  if is_traced(value):
    return
  if np.iscomplexobj(value):
    raise ValueError(
        f'{name} must be {accepted}, got the complex {value!r} (with '
        'optax.inject_hyperparams on complex parameters, pass '
        'hyperparam_dtype=jnp.float32).')
  if isinstance(value, (bool, np.bool_)) or not (
      isinstance(value, numbers.Real) or np.ndim(value) == 0
      and np.issubdtype(np.asarray(value).dtype, np.number)
  ):
    raise ValueError(f'{name} must be {accepted}, got {value!r}.')
  number = float(value)
  above_low = number >= low if low_inclusive else number > low
  below_high = number <= high if high_inclusive else number < high
  if not (above_low and below_high):  # also rejects NaN
    raise ValueError(f'{name} must be {accepted}, got {value!r}.')


def check_integer(name: str, value, *, low: int) -> None:
  """Raises ``ValueError`` unless ``value`` is an integer >= ``low``."""
  if (isinstance(value, (bool, np.bool_))
      or not isinstance(value, numbers.Integral) or value < low):
    raise ValueError(f'{name} must be an integer >= {low}, got {value!r}.')


def check_bool(name: str, value, allow_array: bool = False) -> None:
  """ValueError unless ``value`` is a bool (or, with ``allow_array``, a
  boolean scalar array, possibly traced)."""
  if isinstance(value, (bool, np.bool_)):
    return
  if (allow_array and isinstance(value, jax.Array) and value.shape == ()
      and value.dtype == jnp.bool_):
    return
  accepted = ' or a boolean scalar array' if allow_array else ''
  raise ValueError(f'{name} must be True or False{accepted}, got {value!r}.')


def check_state(transform: str, state, state_type) -> None:
  """ValueError unless ``state`` is a ``state_type`` (what ``init`` made)."""
  if not isinstance(state, state_type):
    raise ValueError(
        f'{transform}: the state must be the {state_type.__name__} that '
        f'init() returned, got {type(state).__name__}.'
    )


def check_like(name: str, tree, reference_name: str, reference) -> None:
  """ValueError unless ``tree`` has the structure and leaf shapes of
  ``reference``, naming the first leaf that differs and both shapes.

  Shapes are static, so under ``jax.jit`` this costs nothing at run time.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  reference_leaves, reference_treedef = jax.tree_util.tree_flatten_with_path(
      reference)
  if treedef != reference_treedef:
    raise ValueError(
        f'{name} has another tree structure than {reference_name}: '
        f'{treedef} against {reference_treedef}.'
    )
  for (path, leaf), (_, reference_leaf) in zip(leaves, reference_leaves,
                                               strict=True):
    if np.shape(leaf) != np.shape(reference_leaf):
      where = jax.tree_util.keystr(path)
      raise ValueError(
          f'{name}{where} has shape {np.shape(leaf)}, but '
          f'{reference_name}{where} has shape {np.shape(reference_leaf)}.'
      )
