"""Padding along the leading axis, so that one compiled program serves data
of many lengths."""

import jax.numpy as jnp
import numpy as np


def pad_rows(array, rows: int):
  """``array`` with zero rows appended up to ``rows`` (itself if it has that
  many). NumPy arrays stay on the host, so that padding compiles nothing;
  JAX arrays stay on their device."""
  if len(array) == rows:
    return array
  xp = np if isinstance(array, np.ndarray) else jnp
  return xp.pad(array, [(0, rows - len(array))] + [(0, 0)] * (array.ndim - 1))
