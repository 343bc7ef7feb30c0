"""Finding and replacing one transform's state inside a composite state."""

import jax


def find_unique(opt_state, state_types, description: str):
  """The one node of ``state_types`` in ``opt_state``; ValueError otherwise."""
  is_match = lambda x: isinstance(x, state_types)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_match)
           if is_match(x)]
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
