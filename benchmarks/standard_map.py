"""The standard map: split or permuted MNIST in the three scenarios, ours
beside the paper.

    python benchmarks/standard_map.py --data-dir ../shared/data
    python benchmarks/standard_map.py --benchmark permuted-mnist-vdv \
        --data-dir ../shared/data

Runs fine-tuning ("None": Adam alone), EWC, online EWC, SI and joint training
under van de Ven & Tolias (2019)'s protocol and their settings (the
``split-mnist-vdv`` or ``permuted-mnist-vdv`` benchmark) with seeds 0, 1 and
2 in each scenario, and prints one table per scenario: the final average
test accuracy, mean ± std over the seeds, beside the paper's value. CLASSP
alone, CLASSP under EWC and CLASSP under SI enter as tuned by
``benchmarks/tune.py <benchmark>-<scenario>`` (the same budget of six
configurations each, chosen on validation data), once those summaries exist.
Finished runs are reused, so the script can be stopped and started; it
writes ``docs/results/standard-map-<split|permuted>-mnist.json``.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from classp_optax.continual import suites

from _runs import run_once

SEEDS = (0, 1, 2)
BASELINES = ('adam', 'ewc', 'ewc:online', 'si', 'joint')
TUNED = ('classp', 'ewc:classp', 'si:classp')
NAMES = {'adam': 'None (Adam)', 'ewc': 'EWC', 'ewc:online': 'Online EWC',
         'si': 'SI', 'joint': 'Joint (upper bound)', 'classp': 'CLASSP',
         'ewc:classp': 'EWC on CLASSP', 'si:classp': 'SI on CLASSP'}

# Average test accuracy (%) after all tasks, mean (± SEM over their seeds),
# from van de Ven & Tolias (2019), "Three scenarios for continual learning",
# arXiv 1904.07734; "Joint" is their "Offline - upper bound" row. The split
# values are their split-MNIST table. Their permuted-MNIST table could not be
# read from where this was written: its column stays empty until its values
# are entered here from the paper.
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
PUBLISHED = {'split-mnist-vdv': SPLIT_PUBLISHED, 'permuted-mnist-vdv': {}}


def _stats(values):
  return float(np.mean(values)), float(np.std(values))


def baselines(benchmark: str, scenario: str, data_dir: str | None,
              root: pathlib.Path) -> dict:
  """``{method: [average accuracy per seed]}`` of the published settings."""
  runs = []
  for seed in SEEDS:
    argv = ['--benchmark', benchmark, '--scenario', scenario,
            '--methods', ','.join(BASELINES), '--seed', str(seed)]
    if data_dir:
      argv += ['--data-dir', data_dir]
    runs.append(run_once(argv, root / scenario / f'seed{seed}',
                         progress=False)['results'])
  table = {}
  for results in runs:
    for r in results:
      table.setdefault(r['method'], []).append(r)
  return table


def tuned(benchmark: str, scenario: str, tune_root: pathlib.Path) -> dict:
  """The tuned methods' test runs, from tune.py's summary, if it exists."""
  summary = tune_root / f'{benchmark}-{scenario}' / 'summary.json'
  if not summary.exists():
    return {}
  report = json.loads(summary.read_text())['report']
  return {method: report[method] for method in TUNED if method in report}


def _published(value: tuple | None) -> str:
  return '–' if value is None else f'{value[0]:.2f} ± {value[1]:.2f}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--benchmark', default='split-mnist-vdv',
                      choices=sorted(PUBLISHED))
  parser.add_argument('--data-dir')
  parser.add_argument('--out', default='results/standard-map')
  parser.add_argument('--tune-out', default='results/tune')
  parser.add_argument('--record', help='default: docs/results/standard-map-'
                      '<split|permuted>-mnist.json')
  args = parser.parse_args(argv)
  benchmark = args.benchmark
  name = benchmark.removesuffix('-vdv')
  record = {}
  for scenario in suites.SUITES[benchmark].scenarios:
    table = baselines(benchmark, scenario, args.data_dir,
                      pathlib.Path(args.out) / name)
    num_tasks = len(table[BASELINES[0]][0]['accuracy'])
    print(f'\n{name}, {scenario}-incremental: average test accuracy (%) '
          f'after {num_tasks} tasks, mean ± std over seeds {list(SEEDS)}\n')
    print('| method | ours | published | ours − published | ours: forgetting '
          '| ours: learning accuracy |')
    print('|---|---|---|---|---|---|')
    rows = {}
    for method in BASELINES:
      runs = table[method]
      acc = _stats([100 * r['average_accuracy'] for r in runs])
      pub = PUBLISHED[benchmark].get(scenario, {}).get(method)
      rows[method] = dict(
          average_accuracy=acc,
          forgetting=_stats([r['forgetting'] for r in runs]),
          learning_accuracy=_stats([r['learning_accuracy'] for r in runs]),
          published=pub, hyperparams=runs[0]['hyperparams'])
      gap = '–' if pub is None else f'{acc[0] - pub[0]:+.2f}'
      print(f'| {NAMES[method]} | {acc[0]:.2f} ± {acc[1]:.2f} | '
            f'{_published(pub)} | {gap} | '
            f'{rows[method]["forgetting"][0]:.3f} | '
            f'{rows[method]["learning_accuracy"][0]:.3f} |')
    for method, r in tuned(benchmark, scenario,
                           pathlib.Path(args.tune_out)).items():
      acc = [100 * v for v in r['average_accuracy']]
      rows[method] = dict(average_accuracy=acc, forgetting=r['forgetting'],
                          learning_accuracy=r['learning_accuracy'],
                          published=None, hyperparams=r['best'])
      print(f'| {NAMES[method]} (tuned) | {acc[0]:.2f} ± {acc[1]:.2f} | – | – | '
            f'{r["forgetting"][0]:.3f} | {r["learning_accuracy"][0]:.3f} |')
    record[scenario] = rows
  path = pathlib.Path(args.record or f'docs/results/standard-map-{name}.json')
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dict(
      command=' '.join(['python', *sys.argv]), seeds=list(SEEDS),
      source=('van de Ven & Tolias 2019, arXiv 1904.07734, '
              f'{name.replace("-", " ")} table' if PUBLISHED[benchmark]
              else None),
      scenarios=record), indent=2) + '\n')
  print(f'\nwrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
