"""The catalogue of named methods: :func:`register_method` adds one,
:func:`make_method` builds one by name with its settings checked.

A method is a factory and its settings (:class:`Setting`), declared once.
``make_method`` names the method, checks every setting it is given against
its declaration, fills in the defaults and calls the factory; the command
line, ``--list-settings`` and the tuner read the same declarations. A
method that runs on an optimizer takes the settings of every optimizer of
the table (:mod:`optimizers`) too.
"""

from collections.abc import Callable
import dataclasses
import itertools
import re
import types

from classp_optax.continual.method import Method
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods import reset
from classp_optax.continual.settings import Flag
from classp_optax.continual.settings import OneOf
from classp_optax.continual.settings import Setting
from classp_optax.continual.settings import closest

RESET_STATE = Setting('reset_state', False, 'a fresh optimizer state every '
                      "task (a penalty's memory kept)", Flag())


@dataclasses.dataclass(frozen=True)
class Entry:
  """A method of the catalogue: ``factory(**settings) -> Method``, its
  settings, and whether it runs on an optimizer of the table."""

  factory: Callable[..., Method]
  settings: tuple[Setting, ...]
  on_optimizer: bool = False


_METHODS: dict[str, Entry] = {}
# The catalogue, read-only: add to it with register_method.
METHODS = types.MappingProxyType(_METHODS)


def register_method(name: str, factory: Callable[..., Method],
                    settings=(), *, on_optimizer: bool = False) -> None:
  """Adds method ``name`` to the catalogue (or replaces it).

  Args:
    name: letters, digits and ``_`` (a ``:`` labels variants of it).
    factory: called as ``factory(**values)`` with a value for every
      setting (checked, defaults filled in); returns a :class:`Method`,
      whose label :func:`make_method` sets.
    settings: the :class:`~classp_optax.continual.settings.Setting` of
      each of its settings.
    on_optimizer: it runs on an optimizer of the table (``optimizer``
      setting) and takes every optimizer's settings too.
  """
  if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
    raise ValueError(f'a method name takes letters, digits and _, got {name!r}.')
  names = [s.name for s in settings]
  if len(set(names)) < len(names) or RESET_STATE.name in names:
    raise ValueError(f'{name}: settings must have distinct names, other than '
                     f'reset_state (every method has it); got {names}.')
  _METHODS[name] = Entry(factory, tuple(settings), on_optimizer)


def split_label(spec: str) -> tuple[str, str]:
  """``'classp:paper'`` -> ``('classp', 'classp:paper')``; ``'adam'`` ->
  ``('adam', 'adam')``. ValueError for an unknown method or an empty label."""
  kind, colon, variant = spec.partition(':')
  if kind not in _METHODS:
    hint = closest(kind, _METHODS)
    raise ValueError(
        f'method must be one of {sorted(_METHODS)}, optionally with a label '
        f'as in classp:paper; got {spec!r}.'
        + (f' Did you mean {hint}?' if hint else ''))
  if colon and not re.fullmatch(r'[A-Za-z0-9_-]+', variant):
    raise ValueError(
        f'a method label takes letters, digits, - and _, as in classp:paper; '
        f'got {spec!r}.')
  return kind, spec


def settings_of(label: str) -> dict[str, Setting]:
  """``{name: Setting}`` of method ``label`` (``classp`` or a labelled
  ``classp:paper``), ``reset_state`` included."""
  entry = _METHODS[split_label(label)[0]]
  declared = {s.name: s for s in entry.settings}
  if entry.on_optimizer:  # its own declarations first, then the optimizers'
    declared.update({name: s for name, s in optimizers.inner_settings().items()
                     if name not in declared})
  return {**declared, RESET_STATE.name: RESET_STATE}


def check_names(label: str, names) -> dict[str, Setting]:
  """Method ``label``'s settings; ValueError for a name it does not have,
  with the closest one it has."""
  known = settings_of(label)
  for name in names:
    if name not in known:
      hint = closest(name, known)
      raise ValueError(
          f'{label} has no setting {name!r}.'
          + (f' Did you mean {label}.{hint}?' if hint else '')
          + f' Its settings: {", ".join(known)}.')
  return known


def parse_settings(label: str, texts: dict[str, str]) -> dict:
  """Command-line texts of method ``label``'s settings as values."""
  known = check_names(label, texts)
  return {name: known[name].parse(text) for name, text in texts.items()}


def with_defaults(label: str, defaults: dict, given: dict) -> dict:
  """``given`` over ``defaults`` (a benchmark's settings for ``label``);
  the defaults' learning rate and optimizer settings go when ``given``
  moves the method to another optimizer, whose own defaults then apply."""
  entry = _METHODS[split_label(label)[0]]
  variant = label.partition(':')[2]  # replay:classp names its optimizer
  chosen = given.get('optimizer', variant if variant in
                     optimizers.optimizer_names() else None)
  if entry.on_optimizer and chosen is not None:
    declared = {s.name: s.default for s in entry.settings}.get('optimizer')
    if chosen != defaults.get('optimizer', declared):
      inner = {'learning_rate', 'optimizer', *optimizers.inner_settings()}
      defaults = {k: v for k, v in defaults.items() if k not in inner}
  return {**defaults, **given}


def make_method(name: str, *, benchmark: str | None = None,
                scenario: str | None = None, **settings) -> Method:
  """A method by name, or a labelled variant ``name:label`` of one.

  Its defaults are its declared ones (``--list-settings``), or with
  ``benchmark`` (and ``scenario``, default the benchmark's) those the
  command uses on that benchmark (``classp-continual --benchmark ...``).
  A method moved to another optimizer (``optimizer='classp'``) takes that
  optimizer's learning rate and settings unless given.

  Unknown names and settings (with the closest known one), and values out
  of range, are errors that name ``label.setting`` and the values it
  accepts. Every method also takes ``reset_state`` (a bool): start each
  task with a fresh optimizer state, keeping a penalty's state; it is
  recorded in the hyperparameters when given.
  """
  kind, label = split_label(name)
  if benchmark is not None or scenario is not None:
    from classp_optax.continual import suites  # noqa: PLC0415 (data: lazily)
    settings = with_defaults(label, suites.defaults_of(
        label, benchmark, scenario), settings)
  known = check_names(label, settings)
  settings = _named_by_label(label, known, settings)
  for key, value in settings.items():
    known[key].check(label, value)
  values = {key: s.default for key, s in known.items()}
  if _METHODS[kind].on_optimizer:
    values = optimizers.moved_defaults(values, settings)
  reset_state = settings.pop(RESET_STATE.name, None)
  values.update(settings)
  del values[RESET_STATE.name]
  method = dataclasses.replace(_METHODS[kind].factory(**values), label=label)
  if reset_state is None:
    return method
  return dataclasses.replace(
      method, hooks=(reset.ResetState(),) * reset_state + method.hooks,
      hyperparams={**method.hyperparams, 'reset_state': reset_state})


def _named_by_label(label: str, known: dict, settings: dict) -> dict:
  """``settings`` with the value a variant's label names (``ewc:online``:
  mode ``'online'``); ValueError if they set it otherwise, so that a
  variant's name never disagrees with what it runs."""
  variant = label.partition(':')[2]
  named = {name: variant for name, s in known.items()
           if isinstance(s.accepts, OneOf) and variant in s.accepts.choices}
  for name, value in named.items():
    if settings.get(name, value) != value:
      raise ValueError(
          f'{label}.{name}={settings[name]!r} disagrees with the label '
          f'{label}, which names {name}={value!r}; give the variant another '
          'label.')
  return {**settings, **named}


def describe(label: str, defaults: dict) -> str:
  """Method ``label``'s settings, one a line: its value by default (the
  declaration's, or ``defaults``), the values it accepts, what it does."""
  lines = [f'{label}:']
  for name, setting in settings_of(label).items():
    shown = f'{label}.{name}={defaults.get(name, setting.default)!r}'
    lines.append(f'  {shown:<34} {setting.accepts.text:<37} {setting.meaning}')
  return '\n'.join(lines)


def tuning_grid(label: str) -> list[dict]:
  """Every combination of the values its settings' grids list, in the order
  they are declared: what a tuner tries for method ``label``."""
  axes = {name: s.grid for name, s in settings_of(label).items() if s.grid}
  return [dict(zip(axes, values, strict=True))
          for values in itertools.product(*axes.values())]
