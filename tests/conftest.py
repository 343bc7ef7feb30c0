"""Test set-up: 8 simulated CPU devices, set before JAX is imported."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import hypothesis  # noqa: E402

hypothesis.settings.register_profile(
    'default', max_examples=60, deadline=None, derandomize=True
)
hypothesis.settings.register_profile('thorough', max_examples=1000, deadline=None)
hypothesis.settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))


def _share_compiled_programs():
  """One persistent compilation cache for this pytest run and its subprocesses.

  Most of the suite's time is XLA compiling the same small programs again in
  other tests, xdist workers and the command's subprocesses. The controller
  makes a fresh folder (workers and subprocesses inherit the variable), so a
  run never reads a cache it did not write, and removes it at exit. A cache
  the user set is kept.
  """
  if 'JAX_COMPILATION_CACHE_DIR' in os.environ:
    return
  import atexit
  import shutil
  import tempfile

  folder = tempfile.mkdtemp(prefix='classp-optax-tests-xla-')
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  import sys
  if 'jax' in sys.modules:  # a plugin imported it before the variables
    import jax
    jax.config.update('jax_compilation_cache_dir', folder)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


_share_compiled_programs()


def pytest_xdist_auto_num_workers(config):
  """``-n auto``: one worker more than the cores. Most of a test here is XLA
  compiling (one thread) between short runs and subprocesses, so a core
  would idle at times under one worker each: on 2 cores, 3 workers take the
  suite from 427 s to 386 s (measured 2026-12-06 in one sitting)."""
  del config
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count() or 1)
  return cores + 1
