"""Fine-tuning on split MNIST, task-incremental, on van de Ven & Tolias's own
digit pairs: this package's command and, with ``--vdv``, their code.

    python benchmarks/vdv_code_pairs.py --data-dir ../shared/data --seeds 1-20 \
        --vdv ../peer/vdv --vdv-python ../peer/venv/bin/python

Their Table 4 ("None", task-IL: 87.19 ± 0.94 over 20 seeds) is 3.2 points over
the ``split-mnist-vdv`` preset's fine-tuning. Their code pairs the digits by
``np.random.seed(seed); np.random.permutation(10)`` (``data.py`` at f0b1461:
digit ``y`` takes label ``perm[y]``, task ``t`` the labels ``2t`` and ``2t+1``),
the preset by its own generator. Here the command runs (in this process) with
the preset's pairing replaced by theirs, so that each seed is the same task
sequence in both codes, and ``--vdv`` runs their ``main.py --experiment
splitMNIST --scenario task --seed <k>`` (one thread, ``OMP_NUM_THREADS=1``)
from a checkout at f0b1461, with its own Python, keeping each seed's log
under ``<out>/theirs`` (a seed whose log is there is read, not run again).
Their code needs a ``visdom`` module to import (a stub on ``PYTHONPATH``
does). The summary (each seed of each code, mean ± SEM) goes to
``--summary``.
"""

import argparse
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys

import numpy as np

from classp_optax.continual import atomic
from classp_optax.continual import streams
from classp_optax.continual import suites

from _runs import failure
from _runs import run_once


def their_pairs(seed: int) -> list[tuple[int, int]]:
  """Task ``t``'s two digits under their code's seed: those whose label
  ``perm[digit]`` is ``2t`` or ``2t + 1``."""
  by_label = np.argsort(np.random.RandomState(seed).permutation(10))
  return [(int(by_label[i]), int(by_label[i + 1])) for i in range(0, 10, 2)]


def ours(seed: int, data_dir: str, out: str) -> float:
  """The preset's fine-tuning (``adam``) on their pairs of ``seed``."""
  def pairs(dataset, pairs_seed, scenario):
    return streams.split(dataset, their_pairs(pairs_seed), scenario=scenario)
  suites.split_pairs_by_seed, preset = pairs, suites.split_pairs_by_seed
  try:
    results = run_once(['--benchmark', 'split-mnist-vdv', '--scenario', 'task',
                        '--methods', 'adam', '--seed', str(seed),
                        '--data-dir', data_dir],
                       pathlib.Path(out) / f'seed{seed}', progress=False)
  finally:
    suites.split_pairs_by_seed = preset
  run = results['results'][0]
  if (why := failure(run)) is not None:
    raise SystemExit(f'seed {seed}: ours is no result: {why}.')
  return run['average_accuracy']


def theirs(seed: int, vdv: str, python: str, logs: str) -> float:
  """Their final average precision for ``seed``, from its log in ``logs``
  (written by the first call: a run takes minutes)."""
  log = pathlib.Path(logs) / f'seed{seed}.log'
  if not log.exists():
    done = subprocess.run(
        [python, 'main.py', '--experiment', 'splitMNIST', '--scenario',
         'task', '--seed', str(seed), '--no-gpus'], cwd=vdv,
        env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
        text=True, check=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(log, done.stdout)
  return float(re.search(r'average precision over all 5 tasks: ([\d.]+)',
                         log.read_text()).group(1))


def mean_sem(values) -> str:
  sem = statistics.stdev(values) / math.sqrt(len(values))
  return f'{100 * statistics.mean(values):.2f} ± {100 * sem:.2f}'


def seed_range(text: str) -> range:
  """``--seeds first-last``, both included."""
  first, _, last = text.partition('-')
  if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
    raise argparse.ArgumentTypeError(
        f'--seeds takes first-last, integers 0 <= first <= last, got {text!r}')
  return range(int(first), int(last) + 1)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', required=True)
  parser.add_argument('--seeds', default='1-20', type=seed_range,
                      help='first-last, integers 0 <= first <= last')
  parser.add_argument('--vdv', help="a checkout of their code at f0b1461")
  parser.add_argument('--vdv-python', default=sys.executable)
  parser.add_argument('--out', default='results/vdv-code-pairs')
  parser.add_argument('--summary')
  args = parser.parse_args(argv)
  rows = {}
  for seed in args.seeds:
    rows[seed] = dict(pairs=their_pairs(seed),
                      ours=ours(seed, args.data_dir, args.out))
    if args.vdv:
      rows[seed]['theirs'] = theirs(seed, args.vdv, args.vdv_python,
                                    f'{args.out}/theirs')
    print(seed, json.dumps(rows[seed]), flush=True)
  means = {who: mean_sem([r[who] for r in rows.values()])
           for who in ('ours', 'theirs') if all(who in r for r in rows.values())}
  print('mean ± SEM (%):', means)
  if args.summary:
    atomic.write_text(args.summary, json.dumps(dict(
        command=' '.join(['python', *sys.argv]), seeds=rows, means=means),
        indent=2) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
