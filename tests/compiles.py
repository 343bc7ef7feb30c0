"""How often the engine's compiled functions compile in a run, for the
tests that check that each compiles once, not once a task."""

import collections

from classp_optax.continual import steps

# Taken at import, before a test replaces one with a spy.
ENGINE_PROGRAMS = (steps._donating, steps.start_tasks, steps.end_tasks,
                   steps.finite_states, steps.correct_counts)


def forget_engine_programs() -> None:
  """Empties the engine's compiled functions' caches, so that the next run
  compiles (and logs) each of them rather than finding an earlier test's."""
  for program in (steps._copying(), *ENGINE_PROGRAMS):
    program.clear_cache()


def compiled(caplog) -> collections.Counter:
  """How often each function compiled, by name, from the records
  ``jax.log_compiles`` left in ``caplog``."""
  return collections.Counter(
      r.getMessage().split('(')[1].split(')')[0] for r in caplog.records
      if r.getMessage().startswith('Compiling jit('))
