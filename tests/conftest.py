"""Test set-up: 8 simulated CPU devices, set before JAX is imported."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
)


def _compile_with_the_older_cpu_emitters():
  """XLA:CPU's older fusion emitters, unless ``CLASSP_TESTS_XLA_DEFAULTS``
  is set or the user chose the emitters in ``XLA_FLAGS``.

  Most of the suite's time is XLA compiling some 2,600 small programs, each
  once. With ``--xla_cpu_use_fusion_emitters=false`` XLA:CPU compiles them
  with the emitters it used before its MLIR fusion emitters, and the whole
  suite takes 11% less time and CPU (467 s against 416 s on 2 cores,
  measured 2026-12-06 in one sitting); the suite passes with either. The
  package's own runs, the benchmarks and the README's figures use XLA's
  defaults. Every jaxlib from the floor in pyproject.toml (0.5.3) to 0.10
  knows the flag; a later one runs the suite at its defaults, since XLA
  aborts on a flag it does not know.
  """
  from importlib import metadata

  flags = os.environ['XLA_FLAGS']
  major, minor = (int(p) for p in metadata.version('jaxlib').split('.')[:2])
  if (os.environ.get('CLASSP_TESTS_XLA_DEFAULTS')
      or 'xla_cpu_use_fusion_emitters' in flags or (major, minor) > (0, 10)):
    return
  os.environ['XLA_FLAGS'] = flags + ' --xla_cpu_use_fusion_emitters=false'


_compile_with_the_older_cpu_emitters()
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
