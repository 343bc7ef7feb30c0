"""Runs a cell of the README's results tables over several seeds.

    python benchmarks/continual_results.py permuted-study --data-dir ../shared/data
    python benchmarks/continual_results.py paper-vision --seeds 0 --data-dir ...
    python benchmarks/continual_results.py --list

The seeds are one ``classp-continual --seeds`` run (each method's seeds
trained as one vmapped sweep) in ``results/<experiment>/seeds<S1-S2-...>/``;
it is not run again once its results.json exists, and an unfinished one
resumes from its checkpoints, so a long experiment can be stopped and started.
The summary (mean and standard deviation over seeds) is printed as a Markdown
table and written to ``results/<experiment>/summary.json``.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys

import numpy as np

from classp_optax.continual import atomic
from classp_optax.continual import metrics

from _runs import run_once
from _runs import seed_list


@dataclasses.dataclass(frozen=True)
class Experiment:
  description: str
  cli_args: tuple[str, ...]
  seeds: tuple[int, ...]
  published: dict = dataclasses.field(default_factory=dict)


EXPERIMENTS = {
    'permuted-study': Experiment(
        'Permuted MNIST, 20 tasks (task 0 the identity), 1 epoch each, batch '
        '500, MLP 784-256-256-10, shared head, one optimizer state',
        ('--benchmark', 'permuted-mnist', '--tasks', '20', '--methods',
         'classp,adam'),
        seeds=(0, 1, 2, 3, 4),
        published={'classp': 0.601, 'adam': 0.754},
    ),
}

# The CLASSP paper's vision experiment, on its CNN and on an MLP, and two
# variants that explain its results (see the README).
_PAPER_MODELS = {
    # name: (arguments, description, an EWC strength with lr * strength *
    # max Fisher at most about 1 on every seed, from the Fisher measured after
    # MNIST in evaluation mode: 0.063 and 0.174 for the CNN (seeds 0 and 1),
    # 0.0098 for the MLP)
    'paper-vision': ((), "the paper's CNN", 20.0),
    'paper-vision-mlp': (('--model', 'mlp'), 'MLP 784-256-256-10', 400.0),
}
_PAPER_VARIANTS = {
    '': (('--methods', 'classp,ewc,sgd'), "the paper's settings"),
    '-no-threshold': (
        ('--methods', 'classp', '--set', 'classp.threshold=0.0'),
        'CLASSP with threshold 0 on MNIST: what the reference code ran, its '
        'test `(grad ** 2).any() > threshold` being a boolean'),
    '-ewc-stable': (
        ('--methods', 'ewc', '--set', 'ewc.strength={strength}'),
        "EWC with strength {strength}: the paper's 5000 makes SGD at lr 0.25 "
        'unstable (lr * strength * max Fisher > 2)'),
}
for _name, (_model_args, _model, _strength) in _PAPER_MODELS.items():
  for _suffix, (_args, _what) in _PAPER_VARIANTS.items():
    EXPERIMENTS[_name + _suffix] = Experiment(
        f'MNIST 4 epochs then Fashion-MNIST 1 epoch, {_model}, batch 32; '
        + _what.format(strength=_strength),
        ('--benchmark', 'mnist-fashion', *_model_args,
         *(a.format(strength=_strength) for a in _args)),
        seeds=(0, 1, 2),
    )


def summarize(runs: list[dict]) -> dict:
  """Mean and standard deviation over seeds, per method."""
  by_method: dict[str, list[dict]] = {}
  for run in runs:
    for result in run['results']:
      by_method.setdefault(result['method'], []).append(result)
  summary = {}
  for method, results in by_method.items():
    final_rows = np.array([r['accuracy'][-1] for r in results])
    entry = {'seeds': len(results), 'state_bytes': results[0]['state_bytes']}
    for key in ('average_accuracy', 'forgetting', 'backward_transfer',
                'learning_accuracy', 'wall_time'):
      entry[key] = list(metrics.mean_and_spread([r[key] for r in results]))
    entry['final_accuracy_per_task'] = [
        list(metrics.mean_and_spread(column)) for column in final_rows.T]
    summary[method] = entry
  return summary


def _mean_std(entry: dict, key: str) -> str:
  mean, std = entry[key]
  return f'{mean:.3f} ± {std:.3f}'


def markdown(summary: dict, published: dict) -> str:
  head = ('| method | seeds | average accuracy | forgetting | BWT | learning '
          'accuracy | final accuracy per task | state bytes | wall s/seed |')
  lines = [head, '|' + '---|' * 9]
  for method, e in summary.items():
    paper = f' (published {published[method]:.3f})' if method in published else ''
    tasks = ' / '.join(f'{m:.3f} ± {d:.3f}' for m, d in e['final_accuracy_per_task']) \
        if len(e['final_accuracy_per_task']) <= 4 else '(see JSON)'
    lines.append(
        f'| {method} | {e["seeds"]} | {_mean_std(e, "average_accuracy")}'
        f'{paper} | {_mean_std(e, "forgetting")} | '
        f'{_mean_std(e, "backward_transfer")} | '
        f'{_mean_std(e, "learning_accuracy")} | {tasks} | '
        f'{e["state_bytes"]:,} | '
        f'{e["wall_time"][0]:.0f} |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('experiment', nargs='?', choices=EXPERIMENTS)
  parser.add_argument('--list', action='store_true')
  parser.add_argument('--seeds', type=seed_list,
                      help='comma-separated; default: all')
  parser.add_argument('--data-dir', default=os.environ.get('CLASSP_DATA_DIR'))
  parser.add_argument('--out', default='results')
  parser.add_argument('--extra', nargs=argparse.REMAINDER, default=[],
                      help='more classp-continual options, e.g. --set ...')
  args = parser.parse_args(argv)
  if args.list or not args.experiment:
    for name, e in EXPERIMENTS.items():
      print(f'{name:18} {e.description}; seeds {list(e.seeds)}')
    return 0
  experiment = EXPERIMENTS[args.experiment]
  seeds = tuple(args.seeds or experiment.seeds)
  root = pathlib.Path(args.out) / args.experiment
  # Every seed of a method in one sweep (classp-continual --seeds).
  argv = [*experiment.cli_args, '--seeds', ','.join(map(str, seeds)),
          *args.extra]
  if args.data_dir:
    argv += ['--data-dir', args.data_dir]
  runs = [run_once(argv, root / ('seeds' + '-'.join(map(str, seeds))))]
  summary = summarize(runs)
  table = markdown(summary, experiment.published)
  atomic.write_text(root / 'summary.json', json.dumps(dict(
      experiment=args.experiment, description=experiment.description,
      seeds=list(seeds), command=' '.join(sys.argv),
      machine=f'{os.cpu_count()} CPU cores, {platform.machine()}',
      summary=summary, published=experiment.published), indent=2))
  print(f'\n{experiment.description}; seeds {list(seeds)}\n\n{table}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
