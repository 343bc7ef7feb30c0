"""The catalogue of methods: one file per family, each registering its
methods (and optimizers) when imported.

* :mod:`plain`: Optax's SGD, Adam and AdaGrad (fine-tuning).
* :mod:`classp`: CLASSP with the paper's schedule.
* :mod:`penalties`: EWC and SI on any optimizer.
* :mod:`replay`: experience replay on any optimizer.
* :mod:`joint`: joint training, the upper bound.
* :mod:`rehearsal`: ER, DER, DER++ and ER-ACE from a reservoir buffer.
* :mod:`agem`: A-GEM's projected gradient.
* :mod:`lwf`: Learning without Forgetting's distillation.

A user adds a method with :func:`register_method` and an optimizer with
:func:`register_optimizer`, from their own code; nothing here changes.
"""

from classp_optax.continual.method import Method
from classp_optax.continual.methods import agem  # noqa: F401 (registers)
from classp_optax.continual.methods import classp  # noqa: F401 (registers)
from classp_optax.continual.methods import joint  # noqa: F401 (registers)
from classp_optax.continual.methods import lwf  # noqa: F401 (registers)
from classp_optax.continual.methods import penalties  # noqa: F401 (registers)
from classp_optax.continual.methods import plain  # noqa: F401 (registers)
from classp_optax.continual.methods import rehearsal  # noqa: F401 (registers)
from classp_optax.continual.methods import replay  # noqa: F401 (registers)
from classp_optax.continual.methods.catalogue import METHODS
from classp_optax.continual.methods.catalogue import describe
from classp_optax.continual.methods.catalogue import make_method
from classp_optax.continual.methods.catalogue import parse_settings
from classp_optax.continual.methods.catalogue import register_method
from classp_optax.continual.methods.catalogue import settings_of
from classp_optax.continual.methods.catalogue import split_label
from classp_optax.continual.methods.catalogue import tuning_grid
from classp_optax.continual.methods.optimizers import OPTIMIZERS
from classp_optax.continual.methods.optimizers import register_optimizer
from classp_optax.continual.methods.penalties import StiffnessWarning
from classp_optax.continual.methods.reset import fresh_state

__all__ = [
    'METHODS',
    'OPTIMIZERS',
    'Method',
    'StiffnessWarning',
    'describe',
    'fresh_state',
    'make_method',
    'parse_settings',
    'register_method',
    'register_optimizer',
    'settings_of',
    'split_label',
    'tuning_grid',
]
