"""Continual learning with Flax: data, task streams, models, the training
engine, the catalogue of methods, metrics, checkpoints, and the
``classp-continual`` command.

Needs the ``continual`` extra: ``pip install "classp-optax[continual]"``.
"""

from classp_optax.continual.config import TrainConfig
from classp_optax.continual.engine import Run
from classp_optax.continual.engine import train
from classp_optax.continual.hooks import Hook
from classp_optax.continual.method import Method
from classp_optax.continual.methods import make_method
from classp_optax.continual.methods import register_method
from classp_optax.continual.methods import register_optimizer
from classp_optax.continual.results import RunResult
from classp_optax.continual.settings import Setting
from classp_optax.continual.streams import Task
from classp_optax.continual.tuning import Tuned
from classp_optax.continual.tuning import tune

__all__ = [
    'Hook',
    'Method',
    'Run',
    'RunResult',
    'Setting',
    'Task',
    'TrainConfig',
    'Tuned',
    'make_method',
    'register_method',
    'register_optimizer',
    'train',
    'tune',
]
