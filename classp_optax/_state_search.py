"""Finding and replacing one transform's state inside a composite state, and
building state trees."""

import jax
import jax.numpy as jnp


def find_all(opt_state, state_types) -> list:
  """The nodes of ``state_types`` in ``opt_state``, outermost first."""
  is_match = lambda x: isinstance(x, state_types)
  return [x for x in jax.tree.leaves(opt_state, is_leaf=is_match)
          if is_match(x)]


def find_unique(opt_state, state_types, description: str):
  """The one node of ``state_types`` in ``opt_state``; ValueError otherwise."""
  found = find_all(opt_state, state_types)
  if len(found) != 1:
    raise ValueError(
        f'opt_state must contain exactly one {description}, found '
        f'{len(found)}.'
    )
  return found[0]


def replace_node(opt_state, old, new):
  """``opt_state`` with the node ``old`` (found by identity) replaced."""
  return jax.tree.map(
      lambda x: new if x is old else x,
      opt_state,
      is_leaf=lambda x: isinstance(x, type(old)),
  )


def real_zeros_like(params):
  """Zeros shaped like ``params`` in each leaf's real dtype (float32 for
  complex64): the dtype of a sum of ``|g|**2``."""
  return jax.tree.map(
      lambda p: jnp.zeros(p.shape, jnp.finfo(p.dtype).dtype), params)
