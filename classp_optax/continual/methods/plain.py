"""Optax's SGD, Adam and AdaGrad: optimizers of the table, and methods of
their own (fine-tuning, the lower bound).
"""

import dataclasses

import optax

from classp_optax.continual.method import Method
from classp_optax.continual.methods import optimizers
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.settings import Real
from classp_optax.continual.settings import Setting
from classp_optax.continual.settings import positive

MOMENTUM = Setting('momentum', 0.0, "SGD's momentum",
                   Real(0.0, 1.0, high_open=True))


def learning_rate(default: float, grid=()) -> Setting:
  return positive('learning_rate', default, 'step size', grid)


def _sgd(learning_rate, momentum=None):
  return optax.sgd(learning_rate, momentum=momentum)


def _sgd_bound(settings: dict) -> float:
  """Heavy-ball SGD on a quadratic of curvature k is stable while
  ``lr * k < 2 (1 + momentum)``."""
  return 2.0 * (1.0 + settings['momentum'])


optimizers.register_optimizer(
    'sgd', _sgd, (MOMENTUM,), stiffness_bound=_sgd_bound,
    prepare=lambda settings: dict(momentum=settings['momentum'] or None),
    defaults=dict(learning_rate=0.03))
optimizers.register_optimizer('adam', optax.adam,
                              defaults=dict(learning_rate=1e-3))
optimizers.register_optimizer('adagrad', optax.adagrad,
                              defaults=dict(learning_rate=0.03))


def optimizer_method(optimizer: str):
  """The factory of the method that is optimizer ``optimizer`` alone; its
  records hold the learning rate and the optimizer's settings (the name is
  the method's)."""

  def factory(learning_rate, **settings) -> Method:
    method, _ = optimizers.on_optimizer(
        optimizer, optimizers.build,
        dict(settings, optimizer=optimizer, learning_rate=learning_rate))
    return dataclasses.replace(method, hyperparams=dict(
        learning_rate=learning_rate, **settings))
  return factory


register_method('sgd', optimizer_method('sgd'), (
    learning_rate(0.03, (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)), MOMENTUM))
register_method('adam', optimizer_method('adam'), (
    learning_rate(1e-3, (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)),))
register_method('adagrad', optimizer_method('adagrad'), (
    learning_rate(0.03, (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),))
