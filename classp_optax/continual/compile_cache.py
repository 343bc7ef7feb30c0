"""The command's persistent cache of compiled programs.

A run of ``classp-continual`` compiles a few dozen XLA programs (the train
steps, the hooks' events, the evaluation, the model's initialisers); on a
small benchmark that is a third of its time. The command keeps them in
JAX's persistent compilation cache, so that the same benchmark and method
run again (another seed, a resumed run, the next sitting) loads them
instead: ``$XDG_CACHE_HOME/classp-optax/xla`` (``~/.cache/...`` by default).
A cache the user configured (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``) is left as it is; ``--no-compile-cache`` turns it off. The
library's ``train`` leaves JAX's configuration to its caller.
"""

import os
import pathlib

import jax


def default_folder() -> pathlib.Path:
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'classp-optax' / 'xla'


def enable() -> pathlib.Path | None:
  """Caches every compiled program, however quick to compile, in
  :func:`default_folder`, unless a cache folder is configured already;
  returns the folder it set, or None. Call it before anything compiles."""
  if jax.config.jax_compilation_cache_dir:
    return None
  folder = default_folder()
  jax.config.update('jax_compilation_cache_dir', str(folder))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return folder
