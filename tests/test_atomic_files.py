"""What a run or a study writes is written whole or not at all: a write that
fails half way (a full disk, here a file-size limit) leaves the file as it
was, so that a results.json or a study's summary never loses the runs it
held before."""

import contextlib
import json
import resource
import signal

import numpy as np
import pytest

from classp_optax.continual import atomic
from classp_optax.continual import report
from classp_optax.continual.results import RunResult


@contextlib.contextmanager
def file_size_limit(size: int):
  """Writes past ``size`` bytes fail with EFBIG, as on a full disk (the
  kernel's SIGXFSZ ignored, so that the write raises instead)."""
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, handler)


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path):
  path = tmp_path / 'summary.json'
  atomic.write_text(path, 'the runs so far\n')
  with file_size_limit(64), pytest.raises(OSError):
    atomic.write_text(path, 'x' * 1000)
  assert path.read_text() == 'the runs so far\n'
  assert [p.name for p in tmp_path.iterdir()] == ['summary.json']
  atomic.write_text(path, 'y' * 1000)
  assert path.read_text() == 'y' * 1000


def test_a_new_file_is_made_with_the_usual_permissions(tmp_path):
  path = tmp_path / 'new.json'
  atomic.write_text(path, '{}')
  other = tmp_path / 'plain.json'
  other.write_text('{}')
  assert path.stat().st_mode == other.stat().st_mode


def _run(method: str) -> RunResult:
  return RunResult(method=method, hyperparams={'learning_rate': 0.1},
                   task_names=['a', 'b'], accuracy=np.array([[0.9, 0.5],
                                                             [0.8, 0.9]]),
                   state_bytes=0, wall_time=1.0, majority_accuracy=[0.5, 0.5])


def test_a_failed_write_of_results_json_keeps_the_earlier_runs(tmp_path,
                                                               capsys):
  settings = dict(benchmark='split-digits', seed=0, seeds=None, scenario=None)
  report.write(tmp_path, settings, [_run('sgd')], 'two tasks')
  before = (tmp_path / report.RESULTS).read_text()
  with file_size_limit(len(before) + 100), pytest.raises(OSError):
    report.write(tmp_path, settings, [_run('adam')], 'two tasks')
  assert (tmp_path / report.RESULTS).read_text() == before
  report.write(tmp_path, settings, [_run('adam')], 'two tasks')
  rows = json.loads((tmp_path / report.RESULTS).read_text())['results']
  assert [row['method'] for row in rows] == ['sgd', 'adam']
