"""Ctrl-C at any moment of a run after its imports (building and compiling,
training, checkpointing, resuming) ends it with exit code 130 and the
command that resumes it, never a crash; interrupted again and again, the
run resumed to its end gives what an uninterrupted run gives. (A Ctrl-C
during the imports meets Python's own handler: see interrupts.py.)"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from classp_optax.continual import interrupts
from tests.subprocess_env import xla_flags_without

ARGV = ['--benchmark', 'split-digits', '--methods', 'classp', '--seeds', '0,1',
        '--no-progress', '--epochs', '2']
# The interrupted runs checkpoint often; the uninterrupted one only after
# each task, which must not change what it learns.
OFTEN = ('--checkpoint-every', '5')
# When each SIGINT is sent: a moment after the output folder appears (the
# run is building its data and compiling), then moments after a resumed
# process writes its first new checkpoint (it is training and checkpointing).
MOMENTS = (('folder', 0.2), ('checkpoint', 0.0), ('checkpoint', 0.7))


# A shell's background jobs ignore SIGINT; a user's terminal does not. The
# child restores SIGINT's default, then becomes the command (exec keeps it),
# so that this multithreaded process never forks (a preexec_fn would).
_AS_FROM_A_TERMINAL = (
    'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
    'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])')


def _command(out, *extra):
  return [sys.executable, '-c', _AS_FROM_A_TERMINAL, '-m',
          'classp_optax.continual', *ARGV, '--out', str(out), *extra]


def _env():
  """One CPU device, compiled as the rest of the suite (conftest.py)."""
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=xla_flags_without('device_count'))


def _checkpoints(out) -> set:
  folder = out / 'checkpoints' / 'classp'
  return set(folder.iterdir()) if folder.exists() else set()


def _interrupted(out, wait_for: str, after: float, resume: bool):
  """The command, sent SIGINT ``after`` seconds after ``wait_for`` (its
  output folder, or a checkpoint it wrote): exit code, stderr."""
  before = _checkpoints(out)
  process = subprocess.Popen(
      _command(out, *OFTEN, *(['--resume'] if resume else [])), env=_env(),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 120
  while process.poll() is None and time.monotonic() < deadline and not (
      out.exists() if wait_for == 'folder' else _checkpoints(out) - before):
    time.sleep(0.01)
  time.sleep(after)
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=120)
  return process.returncode, err


def _accuracies(out) -> dict:
  saved = json.loads((out / 'results.json').read_text())
  return {r['method']: np.array(r['accuracy']) for r in saved['results']}


def test_ctrl_c_at_many_moments_never_crashes_and_resumes_exactly(tmp_path):
  reference = subprocess.run(_command(tmp_path / 'whole'), env=_env(),
                             capture_output=True, text=True, timeout=300)
  assert reference.returncode == 0, reference.stderr
  out = tmp_path / 'interrupted'
  codes = []
  for k, (wait_for, after) in enumerate(MOMENTS):
    code, err = _interrupted(out, wait_for, after, resume=k > 0)
    codes.append(code)
    assert code in (0, 130), (wait_for, after, code, err)  # 139: a crash
    assert 'Traceback' not in err and 'Fatal Python error' not in err, err
    if code == 130:  # the command that resumes it, the sweep's included
      assert '--resume' in err and '--seeds 0,1' in err, err
  assert codes.count(130) >= len(MOMENTS) - 1, codes
  finished = subprocess.run(_command(out, *OFTEN, '--resume'), env=_env(),
                            capture_output=True, text=True, timeout=300)
  assert finished.returncode == 0, finished.stderr
  whole, resumed = _accuracies(tmp_path / 'whole'), _accuracies(out)
  assert whole.keys() == resumed.keys()
  for method, accuracy in whole.items():
    np.testing.assert_array_equal(resumed[method], accuracy, err_msg=method)


def _sigint_asks_to_stop() -> bool:
  """Whether a SIGINT sent inside :func:`interrupts.deferred` asks the run
  to stop (its next ``check`` raises KeyboardInterrupt)."""
  with interrupts.deferred():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs between bytecodes of this thread
    try:
      interrupts.check()
    except KeyboardInterrupt:
      return True
  return False


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(capsys):
  """A shell starts a script's background jobs with SIGINT ignored, so that
  Ctrl-C at the terminal stops the foreground command only; a run started so
  leaves SIGINT ignored, as Python itself does."""
  assert _sigint_asks_to_stop()  # the default: Ctrl-C asks the run to stop
  assert 'stopping after the steps now running' in capsys.readouterr().err
  before = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    assert not _sigint_asks_to_stop()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
  finally:
    signal.signal(signal.SIGINT, before)
