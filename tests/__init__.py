"""Tests of classp_optax; helpers shared by several test modules."""

import jax

# jax.enable_x64 (JAX 0.6 on) was jax.experimental.enable_x64 before: the
# optimizer's tests also run at the oldest JAX the package allows.
enable_x64 = getattr(jax, 'enable_x64', None)
if enable_x64 is None:
  from jax.experimental import enable_x64  # noqa: F401
