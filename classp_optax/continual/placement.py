"""Where the engine's arrays live: a mesh with a configuration axis and a
data axis.

The K configurations of a run are split over the ``'config'`` axis (each
device trains its share), and each configuration's batches over the
``'data'`` axis (data parallelism: the weights replicated, a batch split).
A single run on several devices is all data axis; a sweep of as many
configurations as devices is all configuration axis. When K is not a
multiple of the configuration axis, copies of the last configuration fill
the stack (its *slots*) and their results are dropped.
"""

from collections.abc import Sequence
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

AXES = ('config', 'data')


def mesh_for(num_configs: int, devices: Sequence[jax.Device] | None = None
             ) -> Mesh:
  """The mesh for ``num_configs`` configurations on ``devices`` (default:
  every local device): one configuration per device as far as they go, and
  each configuration's batches split over the devices left to it."""
  devices = list(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError('devices must name at least one device.')
  configs = min(num_configs, len(devices))
  data = len(devices) // configs
  return Mesh(np.array(devices[:configs * data]).reshape(configs, data), AXES)


def as_engine_mesh(mesh: Mesh) -> Mesh:
  """``mesh`` with both axes: a mesh of one ``'data'`` axis (data
  parallelism for a single run) gets a configuration axis of size 1."""
  if tuple(mesh.axis_names) == AXES:
    return mesh
  if tuple(mesh.axis_names) == ('data',):
    return Mesh(mesh.devices.reshape(1, -1), AXES)
  raise ValueError(f"mesh must have the axes {AXES} or ('data',), got "
                   f'{tuple(mesh.axis_names)}.')


class Placement:
  """Puts the engine's arrays on a mesh of :data:`AXES`."""

  def __init__(self, mesh: Mesh, num_configs: int):
    self.mesh = mesh
    self.num_configs = num_configs
    configs = mesh.shape['config']
    self.slots = -(-num_configs // configs) * configs
    self.data_devices = mesh.shape['data']

  def _put(self, tree, *spec):
    return jax.device_put(tree, NamedSharding(self.mesh, P(*spec)))

  def pad(self, tree):
    """A host stack of ``num_configs`` padded to ``slots`` with copies of
    its last entry."""
    extra = self.slots - self.num_configs
    if not extra:
      return tree
    return jax.tree.map(
        lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]), tree)

  def configs(self, tree):
    """A host stack of every configuration's ``tree``, padded and split
    over the configuration axis."""
    return self._put(self.pad(tree), 'config')

  def shared(self, tree):
    """``tree``, the same for every configuration, on every device."""
    return self._put(tree)

  def batches(self, tree, stacked: bool):
    """Arrays of ``(rows, batch, ...)`` (with a leading configuration axis
    if ``stacked``), each batch split over the data axis."""
    if stacked:
      return self._put(self.pad(tree), 'config', None, 'data')
    return self._put(tree, None, 'data')

  @property
  def batch_sharding(self):
    """Where one batch lives inside a step, or None without data
    parallelism."""
    if self.data_devices == 1:
      return None
    return NamedSharding(self.mesh, P('data'))

  def unpad(self, tree) -> list:
    """The first ``num_configs`` entries of a stack, one tree each."""
    return unstack(tree, self.num_configs)


@functools.partial(jax.jit, static_argnums=1)
def unstack(tree, size: int) -> list:
  """The first ``size`` trees of a stack, in one compiled call."""
  return [jax.tree.map(lambda x, k=k: x[k], tree) for k in range(size)]
