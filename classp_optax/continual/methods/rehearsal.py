"""Rehearsal from a reservoir buffer, on any optimizer: ER, DER, DER++ and
ER-ACE, as the DER paper defines and runs them.

Buzzega et al., "Dark Experience for General Continual Learning: a Strong,
Simple Baseline" (NeurIPS 2020, arXiv 2004.07211); its code is
aimagelab/mammoth, tag ``neurips2020``. Each method keeps ``buffer_size``
examples of the stream in a reservoir (:mod:`~classp_optax.continual.
reservoir`): every step offers its batch to the buffer after the update,
so each example seen is stored with probability ``buffer_size / seen``.
Each draw takes ``minibatch_size`` stored examples uniformly without
replacement (fewer while fewer are stored). With ``B`` the stream's batch:

* ``er``: one mean loss over the batch and a draw, concatenated.
* ``der``: ``CE(batch) + alpha * mean((f(x') - z')^2)`` over a draw
  ``x'`` and the logits ``z'`` the model gave ``x'`` in the step that
  stored it (the outputs of that step's forward pass, before its update).
* ``derpp``: ``der`` plus ``beta * CE`` of a second, independent draw on
  its stored labels.
* ``er_ace``: ER with Caccia et al.'s asymmetric cross-entropy ("New
  Insights on Reducing Abrupt Representation Change in Online Continual
  Learning", ICLR 2022): from the second task on, the batch's loss is taken
  over the classes present in the batch and those not seen yet (their
  code's ``mask[:, seen.max():] = 1``), and a draw's loss, over every
  output the stream trains, is added to it.

A loss is the engine's example loss over the outputs the stream trains
(:attr:`~classp_optax.continual.hooks.TaskData.train_masks`). A buffer of 0
trains as plain fine-tuning.
"""

from flax import struct
import jax.numpy as jnp
import numpy as np

from classp_optax.continual import hooks as hooklib
from classp_optax.continual import reservoir
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate
from classp_optax.continual.settings import Integer
from classp_optax.continual.settings import Setting
from classp_optax.continual.settings import non_negative
from classp_optax.continual.steps import MASKED_LOGIT

_SALT = 7919  # the reservoir's draws, apart from every other hook's


class Reservoir(hooklib.Hook):
  """The buffer every rehearsal method keeps: the stream's examples offered
  after each step. Subclasses use it."""

  buffer_size: int = struct.field(pytree_node=False, default=200)
  minibatch_size: int = struct.field(pytree_node=False, default=10)
  keeps_logits = False

  def init(self, params, seed, tasks):
    del params
    if not self.buffer_size:
      return ()
    return reservoir.empty(self.buffer_size, tasks[0].train_batch(
        np.arange(1)), tasks[0].num_outputs, seed, _SALT, self.keeps_logits)

  def after_step(self, extra, step):
    if not self.buffer_size:
      return extra
    b = step.stream
    return reservoir.insert(extra, step.inputs[:b], step.labels[:b],
                            step.outputs[:b] if self.keeps_logits else None)

  def readouts(self, state):
    if not self.buffer_size:
      return {}
    return reservoir.readouts(state.extra)

  def _draw_loss(self, extra, step):
    """The mean loss of a draw on its stored labels, and the buffer."""
    slots, valid, extra = reservoir.draw(extra, self.minibatch_size)
    losses = step.model.loss(step.params, extra.inputs[slots],
                             extra.labels[slots], step.data.train_masks)
    return reservoir.masked_mean(losses, valid), extra


class ExperienceReplay(Reservoir):
  """ER: each step's batch concatenated with a draw, one mean loss."""

  def batch(self, extra, data, x, y, weights):
    if not self.buffer_size:
      return x, y, weights, extra
    slots, valid, extra = reservoir.draw(extra, self.minibatch_size)
    own = jnp.ones(len(y)) if weights is None else weights * len(y)
    weights = jnp.concatenate([own, valid]) / (len(y) + jnp.sum(valid))
    return (jnp.concatenate([x, extra.inputs[slots]]),
            jnp.concatenate([y, extra.labels[slots]]), weights, extra)


class DarkExperience(Reservoir):
  """DER (``beta`` 0) and DER++: the stored logits matched, and with
  ``beta`` the stored labels too."""

  alpha: float = 0.3
  beta: float = 0.0
  with_labels: bool = struct.field(pytree_node=False, default=False)
  keeps_logits = True

  def loss(self, extra, step):
    if not self.buffer_size:
      return jnp.float32(0.0), extra
    slots, valid, extra = reservoir.draw(extra, self.minibatch_size)
    outputs = step.model.outputs(step.params, extra.inputs[slots])
    errors = jnp.mean((outputs - extra.logits[slots]) ** 2, axis=-1)
    term = self.alpha * reservoir.masked_mean(errors, valid)
    if self.with_labels:
      replayed, extra = self._draw_loss(extra, step)
      term = term + self.beta * replayed
    return term, extra


class AsymmetricReplay(Reservoir):
  """ER-ACE: the batch's loss over its own and unseen classes, from the
  second task on, plus a draw's loss. Its state is the buffer and which
  outputs have been targets so far."""

  def init(self, params, seed, tasks):
    if not self.buffer_size:
      return ()
    return (super().init(params, seed, tasks),
            np.zeros(tasks[0].num_outputs, bool))

  def batch(self, extra, data, x, y, weights):
    """The batch, weighted 0 (:meth:`loss` takes it), and a draw whose mean
    loss counts from the second task on."""
    if not self.buffer_size:
      return x, y, weights, extra
    buffer, seen = extra
    slots, valid, buffer = reservoir.draw(buffer, self.minibatch_size)
    drawn = valid * (data.task > 0) / jnp.maximum(jnp.sum(valid), 1)
    return (jnp.concatenate([x, buffer.inputs[slots]]),
            jnp.concatenate([y, buffer.labels[slots]]),
            jnp.concatenate([jnp.zeros(len(y)), drawn]), (buffer, seen))

  def loss(self, extra, step):
    if not self.buffer_size:
      return jnp.float32(0.0), extra
    buffer, seen = extra
    b = step.stream
    present = jnp.zeros(seen.shape, bool).at[step.labels[:b]].set(True)
    seen = seen | present
    newest = jnp.max(jnp.where(seen, jnp.arange(len(seen)), 0))
    kept = present | (jnp.arange(len(seen)) >= newest)
    later = step.data.task > 0
    logits = jnp.where(later & ~kept, MASKED_LOGIT, step.outputs[:b])
    own = step.model.example_loss(logits, step.labels[:b],
                                  step.data.train_masks).mean()
    return own, (buffer, seen)

  def after_step(self, extra, step):
    if not self.buffer_size:
      return extra
    return super().after_step(extra[0], step), extra[1]

  def readouts(self, state):
    return super().readouts(state._replace(extra=state.extra[0])
                            if self.buffer_size else state)


BUFFER_SIZE = Setting('buffer_size', 200, 'examples the buffer holds in all',
                      Integer(0), (200, 500))
MINIBATCH_SIZE = Setting('minibatch_size', 32, 'examples in each draw from '
                         'the buffer', Integer(1))


def rehearsal_settings(lr: float, *extra) -> tuple:
  """The settings every rehearsal method declares: its buffer, its draws,
  ``extra``, and an optimizer of the table (SGD, as the DER paper trains)."""
  return (BUFFER_SIZE, MINIBATCH_SIZE, *extra,
          learning_rate(lr, (0.01, 0.03, 0.1, 0.3)),
          optimizers.optimizer_setting('sgd'))


def rehearsal_method(label: str, hook: hooklib.Hook, recorded: dict,
                     values: dict):
  """Method ``label``: ``hook`` on the optimizer ``values`` name."""
  return optimizers.on_optimizer(label, optimizers.build, values,
                                 recorded=recorded, hooks=(hook,))[0]


def _er(cls, label):
  def factory(buffer_size, minibatch_size, **values):
    sizes = dict(buffer_size=buffer_size, minibatch_size=minibatch_size)
    return rehearsal_method(label, cls(**sizes), sizes, values)
  return factory


def _der(label, with_labels):
  def factory(buffer_size, minibatch_size, alpha, beta=0.0, **values):
    sizes = dict(buffer_size=buffer_size, minibatch_size=minibatch_size)
    weights = dict(alpha=alpha, beta=beta) if with_labels else dict(
        alpha=alpha)
    hook = DarkExperience(**sizes, alpha=alpha, beta=beta,
                          with_labels=with_labels)
    return rehearsal_method(label, hook, {**sizes, **weights}, values)
  return factory


ALPHA = non_negative('alpha', 0.3, 'weight of the stored logits\' squared '
                     'error', (0.1, 0.3, 1.0))
BETA = non_negative('beta', 0.5, "weight of a draw's loss on its stored "
                    'labels', (0.5, 1.0))

register_method('er', _er(ExperienceReplay, 'er'), rehearsal_settings(0.1),
                on_optimizer=True)
register_method('der', _der('der', False), rehearsal_settings(0.1, ALPHA),
                on_optimizer=True)
register_method('derpp', _der('derpp', True),
                rehearsal_settings(0.1, ALPHA, BETA), on_optimizer=True)
# ER-ACE's batch loss leaves the earlier classes' outputs alone, so at SGD's
# 0.1 the last task of split digits (8 and 9) stays at chance beside them.
register_method('er_ace', _er(AsymmetricReplay, 'er_ace'),
                rehearsal_settings(0.03), on_optimizer=True)
