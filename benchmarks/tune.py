"""Tunes every method with the same budget, on validation data, then tests.

    python benchmarks/tune.py permuted-mnist-10 --data-dir ../shared/data
    python benchmarks/tune.py split-mnist-vdv-domain --data-dir ../shared/data \
        --methods classp,ewc:classp,si:classp  # also permuted-mnist-vdv-*
    python benchmarks/tune.py --list

For each method, every configuration of its grid (6 each: the same budget)
is trained on seed 0 with 10% of the training data held out, and scored by
its final average accuracy on that held-out data; the test sets are never
seen. The search, the choice and the test runs are the package's
``classp_optax.continual.tune`` (see its docstring for which runs are never
chosen): this script holds the targets, the grids of the tables in
docs/results.md, and the tables. The best configuration is run on the test
sets with seeds 0, 1 and 2. Each method's runs keep their checkpoints in
``results/tune/<target>/<method>/``; finished runs are not repeated, so
the search can be stopped and started. ``--methods ewc,si`` tunes those
again and keeps the other methods' entries of an earlier summary.

A long protocol can be searched on a shortened one: ``--search-steps-per-task
N`` trains the grid with N steps a task (the test runs keep the full
protocol), and ``--check-top K`` then trains the search's K best
configurations on the full protocol, with the same seed and validation
split, and records whether the choice holds there.
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import sys

import numpy as np

from classp_optax.continual import atomic
from classp_optax.continual import methods
from classp_optax.continual import suites
from classp_optax.continual import tuning

from _runs import failed_cell
from _runs import failures

# {target: (benchmark, scenario or None for its default, tasks or None)}.
TARGETS = {
    'split-digits': ('split-digits', None, None),
    'permuted-digits': ('permuted-digits', None, None),
    'permuted-mnist-10': ('permuted-mnist', None, 10),
    'permuted-mnist-20': ('permuted-mnist', None, 20),
    'split-mnist': ('split-mnist', None, None),
    'split-mnist-domain': ('split-mnist', 'domain', None),
    'split-mnist-class': ('split-mnist', 'class', None),
    'split-fmnist': ('split-fmnist', None, None),
    'mnist-fashion-mlp': ('mnist-fashion', None, None),
}
# The embedded benchmarks in their other scenarios, tuned per scenario.
EMBEDDED_SCENARIOS = {f'{benchmark}-{scenario}': (benchmark, scenario)
                      for benchmark in ('split-digits', 'permuted-digits')
                      for scenario in suites.SUITES[benchmark].scenarios[1:]}
# van de Ven & Tolias's presets, one target per scenario.
VDV_TARGETS = {f'{benchmark}-{scenario}': (benchmark, scenario)
               for benchmark in ('split-mnist-vdv', 'permuted-mnist-vdv')
               for scenario in suites.SUITES[benchmark].scenarios}
# The DER paper's presets.
DER_TARGETS = {'split-mnist-der-class': ('split-mnist-der', 'class'),
               'split-mnist-der-task': ('split-mnist-der', 'task'),
               'permuted-mnist-der': ('permuted-mnist-der', None),
               'rotated-mnist-der': ('rotated-mnist-der', None)}
TARGETS.update({target: (benchmark, scenario, None) for target, (
    benchmark, scenario) in {**EMBEDDED_SCENARIOS, **VDV_TARGETS,
                             **DER_TARGETS}.items()})
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
    'classp:relative': tuning.grid(
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
  replay = {f'replay:classp{budget}': tuning.grid(
      learning_rate=rates, threshold=[1e-5, 1e-3], optimizer=['classp'],
      power=[2.0], budget=[budget]) for budget in (10, 100)}
  return {
      'classp': tuning.grid(learning_rate=rates, threshold=[1e-5, 1e-3], power=[2.0],
                      decay_from_task=[0], later_threshold=[None]),
      **replay,
      'ewc:classp': tuning.grid(learning_rate=rates,
                          strength=[ewc_strength / 100, ewc_strength],
                          **classp_settings),
      'si:classp': tuning.grid(learning_rate=rates,
                         strength=[si_strength / 10, si_strength],
                         **classp_settings),
  }


# The DER paper's presets: ER and DER++ on CLASSP at buffers of 200 and 500,
# each with six configurations (learning rate x threshold, power 2), the
# other settings (buffer, draw size, alpha, beta) at the preset's for that
# buffer. ``er:classp`` and ``derpp:classp`` run on CLASSP by their label.
def _der_spaces(benchmark: str) -> dict:
  defaults = suites.SUITES[benchmark].method_defaults
  spaces = {}
  for method in ('er', 'derpp'):
    for size in (200, 500):
      kept = {name: [value] for name, value in defaults[
          method if size == 200 else f'{method}:500'].items()
              if name != 'learning_rate'}
      spaces[f'{method}:classp' + ('' if size == 200 else '500')] = tuning.grid(
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


def tune_method(target: str, method: str, args) -> dict:
  """Searches ``method``'s grid on validation data, tests the best
  configuration on the test seeds; returns its report entry."""
  benchmark, scenario, num_tasks = TARGETS[target]
  suite = suites.SUITES[benchmark]
  stream = functools.cache(functools.partial(
      suite.stream, data_dir=args.data_dir, scenario=scenario,
      num_tasks=num_tasks))
  config = suite.train_config()
  steps = args.search_steps_per_task
  common = dict(tasks=stream, make_model=lambda seed: suite.build_model(
      stream(seed), seed), benchmark=benchmark, scenario=scenario,
                validation=VALIDATION, progress=True)
  folder = pathlib.Path(args.out) / target / method
  test_seeds = [int(seed) for seed in args.test_seeds.split(',')]
  choice = tuning.tune(
      method, space(target, method), config=config, search_config=None if
      steps is None else dataclasses.replace(config, steps_per_task=steps),
      test_seeds=test_seeds, checkpoint_dir=folder, **common)
  entry = dict(
      best=choice.best, validation_scores=[
          None if np.isnan(a := r.summary['average_accuracy']) else a
          for r in choice.search],
      rejected={str(k): why for k, r in enumerate(choice.search)
                if (why := tuning.rejection(r))},
      **_test_metrics(choice), state_bytes=choice.tests[0].state_bytes,
      seeds=args.test_seeds.split(','), search_steps_per_task=steps)
  if args.check_top:
    entry['full_protocol_check'] = _full_protocol_check(
        method, choice, args.check_top, config, folder / 'full', common)
  return entry


def _test_metrics(choice: tuning.Tuned) -> dict:
  """Mean and std over the test seeds; none if a seed's run is no result
  (``failed`` says which and why, as every table does)."""
  if failed := failures({r.swept['seed']: r.to_json() for r in choice.tests}):
    return dict(dict.fromkeys(tuning.TEST_METRICS), failed=failed)
  return {key: list(value) for key, value in choice.test_summary.items()}


def _full_protocol_check(method: str, choice: tuning.Tuned, top: int,
                         config, folder: pathlib.Path, common: dict) -> dict:
  """The best ``top`` configurations of a shortened search (best first)
  searched again on the full protocol, on the same seed and validation
  split: the choice holds if the first is still a result and scores
  highest."""
  scores = np.nan_to_num(choice.scores, nan=-np.inf)
  order = [int(k) for k in np.argsort(-scores, kind='stable')[:top]
           if np.isfinite(scores[k])]
  configs = [choice.grid[k] for k in order]
  full = [-np.inf if tuning.rejection(r) else r.summary['average_accuracy']
          for r in tuning.search(method, configs, config=config,
                                 checkpoint_dir=folder, **common)]
  return dict(configurations=configs,
              search_scores=[float(scores[k]) for k in order],
              full_scores=[s if np.isfinite(s) else None for s in full],
              holds=bool(np.isfinite(full[0]) and np.argmax(full) == 0))


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
  atomic.write_text(suites.TUNED_FILE, json.dumps(records, indent=2) + '\n')
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
    for name, (benchmark, scenario, num_tasks) in TARGETS.items():
      print(f'{name:24} classp-continual --benchmark {benchmark}'
            + (f' --scenario {scenario}' if scenario else '')
            + (f' --tasks {num_tasks}' if num_tasks else ''))
    for method, grid in SPACES.items():
      print(f'{method:8} {grid}')
    return 0
  summary_file = pathlib.Path(args.out) / args.target / 'summary.json'
  # Tuning some methods again keeps the others' entries.
  report = (json.loads(summary_file.read_text())['report']
            if summary_file.exists() else {})
  for method in args.methods.split(','):
    report[method] = tune_method(args.target, method, args)
  summary_file.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(summary_file, json.dumps(dict(
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
