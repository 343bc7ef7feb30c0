"""A buffer of training examples on the device, filled by reservoir sampling.

Reservoir sampling (Vitter's algorithm R, as the DER paper's code runs it)
keeps every example of a stream with the same probability: while fewer than
``size`` examples have been seen, each goes into the next free slot; after
that, the ``n``-th example seen (counting from 0) draws ``j`` uniformly from
``0 .. n`` and replaces slot ``j`` if ``j < size``. After ``n`` examples,
each of them is stored with probability ``size / n``.

A :class:`Buffer` is a pytree of arrays of fixed shape, so it lives in a
hook's state, inside the compiled step and in every checkpoint. Its slots
fill from the first: slots ``0 .. stored - 1`` hold examples, where
``stored = min(seen, size)``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Buffer(NamedTuple):
  """Stored examples: ``inputs`` and ``labels`` in ``size`` slots,
  ``logits`` (the model's outputs when each entered; None where not
  kept), ``seen`` the examples offered so far, ``key`` its draws."""

  inputs: jax.Array
  labels: jax.Array
  logits: jax.Array
  seen: jax.Array
  key: jax.Array

  @property
  def size(self) -> int:
    return self.labels.shape[0]

  def stored(self) -> jax.Array:
    return jnp.minimum(self.seen, self.size)


def empty(size: int, example, num_outputs: int, seed: int, salt: int,
          logits: bool = False) -> Buffer:
  """A buffer of ``size`` slots for examples like ``example`` (``(x, y)``,
  a batch of one), keeping ``num_outputs`` logits each if ``logits``; its
  draws are seeded by ``seed`` and ``salt`` (one per kind of hook)."""
  x, y = example
  return Buffer(
      inputs=np.zeros((size, *x.shape[1:]), x.dtype),
      labels=np.zeros(size, y.dtype),
      logits=np.zeros((size, num_outputs), np.float32) if logits else None,
      seen=np.int32(0),
      key=np.asarray(jax.random.key_data(
          jax.random.fold_in(jax.random.key(seed), salt))))


def split_key(buffer: Buffer) -> tuple[jax.Array, Buffer]:
  """A fresh key, and the buffer with its key advanced."""
  key, new = jax.random.split(jax.random.wrap_key_data(buffer.key))
  return new, buffer._replace(key=jax.random.key_data(key))


def reservoir_slots(seen, size: int, count: int, key) -> jax.Array:
  """The slots of ``count`` examples offered after ``seen``, in order; a
  slot of ``size`` means the example is not stored (an example that a
  later one of the same batch displaces is not stored either)."""
  order = seen + jnp.arange(count)
  chosen = jax.random.randint(key, (count,), 0, order + 1)
  slots = jnp.where(order < size, order, jnp.where(chosen < size, chosen, size))
  earlier = jnp.arange(count)[:, None] < jnp.arange(count)[None, :]
  displaced = jnp.any((slots[:, None] == slots[None, :]) & earlier, axis=1)
  return jnp.where(displaced, size, slots)


def insert(buffer: Buffer, inputs, labels, logits=None) -> Buffer:
  """``buffer`` after the examples ``inputs, labels`` (and their
  ``logits``, where kept) are offered to it, in order."""
  key, buffer = split_key(buffer)
  slots = reservoir_slots(buffer.seen, buffer.size, len(labels), key)
  put = lambda stored, new: jnp.asarray(stored).at[slots].set(  # noqa: E731
      new, mode='drop')
  return buffer._replace(
      inputs=put(buffer.inputs, inputs), labels=put(buffer.labels, labels),
      logits=(buffer.logits if logits is None
              else put(buffer.logits, logits.astype(buffer.logits.dtype))),
      seen=buffer.seen + len(labels))


def append(buffer: Buffer, inputs, labels, valid) -> Buffer:
  """``buffer`` with the examples where ``valid`` in its next free slots
  (A-GEM's per-task share); those past its end are dropped."""
  slots = buffer.seen + jnp.cumsum(valid) - 1
  slots = jnp.where(valid & (slots < buffer.size), slots, buffer.size)
  put = lambda stored, new: jnp.asarray(stored).at[slots].set(  # noqa: E731
      new, mode='drop')
  return buffer._replace(inputs=put(buffer.inputs, inputs),
                         labels=put(buffer.labels, labels),
                         seen=buffer.seen + jnp.sum(valid, dtype=jnp.int32))


def draw(buffer: Buffer, count: int) -> tuple[jax.Array, jax.Array, Buffer]:
  """``count`` slots drawn uniformly without replacement from those
  stored, and which of them are real (fewer than ``count`` stored: the
  rest are not), and the buffer with its key advanced. ``count`` is capped
  at the buffer's size."""
  key, buffer = split_key(buffer)
  scores = jnp.where(jnp.arange(buffer.size) < buffer.stored(),
                     jax.random.uniform(key, (buffer.size,)), -1.0)
  _, slots = jax.lax.top_k(scores, min(count, buffer.size))
  return slots, jnp.arange(len(slots)) < buffer.stored(), buffer


def masked_mean(values, valid) -> jax.Array:
  """The mean of ``values`` where ``valid`` (0 where none is)."""
  total = jnp.sum(jnp.where(valid, values, 0.0))
  return total / jnp.maximum(jnp.sum(valid), 1)


def readouts(buffer: Buffer) -> dict:
  """What a method with a buffer reads out after each task: how many
  examples it holds."""
  return {'buffered': buffer.stored().astype(jnp.float32)}
