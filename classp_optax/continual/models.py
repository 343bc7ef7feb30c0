"""Flax NNX models for the continual-learning benchmarks."""

from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp


class MLP(nnx.Module):
  """A ReLU multi-layer perceptron on flattened images."""

  def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
               *, rngs: nnx.Rngs):
    sizes = [in_features, *hidden]
    self.hidden = nnx.List([
        nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:], strict=False)
    ])
    self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    return self.out(x)


class CNN(nnx.Module):
  """The CLASSP paper's CNN: two 3x3 convolutions (32, 64), max pool, dropout,
  dense 128, dense ``num_classes``."""

  def __init__(self, image_shape: Sequence[int], num_classes: int, *,
               dropout: float = 0.25, rngs: nnx.Rngs):
    height, width, channels = image_shape
    self.conv1 = nnx.Conv(channels, 32, (3, 3), padding='VALID', rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, (3, 3), padding='VALID', rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    flat = ((height - 4) // 2) * ((width - 4) // 2) * 64
    self.dense = nnx.Linear(flat, 128, rngs=rngs)
    self.out = nnx.Linear(128, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.conv1(x))
    x = jax.nn.relu(self.conv2(x))
    x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    x = self.dropout(x.reshape(x.shape[0], -1))
    x = jax.nn.relu(self.dense(x))
    return self.out(x)


def make_model(name: str, image_shape: Sequence[int], num_classes: int,
               seed: int, hidden: Sequence[int] = (256, 256)) -> nnx.Module:
  """``'mlp'`` or ``'cnn'``, initialised from ``seed``."""
  rngs = nnx.Rngs(params=seed, dropout=seed + 1)
  if name == 'mlp':
    return MLP(int(jnp.prod(jnp.array(image_shape))), hidden, num_classes,
               rngs=rngs)
  if name == 'cnn':
    return CNN(image_shape, num_classes, rngs=rngs)
  raise ValueError(f"model must be 'mlp' or 'cnn', got {name!r}.")
