"""benchmarks/fisher_study.py: each variant is the preset's EWC or online
EWC with one kind of Fisher, the command is one the CLI accepts, and a run
that is no result never reads as a number."""

import argparse
import json
import pathlib
import sys

from classp_optax.continual import cli
from classp_optax.continual import make_method

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import fisher_study  # noqa: E402

import _runs  # noqa: E402


def test_each_variant_is_the_presets_penalty_with_one_kind(tmp_path):
  argv = fisher_study.command('permuted-mnist-vdv', 'class', 1, None, 1000)
  plan = cli.plan_runs(cli.build_parser().parse_args(
      [*argv, '--out', str(tmp_path)]))
  for name, preset in fisher_study.PENALTIES.items():
    want = make_method(preset, benchmark='permuted-mnist-vdv',
                       scenario='class').hyperparams
    for kind in fisher_study.KINDS:
      got = plan.runs[f'ewc:{name}-{kind}'][0].method.hyperparams
      assert got == {**want, 'fisher': kind, 'fisher_samples': 1000}
      assert plan.runs[f'ewc:{name}-{kind}'][0].seed == 1


def test_a_seed_that_diverged_gives_no_number():
  run = dict(average_accuracy=0.5, not_learnt=[], diverged=None)
  assert fisher_study.seeds_cell({0: run, 1: dict(run, average_accuracy=0.7)}) == (
      '60.00 ± 10.00 (2)')
  diverged = dict(run, average_accuracy=None,
                  diverged=dict(task=2, step=5, what='the loss'))
  assert fisher_study.seeds_cell({0: run, 1: diverged}).startswith('diverged (seed 1')


def test_one_seed_is_a_value_without_a_spread():
  run = dict(average_accuracy=0.5, not_learnt=[], diverged=None)
  assert fisher_study.seeds_cell({3: run}) == '50.00 (1)'


def test_only_the_chosen_scenarios_run(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(fisher_study, 'run_summary',
                      lambda b, s, seed, args, chosen: calls.append(
                          (b, s, chosen)))
  fisher_study.main(['--benchmarks', 'permuted-mnist-vdv', '--seeds', '0',
                     '--scenarios', 'class', '--out', str(tmp_path)])
  assert calls == [('permuted-mnist-vdv', 'task', False),
                   ('permuted-mnist-vdv', 'domain', False),
                   ('permuted-mnist-vdv', 'class', True)]


def test_the_ablation_runs_the_two_corners_the_map_lacks(tmp_path):
  """benchmarks/fisher_ablation.py: the preset's EWC and online EWC with
  the empirical Fisher on every example and the predicted one on 1,000,
  in one command the CLI accepts."""
  import fisher_ablation  # noqa: PLC0415

  argv = fisher_ablation.command(0, None)
  plan = cli.plan_runs(cli.build_parser().parse_args(
      [*argv, '--out', str(tmp_path)]))
  corners = {}
  for name, preset in (('ewc', 'ewc'), ('online', 'ewc:online')):
    want = make_method(preset, benchmark='permuted-mnist-vdv',
                       scenario='class').hyperparams
    assert (want['fisher'], want['fisher_samples']) == ('predicted', 60000)
    for corner in ('empirical-60000', 'predicted-1000'):
      got = plan.runs[f'ewc:{name}-{corner}'][0].method.hyperparams
      corners[name, corner] = (got.pop('fisher'), got.pop('fisher_samples'))
      assert got == {k: v for k, v in want.items()
                     if k not in ('fisher', 'fisher_samples')}
  assert set(corners.values()) == {('empirical', 60000), ('predicted', 1000)}


def _map_summary(tmp_path, scenario: str, seed: int, runs: dict):
  kept = (tmp_path / 'docs/results/standard-map-permuted-mnist' /
          f'{scenario}-seed{seed}.json')
  kept.parent.mkdir(parents=True, exist_ok=True)
  kept.write_text(json.dumps(dict(results=runs)))
  return kept


def _study(monkeypatch, tmp_path, scenario: str, seed: int):
  """run_summary with run_once replaced: (the summary, the variants it
  trained)."""
  monkeypatch.chdir(tmp_path)
  trained = []

  def run_once(argv, out, progress):
    trained.append(argv[argv.index('--methods') + 1])
    return dict(results=[dict(method=trained[-1], average_accuracy=0.5)])

  monkeypatch.setattr(_runs, 'run_once', run_once)
  args = argparse.Namespace(fisher_samples=None, out=str(tmp_path / 'runs'),
                            no_run=False, data_dir=None)
  return fisher_study.run_summary('permuted-mnist-vdv', scenario, seed,
                                  args), trained


def _map_run(preset: str, scenario: str, **changed) -> dict:
  """A map's run as standard_map.py commits it: the method's hyperparams
  in full, defaults included (separate-mode EWC records decay 1.0)."""
  hyperparams = make_method(preset, benchmark='permuted-mnist-vdv',
                            scenario=scenario).hyperparams
  return dict(hyperparams=json.loads(json.dumps({**hyperparams, **changed})),
              average_accuracy=0.3)


def test_the_runs_the_standard_map_made_are_taken_from_it(monkeypatch,
                                                          tmp_path):
  """The preset's own Fisher is one of the variants: where the map's committed
  run of a seed has exactly a variant's settings, the study takes that run
  and trains only the others: EWC's and online EWC's."""
  kept = _map_summary(tmp_path, 'class', 2, {
      'ewc': _map_run('ewc', 'class'),
      'ewc:online': _map_run('ewc:online', 'class'),
      'si': dict(hyperparams={}, average_accuracy=0.2)})
  summary, trained = _study(monkeypatch, tmp_path, 'class', 2)
  chosen = fisher_study.variants('permuted-mnist-vdv', 'class')
  reused = {'ewc:ewc-predicted': 'ewc', 'ewc:online-predicted': 'ewc:online'}
  assert trained == [label for label in chosen if label not in reused]
  where = kept.relative_to(tmp_path)
  assert summary['reused'] == {k: f'{where} {m}' for k, m in reused.items()}
  assert summary['results']['ewc:ewc-predicted'] == _map_run('ewc', 'class')
  assert set(summary['results']) == set(chosen)


def test_a_map_run_of_other_settings_or_older_code_is_trained_again(
    monkeypatch, tmp_path):
  _map_summary(tmp_path, 'class', 2, {
      'ewc': _map_run('ewc', 'class', strength=7.0)})
  assert _study(monkeypatch, tmp_path, 'class', 2)[0].get('reused') is None
  _map_summary(tmp_path, 'task', 0, {'ewc': _map_run('ewc', 'task')})
  assert ('permuted-mnist-vdv', 'task', 0, 'ewc') in fisher_study.STALE
  assert _study(monkeypatch, tmp_path, 'task', 0)[0].get('reused') is None


def test_a_seed_lands_a_variant_at_a_time(monkeypatch, tmp_path):
  """Each variant is one command whose summary is committed as it ends: a
  seed stopped after two variants keeps them, the table counts them, and
  the next call trains only the others."""
  monkeypatch.chdir(tmp_path)
  chosen = list(fisher_study.variants('split-mnist-vdv', 'task'))
  trained, stop_at = [], [2]

  def run_once(argv, out, progress):
    if len(trained) == stop_at[0]:
      raise KeyboardInterrupt
    trained.append(argv[argv.index('--methods') + 1])
    return dict(results=[dict(method=trained[-1], average_accuracy=0.5,
                              not_learnt=[], diverged=None)])

  monkeypatch.setattr(_runs, 'run_once', run_once)
  args = argparse.Namespace(fisher_samples=None, out=str(tmp_path / 'runs'),
                            no_run=False, data_dir=None)
  try:
    fisher_study.run_summary('split-mnist-vdv', 'task', 4, args)
  except KeyboardInterrupt:
    pass
  kept = json.loads((tmp_path / fisher_study.FOLDER /
                     'split-mnist-vdv-task-seed4.json').read_text())
  assert list(kept['results']) == chosen[:2] == trained
  assert set(kept['commands']) == set(chosen[:2])
  rows = fisher_study.table({('split-mnist-vdv', 'task'): {4: kept}})
  assert sum('50.00 (1)' in row for row in rows) == 2
  stop_at[0] = None
  whole = fisher_study.run_summary('split-mnist-vdv', 'task', 4, args)
  assert trained[2:] == chosen[2:]
  assert list(whole['results']) == chosen
