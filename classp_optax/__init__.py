"""CLASSP for Optax, with EWC and SI as the baselines to beat.

The core (this package's top level) depends on JAX and Optax only; the
continual-learning toolkit in :mod:`classp_optax.continual` adds Flax.
"""

from classp_optax._classp import ClasspState
from classp_optax._classp import classp
from classp_optax._classp import default_accumulator_dtype
from classp_optax._classp import scale_by_classp
from classp_optax._diagnostics import ClasspStats
from classp_optax._diagnostics import FrozenWeightsWarning
from classp_optax._diagnostics import check_capacity
from classp_optax._diagnostics import classp_stats
from classp_optax._diagnostics import find_classp_state
from classp_optax._diagnostics import threshold_for
from classp_optax._diagnostics import tree_bytes
from classp_optax._ewc import EWC_MODES
from classp_optax._ewc import EwcState
from classp_optax._ewc import add_ewc_penalty
from classp_optax._ewc import consolidate_ewc
from classp_optax._ewc import empirical_fisher
from classp_optax._hyperparams import set_hyperparams
from classp_optax._si import SiState
from classp_optax._si import add_si_penalty
from classp_optax._si import consolidate_si

__version__ = '0.1.0'

__all__ = [
    'EWC_MODES',
    'EwcState',
    'SiState',
    'add_ewc_penalty',
    'add_si_penalty',
    'consolidate_ewc',
    'consolidate_si',
    'empirical_fisher',
    'ClasspState',
    'ClasspStats',
    'FrozenWeightsWarning',
    'check_capacity',
    'classp',
    'classp_stats',
    'default_accumulator_dtype',
    'find_classp_state',
    'scale_by_classp',
    'set_hyperparams',
    'threshold_for',
    'tree_bytes',
]
