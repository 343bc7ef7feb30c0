"""``python -m classp_optax.continual``: the ``classp-continual`` command."""

import sys

from classp_optax.continual.cli import main

sys.exit(main())
