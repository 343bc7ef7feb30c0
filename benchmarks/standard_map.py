"""The standard map: split or permuted MNIST in the three scenarios, ours
beside the paper.

    python benchmarks/standard_map.py --data-dir ../shared/data
    python benchmarks/standard_map.py --benchmark permuted-mnist-vdv \
        --data-dir ../shared/data --seeds 0 --no-run

Runs fine-tuning ("None": Adam alone), EWC, online EWC, SI and joint training
under van de Ven & Tolias (2019)'s protocol and their settings (the
``split-mnist-vdv`` or ``permuted-mnist-vdv`` benchmark) with each seed of
``--seeds`` in each scenario, and prints one table per scenario: per cell,
our final average test accuracy (mean ± std over the seeds run, and how
many), the paper's (mean ± SEM over their 20 seeds) and the difference.
CLASSP alone, CLASSP under EWC and CLASSP under SI, and experience replay
on CLASSP, enter as tuned by ``benchmarks/tune.py <benchmark>-<scenario>``
once its summary is in ``docs/results/tune-<benchmark>-<scenario>.json``;
replay on Adam at the preset's settings (budgets of 10 and 100 examples a
class) once its runs are in ``docs/results/replay-<benchmark>/``.

Each finished run's summary is kept in
``docs/results/standard-map-<name>/<scenario>-seed<k>.json`` (so that the table
can be made again from the repository), finished runs are reused, and the
script can be stopped and started. ``--no-run`` trains nothing and tables
what exists. It writes ``docs/results/standard-map-<name>.json``.
"""

import argparse
import hashlib
import json
import pathlib
import sys

from classp_optax.continual import atomic
from classp_optax.continual import methods
from classp_optax.continual import metrics
from classp_optax.continual import suites

from _runs import failed_cell
from _runs import failures
from _runs import run_and_keep
from _runs import seed_list
import tune

BASELINES = ('adam', 'ewc', 'ewc:online', 'si', 'joint')
TUNED = ('classp', 'ewc:classp', 'si:classp', 'replay:classp10',
         'replay:classp100')
REPLAYED = ('replay:b10', 'replay:b100')
NAMES = {'adam': 'None (Adam)', 'ewc': 'EWC', 'ewc:online': 'Online EWC',
         'si': 'SI', 'joint': 'Joint (upper bound)', 'classp': 'CLASSP',
         'ewc:classp': 'EWC on CLASSP', 'si:classp': 'SI on CLASSP',
         'replay:b10': 'Replay 10/class on Adam',
         'replay:b100': 'Replay 100/class on Adam',
         'replay:classp10': 'Replay 10/class on CLASSP',
         'replay:classp100': 'Replay 100/class on CLASSP'}

# Average test accuracy (%) after all tasks, mean (± SEM over their 20
# seeds), from van de Ven & Tolias (2019), "Three scenarios for continual
# learning", arXiv 1904.07734v1: Table 4 (split MNIST) and Table 5 (permuted
# MNIST); "Joint" is their "Offline - upper bound" row.
SPLIT_PUBLISHED = {
    'task': {'adam': (87.19, 0.94), 'ewc': (98.64, 0.22),
             'ewc:online': (99.12, 0.11), 'si': (99.09, 0.15),
             'joint': (99.66, 0.02)},
    'domain': {'adam': (59.21, 2.04), 'ewc': (63.95, 1.90),
               'ewc:online': (64.32, 1.90), 'si': (65.36, 1.57),
               'joint': (98.42, 0.06)},
    'class': {'adam': (19.90, 0.02), 'ewc': (20.01, 0.06),
              'ewc:online': (19.96, 0.07), 'si': (19.99, 0.06),
              'joint': (97.94, 0.03)},
}
PERMUTED_PUBLISHED = {
    'task': {'adam': (81.79, 0.48), 'ewc': (94.74, 0.05),
             'ewc:online': (95.96, 0.06), 'si': (94.75, 0.14),
             'joint': (97.68, 0.01)},
    'domain': {'adam': (78.51, 0.24), 'ewc': (94.31, 0.11),
               'ewc:online': (94.42, 0.13), 'si': (95.33, 0.11),
               'joint': (97.59, 0.01)},
    'class': {'adam': (17.26, 0.19), 'ewc': (25.04, 0.50),
              'ewc:online': (33.88, 0.49), 'si': (29.31, 0.62),
              'joint': (97.59, 0.02)},
}
PUBLISHED = {'split-mnist-vdv': SPLIT_PUBLISHED,
             'permuted-mnist-vdv': PERMUTED_PUBLISHED}
TABLES = {'split-mnist-vdv': 'Table 4', 'permuted-mnist-vdv': 'Table 5'}


def map_name(benchmark: str) -> str:
  """The map's name in its folders and records: ``split-mnist`` or
  ``permuted-mnist``."""
  return benchmark.removesuffix('-vdv')


def summary_path(benchmark: str, scenario: str, seed: int) -> pathlib.Path:
  """Where one seed of ``benchmark``'s ``scenario`` is committed."""
  return pathlib.Path(f'docs/results/standard-map-{map_name(benchmark)}/'
                      f'{scenario}-seed{seed}.json')


def load_summary(path: pathlib.Path) -> dict:
  """A committed per-seed summary: {'command': ..., 'results': {method:
  run}}."""
  return json.loads(path.read_text())


def stale_methods(summary: dict, benchmark: str, scenario: str) -> dict:
  """``{method: {setting: (as run, as the preset gives it now)}}`` for each
  method of ``summary`` that ran with other settings than the preset's
  today: its row is not the preset's result until it runs again."""
  stale = {}
  for method, run in summary['results'].items():
    now = json.loads(json.dumps(methods.make_method(
        method, benchmark=benchmark, scenario=scenario).hyperparams))
    was = run['hyperparams']
    if differ := {k: (was.get(k), now.get(k)) for k in {*was, *now}
                  if was.get(k) != now.get(k)}:
      stale[method] = differ
  return stale


def _rerun(benchmark, scenario, seed, summary, stale, args, path) -> dict:
  """The stale methods trained again at today's settings, in a folder of
  their own, and their rows in ``summary`` replaced (written to ``path``)."""
  tag = hashlib.sha256(json.dumps(stale, sort_keys=True, default=repr)
                       .encode()).hexdigest()[:8]
  out = pathlib.Path(args.out) / map_name(benchmark) / scenario / (
      f'seed{seed}-{tag}')
  argv = ['--benchmark', benchmark, '--scenario', scenario,
          '--methods', ','.join(stale), '--seed', str(seed)]
  if args.data_dir:
    argv += ['--data-dir', args.data_dir]
  fresh = run_and_keep(argv, out, out / 'summary.json')
  merged = dict(summary, results={**summary['results'], **fresh['results']},
                commands={**summary.get('commands', {}), **dict.fromkeys(
                    stale, fresh['command'])})
  atomic.write_text(path, json.dumps(merged, indent=2) + '\n')
  return merged


def run_summary(benchmark: str, scenario: str, seed: int, args) -> dict | None:
  """One seed of one scenario: its committed summary, or the run's (run now
  unless ``--no-run``), committed; None if neither exists. With
  ``--rerun-stale``, the methods that ran at other settings than the
  preset's today are trained again and replaced."""
  path = summary_path(benchmark, scenario, seed)
  if path.exists():
    summary = load_summary(path)
    stale = stale_methods(summary, benchmark, scenario)
    if stale and args.rerun_stale and not args.no_run:
      return _rerun(benchmark, scenario, seed, summary, stale, args, path)
    return summary
  out = pathlib.Path(args.out) / map_name(benchmark) / scenario / f'seed{seed}'
  if not (out / 'results.json').exists() and args.no_run:
    return None
  argv = ['--benchmark', benchmark, '--scenario', scenario,
          '--methods', ','.join(BASELINES), '--seed', str(seed)]
  if args.data_dir:
    argv += ['--data-dir', args.data_dir]
  return run_and_keep(argv, out, path)


def tuned(benchmark: str, scenario: str, folder: pathlib.Path) -> dict:
  """The tuned methods' test runs, from tune.py's summary, if it exists."""
  summary = folder / f'tune-{benchmark}-{scenario}.json'
  if not summary.exists():
    return {}
  report = json.loads(summary.read_text())['report']
  return {method: report[method] for method in TUNED if method in report}


def replayed(benchmark: str, scenario: str, folder: pathlib.Path) -> dict:
  """Replay on Adam's runs by method ({seed: run}), if they exist."""
  path = folder / f'replay-{benchmark}' / f'adam-{scenario}.json'
  if not path.exists():
    return {}
  runs = json.loads(path.read_text())['results']
  by_method = {method: {r['swept']['seed']: r for r in runs
                        if r['method'] == method} for method in REPLAYED}
  return {method: seeds for method, seeds in by_method.items() if seeds}


def _stats(values) -> tuple[float, float]:
  return metrics.mean_and_spread(values)


def _ours(mean: float, std: float, seeds: int) -> str:
  """A cell of ours: one seed has no spread to show."""
  if seeds == 1:
    return f'{mean:.2f} (1 seed)'
  return f'{mean:.2f} ± {std:.2f} ({seeds})'


def _row(label: str, runs: dict, published) -> tuple[str, dict]:
  """A table row and its record, from the method's run on each seed
  (``{seed: run}``). A seed that diverged or left a task unlearnt makes
  the row say so, with no score."""
  pub = '–' if published is None else f'{published[0]:.2f} ± {published[1]:.2f}'
  record = dict(seeds=len(runs), published=published,
                hyperparams=next(iter(runs.values()))['hyperparams'])
  if failed := failures(runs):
    record.update(dict.fromkeys(
        ('average_accuracy', 'forgetting', 'learning_accuracy')),
                  failed=failed)
    return f'| {label} | {failed_cell(failed)} | {pub} | – | – | – |', record
  acc = _stats([100 * r['average_accuracy'] for r in runs.values()])
  record.update(average_accuracy=acc,
                forgetting=_stats([r['forgetting'] for r in runs.values()]),
                learning_accuracy=_stats([r['learning_accuracy']
                                          for r in runs.values()]))
  gap = '–' if published is None else f'{acc[0] - published[0]:+.2f}'
  return (f'| {label} | {_ours(*acc, len(runs))} | {pub} | '
          f'{gap} | {record["forgetting"][0]:.3f} | '
          f'{record["learning_accuracy"][0]:.3f} |'), record


def _tuned_row(label: str, r: dict) -> tuple[str, dict]:
  """A row of a method tuned by tune.py, from its summary's entry."""
  seeds = len(r.get('seeds', tune.TEST_SEEDS))
  record = dict(forgetting=r['forgetting'], seeds=seeds, published=None,
                learning_accuracy=r['learning_accuracy'], hyperparams=r['best'])
  if r.get('failed'):
    record.update(average_accuracy=None, failed=r['failed'])
    return (f'| {label} (tuned) | {failed_cell(r["failed"])} | – | – | – | – |'
            ), record
  record['average_accuracy'] = acc = [100 * v for v in r['average_accuracy']]
  return (f'| {label} (tuned) | {_ours(*acc, seeds)} | – | – | '
          f'{r["forgetting"][0]:.3f} | {r["learning_accuracy"][0]:.3f} |'
          ), record


def scenario_table(benchmark: str, scenario: str, args) -> dict:
  """Prints one scenario's table; returns its record."""
  summaries = {seed: s for seed in args.seeds
               if (s := run_summary(benchmark, scenario, seed, args))}
  print(f'\n{scenario}-incremental: average test accuracy (%) after all tasks; '
        'ours: mean ± std (seeds); published: mean ± SEM (20 seeds)\n')
  print('| method | ours | published | ours − published | ours: forgetting '
        '| ours: learning accuracy |')
  print('|---|---|---|---|---|---|')
  rows = {}
  stale = {seed: stale_methods(s, benchmark, scenario)
           for seed, s in summaries.items()}
  for method in BASELINES if summaries else ():
    runs = {seed: s['results'][method] for seed, s in summaries.items()}
    old = sorted(seed for seed in runs if method in stale[seed])
    line, rows[method] = _row(NAMES[method] + ' †' * bool(old), runs,
                              PUBLISHED[benchmark].get(scenario, {}).get(
                                  method))
    if old:
      rows[method]['stale'] = {str(seed): stale[seed][method] for seed in old}
    print(line)
  folder = pathlib.Path(args.summaries)
  for method, runs in replayed(benchmark, scenario, folder).items():
    line, rows[method] = _row(NAMES[method], runs, None)
    print(line)
  for method, r in tuned(benchmark, scenario, folder).items():
    line, rows[method] = _tuned_row(NAMES[method], r)
    print(line)
  if not rows:
    print('(no run yet)')
  for method, row in rows.items():
    for seed, differ in row.get('stale', {}).items():
      print(f'† {NAMES[method]}, seed {seed}: ran with ' + ', '.join(
          f'{k}={"(not recorded)" if was is None else was} (the preset '
          f'now: {now})'
          for k, (was, now) in sorted(differ.items()))
            + '; --rerun-stale trains it again')
  return rows


def _cell(row: dict | None) -> str:
  """One scenario's cell of the map: ours (seeds) vs published: gap."""
  if row is None:
    return '–'
  if row['average_accuracy'] is None:
    return failed_cell(row['failed'])
  ours = _ours(*row['average_accuracy'], row['seeds']) + (
      ' †' if row.get('stale') else '')
  if row['published'] is None:
    return ours
  published = row['published'][0]
  return (f'{ours} vs {published:.2f}: '
          f'{row["average_accuracy"][0] - published:+.2f}')


def map_table(record: dict) -> list[str]:
  """Every scenario's record as one markdown table: a row per method, a
  column per scenario."""
  scenarios = list(record)
  methods = list(dict.fromkeys(m for rows in record.values() for m in rows))
  lines = ['| method | ' + ' | '.join(f'{s}-IL' for s in scenarios) + ' |',
           '|---|' + '---|' * len(scenarios)]
  for method in methods:
    label = NAMES[method] + (' (tuned)' if method in TUNED else '')
    lines.append(f'| {label} | ' + ' | '.join(
        _cell(record[s].get(method)) for s in scenarios) + ' |')
  return lines


def _rows_lost(path: pathlib.Path, record: dict) -> list[str]:
  """The ``scenario/method`` rows of the record at ``path`` that ``record``
  lacks: writing it there would lose them."""
  if not path.exists():
    return []
  old = json.loads(path.read_text())['scenarios']
  return [f'{scenario}/{method}' for scenario, rows in old.items()
          for method in rows if method not in record.get(scenario, {})]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--benchmark', default='split-mnist-vdv',
                      choices=sorted(PUBLISHED))
  parser.add_argument('--data-dir')
  parser.add_argument('--seeds', default='0,1,2', type=seed_list)
  parser.add_argument('--scenarios', help='comma-separated (default: all '
                      'three, task,domain,class)')
  parser.add_argument('--no-run', action='store_true',
                      help='train nothing: table the runs that exist')
  parser.add_argument('--rerun-stale', action='store_true',
                      help='train again the methods of committed summaries '
                           "that ran at other settings than the preset's "
                           'today (marked † in the tables)')
  parser.add_argument('--out', default='results/standard-map')
  parser.add_argument('--summaries', default='docs/results',
                      help="where tune.py's and replay's committed "
                           'summaries are (default %(default)s)')
  parser.add_argument('--record', help='default: docs/results/standard-map-'
                      '<split|permuted>-mnist.json')
  args = parser.parse_args(argv)
  known = suites.SUITES[args.benchmark].scenarios
  scenarios = args.scenarios.split(',') if args.scenarios else known
  for scenario in scenarios:
    if scenario not in known:
      parser.error(f'--scenarios: {scenario!r} is not one of '
                   f'{", ".join(known)}.')
  record = {scenario: scenario_table(args.benchmark, scenario, args)
            for scenario in scenarios}
  print('\nEvery scenario: ours (seeds) vs published: ours − published\n')
  print('\n'.join(map_table(record)))
  path = pathlib.Path(args.record or 'docs/results/standard-map-'
                      f'{map_name(args.benchmark)}.json')
  if lost := ([] if args.record else _rows_lost(path, record)):
    print(f'\nkept {path}: it has rows this table lacks ({", ".join(lost)}; '
          'their per-seed summaries are not here); --record PATH writes '
          'this table elsewhere')
    return 0
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(path, json.dumps(dict(
      command=' '.join(['python', *sys.argv]), seeds=args.seeds,
      source=('van de Ven & Tolias 2019, arXiv 1904.07734v1, '
              f'{TABLES[args.benchmark]}; published values are means ± SEM '
              'over 20 seeds'),
      scenarios=record), indent=2) + '\n')
  print(f'\nwrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
