"""Atomic, checked checkpoints of a continual run, with orbax-checkpoint.

After each task, and every so often within one, the engine saves every
configuration's state (weights, dropout RNG, the optimizer's state, where
CLASSP's ``grad_sum`` is the memory of past tasks, and the hooks' states,
such as a replay buffer), and a JSON record: the run's fingerprint, the task
and the steps of it done, the accuracy rows so far. Checkpoints are
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


def _paths(record, prefix: str = '') -> dict:
  """``{dotted path: value}`` of every leaf of a nested JSON record."""
  if isinstance(record, dict):
    items = record.items()
  elif isinstance(record, list):
    items = enumerate(record)
  else:
    return {prefix: record}
  paths = {}
  for key, value in items:
    paths.update(_paths(value, f'{prefix}.{key}' if prefix else str(key)))
  return paths or {prefix: record}


def _differences(saved: dict, now: dict, shown: int = 5) -> str:
  """The paths at which two records differ, each with both values."""
  saved, now = _paths(saved), _paths(now)
  differing = _differing_keys(saved, now)
  lines = [f'{path}: saved {saved.get(path)!r}, now {now.get(path)!r}'
           for path in differing[:shown]]
  if len(differing) > shown:
    lines.append(f'and {len(differing) - shown} more')
  return '; '.join(lines)


class RunCheckpointer:
  """Saves and restores one run (its configurations' states) by global
  step."""

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

  def save(self, step: int, state, record: dict) -> None:
    """Saves the pytree ``state`` and the JSON ``record`` as ``step``."""
    record = dict(record, fingerprint=self.fingerprint,
                  signature=_signature(state))
    flat = _flatten(state)
    with _interrupts_held_back():
      self._manager.save(step, args=ocp.args.Composite(
          arrays=ocp.args.StandardSave(flat),
          record=ocp.args.JsonSave(record),
      ))
      self._manager.wait_until_finished()

  def restore(self, like) -> tuple:
    """The latest checkpoint, shaped as the pytree ``like``.

    Returns:
      ``(state, record)``: the state and the JSON record saved with it.

    Raises:
      ValueError: if it belongs to another run, model or optimizer, naming
        what differs.
    """
    step = self.latest()
    if step is None:
      raise ValueError('no checkpoint to resume from.')
    record = self._manager.restore(
        step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
    )['record']
    if record['fingerprint'] != self.fingerprint:
      raise ValueError(
          f'checkpoint in {self._manager.directory} is from another run: '
          f'{_differences(record["fingerprint"], self.fingerprint)}.')
    expected = _signature(like)
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
    return _unflatten(flat, like), record

  def close(self):
    self._manager.close()
