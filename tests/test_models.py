"""The Flax models: shapes, dropout, and PyTorch-style initialisation."""

from flax import nnx
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
