"""Joint training, the usual upper bound: task ``t`` trains on the data of
tasks ``0 .. t`` together, on an optimizer of the table (van de Ven &
Tolias's "offline" and "joint" rows use Adam)."""

from classp_optax.continual import hooks as hooklib
from classp_optax.continual import streams
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.plain import learning_rate


class JointStream(hooklib.Hook):
  """Joint training: task ``t`` trains on tasks ``0 .. t`` together."""

  def train_stream(self, tasks):
    return streams.joint(tasks)


def joint_method(learning_rate, optimizer, **settings):
  values = dict(settings, optimizer=optimizer, learning_rate=learning_rate)
  return optimizers.on_optimizer('joint', optimizers.build, values,
                                 hooks=(JointStream(),))[0]


register_method('joint', joint_method, (
    learning_rate(0.03, (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
    optimizers.optimizer_setting('sgd'),
), on_optimizer=True)
