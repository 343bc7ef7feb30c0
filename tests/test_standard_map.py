"""benchmarks/standard_map.py: a run that diverged or left a task unlearnt
never reads as a result in the table."""

import json
import pathlib
import sys

import pytest

from classp_optax.continual import make_method

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import standard_map  # noqa: E402

PUBLISHED = (94.74, 0.05)


def _run(accuracy, diverged=None, not_learnt=()):
  """A method's entry in a per-seed summary, as ``_runs.summary_of`` writes it."""
  return dict(hyperparams={'learning_rate': 1e-4}, average_accuracy=accuracy,
              forgetting=None if accuracy is None else 0.02,
              learning_accuracy=None if accuracy is None else 0.97,
              diverged=diverged, not_learnt=list(not_learnt))


def test_seeds_that_trained_make_a_row_of_mean_std_and_gap():
  line, record = standard_map._row('EWC', {0: _run(0.95), 1: _run(0.97)},
                                   PUBLISHED)
  assert line.startswith('| EWC | 96.00 ± 1.00 (2) | 94.74 ± 0.05 | +1.26 |')
  assert record['average_accuracy'] == pytest.approx([96.0, 1.0])
  assert record['seeds'] == 2


def test_a_diverged_seed_makes_the_row_say_so_and_gives_no_score():
  diverged = dict(task=3, step=17_000, what='the loss')
  line, record = standard_map._row(
      'EWC', {0: _run(0.95), 1: _run(None, diverged=diverged)}, PUBLISHED)
  assert '| EWC | diverged (seed 1: task 3, step 17000) | 94.74 ± 0.05 | – |' \
      in line
  assert '95.00' not in line
  assert record['average_accuracy'] is None
  assert record['failed'] == {'1': 'diverged at task 3, step 17000'}


def test_a_seed_that_left_a_task_unlearnt_gives_no_score():
  line, record = standard_map._row(
      'SI', {0: _run(0.95), 2: _run(0.60, not_learnt=[4, 7])}, PUBLISHED)
  assert '| SI | not learnt (seed 2: tasks 4, 7) |' in line
  assert '77.50' not in line and '–' in line
  assert record['average_accuracy'] is None
  assert record['failed'] == {'2': 'tasks 4, 7 not learnt'}


def test_the_committed_summaries_say_whether_each_run_learnt_every_task():
  folder = pathlib.Path(__file__).parents[1] / 'docs' / 'results'
  paths = sorted(folder.glob('standard-map-*/*-seed*.json'))
  for path in paths:
    for method, run in standard_map.load_summary(path)['results'].items():
      assert isinstance(run['not_learnt'], list), (path, method)


def test_a_tuned_method_whose_test_run_failed_gives_no_score():
  entry = dict(best={'learning_rate': 0.01}, seeds=['0', '1'],
               average_accuracy=None, forgetting=None, learning_accuracy=None,
               failed={'1': 'tasks 3 not learnt'})
  line, record = standard_map._tuned_row('CLASSP', entry)
  assert line == ('| CLASSP (tuned) | not learnt (seed 1: tasks 3) | – | – | '
                  '– | – |')
  assert record['average_accuracy'] is None and record['seeds'] == 2


def test_the_map_is_one_table_of_every_scenario_with_seeds_and_gaps():
  record = {
      'task': {'ewc': dict(average_accuracy=[95.14, 0.0], seeds=1,
                           published=[94.74, 0.05])},
      'domain': {'ewc': dict(average_accuracy=[95.0, 0.5], seeds=3,
                             published=[94.31, 0.11]),
                 'classp': dict(average_accuracy=[90.0, 1.0], seeds=1,
                                published=None)},
      'class': {'ewc': dict(average_accuracy=None, seeds=1,
                            published=[25.04, 0.50],
                            failed={'0': 'diverged at task 3, step 7'})},
  }
  lines = standard_map.map_table(record)
  assert lines[0] == '| method | task-IL | domain-IL | class-IL |'
  assert lines[2] == ('| EWC | 95.14 (1 seed) vs 94.74: +0.40 | 95.00 ± 0.50 (3) '
                      'vs 94.31: +0.69 | diverged (seed 0: task 3, step 7) |')
  assert lines[3] == '| CLASSP (tuned) | – | 90.00 (1 seed) | – |'
  assert len(lines) == 4


def test_tabling_fewer_runs_never_overwrites_a_fuller_record(
    tmp_path, monkeypatch, capsys):
  # Split MNIST's committed record holds rows whose per-seed summaries are
  # not committed: tabling what exists must not drop them.
  monkeypatch.chdir(tmp_path)
  record = tmp_path / 'docs/results/standard-map-split-mnist.json'
  record.parent.mkdir(parents=True)
  fuller = {'scenarios': {'task': {'ewc': {'average_accuracy': [97.9, 0.7]}}}}
  record.write_text(json.dumps(fuller))
  assert standard_map.main(['--no-run']) == 0
  assert json.loads(record.read_text()) == fuller
  out = capsys.readouterr().out
  assert 'kept docs/results/standard-map-split-mnist.json' in out
  assert 'task/ewc' in out
  # Written where asked.
  assert standard_map.main(['--no-run', '--record', 'elsewhere.json']) == 0
  assert json.loads((tmp_path / 'elsewhere.json').read_text())['scenarios'][
      'task'] == {}


def test_scenarios_picks_which_to_run_and_names_the_accepted_ones(
    tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert standard_map.main(['--benchmark', 'permuted-mnist-vdv', '--scenarios',
                            'class', '--no-run', '--record', 'r.json']) == 0
  assert list(json.loads((tmp_path / 'r.json').read_text())['scenarios']) == [
      'class']
  with pytest.raises(SystemExit):
    standard_map.main(['--scenarios', 'task,clas', '--no-run'])
  assert "--scenarios: 'clas' is not one of task, domain, class" in (
      capsys.readouterr().err)


def test_replay_rows_are_the_replay_methods_that_ran(tmp_path):
  runs = [dict(_run(0.9), method='replay:b10', swept={'seed': s})
          for s in (0, 1)]
  folder = tmp_path / 'replay-split-mnist-vdv'
  folder.mkdir()
  (folder / 'adam-task.json').write_text(json.dumps({'results': runs}))
  replayed = standard_map.replayed('split-mnist-vdv', 'task', tmp_path)
  assert list(replayed) == ['replay:b10'] and list(replayed['replay:b10']) == [
      0, 1]


def _summary(hyperparams_by_method):
  return dict(command='classp-continual ...', results={
      method: dict(_run(0.9), hyperparams=h)
      for method, h in hyperparams_by_method.items()})


def _now(method, scenario='class'):
  return json.loads(json.dumps(make_method(
      method, benchmark='permuted-mnist-vdv', scenario=scenario).hyperparams))


def test_a_row_run_at_settings_the_preset_no_longer_gives_is_marked():
  old_ewc = {k: v for k, v in _now('ewc').items() if k != 'fisher'}
  summary = _summary({'ewc': old_ewc, 'si': _now('si')})
  stale = standard_map.stale_methods(summary, 'permuted-mnist-vdv', 'class')
  assert stale == {'ewc': {'fisher': (None, 'predicted')}}


def test_rerun_stale_trains_only_the_stale_methods_and_replaces_their_rows(
    tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  path = standard_map.summary_path('permuted-mnist-vdv', 'class', 0)
  path.parent.mkdir(parents=True)
  current = {m: _now(m) for m in standard_map.BASELINES}
  stale = dict(current, ewc={**current['ewc'], 'fisher': 'empirical'})
  path.write_text(json.dumps(_summary(stale)))
  trained = []

  def run_and_keep(argv, out, summary_path):
    trained.append(argv[argv.index('--methods') + 1])
    return dict(command='classp-continual ' + ' '.join(argv), results={
        'ewc': dict(_run(0.25), hyperparams=current['ewc'])})

  monkeypatch.setattr(standard_map, 'run_and_keep', run_and_keep)
  base = ['--benchmark', 'permuted-mnist-vdv', '--scenarios', 'class',
          '--seeds', '0', '--record', 'r.json']
  assert standard_map.main(base + ['--no-run']) == 0
  out = capsys.readouterr().out
  assert '| EWC † |' in out and 'fisher=empirical (the preset now: predicted)' \
      in out and trained == []
  assert standard_map.main(base + ['--rerun-stale']) == 0
  assert trained == ['ewc']
  merged = json.loads(path.read_text())
  assert merged['results']['ewc']['average_accuracy'] == 0.25
  assert merged['results']['si'] == _summary(stale)['results']['si']
  assert '†' not in capsys.readouterr().out.split('Every scenario')[0]
