"""Atomic, checked checkpoints of a continual run, with orbax-checkpoint.

After each task, and every so often within one, the loop saves the model's
state (weights and dropout RNG), the optimizer's state (CLASSP's ``grad_sum``
is the memory of past tasks), and a JSON record: the run's fingerprint, the
task and the steps of it done, the accuracy rows so far. Checkpoints are
numbered by the run's global step. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a run killed while saving
leaves the previous one intact; Ctrl-C is held back until a save is done.

A restore compares the fingerprint (method, hyperparameters, benchmark,
seed) and every array's path, shape and dtype with the run being resumed, and
refuses a mismatch with a ValueError before any state is touched.
"""

import contextlib
import json
import pathlib
import signal
import threading

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp


def _name(path) -> str:
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


def _is_key(leaf) -> bool:
  return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _flatten(tree) -> dict[str, np.ndarray]:
  """``{path: array}``, typed PRNG keys stored as their raw key data."""
  return {
      _name(path): np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _signature(tree) -> dict[str, list]:
  """Each array's path, shape and dtype, as saved; reads no array data."""
  signature = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shaped = jax.eval_shape(jax.random.key_data, leaf) if _is_key(leaf) else leaf
    signature[_name(path)] = [list(shaped.shape), str(shaped.dtype)]
  return signature


def _differing_keys(saved: dict, now: dict) -> list[str]:
  return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def _unflatten(flat: dict, like):
  """The inverse of :func:`_flatten` onto the structure of ``like``."""
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
  leaves = []
  for path, old in leaves_with_path:
    value = flat[_name(path)]
    if _is_key(old):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(old))
    leaves.append(value)
  return jax.tree_util.tree_unflatten(treedef, leaves)


@contextlib.contextmanager
def _interrupts_held_back():
  """Delays Ctrl-C until the block is done: orbax writes with threads, and a
  KeyboardInterrupt in the middle of a save leaves them half way."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received and callable(previous):
    previous(*received[0])


class RunCheckpointer:
  """Saves and restores one run (one method on one stream) by global step."""

  def __init__(self, directory, fingerprint: dict, max_to_keep: int = 2):
    # As it will read back from JSON: tuples become lists, keys strings.
    self.fingerprint = json.loads(json.dumps(fingerprint))
    self._manager = ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False,
            create=True,
        ),
    )

  def latest(self) -> int | None:
    """The global step of the last checkpoint saved, or None."""
    return self._manager.latest_step()

  def save(self, step: int, model, optimizer, record: dict) -> None:
    state = nnx.state((model, optimizer))
    record = dict(record, fingerprint=self.fingerprint,
                  signature=_signature(state))
    flat = _flatten(state)
    with _interrupts_held_back():
      self._manager.save(step, args=ocp.args.Composite(
          arrays=ocp.args.StandardSave(flat),
          record=ocp.args.JsonSave(record),
      ))
      self._manager.wait_until_finished()

  def restore(self, model, optimizer) -> dict:
    """Loads the latest checkpoint into ``model`` and ``optimizer``.

    Returns:
      The JSON record saved with it.

    Raises:
      ValueError: if it belongs to another run, model or optimizer.
    """
    step = self.latest()
    if step is None:
      raise ValueError('no checkpoint to resume from.')
    record = self._manager.restore(
        step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
    )['record']
    if record['fingerprint'] != self.fingerprint:
      diff = _differing_keys(record['fingerprint'], self.fingerprint)
      raise ValueError(
          f'checkpoint in {self._manager.directory} is from another run: '
          f'{", ".join(diff)} differ (saved {record["fingerprint"]}, now '
          f'{self.fingerprint}).'
      )
    state = nnx.state((model, optimizer))
    expected = _signature(state)
    if record['signature'] != expected:
      diff = _differing_keys(record['signature'], expected)
      raise ValueError(
          f'checkpoint in {self._manager.directory} holds another model or '
          f'optimizer: arrays {diff[:5]} differ in name, shape or dtype.'
      )
    abstract = {k: jax.ShapeDtypeStruct(shape, dtype)
                for k, (shape, dtype) in expected.items()}
    flat = self._manager.restore(
        step, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(abstract))
    )['arrays']
    nnx.update((model, optimizer), _unflatten(flat, state))
    return record

  def close(self):
    self._manager.close()
