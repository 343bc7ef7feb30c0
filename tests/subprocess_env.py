"""The suite's ``XLA_FLAGS`` for the tests that start a process of their
own: conftest.py's flags, less the ones a test must not pass on."""

import os


def xla_flags_without(*parts: str) -> str:
  """``XLA_FLAGS`` without each flag that contains one of ``parts``
  (``'device_count'``: one CPU device; the compile flags: XLA's defaults)."""
  return ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                  if not any(part in f for part in parts))
