"""Learning without Forgetting on any optimizer: distillation to the model
as it was when the task began, on the current task's examples; no buffer.

Li & Hoiem, "Learning without Forgetting" (ECCV 2016; TPAMI 2017), as the
DER paper's code runs it (aimagelab/mammoth, ``models/lwf.py``). From the
second task on, each step adds

    alpha * -mean_i sum_c p_c(x_i) log q_c(x_i)

where ``p`` is the softmax at temperature ``temperature`` of the earlier
model's outputs and ``q`` that of the model's, both over the outputs of
the earlier tasks' targets (every output of a shared domain head); and
every step adds ``l2 * sum(w^2)`` over all weights (their ``wd_reg``).
Their code also trains the new classes' output layer alone for an epoch
before each task (a warm start of the new outputs, which leaves the
earlier outputs, and so the distillation targets, as they were); this
hook does not.
"""

import jax
import jax.numpy as jnp
import numpy as np

from classp_optax.continual import hooks as hooklib
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate
from classp_optax.continual.methods.rehearsal import rehearsal_method
from classp_optax.continual.settings import non_negative
from classp_optax.continual.settings import positive
from classp_optax.continual.steps import MASKED_LOGIT


def earlier_outputs(tasks: list) -> np.ndarray:
  """Row ``t``: the outputs that are targets of tasks ``0 .. t - 1``."""
  rows = np.zeros((len(tasks), tasks[0].num_outputs), bool)
  for t in range(1, len(tasks)):
    rows[t] = rows[t - 1]
    rows[t, tasks[t - 1].targets()] = True
  return rows


def distillation(teacher, student, mask, temperature) -> jax.Array:
  """The mean cross-entropy from the teacher's softened outputs to the
  student's, over the outputs ``mask`` names."""
  soft = lambda z: jnp.where(mask, z, MASKED_LOGIT) / temperature  # noqa: E731
  targets = jax.nn.softmax(soft(teacher))
  return -jnp.mean(jnp.sum(jnp.where(mask, targets * jax.nn.log_softmax(
      soft(student)), 0.0), axis=-1))


class Distillation(hooklib.Hook):
  """LwF's teacher (the weights at the task's start) and its loss term."""

  alpha: float = 1.0
  temperature: float = 2.0
  l2: float = 0.0

  def init(self, params, seed, tasks):
    del seed
    return params, earlier_outputs(tasks)

  def start_task(self, state, task, tx):
    del task, tx
    return state._replace(extra=(state.params, state.extra[1]))

  def loss(self, extra, step):
    teacher_params, earlier = extra
    b, mask = step.stream, earlier[step.data.task]
    teacher = jax.lax.stop_gradient(step.model.outputs(
        teacher_params, step.inputs[:b]))
    term = self.alpha * jnp.where(
        jnp.any(mask), distillation(teacher, step.outputs[:b], mask,
                                    self.temperature), 0.0)
    squares = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(step.params))
    return term + self.l2 * squares, extra


def lwf_method(alpha, temperature, l2, **values):
  weights = dict(alpha=alpha, temperature=temperature, l2=l2)
  return rehearsal_method('lwf', Distillation(**weights), weights, values)


register_method('lwf', lwf_method, (
    non_negative('alpha', 1.0, 'weight of the distillation', (0.3, 1.0, 3.0)),
    positive('temperature', 2.0, 'softmax temperature of the distillation'),
    non_negative('l2', 0.0, 'weight of the squared weights in the loss'),
    learning_rate(0.1, (0.01, 0.03, 0.1, 0.3)),
    optimizers.optimizer_setting('sgd'),
), on_optimizer=True)
