"""benchmarks/tune.py: a search on a shortened protocol is checked on the
full one (on the embedded split digits, so that it runs in seconds)."""

import json
import pathlib
import sys

import numpy as np
import pytest

from classp_optax.continual import cli
from classp_optax.continual import tuning
from classp_optax.continual.results import RunResult

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import tune  # noqa: E402


def _tune(tmp_path, *extra):
  return tune.main(['split-digits', '--methods', 'adam', '--test-seeds', '0',
                    '--out', str(tmp_path), *extra])


def test_a_shortened_search_is_checked_on_the_full_protocol(tmp_path):
  assert _tune(tmp_path, '--search-steps-per-task', '20', '--check-top',
               '2') == 0
  entry = json.loads((tmp_path / 'split-digits' / 'summary.json').read_text()
                     )['report']['adam']
  check = entry['full_protocol_check']
  grid = tune.space('split-digits', 'adam')
  scores = np.array([-np.inf if s is None or str(k) in entry['rejected'] else s
                     for k, s in enumerate(entry['validation_scores'])])
  top = np.argsort(-scores, kind='stable')[:2]
  assert check['configurations'] == [grid[i] for i in top]
  assert check['configurations'][0] == entry['best']
  assert check['search_scores'] == [scores[i] for i in top]
  # A full-protocol score is the validation score of the configuration
  # trained with the preset's own steps: the command's run agrees.
  for config, full in zip(check['configurations'][:1],
                          check['full_scores'][:1], strict=True):
    out = tmp_path / f'reference-{config["learning_rate"]}'
    assert cli.main(['--benchmark', 'split-digits', '--methods', 'adam',
                     '--set', f'adam.learning_rate={config["learning_rate"]}',
                     '--validation', '0.1', '--seed', '0', '--out', str(out),
                     '--no-progress']) == 0
    result, = json.loads((out / 'results.json').read_text())['results']
    assert full == pytest.approx(result['average_accuracy'], abs=1e-6)
  assert check['holds'] == (int(np.argmax(check['full_scores'])) == 0)


def test_the_check_needs_a_shortened_search(tmp_path, capsys):
  with pytest.raises(SystemExit):
    _tune(tmp_path, '--check-top', '2')
  err = capsys.readouterr().err
  assert '--check-top' in err and '--search-steps-per-task' in err


def _fake_run(accuracy, seed=None, diverged=None):
  """A two-task run whose final tasks score ``accuracy``."""
  return RunResult(
      method='adam', hyperparams={}, task_names=['a', 'b'],
      accuracy=np.array([[accuracy, 0.0], [accuracy, accuracy]]),
      state_bytes=8, wall_time=0.0, majority_accuracy=[0.1, 0.1],
      diverged=diverged, swept={} if seed is None else {'seed': seed})


def test_a_chosen_configuration_that_diverges_on_a_test_seed_is_no_result(
    tmp_path, monkeypatch, capsys):
  grid = tune.space('split-digits', 'adam')

  def fake_tune(method, configs, **kwargs):  # the highest rate scores best
    best = max(configs, key=lambda c: c['learning_rate'])
    return tuning.Tuned(method, configs, [
        _fake_run(0.5 + c['learning_rate']) for c in configs], best, [
            _fake_run(0.9, 0),
            _fake_run(0.9, 1, dict(task=2, step=40, what='loss'))])

  monkeypatch.setattr(tune.tuning, 'tune', fake_tune)
  assert _tune(tmp_path) == 0
  entry = json.loads((tmp_path / 'split-digits' / 'summary.json').read_text()
                     )['report']['adam']
  assert entry['best'] == max(grid, key=lambda c: c['learning_rate'])
  assert entry['failed'] == {'1': 'diverged at task 2, step 40'}
  assert entry['average_accuracy'] is None
  assert '| adam | learning_rate=0.003 | diverged (seed 1' in (
      capsys.readouterr().out)


def test_a_choice_that_no_full_protocol_run_can_score_does_not_hold(
    tmp_path, monkeypatch):
  def fake_tune(method, configs, **kwargs):  # the shortened search
    return tuning.Tuned(method, configs, [
        _fake_run(0.5 + c['learning_rate']) for c in configs], configs[-1],
                        [_fake_run(0.9, 0)])

  def fake_search(method, configs, **kwargs):  # every full run diverges
    return [_fake_run(0.9, None, dict(task=1, step=9, what='loss'))
            for _ in configs]

  monkeypatch.setattr(tune.tuning, 'tune', fake_tune)
  monkeypatch.setattr(tune.tuning, 'search', fake_search)
  assert _tune(tmp_path, '--search-steps-per-task', '5', '--check-top',
               '2') == 0
  check = json.loads((tmp_path / 'split-digits' / 'summary.json').read_text()
                     )['report']['adam']['full_protocol_check']
  assert check['full_scores'] == [None, None]
  assert check['holds'] is False


@pytest.mark.parametrize('k', ['0', '-1'])
def test_check_top_names_its_accepted_range(tmp_path, capsys, k):
  with pytest.raises(SystemExit):
    _tune(tmp_path, '--search-steps-per-task', '5', '--check-top', k)
  assert f'--check-top must be an integer >= 1, got {k}' in (
      capsys.readouterr().err)
