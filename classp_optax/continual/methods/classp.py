"""CLASSP with the paper's schedule: plain steps on the first tasks, then
decayed ones. CLASSP is also an optimizer of the table, under a penalty,
replay or joint training (``--set ewc.optimizer=classp``).

Its schedule sets injected hyperparameters (``optax.inject_hyperparams``,
:func:`classp_optax.set_hyperparams`) at each task's start, so the train
step compiles once per run.
"""

import jax.numpy as jnp
import numpy as np

from classp_optax import FrozenWeightsWarning
from classp_optax import classp
from classp_optax import classp_stats
from classp_optax import set_hyperparams
from classp_optax.continual import hooks as hooklib
from classp_optax.continual.method import Method
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate
from classp_optax.continual.settings import Flag
from classp_optax.continual.settings import Integer
from classp_optax.continual.settings import Real
from classp_optax.continual.settings import Setting
from classp_optax.continual.settings import how_to_set
from classp_optax.continual.settings import non_negative
from classp_optax.continual.settings import positive

THRESHOLD = non_negative('threshold', 0.0, "CLASSP's gate: a weight moves "
                         'only where g*g > threshold')
POWER = positive('power', 1.0, "CLASSP's p: grad_sum += |g|**p, steps "
                 'divided by its p-th root')
EPS = non_negative('eps', 1e-5, "added to CLASSP's grad_sum inside the root")


class CapacityUsed(hooklib.Hook):
  """Records CLASSP's capacity used (the fraction of weights ever updated)
  after each task."""

  def readouts(self, state):
    return {'capacity_used': classp_stats(state.opt_state).capacity_used}

  def warnings(self, values, t, label, trains_after):
    del trains_after
    if values['capacity_used'] > 0:
      return []
    return [(FrozenWeightsWarning, (
        f'{label}: after task {t}, CLASSP has moved no weight (capacity used '
        '0): every g*g was at or below its threshold. Lower it '
        f'({how_to_set(label, "threshold")}); '
        'classp_optax.threshold_for(grads, fraction) chooses one from '
        'gradients.'))]


def _classp(learning_rate, threshold, power, eps):
  return classp(learning_rate, threshold=threshold, power=power, eps=eps)


# CLASSP's power picks its compiled path (1 and 2 take no ``pow``).
# Under a penalty or replay, CLASSP decays from the first step: the settings
# tuned for replay on it on split MNIST (docs/results.md, part 2.5b).
optimizers.register_optimizer(
    'classp', _classp, (THRESHOLD, POWER, EPS), static_args=('power',),
    hooks=(CapacityUsed(),),
    defaults=dict(learning_rate=0.01, threshold=1e-5, power=2.0))


class ClasspSchedule(hooklib.Hook):
  """CLASSP's paper schedule: plain steps before ``decay_from_task``, then
  decayed ones with the later learning rate and threshold."""

  learning_rate: float
  threshold: float
  later_learning_rate: float
  later_threshold: float
  decay_from_task: int

  def hyperparams_for_task(self, task):
    """The injected values for task ``task`` (an int, or traced)."""
    decayed = jnp.asarray(task) >= self.decay_from_task
    return dict(
        learning_rate=jnp.where(decayed, self.later_learning_rate,
                                self.learning_rate),
        threshold=jnp.where(decayed, self.later_threshold, self.threshold),
        apply_decay=decayed)

  def start_task(self, state, task, tx):
    return state._replace(opt_state=set_hyperparams(
        state.opt_state, **self.hyperparams_for_task(task)))


def classp_method(learning_rate, threshold, power, eps, decay_from_task,
                  later_threshold, later_learning_rate, relative_threshold
                  ) -> Method:
  """CLASSP with the paper's schedule.

  Tasks before ``decay_from_task`` take plain steps (``apply_decay=False``)
  with ``threshold``; later tasks take decayed steps with ``later_threshold``
  and ``later_learning_rate`` (each defaulting to the first task's value when
  None). ``decay_from_task=0`` decays from the start. With
  ``relative_threshold`` both thresholds are multiples of each tensor's mean
  squared gradient (see :func:`classp_optax.scale_by_classp`).
  """
  hyperparams = dict(
      learning_rate=learning_rate, threshold=threshold, power=power, eps=eps,
      decay_from_task=decay_from_task, later_threshold=later_threshold,
      later_learning_rate=later_learning_rate,
      relative_threshold=relative_threshold)
  schedule = ClasspSchedule(
      learning_rate=learning_rate, threshold=threshold,
      later_learning_rate=(learning_rate if later_learning_rate is None
                           else later_learning_rate),
      later_threshold=threshold if later_threshold is None else later_threshold,
      decay_from_task=decay_from_task)
  # One transform for every task; the schedule lives in its state.
  # Its values are NumPy arrays (apply_decay injected as a number, not a
  # static flag): a JAX array would be one buffer that every init puts in
  # its state, and donating one run's state would delete it from the next's.
  return Method.injected(
      'classp', classp, hooks=(schedule, CapacityUsed()),
      static_args=('power',), hyperparams=hyperparams, power=power, eps=eps,
      relative_threshold=relative_threshold, **{
          name: np.asarray(value)
          for name, value in schedule.hyperparams_for_task(0).items()})


register_method('classp', classp_method, (
    learning_rate(0.1, (3e-4, 1e-3, 3e-3)),
    THRESHOLD.but(grid=(1e-5, 1e-3)),
    POWER.but(grid=(2.0,)),
    EPS,
    Setting('decay_from_task', 1, 'the first task with decayed steps '
            "(CLASSP's apply_decay); earlier tasks take plain steps",
            Integer(0), grid=(0,)),
    Setting('later_threshold', 0.0, 'the threshold from decay_from_task on '
            "(None: the first task's)", Real(0.0, high_open=True,
                                             optional=True), grid=(None,)),
    Setting('later_learning_rate', None, 'the learning rate from '
            "decay_from_task on (None: the first task's)",
            Real(0.0, low_open=True, high_open=True, optional=True)),
    Setting('relative_threshold', False, 'threshold as a multiple of '
            "each tensor's mean g*g", Flag()),
))
