"""Which Fisher EWC takes: empirical, predicted, sampled or exact, on van de
Ven & Tolias's split and permuted MNIST, in each scenario.

    python benchmarks/fisher_study.py --data-dir ../shared/data
    python benchmarks/fisher_study.py --no-run          # the table of what ran

Runs EWC and online EWC with each kind of Fisher (``ewc.fisher``, over
every example of each task, as the presets take it) at the presets'
settings for the scenario, each seed of ``--seeds`` one command, and prints
final average accuracy (%): mean ± std over the seeds run, and how many. A
run that diverged or left a task unlearnt shows as such, never as a number.
Van de Ven's study of the Fisher in EWC (ICLR 2025 blog track, arXiv
2502.11756) finds the exact Fisher ahead of the empirical one, the sampled
one between them.

The exact Fisher takes one backward pass per output of an example's head:
on permuted MNIST's class-incremental stream (the outputs trained so far,
up to 100) a whole task's exact Fisher takes up to 55 s in closed form on 2
CPU cores, a task-incremental head of 10 a tenth of that (docs/results.md,
part 1d).
``--fisher-samples N`` takes N examples of each task for every kind instead
(the summaries record it).

Each variant of a seed is one command, its summary added to
``docs/results/fisher-study/<benchmark>-<scenario>-seed<k>.json`` as it
ends, so that a seed of the permuted stream (some 3 hours here) lands a
variant at a time; finished runs are reused, an interrupted one resumes
from its checkpoints, and ``--no-run`` trains nothing (a cell counts the
seeds each variant has run). The preset's own Fisher is one of the variants:
where ``standard_map.py``'s committed run of the same seed has exactly a
variant's hyperparameters (defaults included), the study takes that run (the
summary's ``reused`` names it) and trains the others; the two give the same
accuracies bit for bit. The map's runs made before EWC's Fisher went to
closed form (``STALE``) are trained again.
"""

import argparse
import json
import pathlib
import sys

import standard_map

from classp_optax.continual import atomic
from classp_optax.continual import make_method
from classp_optax.continual.methods.fisher import KINDS
from classp_optax.continual.suites import SUITES

from _runs import run_and_summarise
from _runs import seed_list
from _runs import seeds_cell

BENCHMARKS = ('split-mnist-vdv', 'permuted-mnist-vdv')
FOLDER = pathlib.Path('docs/results/fisher-study')
# Each penalty by the preset's label whose settings it takes.
PENALTIES = {'ewc': 'ewc', 'online': 'ewc:online'}
# The map's runs (benchmark, scenario, seed, method) made before EWC's Fisher
# on an MLP went to closed form (802ee76): the same Fisher summed in another
# order, so today's code ends elsewhere (class seed 0: 22.52 there, 21.77
# now). Their wall times give them away: 2,401 s and 1,390 s against 508 to
# 541 s for online EWC beside them. The study trains these again, so that a
# cell's variants are all of one code.
STALE = {('permuted-mnist-vdv', 'class', 0, 'ewc'),
         ('permuted-mnist-vdv', 'task', 0, 'ewc')}


def variants(benchmark: str, scenario: str,
             samples: int | None = None) -> dict[str, dict]:
  """``{label: settings}``: each penalty with each kind of Fisher, at the
  preset's settings for the scenario (on ``samples`` examples a task)."""
  suite = SUITES[benchmark]
  fewer = {} if samples is None else {'fisher_samples': samples}
  return {f'ewc:{name}-{kind}': {**suite.defaults_for(preset, scenario),
                                 'fisher': kind, **fewer}
          for name, preset in PENALTIES.items() for kind in KINDS}


def command(benchmark: str, scenario: str, seed: int, data_dir,
            samples: int | None = None, skip=()) -> list[str]:
  """The ``classp-continual`` arguments of one seed of one cell, less the
  variants in ``skip``."""
  chosen = {label: settings for label, settings in
            variants(benchmark, scenario, samples).items() if label not in skip}
  argv = ['--benchmark', benchmark, '--scenario', scenario, '--methods',
          ','.join(chosen), '--seed', str(seed)]
  for label, settings in chosen.items():
    for name, value in settings.items():
      argv += ['--set', f'{label}.{name}={value!r}']
  return argv + (['--data-dir', data_dir] if data_dir else [])


def from_the_map(benchmark: str, scenario: str, seed: int,
                 chosen: dict) -> dict[str, tuple[str, dict]]:
  """``{label: (where, run)}``: the standard map's committed runs of this
  seed whose hyperparameters, defaults and all, are exactly a variant's,
  less those of :data:`STALE`."""
  path = standard_map.summary_path(benchmark, scenario, seed)
  if not path.exists():
    return {}
  runs = standard_map.load_summary(path)['results']
  full = {label: json.loads(json.dumps(make_method(
      label, benchmark=benchmark, scenario=scenario, **settings).hyperparams))
          for label, settings in chosen.items()}
  return {label: (f'{path} {method}', run) for label in chosen
          for method, run in runs.items()
          if run['hyperparams'] == full[label]
          and (benchmark, scenario, seed, method) not in STALE}


def run_summary(benchmark: str, scenario: str, seed: int, args,
                chosen: bool = True):
  """One seed of one cell: its variants run so far (committed), after
  running the others if ``chosen`` and not ``--no-run`` (less what the map
  ran), one command each, the summary written after each, so that a long
  seed lands a variant at a time; None if none has run."""
  tag = '' if args.fisher_samples is None else f'-{args.fisher_samples}'
  path = FOLDER / f'{benchmark}-{scenario}{tag}-seed{seed}.json'
  summary = json.loads(path.read_text()) if path.exists() else None
  if args.no_run or not chosen:
    return summary
  every = variants(benchmark, scenario, args.fisher_samples)
  if summary is None:
    reused = from_the_map(benchmark, scenario, seed, every)
    summary = dict(results={k: run for k, (_, run) in reused.items()},
                   **({'reused': {k: where for k, (where, _) in reused.items()}}
                      if reused else {}))
  out = pathlib.Path(args.out) / f'{benchmark}-{scenario}{tag}' / f'seed{seed}'
  for label in every:
    if label not in summary['results']:
      argv = command(benchmark, scenario, seed, args.data_dir,
                     args.fisher_samples, skip=set(every) - {label})
      ran = run_and_summarise(argv, out / label)
      summary['results'][label] = ran['results'][label]
      summary.setdefault('commands', {})[label] = ran['command']
      path.parent.mkdir(parents=True, exist_ok=True)
      atomic.write_text(path, json.dumps(summary, indent=2) + '\n')
  return summary


def table(summaries: dict) -> list[str]:
  """Markdown rows from ``{(benchmark, scenario): {seed: summary}}``: a row
  per penalty and kind, a column per benchmark and scenario."""
  columns = [(b, s) for b in BENCHMARKS for s in SUITES[b].scenarios]
  rows = ['| penalty, Fisher | ' + ' | '.join(
      f'{b.removesuffix("-vdv")} {s}' for b, s in columns) + ' |',
          '|---' * (len(columns) + 1) + '|']
  for name in PENALTIES:
    for kind in KINDS:
      label = f'ewc:{name}-{kind}'
      cells = [seeds_cell({seed: s['results'][label]
                           for seed, s in summaries.get(c, {}).items()
                           if label in s['results']})
               for c in columns]
      rows.append(f'| {name}, {kind} | ' + ' | '.join(cells) + ' |')
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir')
  parser.add_argument('--seeds', default='0,1,2', type=seed_list)
  parser.add_argument('--benchmarks', default=','.join(BENCHMARKS))
  parser.add_argument('--out', default='runs/fisher-study')
  parser.add_argument('--fisher-samples', type=int, metavar='N',
                      help='examples of each task in every Fisher (default: '
                           "the preset's, every one)")
  parser.add_argument('--scenarios', default='task,domain,class',
                      help='which to run, in this order (the table shows '
                           'every one that has run)')
  parser.add_argument('--no-run', action='store_true')
  args = parser.parse_args(argv)
  summaries = {}
  for benchmark in args.benchmarks.split(','):
    for seed in args.seeds:
      for scenario in SUITES[benchmark].scenarios:
        chosen = scenario in args.scenarios.split(',')
        if (s := run_summary(benchmark, scenario, seed, args,
                             chosen)) is not None:
          summaries.setdefault((benchmark, scenario), {})[seed] = s
  print('\n'.join(table(summaries)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
