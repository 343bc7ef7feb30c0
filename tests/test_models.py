"""The Flax models: shapes, dropout, and PyTorch-style initialisation."""

import functools
import logging
import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_optax.continual import models


def test_cnn_is_the_papers_architecture():
  cnn = models.make_model('cnn', (28, 28, 1), 10, seed=0)
  assert cnn.conv1.kernel.shape == (3, 3, 1, 32)
  assert cnn.conv2.kernel.shape == (3, 3, 32, 64)
  assert cnn.dense.kernel.shape == (12 * 12 * 64, 128)
  assert cnn.out.kernel.shape == (128, 10)
  x = jnp.ones((4, 28, 28, 1))
  assert cnn(x).shape == (4, 10)
  cnn.eval()
  np.testing.assert_array_equal(cnn(x), cnn(x))  # no dropout in eval mode


def test_mlp_flattens_and_rejects_unknown_models():
  mlp = models.make_model('mlp', (8, 8, 1), 10, seed=0, hidden=(16, 8))
  assert [layer.kernel.shape for layer in mlp.hidden] == [(64, 16), (16, 8)]
  assert mlp(jnp.ones((3, 8, 8, 1))).shape == (3, 10)
  with pytest.raises(ValueError, match="model must be 'mlp' or 'cnn'"):
    models.make_model('resnet', (8, 8, 1), 10, seed=0)
def test_torch_init_matches_torch_linear_bounds():
  mlp = models.MLP(400, (300,), 10, init='torch', rngs=nnx.Rngs(0))
  kernel, bias = mlp.hidden[0].kernel[...], mlp.hidden[0].bias[...]
  bound = 400 ** -0.5
  for values in (kernel, bias):
    assert float(jnp.abs(values).max()) <= bound
    assert float(jnp.abs(values).max()) > 0.95 * bound  # uniform, not normal
  assert float(jnp.std(kernel)) == pytest.approx(bound / 3**0.5, rel=0.02)
  with pytest.raises(ValueError, match='init must be one of'):
    models.MLP(4, (3,), 2, init='he', rngs=nnx.Rngs(0))


def _compiled_programs(caplog, build) -> list[str]:
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger='jax'), jax.log_compiles():
    build()
  return [r.getMessage().split(' with')[0] for r in caplog.records
          if r.getMessage().startswith('Compiling')]


def test_a_model_is_built_by_one_compiled_program(caplog):
  """Flax's initialisers run op by op outside a compiled function, and each
  op compiles on its own (17 programs for this MLP, a second a cold run);
  the build is one program, and another seed of the same model compiles
  nothing."""
  make = functools.partial(models.make_model, 'mlp', (7, 3), 5,
                           hidden=(13, 11), init='torch')
  first = _compiled_programs(caplog, lambda: make(seed=0))
  assert len(first) <= 3, first  # the build, and the seed's key at most
  assert _compiled_programs(caplog, lambda: make(seed=1)) == []


@pytest.mark.parametrize('name,shape,init', [
    ('mlp', (8, 8), 'flax'), ('mlp', (6, 4), 'torch'),
    ('mlp', (5, 5), 'xavier'), ('cnn', (12, 12, 1), 'flax')])
def test_the_compiled_build_gives_the_eager_builds_weights(name, shape, init):
  rngs = nnx.Rngs(params=3, dropout=4)
  eager = (models.MLP(math.prod(shape), (16, 8), 10, init=init, rngs=rngs)
           if name == 'mlp' else models.CNN(shape, 10, rngs=rngs))
  built = models.make_model(name, shape, 10, seed=3, hidden=(16, 8),
                            init=init)
  want, got = nnx.state(eager), nnx.state(built)
  assert jax.tree.structure(want) == jax.tree.structure(got)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
