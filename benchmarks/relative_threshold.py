"""CLASSP's absolute threshold against the relative one, each tuned the same way.

For each target, ``tune.py`` tunes ``classp`` (absolute threshold) and
``classp:relative`` (threshold relative to each tensor's mean squared
gradient) with the same budget on validation data and tests the choices on
seeds 0, 1 and 2. This prints both rows per target and draws the fraction
of weights ever updated (``capacity_used``) after each task, mean over the
test seeds.

    python benchmarks/relative_threshold.py --data-dir ../shared/data

Runs live in ``--out`` (default ``results/tune``) and are reused.
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tune  # noqa: E402

TARGETS = ['split-mnist', 'split-mnist-domain', 'split-mnist-class',
           'permuted-mnist-20']
METHODS = ['classp', 'classp:relative']


def capacity_curves(root: pathlib.Path, method: str, best: dict):
  """capacity_used after each task, one row per test seed."""
  folder = root / 'test' / method / tune.run_folder_name(best)
  runs = [json.loads((folder / f'seed{seed}' / 'results.json').read_text())
          for seed in tune.TEST_SEEDS]
  return np.array([run['results'][0]['capacity_used'] for run in runs])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data-dir')
  parser.add_argument('--out', default='results/tune')
  parser.add_argument('--targets', default=','.join(TARGETS))
  parser.add_argument('--picture', default='results/relative-threshold.png')
  args = parser.parse_args()
  targets = args.targets.split(',')
  fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.2),
                           squeeze=False)
  print('| target | threshold | chosen | average accuracy | forgetting | '
        'learning accuracy | capacity used at the end |')
  print('|---|---|---|---|---|---|---|')
  for target, ax in zip(targets, axes[0], strict=True):
    argv = [target, '--methods', ','.join(METHODS), '--out', args.out]
    if args.data_dir:
      argv += ['--data-dir', args.data_dir]
    tune.main(argv)
    root = pathlib.Path(args.out) / target
    report = json.loads((root / 'summary.json').read_text())['report']
    for method in METHODS:
      r = report[method]
      curves = capacity_curves(root, method, r['best'])
      label = 'relative' if ':' in method else 'absolute'
      print(f'| {target} | {label} | lr {r["best"]["learning_rate"]}, '
            f'threshold {r["best"]["threshold"]} | '
            f'{r["average_accuracy"][0]:.3f} ± {r["average_accuracy"][1]:.3f} | '
            f'{r["forgetting"][0]:.3f} ± {r["forgetting"][1]:.3f} | '
            f'{r["learning_accuracy"][0]:.3f} | '
            f'{curves[:, -1].mean():.3f} |', flush=True)
      tasks = np.arange(1, curves.shape[1] + 1)
      ax.plot(tasks, curves.mean(0), marker='o', markersize=3,
              label=f'{label} (threshold {r["best"]["threshold"]})')
    ax.set_title(target)
    ax.set_xlabel('tasks trained')
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel('fraction of weights ever updated')
  fig.tight_layout()
  pathlib.Path(args.picture).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.picture, dpi=120)
  print(f'wrote {args.picture}')


if __name__ == '__main__':
  main()
