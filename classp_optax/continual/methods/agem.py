"""A-GEM on any optimizer: the gradient projected where it would raise the
loss on stored examples.

Chaudhry et al., "Efficient Lifelong Learning with A-GEM" (ICLR 2019), as
the DER paper's code runs it (aimagelab/mammoth, ``models/agem.py``): at
each task's end, ``buffer_size // num_tasks`` of the task's training
examples, chosen at random, join the buffer. Every step computes the
reference gradient ``g_ref`` of the mean loss on a draw of
``minibatch_size`` stored examples (over the outputs the stream trains),
and where the step's gradient ``g`` conflicts with it (``g . g_ref < 0``)
the optimizer gets ``g - (g . g_ref / g_ref . g_ref) g_ref`` instead: the
closest gradient that does not raise the reference loss to first order.
"""

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from classp_optax.continual import hooks as hooklib
from classp_optax.continual import reservoir
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.rehearsal import rehearsal_method
from classp_optax.continual.methods.rehearsal import rehearsal_settings

_SALT = 15485863  # A-GEM's draws, apart from every other hook's


def project(grads, reference):
  """``grads``, projected as A-GEM does where it conflicts with
  ``reference``; unchanged (bit for bit) where it does not."""
  dot = optax.tree.vdot(grads, reference)
  norm = jnp.maximum(optax.tree.vdot(reference, reference),
                     jnp.finfo(dot.dtype).tiny)
  scale = jnp.where(dot < 0, dot / norm, 0.0)
  return jax.tree.map(lambda g, r: g - scale * r, grads, reference)


class GradientEpisodicMemory(hooklib.Hook):
  """A-GEM's buffer (filled at task ends) and projection."""

  buffer_size: int = struct.field(pytree_node=False, default=200)
  minibatch_size: int = struct.field(pytree_node=False, default=128)

  def _share(self, tasks) -> int:
    return self.buffer_size // len(tasks)

  def init(self, params, seed, tasks):
    del params
    if not self._share(tasks):
      return ()
    return reservoir.empty(self.buffer_size, tasks[0].train_batch(
        np.arange(1)), tasks[0].num_outputs, seed, _SALT)

  def plan(self, tasks, t, seed):
    """``(positions, valid)``: the task's examples that join the buffer."""
    share = self._share(tasks)
    if not share:
      return ()
    rng = np.random.default_rng([seed, t, _SALT])
    chosen = rng.permutation(tasks[t].num_train)[:share]
    positions = np.zeros(share, np.int32)
    positions[:len(chosen)] = chosen
    return positions, np.arange(share) < len(chosen)

  def end_task(self, state, data, model, plan):
    if not plan:
      return state
    positions, valid = plan
    return state._replace(extra=reservoir.append(
        state.extra, data.inputs[positions], data.labels[positions], valid))

  def gradients(self, extra, step, grads):
    if not isinstance(extra, reservoir.Buffer):
      return grads, extra
    slots, valid, extra = reservoir.draw(extra, self.minibatch_size)
    reference = jax.grad(lambda p: reservoir.masked_mean(step.model.loss(
        p, extra.inputs[slots], extra.labels[slots], step.data.train_masks),
        valid))(step.params)
    return project(grads, reference), extra

  def readouts(self, state):
    if not isinstance(state.extra, reservoir.Buffer):
      return {}
    return reservoir.readouts(state.extra)


def agem_method(buffer_size, minibatch_size, **values):
  sizes = dict(buffer_size=buffer_size, minibatch_size=minibatch_size)
  return rehearsal_method('agem', GradientEpisodicMemory(**sizes), sizes,
                          values)


register_method('agem', agem_method, rehearsal_settings(0.1), on_optimizer=True)
