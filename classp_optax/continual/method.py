"""What the engine trains: a :class:`Method`, an Optax transform and hooks.

This module sits under the engine; the catalogue of named methods
(:mod:`methods`) builds on it.
"""

from collections.abc import Callable
import dataclasses
import inspect
import numbers

import jax
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Method:
  """A labelled optimizer recipe for a stream of tasks: one Optax transform
  for the whole run and the hooks that act between its steps and tasks.

  Attributes:
    label: the method's name in tables, plots and checkpoint folders:
      ``classp``, or ``classp:paper`` for a labelled variant.
    hyperparams: everything that defines it, for records and checkpoints.
    optimizer: the Optax transform, the same for every task; its state is
      carried across tasks.
    hooks: what it does besides the update (:mod:`hooks`): CLASSP's per-task
      schedule, a penalty's consolidation, a fresh state per task, joint
      training's stream, read-outs.
    structure: what the compiled step depends on besides the states: the
      transform and its static settings. Every numeric hyperparameter is
      injected (``optax.inject_hyperparams``) or a leaf of a hook, so
      methods of one structure differ only in values, and a sweep trains
      them in one program. None: not known, never swept.
  """

  label: str
  hyperparams: dict
  optimizer: optax.GradientTransformation
  hooks: tuple = ()
  structure: tuple | None = None

  @classmethod
  def injected(cls, label: str, factory: Callable, *, hooks: tuple = (),
               static_args: tuple = (), hyperparams: dict | None = None,
               **settings) -> 'Method':
    """The method whose transform is ``factory(**settings)`` with its
    numeric settings injected (:func:`injected`), so that methods differing
    only in those values sweep as one program. ``hyperparams`` (default:
    ``settings``) is what the records show."""
    tx, structure = injected(factory, static_args, **settings)
    return cls(label, dict(settings if hyperparams is None else hyperparams),
               tx, tuple(hooks), structure)

  @property
  def name(self) -> str:
    """The method's name without its variant label: ``classp`` of
    ``classp:paper``."""
    return self.label.partition(':')[0]

  @property
  def sweep_structure(self):
    """What a sweep's methods must share: :attr:`structure` and the hooks'
    static settings; None if :attr:`structure` is."""
    if self.structure is None:
      return None
    return self.structure, jax.tree.structure(self.hooks)

  def train_stream(self, tasks: list) -> list:
    """The tasks as this method trains them."""
    for hook in self.hooks:
      tasks = hook.train_stream(tasks)
    return tasks


def injected(factory: Callable, static_args: tuple = (), **settings
             ) -> tuple[optax.GradientTransformation, tuple]:
  """``factory(**settings)`` with its numeric settings in the state
  (``optax.inject_hyperparams``), and the structure of the result: the
  factory and the settings compiled into its update (``static_args``, and
  whatever is not a number: names, flags, None)."""
  tx = optax.inject_hyperparams(_named_arguments(factory, settings),
                                static_args=static_args)(**settings)
  static = tuple(sorted(
      (name, value) for name, value in settings.items()
      if name in static_args or isinstance(value, bool)
      or not isinstance(value, (numbers.Number, jax.Array, np.ndarray))))
  return tx, (getattr(factory, '__qualname__', repr(factory)), static)


def _named_arguments(factory: Callable, settings: dict) -> Callable:
  """``factory``, or for one that takes ``**kwargs`` a function of each of
  ``settings`` by name that calls it: ``inject_hyperparams`` binds the
  factory's signature and would see one argument ``kwargs``."""
  parameters = inspect.signature(factory).parameters.values()
  if all(p.kind is not p.VAR_KEYWORD for p in parameters):
    return factory

  def named(**given):
    return factory(**given)
  named.__signature__ = inspect.Signature([
      inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY)
      for name in settings])
  return named
