"""Ctrl-C that stops a run between steps, never inside JAX.

A KeyboardInterrupt raised wherever the interpreter happens to be can land
inside JAX's tracing and compiling or inside a garbage-collection callback
(where Python ignores it), and an interpreter leaving mid-compile can crash
at exit. Within :func:`deferred`, the first SIGINT only asks to stop; the
engine's step callback :func:`check` raises KeyboardInterrupt at the next
step it reports, so the run ends between steps and its checkpoints are
whole. A second SIGINT interrupts at once, as Python does by default.

The handler exists once the command's modules are imported (about 2 s on
2 CPU cores); a SIGINT before that meets Python's own handler, which
prints a traceback and ends the process, with nothing written yet.
"""

import contextlib
import signal
import sys
import threading

_asked = threading.Event()


def _ask_to_stop(signum, frame) -> None:
  del signum, frame
  signal.signal(signal.SIGINT, signal.default_int_handler)
  _asked.set()
  print('\nclassp-continual: stopping after the steps now running '
        '(Ctrl-C again to stop at once)...', file=sys.stderr, flush=True)


@contextlib.contextmanager
def deferred():
  """SIGINT asks the run to stop at its next step (in the main thread; a
  no-op elsewhere); the handler before is restored on leaving. A process
  started with SIGINT ignored (a shell's background job) keeps ignoring it,
  as Python does."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
    yield
    return
  _asked.clear()
  before = signal.signal(signal.SIGINT, _ask_to_stop)
  try:
    yield  # a run that ends before its next step has finished: no raise
  finally:
    signal.signal(signal.SIGINT, before)
    _asked.clear()


def check(*_) -> None:
  """The engine's ``on_step``: KeyboardInterrupt once a stop was asked."""
  if _asked.is_set():
    raise KeyboardInterrupt
