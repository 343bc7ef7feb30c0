"""Ctrl-C at any moment of a run (importing, compiling, training, between
tasks, checkpointing) ends it with exit code 130 and the command that
resumes it, never a crash; interrupted again and again, the run resumed
to its end gives what an uninterrupted run gives."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ARGV = ['--benchmark', 'split-digits', '--methods', 'classp',
        '--no-progress', '--checkpoint-every', '2', '--epochs', '1']
# Seconds after the imports: during the compiles, the steps and the
# checkpoints of a fresh process, and of processes that restore one first.
MOMENTS = (0.2, 1.2, 2.5, 4.0)


def _command(out, *extra):
  return [sys.executable, '-m', 'classp_optax.continual', *ARGV, '--out',
          str(out), *extra]


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')


def _interrupted(out, after: float, resume: bool):
  """The command, sent SIGINT ``after`` seconds in: exit code, stderr."""
  process = subprocess.Popen(
      _command(out, *(['--resume'] if resume else [])), env=_env(),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      # A shell's background jobs ignore SIGINT; a user's terminal does not.
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  time.sleep(after)
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=120)
  return process.returncode, err


def _accuracies(out) -> dict:
  saved = json.loads((out / 'results.json').read_text())
  return {r['method']: np.array(r['accuracy']) for r in saved['results']}


def _import_seconds() -> float:
  """How long the command's imports take here and now: a SIGINT before
  they end meets Python's own handler (see interrupts.py)."""
  start = time.monotonic()
  subprocess.run([sys.executable, '-c', 'import classp_optax.continual.cli'],
                 env=_env(), check=True)
  return time.monotonic() - start


def test_ctrl_c_at_many_moments_never_crashes_and_resumes_exactly(tmp_path):
  imports = 1.5 * _import_seconds() + 0.5
  reference = subprocess.run(_command(tmp_path / 'whole'), env=_env(),
                             capture_output=True, text=True, timeout=300)
  assert reference.returncode == 0, reference.stderr
  out = tmp_path / 'interrupted'
  codes = []
  for k, after in enumerate(MOMENTS):
    code, err = _interrupted(out, imports + after, resume=k > 0)
    codes.append(code)
    assert code in (0, 130), (after, code, err)  # 139 would be a crash
    assert 'Traceback' not in err and 'Fatal Python error' not in err, err
    if code == 130:
      assert '--resume' in err, err
  assert 130 in codes
  finished = subprocess.run(_command(out, '--resume'), env=_env(),
                            capture_output=True, text=True, timeout=300)
  assert finished.returncode == 0, finished.stderr
  whole, resumed = _accuracies(tmp_path / 'whole'), _accuracies(out)
  assert whole.keys() == resumed.keys()
  for method, accuracy in whole.items():
    np.testing.assert_array_equal(resumed[method], accuracy, err_msg=method)
