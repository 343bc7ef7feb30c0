"""What made a run: this package's version and git commit, and the versions
of the libraries that decide its numbers.

A study gathers runs over days and commits; a change that moves results by
rounding alone (a sum in another order) is invisible in the numbers, so each
row of ``results.json`` records what made it (``made_with``). The commit is
that of the package's source when it is run from a git checkout (an editable
install), with ``+dirty`` when the package's tracked files differ from it;
None for an installed copy or without git.
"""

import functools
import pathlib
import platform
import subprocess

import flax
import jax
import jaxlib
import numpy as np
import optax

import classp_optax

# The folder above the package: a checkout's top level when run from source.
SOURCE_ROOT = pathlib.Path(classp_optax.__file__).resolve().parents[1]
PACKAGE = pathlib.Path(classp_optax.__file__).parent.name


def _git(root: pathlib.Path, *args) -> str | None:
  try:
    done = subprocess.run(['git', '-C', str(root), *args], capture_output=True,
                          text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def commit_of(root: pathlib.Path) -> str | None:
  """The commit checked out at ``root`` if ``root`` is a git checkout's top
  level (``+dirty`` if tracked files of the package differ; results and
  docs a study writes beside it do not count), else None."""
  root = pathlib.Path(root).resolve()
  top = _git(root, 'rev-parse', '--show-toplevel')
  if top is None or pathlib.Path(top).resolve() != root:
    return None
  head = _git(root, 'rev-parse', 'HEAD')
  if head is None:
    return None
  changed = _git(root, 'status', '--porcelain', '--untracked-files=no', '--',
                 PACKAGE)
  return head + ('+dirty' if changed else '')


@functools.cache
def made_with() -> dict:
  """This process's versions and commit, read once: a run records the code
  it started with, even if the checkout changes while it trains."""
  return dict(classp_optax=classp_optax.__version__,
              commit=commit_of(SOURCE_ROOT), jax=jax.__version__,
              jaxlib=jaxlib.__version__, optax=optax.__version__,
              flax=flax.__version__, numpy=np.__version__,
              python=platform.python_version())
