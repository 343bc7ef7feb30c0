"""Which of the Fisher's two settings moved EWC on permuted MNIST's
class-incremental stream: its kind (the true label, ``empirical``, or the
model's most probable one, ``predicted``) or its sample count (1,000
examples a task, or the whole task).

    python benchmarks/fisher_ablation.py --data-dir ../shared/data

The preset's EWC and online EWC at the two corners the standard map has
not run (``empirical`` on the whole task, ``predicted`` on 1,000), one
``classp-continual`` command a seed; the other two corners are the map's
rows (``predicted`` on the whole task, the preset today) and its earlier
rows (``empirical`` on 1,000, in git history). Each seed's summary is kept
in ``docs/results/fisher-ablation/``; a finished run is reused, an
interrupted one resumes, ``--no-run`` trains nothing.
"""

import argparse
import json
import pathlib
import sys

from classp_optax.continual.suites import SUITES

from _runs import run_and_keep
from _runs import seed_list

BENCHMARK, SCENARIO = 'permuted-mnist-vdv', 'class'
FOLDER = pathlib.Path('docs/results/fisher-ablation')
CORNERS = {'empirical-60000': ('empirical', 60000),
           'predicted-1000': ('predicted', 1000)}


def variants() -> dict[str, dict]:
  """``{label: settings}``: each preset penalty at each corner."""
  suite = SUITES[BENCHMARK]
  return {f'ewc:{name}-{corner}': {
      **suite.defaults_for(preset, SCENARIO), 'fisher': kind,
      'fisher_samples': samples}
          for name, preset in (('ewc', 'ewc'), ('online', 'ewc:online'))
          for corner, (kind, samples) in CORNERS.items()}


def command(seed: int, data_dir) -> list[str]:
  chosen = variants()
  argv = ['--benchmark', BENCHMARK, '--scenario', SCENARIO, '--methods',
          ','.join(chosen), '--seed', str(seed)]
  for label, settings in chosen.items():
    argv += [f'--set={label}.{name}={value!r}'
             for name, value in settings.items()]
  return argv + (['--data-dir', data_dir] if data_dir else [])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir')
  parser.add_argument('--seeds', default='0', type=seed_list)
  parser.add_argument('--out', default='runs/fisher-ablation')
  parser.add_argument('--no-run', action='store_true')
  args = parser.parse_args(argv)
  for seed in args.seeds:
    path = FOLDER / f'{BENCHMARK}-{SCENARIO}-seed{seed}.json'
    if not path.exists() and not args.no_run:
      run_and_keep(command(seed, args.data_dir),
                   pathlib.Path(args.out) / f'seed{seed}', path)
    if path.exists():
      for label, run in json.loads(path.read_text())['results'].items():
        print(f'seed {seed} {label:>28}: '
              f'{100 * run["average_accuracy"]:.2f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
