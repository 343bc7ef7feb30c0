"""``python -m classp_optax.continual``: the ``classp-continual`` command."""

from classp_optax.continual.cli import entry

entry()
