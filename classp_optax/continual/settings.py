"""A method's settings, each declared once: its name, default, the values
it accepts, what it does, and the values a tuner tries.

One :class:`Setting` drives everything that touches it: :func:`make_method`'s
check (the error names ``method.setting`` and the accepted values),
``--list-settings`` and ``--help``, the command's ``--set``/``--sweep``
parsing (:meth:`Setting.parse`), and the grid the tuner
(``benchmarks/tune.py``, through :func:`methods.tuning_grid`) searches.
"""

import ast
from collections.abc import Callable
import dataclasses
import difflib
import math
from typing import Any

from classp_optax import _checks


@dataclasses.dataclass(frozen=True)
class Real:
  """A real number in a range; ``optional``: None too."""

  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  optional: bool = False

  @property
  def text(self) -> str:
    low, high = '(' if self.low_open else '[', ')' if self.high_open else ']'
    return f'{low}{self.low}, {self.high}{high}' + (' or None' * self.optional)

  def check(self, name: str, value) -> None:
    if value is None and self.optional:
      return
    _checks.check_scalar(name, value, low=self.low, high=self.high,
                         low_inclusive=not self.low_open,
                         high_inclusive=not self.high_open)

  def parse(self, text: str):
    if self.optional and text == 'None':
      return None
    try:
      return float(text)
    except ValueError:
      return text  # refused by check, naming the range


@dataclasses.dataclass(frozen=True)
class Integer:
  """An integer >= ``low``."""

  low: int = 0

  @property
  def text(self) -> str:
    return f'an integer >= {self.low}'

  def check(self, name: str, value) -> None:
    _checks.check_integer(name, value, low=self.low)

  def parse(self, text: str):
    try:
      return int(text)
    except ValueError:
      return text


@dataclasses.dataclass(frozen=True)
class Flag:
  """True or False."""

  text = 'True or False'

  def check(self, name: str, value) -> None:
    _checks.check_bool(name, value)

  def parse(self, text: str):
    return {'true': True, 'false': False}.get(text.lower(), text)


@dataclasses.dataclass(frozen=True)
class OneOf:
  """One of some names; ``names`` is a tuple, or a function giving one (a
  table users extend, such as the optimizers)."""

  names: tuple | Callable[[], tuple]

  @property
  def choices(self) -> tuple:
    return self.names() if callable(self.names) else self.names

  @property
  def text(self) -> str:
    return str(self.choices)

  def check(self, name: str, value) -> None:
    if not isinstance(value, str) or value not in self.choices:
      raise ValueError(f'{name} must be one of {self.choices}, got {value!r}.')

  def parse(self, text: str):
    """The name, without the quotes of a Python literal (``'adam'``)."""
    if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':
      return text[1:-1]
    return text


@dataclasses.dataclass(frozen=True)
class Anything:
  """Any value: a setting whose factory checks it."""

  text = 'any value'

  def check(self, name: str, value) -> None:
    del name, value

  def parse(self, text: str):
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text


@dataclasses.dataclass(frozen=True)
class Setting:
  """One setting of a method.

  Attributes:
    name: its name, as in ``--set method.name=value``.
    default: the value a method made without it takes.
    meaning: one line of what it does.
    accepts: the values it accepts (:class:`Real`, :class:`Integer`,
      :class:`Flag`, :class:`OneOf`, :class:`Anything`).
    grid: the values a tuner tries (one value: fixed while tuning; none:
      the default, not tuned).
  """

  name: str
  default: Any
  meaning: str
  accepts: Any = Anything()
  grid: tuple = ()

  def check(self, method: str, value) -> None:
    """ValueError naming ``method.name`` and the accepted values."""
    self.accepts.check(f'{method}.{self.name}', value)

  def parse(self, text: str):
    """The value a command line's ``text`` means (checked later)."""
    return self.accepts.parse(text)

  def but(self, **changes) -> 'Setting':
    """This setting with another default, grid or meaning."""
    return dataclasses.replace(self, **changes)


def positive(name: str, default, meaning: str, grid=()) -> Setting:
  return Setting(name, default, meaning, Real(0.0, low_open=True,
                                              high_open=True), tuple(grid))


def non_negative(name: str, default, meaning: str, grid=()) -> Setting:
  return Setting(name, default, meaning, Real(0.0, high_open=True),
                 tuple(grid))


def closest(name: str, known) -> str | None:
  """The known name ``name`` is most likely a misspelling of: the closest by
  spelling, or the one ``name`` abbreviates (``lr``: ``learning_rate``)."""
  known = list(known)
  close = difflib.get_close_matches(name, known, n=1) or [
      k for k in known if ''.join(w[0] for w in k.split('_')) == name]
  return close[0] if close else None


def how_to_set(label: str, name: str, value=None) -> str:
  """Where a user changes setting ``name`` of method ``label``, both ways:
  ``how_to_set('ewc', 'strength')`` names ``make_method('ewc',
  strength=...)`` and ``--set ewc.strength=...``."""
  python, command = ('...', '...') if value is None else (repr(value), value)
  return (f'make_method({label!r}, {name}={python}) in Python, '
          f'--set {label}.{name}={command} on the command line')
