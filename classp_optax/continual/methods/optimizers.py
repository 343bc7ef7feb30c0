"""The optimizers a method can run on (``--set ewc.optimizer=adam``), as a
table users extend with :func:`register_optimizer`.

Each entry declares the settings it takes besides the learning rate; a
method on an optimizer (EWC, SI, replay, joint training) takes the
settings of every registered optimizer and refuses, naming it, one that
the chosen optimizer does not take.
"""

from collections.abc import Callable
import dataclasses
import math
import types

import optax

from classp_optax.continual.method import Method
from classp_optax.continual.settings import OneOf
from classp_optax.continual.settings import Setting


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer of the table.

  Attributes:
    factory: ``factory(learning_rate, **settings)``, an Optax transform.
    settings: what it takes besides the learning rate.
    static_args: settings compiled into its update (not injected).
    stiffness_bound: ``stiffness_bound(settings)``, the product of the
      learning rate and a penalty's curvature past which it oscillates on
      the penalty (infinite for optimizers that normalise their steps).
    hooks: read-outs it adds to a method (CLASSP's capacity used).
    prepare: its settings as the factory takes them (SGD: a momentum of 0
      is None, so that plain SGD keeps no trace).
    defaults: the learning rate and settings a method moved onto it takes
      unless given (a method keeps its own on the optimizer it declares).
  """

  factory: Callable[..., optax.GradientTransformation]
  settings: tuple[Setting, ...] = ()
  static_args: tuple[str, ...] = ()
  stiffness_bound: Callable[[dict], float] = lambda settings: math.inf
  hooks: tuple = ()
  prepare: Callable[[dict], dict] = dict
  defaults: dict = dataclasses.field(default_factory=dict)


_OPTIMIZERS: dict[str, Optimizer] = {}
# The table, read-only: add to it with register_optimizer.
OPTIMIZERS = types.MappingProxyType(_OPTIMIZERS)


def register_optimizer(name: str, factory: Callable, settings=(), **options
                       ) -> None:
  """Makes ``factory(learning_rate, **settings)`` the optimizer ``name`` of
  every method that runs on one (``optimizer=name``). ``options`` are the
  other fields of :class:`Optimizer`."""
  if not name.isidentifier():
    raise ValueError(f'an optimizer name is a Python identifier, got {name!r}.')
  options.setdefault('defaults', {'learning_rate': 1e-3})
  if 'learning_rate' not in options['defaults']:
    raise ValueError(f'optimizer {name}: defaults must give a learning_rate.')
  _OPTIMIZERS[name] = Optimizer(factory, tuple(settings), **options)


def moved_defaults(declared: dict, given: dict) -> dict:
  """``declared`` (a method's defaults) with the defaults of the optimizer
  ``given`` moves it onto, if it names one other than ``declared``'s."""
  chosen = given.get('optimizer', declared['optimizer'])
  if chosen == declared['optimizer'] or chosen not in _OPTIMIZERS:
    return declared
  return {**declared, **_OPTIMIZERS[chosen].defaults}


def optimizer_names() -> tuple:
  return tuple(_OPTIMIZERS)


def optimizer_setting(default: str) -> Setting:
  return Setting('optimizer', default, 'the optimizer under the penalty, '
                 'replay or joint training', OneOf(optimizer_names))


def inner_settings() -> dict[str, Setting]:
  """Every registered optimizer's settings, by name (the first declaration
  of a name)."""
  found: dict[str, Setting] = {}
  for entry in _OPTIMIZERS.values():
    for setting in entry.settings:
      found.setdefault(setting.name, setting)
  return found


def _chosen_settings(label: str, optimizer: str, values: dict) -> dict:
  """The settings of ``optimizer`` in ``values``; ValueError for one it
  does not take that ``values`` sets to other than its default."""
  own = {s.name for s in _OPTIMIZERS[optimizer].settings}
  for name, setting in inner_settings().items():
    if name not in own and values.get(name, setting.default) != setting.default:
      users = [o for o, e in _OPTIMIZERS.items()
               if name in {s.name for s in e.settings}]
      raise ValueError(f'{label}.{name} applies to optimizer='
                       f'{" or ".join(users)} only, not {optimizer}.')
  return {name: values[name] for name in own}


def build(optimizer: str, learning_rate, **settings
          ) -> optax.GradientTransformation:
  """The optimizer ``optimizer`` of the table (a factory for
  ``inject_hyperparams``)."""
  return _OPTIMIZERS[optimizer].factory(learning_rate, **settings)


def on_optimizer(label: str, factory: Callable, values: dict, *,
                 injected: dict | None = None, recorded: dict | None = None,
                 hooks: tuple = ()) -> tuple[Method, float]:
  """A method on the optimizer ``values['optimizer']``, and that optimizer's
  stiffness bound.

  Its transform is ``factory(**injected, optimizer=..., learning_rate=...,
  **the optimizer's settings)`` (injected); its hyperparameters are
  ``recorded``, ``injected`` and those; its hooks are ``hooks`` and the
  optimizer's read-outs. ``values`` holds ``optimizer``, ``learning_rate``
  and every optimizer's settings."""
  optimizer, injected = values['optimizer'], injected or {}
  entry = _OPTIMIZERS[optimizer]
  chosen = _chosen_settings(label, optimizer, values)
  common = dict(optimizer=optimizer, learning_rate=values['learning_rate'])
  method = Method.injected(
      label, factory, hooks=(*hooks, *entry.hooks),
      static_args=entry.static_args,
      hyperparams={**(recorded or {}), **injected, **common, **chosen},
      **injected, **common, **entry.prepare(chosen))
  return method, entry.stiffness_bound(chosen)


def with_hooks(method: Method, *hooks) -> Method:
  """``method`` with ``hooks`` before its own."""
  return dataclasses.replace(method, hooks=(*hooks, *method.hooks))
