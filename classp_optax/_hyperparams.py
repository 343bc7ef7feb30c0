"""Changing injected hyperparameters between tasks without recompiling."""

import jax.numpy as jnp
import optax

from classp_optax import _state_search

# optax.inject_hyperparams builds the stateful variant since optax 0.2.5.
_INJECTED_STATES = (
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


def set_hyperparams(opt_state, **values):
  """Returns ``opt_state`` with new values for injected hyperparameters.

  Works on the state of ``optax.inject_hyperparams(classp)(...)``, also when
  that state sits inside a chain. Each value is cast to the dtype the
  hyperparameter already has: a Python float put in ``state.hyperparams`` by
  hand is weakly typed, and the jitted step would be traced again.

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
    ValueError: if no single injected state is found, or a name is not one of
      its numeric hyperparameters.
  """
  old = _state_search.find_unique(
      opt_state, _INJECTED_STATES,
      'InjectHyperparamsState (from optax.inject_hyperparams)',
  )
  unknown = sorted(set(values) - set(old.hyperparams))
  if unknown:
    raise ValueError(
        f'{unknown} are not injected hyperparameters; accepted names: '
        f'{sorted(old.hyperparams)}.'
    )
  hyperparams = dict(old.hyperparams)
  for name, value in values.items():
    hyperparams[name] = jnp.asarray(value, dtype=jnp.dtype(old.hyperparams[name].dtype))
  new = old._replace(hyperparams=hyperparams)
  return _state_search.replace_node(opt_state, old, new)
