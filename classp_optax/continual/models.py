"""Flax NNX models for the continual-learning benchmarks."""

from collections.abc import Sequence
import functools
import math

from flax import nnx
import jax
import jax.numpy as jnp

INITS = ('flax', 'torch', 'xavier')


def _linear(in_features: int, out_features: int, init: str, rngs: nnx.Rngs):
  """A dense layer; ``init='torch'`` draws weights and biases from
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as ``torch.nn.Linear`` does, where Flax
  uses LeCun-normal weights and zero biases; ``'xavier'``: Glorot-uniform
  weights and zero biases, as the DER paper's code initialises its MLP."""
  if init == 'flax':
    return nnx.Linear(in_features, out_features, rngs=rngs)
  if init == 'xavier':
    return nnx.Linear(in_features, out_features, rngs=rngs,
                      kernel_init=jax.nn.initializers.glorot_uniform())
  bound = in_features ** -0.5
  return nnx.Linear(
      in_features, out_features, rngs=rngs,
      kernel_init=jax.nn.initializers.variance_scaling(
          1 / 3, 'fan_in', 'uniform'),
      bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
          key, shape, dtype, -bound, bound),
  )


class MLP(nnx.Module):
  """A ReLU multi-layer perceptron on flattened images."""

  def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
               *, init: str = 'flax', rngs: nnx.Rngs):
    if init not in INITS:
      raise ValueError(f'init must be one of {INITS}, got {init!r}.')
    sizes = [in_features, *hidden]
    self.hidden = nnx.List([
        _linear(a, b, init, rngs) for a, b in zip(sizes, sizes[1:], strict=False)
    ])
    self.out = _linear(sizes[-1], num_classes, init, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    return self.out(x)

  def dense_layers(self) -> list[nnx.Linear]:
    """The dense layers, from the input to the output: all the weights."""
    return [*self.hidden, self.out]

  def tapped(self, x: jax.Array, shifts) -> tuple[jax.Array, list]:
    """The outputs with ``shifts[l]`` added to dense layer ``l``'s outputs,
    and each dense layer's inputs. On one example a dense layer's gradient
    is the outer product of its input and the gradient at its output (the
    gradient in ``shifts[l]``): what closed-form per-example gradient
    statistics (EWC's Fisher) need, with no per-example gradient held."""
    x = x.reshape(x.shape[0], -1)
    inputs = []
    for layer, shift in zip(self.dense_layers(), shifts, strict=True):
      inputs.append(x)
      x = layer(x) + shift
      x = x if layer is self.out else jax.nn.relu(x)
    return x, inputs


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
               seed: int, hidden: Sequence[int] = (256, 256),
               init: str = 'flax') -> nnx.Module:
  """``'mlp'`` or ``'cnn'``, initialised from ``seed``; ``init`` is the MLP's.

  The model is built by one compiled program, made once per architecture:
  Flax's initialisers, run op by op, would compile each op on its own (17
  programs for an MLP), which is most of a first run's model building. The
  weights are those of ``nnx.Rngs(params=seed, dropout=seed + 1)``.
  """
  if name not in ('mlp', 'cnn'):
    raise ValueError(f"model must be 'mlp' or 'cnn', got {name!r}.")
  build = _builder(name, tuple(image_shape), num_classes, tuple(hidden), init)
  return build(jax.random.key(seed), jax.random.key(seed + 1))


@functools.cache
def _builder(name: str, image_shape: tuple, num_classes: int, hidden: tuple,
             init: str):
  """The compiled build of one architecture, from its two keys."""

  def build(params_key, dropout_key):
    rngs = nnx.Rngs(params=params_key, dropout=dropout_key)
    if name == 'mlp':
      return MLP(math.prod(image_shape), hidden, num_classes, init=init,
                 rngs=rngs)
    return CNN(image_shape, num_classes, rngs=rngs)

  return nnx.jit(build)
