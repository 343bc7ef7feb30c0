"""Tunes every method with the same budget, on validation data, then tests.

    python benchmarks/tune.py permuted-mnist-10 --data-dir ../shared/data
    python benchmarks/tune.py split-mnist-vdv-domain --data-dir ../shared/data \
        --methods classp,ewc:classp,si:classp  # also permuted-mnist-vdv-*
    python benchmarks/tune.py --list

For each method, every configuration of its grid (6 each: the same budget)
is trained on seed 0 with 10% of the training data held out, and scored by
its final average accuracy on that held-out data; the test sets are never
seen. The grid is one ``--sweep`` (every configuration in one vmapped
program), and the test seeds one ``--seeds`` run. A configuration that
diverged, left a task unlearnt (within 0.05 of its majority-class accuracy:
one that learns too little to forget can score well on average accuracy),
or whose penalty goes past SGD's stability bound before a task it then
trains on (learning rate x largest curvature >= 2) is not a candidate,
whatever it scored. The
best configuration is then run on the test sets with seeds 0, 1 and 2. Each
run lives in ``results/tune/<target>/``; finished runs are not repeated, so
the search can be stopped and started. ``--methods ewc,si`` tunes those
again and keeps the other methods' entries of an earlier summary.

A long protocol can be searched on a shortened one: ``--search-steps-per-task
N`` trains the grid with N steps a task (the test runs keep the full
protocol), and ``--check-top K`` then trains the search's K best
configurations on the full protocol, with the same seed and validation
split, and records whether the choice holds there.
"""

import argparse
import itertools
import json
import pathlib
import sys

import numpy as np

from classp_optax.continual import methods
from classp_optax.continual import metrics
from classp_optax.continual import suites

from _runs import failed_cell
from _runs import failures
from _runs import run_once

TARGETS = {
    'split-digits': ('--benchmark', 'split-digits'),
    'permuted-digits': ('--benchmark', 'permuted-digits'),
    'permuted-mnist-10': ('--benchmark', 'permuted-mnist', '--tasks', '10'),
    'permuted-mnist-20': ('--benchmark', 'permuted-mnist', '--tasks', '20'),
    'split-mnist': ('--benchmark', 'split-mnist'),
    'split-mnist-domain': ('--benchmark', 'split-mnist', '--scenario', 'domain'),
    'split-mnist-class': ('--benchmark', 'split-mnist', '--scenario', 'class'),
    'split-fmnist': ('--benchmark', 'split-fmnist'),
    'mnist-fashion-mlp': ('--benchmark', 'mnist-fashion', '--model', 'mlp'),
}
# The embedded benchmarks in their other scenarios, tuned per scenario.
EMBEDDED_SCENARIOS = {f'{benchmark}-{scenario}': (benchmark, scenario)
                      for benchmark in ('split-digits', 'permuted-digits')
                      for scenario in suites.SUITES[benchmark].scenarios[1:]}
TARGETS.update({target: ('--benchmark', benchmark, '--scenario', scenario)
                for target, (benchmark, scenario)
                in EMBEDDED_SCENARIOS.items()})
# van de Ven & Tolias's presets, one target per scenario: {target:
# (benchmark, scenario)}.
VDV_TARGETS = {f'{benchmark}-{scenario}': (benchmark, scenario)
               for benchmark in ('split-mnist-vdv', 'permuted-mnist-vdv')
               for scenario in suites.SUITES[benchmark].scenarios}
TARGETS.update({target: ('--benchmark', benchmark, '--scenario', scenario)
                for target, (benchmark, scenario) in VDV_TARGETS.items()})
# The targets that are a benchmark as it runs by default, or in one of its
# scenarios: their choices are that benchmark's defaults (in that scenario;
# ``--record`` writes them to tuned.json).
DEFAULT_OF = {
    'split-digits': ('split-digits', None),
    'permuted-digits': ('permuted-digits', None),
    'permuted-mnist-10': ('permuted-mnist', None),
    'split-mnist': ('split-mnist', None),
    'split-fmnist': ('split-fmnist', None),
    **EMBEDDED_SCENARIOS,
}


def _grid(**axes):
  names = list(axes)
  return [dict(zip(names, values, strict=True))
          for values in itertools.product(*axes.values())]


# The methods whose choices are a benchmark's defaults, in the order tuned.
DEFAULT_METHODS = ['classp', 'ewc', 'si', 'adam', 'sgd', 'adagrad', 'replay',
                   'joint']
# Six configurations per method over its main hyperparameters: the grid
# its settings declare (classp_optax.continual.methods).
SPACES = {
    **{name: methods.tuning_grid(name) for name in DEFAULT_METHODS},
    # Labelled variants, tuned only when named in --methods, never recorded
    # as defaults. The relative threshold is a multiple of each tensor's mean
    # squared gradient: 0.5 keeps most weights, 2 the few with the largest.
    'classp:relative': _grid(
        learning_rate=[3e-4, 1e-3, 3e-3], threshold=[0.5, 2.0], power=[2.0],
        decay_from_task=[0], later_threshold=[None], relative_threshold=[True]),
}

# van de Ven & Tolias's protocol: CLASSP alone, under their EWC and SI
# penalties (at their strength for the scenario and 100 or 10 times less),
# and under replay of 10 or 100 examples a class, each with six
# configurations like every other method.
def _vdv_spaces(benchmark: str, scenario: str) -> dict:
  published = suites.SUITES[benchmark].scenario_defaults[scenario]
  ewc_strength = published['ewc']['strength']
  si_strength = published['si']['strength']
  rates = [1e-3, 3e-3, 1e-2]
  classp_settings = dict(optimizer=['classp'], power=[2.0], threshold=[1e-5])
  replay = {f'replay:classp{budget}': _grid(
      learning_rate=rates, threshold=[1e-5, 1e-3], optimizer=['classp'],
      power=[2.0], budget=[budget]) for budget in (10, 100)}
  return {
      'classp': _grid(learning_rate=rates, threshold=[1e-5, 1e-3], power=[2.0],
                      decay_from_task=[0], later_threshold=[None]),
      **replay,
      'ewc:classp': _grid(learning_rate=rates,
                          strength=[ewc_strength / 100, ewc_strength],
                          **classp_settings),
      'si:classp': _grid(learning_rate=rates,
                         strength=[si_strength / 10, si_strength],
                         **classp_settings),
  }


# The DER paper's presets: ER and DER++ on CLASSP at buffers of 200 and 500,
# each with six configurations (learning rate x threshold, power 2), the
# other settings (buffer, draw size, alpha, beta) at the preset's for that
# buffer. ``er:classp`` and ``derpp:classp`` run on CLASSP by their label.
DER_TARGETS = {'split-mnist-der-class': ('split-mnist-der', 'class'),
               'split-mnist-der-task': ('split-mnist-der', 'task'),
               'permuted-mnist-der': ('permuted-mnist-der', None),
               'rotated-mnist-der': ('rotated-mnist-der', None)}
TARGETS.update({target: ('--benchmark', benchmark)
                + (('--scenario', scenario) if scenario else ())
                for target, (benchmark, scenario) in DER_TARGETS.items()})


def _der_spaces(benchmark: str) -> dict:
  defaults = suites.SUITES[benchmark].method_defaults
  spaces = {}
  for method in ('er', 'derpp'):
    for size in (200, 500):
      kept = {name: [value] for name, value in defaults[
          method if size == 200 else f'{method}:500'].items()
              if name != 'learning_rate'}
      spaces[f'{method}:classp' + ('' if size == 200 else '500')] = _grid(
          learning_rate=[3e-3, 1e-2, 3e-2], threshold=[1e-5, 1e-3],
          optimizer=['classp'], power=[2.0], **kept)
  return spaces


TARGET_SPACES = {**{target: _vdv_spaces(*preset)
                    for target, preset in VDV_TARGETS.items()},
                 **{target: _der_spaces(benchmark)
                    for target, (benchmark, _) in DER_TARGETS.items()}}


def space(target: str, method: str) -> list[dict]:
  """The grid of ``method`` on ``target``."""
  spaces = {**SPACES, **TARGET_SPACES.get(target, {})}
  if method not in spaces:
    raise SystemExit(f'no grid for {method} on {target}; grids: '
                     f'{sorted(spaces)}.')
  return spaces[method]
VALIDATION = 0.1
TEST_SEEDS = (0, 1, 2)


def run_folder_name(config: dict) -> str:
  """A run folder's name: its configuration, so a changed grid never reuses
  another configuration's results."""
  return '-'.join(f'{k}={v}' for k, v in config.items())


def _sets(method: str, config: dict) -> list[str]:
  args = []
  for name, value in config.items():
    args += ['--set', f'{method}.{name}={value!r}']
  return args


def _stable(result: dict) -> bool:
  """Whether a run's penalty stayed within SGD's stability bound after every
  task but the last (no training follows that one): a configuration past it,
  or one that diverged, is never chosen."""
  bound = result.get('stiffness_bound')
  return bound is None or all(s < bound for s in result['stiffness'][:-1])


def _candidate(result: dict) -> bool:
  """Whether a configuration may be chosen: it did not diverge, learnt
  every task (a configuration that learns too little to forget can score
  well on average accuracy) and stayed stable."""
  return (result['diverged'] is None and not result['not_learnt']
          and _stable(result))


def _run_sweep(argv: list[str], out: pathlib.Path) -> list[dict]:
  return run_once(argv, out, progress=False)['results']


def _run_grid(base: list[str], method: str, grid: list[dict],
              out: pathlib.Path) -> list[dict]:
  """Every configuration of ``grid`` (a product of axes) in one sweep; the
  results in the grid's order."""
  axes = {name: list(dict.fromkeys(config[name] for config in grid))
          for name in grid[0]}
  assert len(grid) == np.prod([len(v) for v in axes.values()])
  fixed = {name: values[0] for name, values in axes.items() if len(values) == 1}
  swept = {name: values for name, values in axes.items() if len(values) > 1}
  argv = [*base, '--methods', method, *_sets(method, fixed)]
  for name, values in swept.items():
    argv += ['--sweep', f'{method}.{name}=' + ','.join(map(repr, values))]
  results = _run_sweep(argv, out / run_folder_name(dict(
      fixed, **{k: '|'.join(map(str, v)) for k, v in swept.items()})))
  by_values = {tuple(r['swept'].get(name) for name in swept): r
               for r in results}
  return [by_values[tuple(config[name] for name in swept)] for config in grid]


def _record(target: str, report: dict) -> None:
  if target not in DEFAULT_OF:
    raise SystemExit(f'{target} is no benchmark as it runs by default; '
                     f'--record takes one of {sorted(DEFAULT_OF)}.')
  benchmark, scenario = DEFAULT_OF[target]
  records = suites.tuned_defaults()
  record = records.setdefault(benchmark, {})
  if scenario is not None:
    record = record.setdefault('scenarios', {}).setdefault(scenario, {})
  # Methods tuned again replace their entries; the others keep theirs.
  record.update(command=f'python benchmarks/tune.py {target} --data-dir DATA',
                report=f'docs/results/tune-{target}.json',
                methods={**record.get('methods', {}), **{
                    method: r['best'] for method, r in report.items()
                    if method in DEFAULT_METHODS}})
  suites.TUNED_FILE.write_text(json.dumps(records, indent=2) + '\n')
  print(f'recorded the choices as {benchmark}\'s defaults'
        + (f' in the {scenario} scenario' if scenario else '')
        + f' in {suites.TUNED_FILE}')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('target', nargs='?', choices=TARGETS)
  parser.add_argument('--list', action='store_true')
  parser.add_argument('--methods', default=','.join(DEFAULT_METHODS))
  parser.add_argument('--data-dir')
  parser.add_argument('--out', default='results/tune')
  parser.add_argument('--search-steps-per-task', type=int, metavar='N',
                      help='a shortened protocol for the search only: N '
                           'steps per task (the test runs keep the full one)')
  parser.add_argument('--check-top', type=int, metavar='K',
                      help="after a shortened search, train its K best "
                           'configurations on the full protocol with the same '
                           'validation split, and say whether the choice holds')
  parser.add_argument('--test-seeds', default=','.join(map(str, TEST_SEEDS)),
                      help='seeds of the test runs (default %(default)s)')
  parser.add_argument('--record', action='store_true',
                      help="write the choices as the benchmark's defaults "
                           '(classp_optax/continual/tuned.json)')
  return parser


def _score(result: dict) -> float:
  """A search run's validation score; -inf if it may not be chosen."""
  return result['average_accuracy'] if _candidate(result) else float('-inf')


def _full_protocol_check(base: list[str], method: str, configs: list[dict],
                         search_scores: list[float],
                         out: pathlib.Path) -> dict:
  """The best configurations of a shortened search (best first) trained
  again on the full protocol, on the same seed and validation split: the
  choice holds if the first is still a candidate and scores highest."""
  full = [_score(_run_sweep(
      [*base, '--validation', str(VALIDATION), '--seed', '0', '--methods',
       method, *_sets(method, config)], out / run_folder_name(config))[0])
          for config in configs]
  return dict(configurations=configs, search_scores=search_scores,
              full_scores=[s if np.isfinite(s) else None for s in full],
              holds=bool(np.isfinite(full[0]) and int(np.argmax(full)) == 0))


def _test_metrics(tests: list[dict]) -> dict:
  """Mean and std over the test seeds; none if a seed's run diverged or
  left a task unlearnt (``failed`` says which and why)."""
  keys = ('average_accuracy', 'forgetting', 'learning_accuracy')
  if failed := failures({t['swept']['seed']: t for t in tests}):
    return dict(dict.fromkeys(keys), failed=failed)
  return {key: list(metrics.mean_and_spread([t[key] for t in tests]))
          for key in keys}


def tune_method(target: str, method: str, base: list[str], args) -> dict:
  """Searches ``method``'s grid on validation data, tests the best
  configuration on the test seeds; returns its report entry."""
  grid = space(target, method)
  root = pathlib.Path(args.out) / target
  steps = args.search_steps_per_task
  shortened = [] if steps is None else ['--steps-per-task', str(steps)]
  search = _run_grid(
      [*base, *shortened, '--validation', str(VALIDATION), '--seed', '0'],
      method, grid, root / ('search' if steps is None else
                            f'search-{steps}-steps') / method)
  scores = [_score(r) for r in search]
  order = [int(i) for i in np.argsort(scores, kind='stable')[::-1]
           if np.isfinite(scores[i])]
  if not order:
    raise SystemExit(f'{method}: every configuration diverged, left a task '
                     'unlearnt or is past the stability bound of SGD on its '
                     'penalty; widen the grid.')
  best = order[0]
  tests = _run_sweep(
      [*base, '--methods', method, *_sets(method, grid[best]), '--seeds',
       args.test_seeds],
      root / 'test' / method / f'seeds-{args.test_seeds}' / run_folder_name(grid[best]))
  entry = dict(
      best=grid[best],
      validation_scores=[s if np.isfinite(s) else None for s in scores],
      **_test_metrics(tests), state_bytes=tests[0]['state_bytes'],
      seeds=args.test_seeds.split(','), search_steps_per_task=steps)
  if args.check_top:
    top = order[:args.check_top]
    entry['full_protocol_check'] = _full_protocol_check(
        base, method, [grid[i] for i in top], [scores[i] for i in top],
        root / 'check-full-protocol' / method)
  return entry


def _print_table(target: str, report: dict, test_seeds: str) -> None:
  print(f'\n{target}: best of 6 configurations per method on a '
        f'{VALIDATION:.0%} validation split; test over seeds {test_seeds}\n')
  print('| method | chosen configuration | test average accuracy | forgetting '
        '| learning accuracy | state bytes |')
  print('|---|---|---|---|---|---|')
  for method, r in report.items():
    grid = space(target, method)
    chosen = ', '.join(f'{k}={v}' for k, v in r['best'].items()
                       if len({str(c[k]) for c in grid}) > 1)
    if r.get('failed'):
      print(f'| {method} | {chosen} | {failed_cell(r["failed"])} | – | – | '
            f'{r["state_bytes"]:,} |')
      continue
    print(f'| {method} | {chosen} | {r["average_accuracy"][0]:.3f} ± '
          f'{r["average_accuracy"][1]:.3f} | {r["forgetting"][0]:.3f} ± '
          f'{r["forgetting"][1]:.3f} | {r["learning_accuracy"][0]:.3f} | '
          f'{r["state_bytes"]:,} |')
  for method, r in report.items():
    if check := r.get('full_protocol_check'):
      print(f'\n{method}, checked on the full protocol (validation scores, '
            f'{r["search_steps_per_task"]} steps a task -> the full protocol):'
            f' the choice {"holds" if check["holds"] else "does NOT hold"}')
      for config, short, full in zip(check['configurations'],
                                     check['search_scores'],
                                     check['full_scores'], strict=True):
        print(f'  {config}: {short:.4f} -> '
              f'{"not a candidate" if full is None else f"{full:.4f}"}')


def main(argv=None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.check_top is not None and args.check_top < 1:
    parser.error(f'--check-top must be an integer >= 1, got {args.check_top}.')
  if args.check_top and args.search_steps_per_task is None:
    parser.error('--check-top checks a shortened search: give '
                 '--search-steps-per-task too.')
  if args.list or not args.target:
    for name, target in TARGETS.items():
      print(f'{name:20} classp-continual {" ".join(target)}')
    for method, grid in SPACES.items():
      print(f'{method:8} {grid}')
    return 0
  base = [*TARGETS[args.target]]
  if args.data_dir:
    base += ['--data-dir', args.data_dir]
  summary_file = pathlib.Path(args.out) / args.target / 'summary.json'
  # Tuning some methods again keeps the others' entries.
  report = (json.loads(summary_file.read_text())['report']
            if summary_file.exists() else {})
  for method in args.methods.split(','):
    report[method] = tune_method(args.target, method, base, args)
  summary_file.parent.mkdir(parents=True, exist_ok=True)
  summary_file.write_text(json.dumps(dict(
      target=args.target, command=' '.join(sys.argv), budget_per_method=6,
      validation_fraction=VALIDATION,
      spaces={method: space(args.target, method) for method in report},
      report=report), indent=2))
  if args.record:
    _record(args.target, report)
  _print_table(args.target, report, args.test_seeds)
  return 0


if __name__ == '__main__':
  sys.exit(main())
