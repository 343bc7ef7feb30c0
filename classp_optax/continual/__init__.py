"""Continual learning with Flax: data, task streams, models, the training loop,
metrics, checkpoints, and the ``classp-continual`` command.

Needs the ``continual`` extra: ``pip install "classp-optax[continual]"``.
"""

from classp_optax.continual.loop import RunResult
from classp_optax.continual.loop import TrainConfig
from classp_optax.continual.loop import train_continual
from classp_optax.continual.methods import Method
from classp_optax.continual.methods import make_method
from classp_optax.continual.streams import Task

__all__ = [
    'Method',
    'RunResult',
    'Task',
    'TrainConfig',
    'make_method',
    'train_continual',
]
