"""Test set-up: 8 simulated CPU devices, set before JAX is imported."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
)


def _compile_for_the_suite():
  """XLA:CPU settings that compile faster, unless ``CLASSP_TESTS_XLA_DEFAULTS``
  is set; a setting the user chose in ``XLA_FLAGS`` is kept.

  Most of the suite's time is XLA compiling some 2,600 small programs, each
  once, and running each for a few steps. Two flags trade speed of the
  compiled code, which the suite hardly uses, for speed of compiling, and the
  suite passes with or without them (docs/results.md, part 1e):

  - ``--xla_backend_optimization_level=1``: LLVM optimises each program at
    level 1, not XLA's 3. The suite takes 28% less time and 30% less CPU (504 s
    against 361 s on 2 cores, 2026-12-08, one sitting).
  - ``--xla_cpu_use_fusion_emitters=false``: the emitters XLA:CPU used
    before its MLIR fusion emitters, 11% less (2026-12-06). Every jaxlib from
    the floor in pyproject.toml (0.5.3) to 0.10 knows it; a later one goes
    without it, since XLA aborts on a flag it does not know.

  The package's own runs, the benchmarks and the README's figures use XLA's
  defaults.
  """
  from importlib import metadata

  if os.environ.get('CLASSP_TESTS_XLA_DEFAULTS'):
    return
  flags = os.environ['XLA_FLAGS']
  if 'xla_backend_optimization_level' not in flags:
    flags += ' --xla_backend_optimization_level=1'
  major, minor = (int(p) for p in metadata.version('jaxlib').split('.')[:2])
  if 'xla_cpu_use_fusion_emitters' not in flags and (major, minor) <= (0, 10):
    flags += ' --xla_cpu_use_fusion_emitters=false'
  os.environ['XLA_FLAGS'] = flags


_compile_for_the_suite()
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
