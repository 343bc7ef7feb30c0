"""The README's Python blocks run, in order and as written, as one script;
and every model they train learns on the data they name, so a snippet can
neither rot nor teach settings that do not work.

The blocks start from what a user has in their own loop: the test gives
them ``params`` and ``grads`` of a small classifier of scikit-learn's
digits, an NNX ``model``, and the digits as arrays ``x_train``, ``y_train``,
``x_test``, ``y_test``."""

import pathlib
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import FrozenWeightsWarning
from classp_optax import classp_stats
from classp_optax.continual import RunResult
from classp_optax.continual import models
from classp_optax.continual.datasets import load_digits

README = pathlib.Path(__file__).parents[1] / 'README.md'


def python_blocks() -> list[str]:
  return re.findall(r'```python\n(.*?)```', README.read_text(), re.DOTALL)


def users_loop() -> dict:
  """What the README's blocks take from the user's own loop."""
  d = load_digits()
  x = jnp.asarray(d.x_train.reshape(len(d.x_train), -1))
  params = {'w': jnp.zeros((64, 10)), 'b': jnp.zeros(10)}
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      x @ p['w'] + p['b'], d.y_train).mean()
  return dict(params=params, grads=jax.grad(loss)(params), loss=loss,
              model=models.make_model('mlp', (8, 8, 1), 10, seed=0),
              x_train=d.x_train, y_train=d.y_train, x_test=d.x_test,
              y_test=d.y_test)


@pytest.fixture(autouse=True)
def _fresh_catalogue(monkeypatch):
  """The README registers a method and an optimizer: undone after."""
  from classp_optax.continual.methods import catalogue
  from classp_optax.continual.methods import optimizers
  monkeypatch.setattr(catalogue, '_METHODS', dict(catalogue._METHODS))
  monkeypatch.setattr(optimizers, '_OPTIMIZERS', dict(optimizers._OPTIMIZERS))


def test_the_readme_stays_under_15_kb():
  """A page read in one sitting; the details go to docs/ and the tests."""
  assert len(README.read_bytes()) < 15_000


def test_the_readme_has_the_blocks_this_test_knows():
  blocks = python_blocks()
  assert len(blocks) >= 4
  assert any('Dataset.from_arrays' in b for b in blocks)


def test_the_readme_python_runs_as_written_and_every_model_learns():
  namespace = users_loop()
  before = namespace['loss'](namespace['params'])
  results = {}
  with warnings.catch_warnings():
    warnings.simplefilter('error', FrozenWeightsWarning)
    for k, block in enumerate(python_blocks()):
      exec(compile(block, f'README.md python block {k}', 'exec'), namespace)
      results.update({(k, name): value for name, value in namespace.items()
                      if isinstance(value, RunResult)})
  # The optimizer's block took a step that moved weights and lowered the loss.
  assert float(classp_stats(namespace['state']).capacity_used) > 0.3
  assert namespace['loss'](namespace['params']) < before
  assert len(results) >= 2
  for (block, name), result in results.items():
    assert result.status == 'finished', (block, name)
    assert not result.not_learnt, (block, name)
    assert np.diag(result.accuracy).mean() > 0.9, (block, name)
