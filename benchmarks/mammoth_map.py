"""The DER paper's own code on this machine, beside the rehearsal map.

    python benchmarks/mammoth_map.py --mammoth ../peer/mammoth \
        --mammoth-python ../peer/venv/bin/python --datasets seq-mnist
    python benchmarks/mammoth_map.py --no-run      # the table of what ran

The paper's tables (Buzzega et al. 2020) cannot be read from here, so this
column stands in for them: aimagelab/mammoth at tag ``neurips2020``,
unmodified and in its own Python (PyTorch never enters this project), run as
its users run it, ``utils/main.py --dataset <d> --model <m> [--buffer_size
<b>] --load_best_args --seed <k>``, for every method of the rehearsal map
that the tag has (ER-ACE is not in it, nor LwF on a domain-incremental
stream). Its MNIST files must be under ``<mammoth>/data/MNIST``.

Their code prints the mean accuracy over the tasks seen after each task; the
script keeps those lines, whose last is the final average accuracy the map
compares (class- and task-incremental on ``seq-mnist``, domain-incremental
on ``perm-mnist`` and ``rot-mnist``). It prints no per-task accuracies, so a
run is checked as far as its output allows: one that printed ``nan`` or
whose first task, alone, ends within 5 points of chance is no result and
shows as such. Each run lands in ``docs/results/mammoth-map/<dataset>-
seed<k>.json`` as it ends (finished runs are reused; ``--methods`` runs
some rows alone, for more seeds where the spread asks for them); the table,
ours (``docs/results/rehearsal-map/``) beside theirs over every seed kept of
each, goes to ``docs/results/mammoth-map.json``.
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

from classp_optax.continual import atomic
from classp_optax.continual import metrics

from _runs import kept
from _runs import mean_cell
from _runs import seed_list
from _runs import seeds_cell
from rehearsal_map import FOLDER as OURS

FOLDER = pathlib.Path('docs/results/mammoth-map')
REHEARSAL = ('er', 'der', 'derpp', 'agem')
# Their dataset: (the map's cells it stands beside, chance of the first task
# alone in the setting checked, the methods besides rehearsal).
DATASETS = {
    'seq-mnist': ((('split-mnist-der-class', 'class_il'),
                   ('split-mnist-der-task', 'task_il')), 50.0, ('sgd', 'lwf')),
    'perm-mnist': ((('permuted-mnist-der-domain', 'domain_il'),), 10.0,
                   ('sgd',)),
    'rot-mnist': ((('rotated-mnist-der-domain', 'domain_il'),), 10.0,
                  ('sgd',)),
}
NUMBER = r'([\d.]+|nan)'
INCREMENTAL = re.compile(rf'Accuracy for (\d+) task\(s\):\s*\[Class-IL\]: '
                         rf'{NUMBER} %\s*\[Task-IL\]: {NUMBER} %')
DOMAIN = re.compile(rf'Accuracy for (\d+) task\(s\): {NUMBER} %')


def labels_of(dataset: str) -> list[str]:
  """The rows run on ``dataset``, named as the rehearsal map names them."""
  plain = DATASETS[dataset][2]
  return [*plain, *(f'{m}{size}' for size in ('', ':500') for m in REHEARSAL)]


def command(dataset: str, label: str, seed: int) -> list[str]:
  model, _, size = label.partition(':')
  buffer = ['--buffer_size', size or '200'] if model in REHEARSAL else []
  return ['utils/main.py', '--dataset', dataset, '--model', model, *buffer,
          '--load_best_args', '--seed', str(seed)]


def parsed(output: str) -> dict:
  """The mean accuracies (%) after each task, by setting."""
  if found := INCREMENTAL.findall(output):
    return dict(class_il=[float(c) for _, c, _ in found],
                task_il=[float(t) for _, _, t in found])
  return dict(domain_il=[float(a) for _, a in DOMAIN.findall(output)])


def run_theirs(args, dataset: str, label: str, seed: int) -> dict:
  """One run of their code: its command, seconds and accuracies."""
  argv = command(dataset, label, seed)
  env = dict(os.environ, **({'OMP_NUM_THREADS': str(args.threads)}
                            if args.threads else {}))
  python = str(pathlib.Path(args.mammoth_python).absolute())
  print('+ ' + ' '.join(argv), flush=True)
  start = time.perf_counter()
  done = subprocess.run([python, *argv], cwd=args.mammoth, env=env,
                        capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    sys.exit(f'{" ".join(argv)} failed:\n{done.stderr[-2000:]}')
  return dict(command=' '.join(argv), threads=args.threads, seconds=seconds,
              **parsed(done.stdout + done.stderr))


def seed_runs(args, dataset: str, seed: int) -> None:
  """Runs what is missing of one seed, each run kept as it ends."""
  path = FOLDER / f'{dataset}-seed{seed}.json'
  runs = json.loads(path.read_text()) if path.exists() else {}
  for label in labels_of(dataset):
    if label in runs or (args.methods and label not in args.methods):
      continue
    runs[label] = run_theirs(args, dataset, label, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(runs, indent=2) + '\n')


def failure(run: dict, setting: str, chance: float) -> str | None:
  """Why a run of theirs is no result, as far as its output tells."""
  values = run[setting]
  if not values:
    return 'printed no accuracy'
  if any(v != v for v in values):
    return 'printed nan'
  if run.get('task_il', values)[0] < chance + 5:
    return 'first task not learnt'
  return None


def theirs_cell(runs: dict, setting: str, chance: float) -> tuple[str, list]:
  """Their final average accuracy over seeds, as a cell and the values."""
  for seed, run in runs.items():
    if (why := failure(run, setting, chance)) is not None:
      return f'no result (seed {seed}: {why})', []
  finals = [run[setting][-1] for run in runs.values()]
  if not finals:
    return '-', []
  return mean_cell(*metrics.mean_and_spread(finals), len(finals)), finals


def ours_cell(summaries: dict, label: str) -> tuple[str, list]:
  """The rehearsal map's cell for ``label`` from its ``{seed: summary}``,
  and its final accuracies (%)."""
  runs = {seed: s['results'][label] for seed, s in summaries.items()
          if label in s['results']}
  finals = [100 * r['average_accuracy'] for r in runs.values()]
  return seeds_cell(runs), finals


def compared(ours: list, theirs: list) -> str:
  """Ours minus theirs, in points, with both means' standard errors
  combined (each from its seeds' spread, n - 1)."""
  if len(ours) < 2 or len(theirs) < 2:
    return '-'
  spread = sum(statistics.variance(v) / len(v) for v in (ours, theirs))
  difference = sum(ours) / len(ours) - sum(theirs) / len(theirs)
  return f'{difference:+.2f} ({difference / spread ** 0.5:+.1f} SE)'


def table() -> tuple[list[str], dict]:
  """Markdown rows, ours beside theirs over every seed kept of every
  dataset (whichever ``--datasets`` ran), and the record."""
  rows = ['| cell | method | ours | their code here | ours - theirs |',
          '|---|---|---|---|---|']
  record, ours, theirs_kept = {}, kept(OURS), kept(FOLDER)
  for dataset, (cells, chance, _) in DATASETS.items():
    by_seed = theirs_kept.get(dataset, {})
    for cell, setting in cells:
      for label in labels_of(dataset):
        mine, mine_values = ours_cell(ours.get(cell, {}), label)
        theirs, their_values = theirs_cell(
            {s: r[label] for s, r in by_seed.items() if label in r}, setting,
            chance)
        gap = compared(mine_values, their_values)
        rows.append(f'| {cell} | {label} | {mine} | {theirs} | {gap} |')
        record.setdefault(cell, {})[label] = dict(ours=mine, theirs=theirs,
                                                  difference=gap)
  return rows, record


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mammoth', help='a checkout of the neurips2020 tag')
  parser.add_argument('--mammoth-python', help='the Python it runs under')
  parser.add_argument('--datasets', default='seq-mnist,perm-mnist,rot-mnist')
  parser.add_argument('--seeds', default='0,1,2', type=seed_list)
  parser.add_argument('--threads', type=int,
                      help='OMP_NUM_THREADS for their runs (default: unset)')
  parser.add_argument('--methods', help='the rows to run (default: all)')
  parser.add_argument('--no-run', action='store_true')
  args = parser.parse_args(argv)
  datasets = args.datasets.split(',')
  if unknown := sorted(set(datasets) - set(DATASETS)):
    parser.error(f'--datasets must be among {sorted(DATASETS)}, got {unknown}')
  args.methods = args.methods and args.methods.split(',')
  labels = sorted({label for d in DATASETS for label in labels_of(d)})
  if unknown := sorted(set(args.methods or ()) - set(labels)):
    parser.error(f'--methods must be among {labels}, got {unknown}')
  if args.threads is not None and args.threads < 1:
    parser.error(f'--threads must be an integer >= 1, got {args.threads}')
  if not args.no_run and not (args.mammoth and args.mammoth_python):
    parser.error('--mammoth and --mammoth-python are needed unless --no-run')
  if not args.no_run:
    for dataset in datasets:
      for seed in args.seeds:
        seed_runs(args, dataset, seed)
  rows, record = table()
  print('\n'.join(rows))
  atomic.write_text('docs/results/mammoth-map.json',
                    json.dumps(record, indent=2) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
