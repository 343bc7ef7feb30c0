"""Changing injected hyperparameters between tasks without recompiling."""

import difflib
import math

import jax
import jax.numpy as jnp
import optax

from classp_optax import _checks
from classp_optax import _state_search

# optax.inject_hyperparams builds the stateful variant since optax 0.2.5.
INJECTED_STATES = (
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


# What each hyperparameter the toolkit injects accepts (the ranges the
# transforms check when they are built); any other must be a real number.
RANGES = {
    'learning_rate': dict(low=0.0, high_inclusive=False),
    'threshold': dict(low=0.0),
    'eps': dict(low=0.0, high_inclusive=False),
    'strength': dict(low=0.0, high_inclusive=False),
    'momentum': dict(low=0.0, high=1.0, high_inclusive=False),
}
BOOLEANS = ('apply_decay',)


def _check(name: str, value) -> None:
  if name in BOOLEANS:
    _checks.check_bool(name, value, allow_array=True)
  else:
    _checks.check_scalar(name, value, **RANGES.get(
        name, dict(low=-math.inf, high_inclusive=False, low_inclusive=False)))


def _not_injected(unknown: list, injected) -> str:
  hints = [difflib.get_close_matches(name, list(injected), n=1)
           for name in unknown]
  hint = ' '.join(f'Did you mean {close[0]!r}?' for close in hints if close)
  return (
      f'{unknown} are not injected hyperparameters; accepted names: '
      f'{sorted(injected)}. {hint + " " if hint else ""}'
      'optax.inject_hyperparams injects the numeric arguments only: it '
      'leaves static_args (such as CLASSP\'s power, which chooses its '
      'compiled path) and Python bools as they were built. To change one, '
      'build the optimizer again with the new value: the state\'s structure '
      'does not depend on it, so the old state carries over.')


def set_hyperparams(opt_state, **values):
  """Returns ``opt_state`` with new values for injected hyperparameters.

  Works on the state of ``optax.inject_hyperparams(classp)(...)``, also when
  that state sits inside a chain, and on an ``nnx.Optimizer``'s
  ``opt_state``, whose variables it keeps (so that an ``nnx.jit`` step is not
  traced again): ``optimizer.opt_state = set_hyperparams(
  optimizer.opt_state, threshold=0.0)``. Each value is checked (by name,
  with its accepted range) and cast to the dtype the hyperparameter already
  has: a Python float put in ``state.hyperparams`` by hand is weakly typed,
  and the jitted step would be traced again.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from classp_optax import classp, set_hyperparams
    >>> tx = optax.inject_hyperparams(classp)(learning_rate=0.2, threshold=0.5)
    >>> state = tx.init(jnp.zeros(3))
    >>> state = set_hyperparams(state, learning_rate=0.05, threshold=0.0)
    >>> float(state.hyperparams['threshold'])
    0.0

  Args:
    opt_state: a state holding exactly one ``InjectHyperparamsState``.
    **values: new values, by hyperparameter name.

  Returns:
    A new state; the one given is not modified.

  Raises:
    ValueError: if no single injected state is found, a name is not one of
      its numeric hyperparameters, or a value is out of its range.
  """
  old = _state_search.find_unique(
      opt_state, INJECTED_STATES,
      'InjectHyperparamsState (from optax.inject_hyperparams)',
  )
  unknown = sorted(set(values) - set(old.hyperparams))
  if unknown:
    raise ValueError(_not_injected(unknown, old.hyperparams))
  for name, value in values.items():
    _check(name, value)
  hyperparams = dict(old.hyperparams)
  for name, value in values.items():
    # Leaf by leaf: an nnx.Optimizer's state holds each in a variable.
    hyperparams[name] = jax.tree.map(
        lambda leaf, v=value: jnp.asarray(v, dtype=jnp.dtype(leaf.dtype)),
        old.hyperparams[name])
  new = old._replace(hyperparams=hyperparams)
  return _state_search.replace_node(opt_state, old, new)
