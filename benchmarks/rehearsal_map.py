"""The rehearsal map: the DER paper's protocol, every method at its settings,
buffers of 200 and 500.

    python benchmarks/rehearsal_map.py --data-dir ../shared/data
    python benchmarks/rehearsal_map.py --no-run

Runs, for each seed of ``--seeds``, the ``split-mnist-der`` benchmark in the
class- and task-incremental scenarios and ``permuted-mnist-der`` and
``rotated-mnist-der`` (domain-incremental), each with fine-tuning (SGD),
joint training, LwF (split only: their code offers it for class and task
streams), and ER, DER, DER++, A-GEM and ER-ACE at buffers of 200 (the
method's name) and 500 (``method:500``), and prints a table of final
average accuracy (%): mean ± std over every seed kept (below), and how
many. A run
that diverged or left a task unlearnt shows as such, never as a number.

Each finished run's summary is kept in
``docs/results/rehearsal-map/<benchmark>-<scenario>-seed<k>.json`` (so that
the table can be made again from the repository); finished runs are
reused, an interrupted one resumes from its checkpoints, and ``--no-run``
trains nothing and tables what exists. It writes
``docs/results/rehearsal-map.json``. ``--cells`` and ``--methods`` run
some cells' rows alone, for more seeds where the spread asks for them; a
row that a kept seed lacks runs in a folder of its own and joins that
seed's summary (its command under ``commands``):

    python benchmarks/rehearsal_map.py --seeds 3,4,5,6,7,8,9 \
        --cells split-mnist-der-class --methods agem,agem:500,er:500
"""

import argparse
import json
import pathlib
import sys

from classp_optax.continual import atomic

from _runs import failed_cell
from _runs import kept
from _runs import mean_cell
from _runs import run_and_summarise
from _runs import seed_list
from _runs import seeds_cell

REHEARSAL = ('er', 'der', 'derpp', 'agem', 'er_ace')
CELLS = (('split-mnist-der', 'class'), ('split-mnist-der', 'task'),
         ('permuted-mnist-der', None), ('rotated-mnist-der', None))
FOLDER = pathlib.Path('docs/results/rehearsal-map')


def methods_of(benchmark: str) -> list[str]:
  """The rows a benchmark runs, in table order."""
  rows = ['sgd', 'joint'] + (['lwf'] if benchmark.startswith('split') else [])
  return rows + [f'{m}{size}' for size in ('', ':500') for m in REHEARSAL]


def cell_name(benchmark: str, scenario: str | None) -> str:
  return f'{benchmark}-{scenario or "domain"}'


def run_summary(benchmark: str, scenario: str | None, seed: int,
                args) -> dict | None:
  """One seed of one cell: its committed summary with the rows of
  ``--methods`` it lacks run now (unless ``--no-run``) and added, or None if
  there is none and nothing ran."""
  path = FOLDER / f'{cell_name(benchmark, scenario)}-seed{seed}.json'
  out = pathlib.Path(args.out) / cell_name(benchmark, scenario) / f'seed{seed}'
  summary = json.loads(path.read_text()) if path.exists() else None
  have = summary['results'] if summary else {}
  labels = [m for m in methods_of(benchmark)
            if m in args.methods and m not in have]
  finished = (out / 'results.json').exists()
  if args.no_run and (summary is not None or not finished):
    return summary  # nothing to train (a finished run is still kept)
  if not labels:
    return summary
  argv = ['--benchmark', benchmark, '--methods', ','.join(labels), '--seed',
          str(seed)]
  argv += ['--scenario', scenario] if scenario else []
  argv += ['--data-dir', args.data_dir] if args.data_dir else []
  if summary is None:
    summary = run_and_summarise(argv, out)
  else:  # the rows a kept seed lacks, in a folder of their own
    alone = out.with_name(f'{out.name}+{"+".join(labels)}')
    fresh = run_and_summarise(argv, alone)
    summary['results'].update(fresh['results'])
    summary.setdefault('commands', {}).update(
        dict.fromkeys(labels, fresh['command']))
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(path, json.dumps(summary, indent=2) + '\n')
  return summary


def table(summaries: dict) -> tuple[list[str], dict]:
  """Markdown rows and the record, from ``{cell: {seed: summary}}``."""
  names = [cell_name(*c) for c in CELLS]
  rows = ['| method | ' + ' | '.join(names) + ' |',
          '|---' * (len(names) + 1) + '|']
  record = {}
  labels = dict.fromkeys(m for b, _ in CELLS for m in methods_of(b))
  for label in labels:
    cells = []
    for name in names:
      runs = {seed: s['results'][label]
              for seed, s in summaries.get(name, {}).items()
              if label in s['results']}
      cells.append(seeds_cell(runs))
      record.setdefault(label, {})[name] = cells[-1]
    rows.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return rows, record


# ER and DER++ on CLASSP at buffers of 200 and 500, tuned by tune.py.
TUNED = ('er:classp', 'derpp:classp', 'er:classp500', 'derpp:classp500')


def tuned_rows(names: list[str]) -> tuple[list[str], dict]:
  """The CLASSP rows: each cell's tune.py summary
  (``docs/results/tune-<target>.json``), its test runs over the seeds."""
  rows, record = [], {}
  for label in TUNED:
    cells = []
    for name in names:
      path = pathlib.Path('docs/results') / (
          f'tune-{name.removesuffix("-domain")}.json')
      entry = (json.loads(path.read_text())['report'].get(label)
               if path.exists() else None)
      if entry is None:
        cells.append('-')
      elif entry.get('failed'):
        cells.append(failed_cell(entry['failed']))
      else:
        mean, spread = entry['average_accuracy']
        cells.append(mean_cell(100 * mean, 100 * spread,
                               len(entry['seeds'])))
      record.setdefault(f'{label} (tuned)', {})[name] = cells[-1]
    rows.append(f'| {label} (tuned) | ' + ' | '.join(cells) + ' |')
  return rows, record


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir')
  parser.add_argument('--seeds', default='0,1,2', type=seed_list)
  parser.add_argument('--out', default='runs/rehearsal-map')
  parser.add_argument('--no-run', action='store_true')
  parser.add_argument('--cells', help='the cells to run (default: all)')
  parser.add_argument('--methods', help='the rows to run (default: all)')
  args = parser.parse_args(argv)
  names = [cell_name(*c) for c in CELLS]
  wanted = args.cells.split(',') if args.cells else names
  if unknown := sorted(set(wanted) - set(names)):
    parser.error(f'--cells must be among {names}, got {unknown}')
  labels = list(dict.fromkeys(m for b, _ in CELLS for m in methods_of(b)))
  args.methods = args.methods.split(',') if args.methods else labels
  if unknown := sorted(set(args.methods) - set(labels)):
    parser.error(f'--methods must be among {labels}, got {unknown}')
  for seed in args.seeds:
    for benchmark, scenario in CELLS:
      if cell_name(benchmark, scenario) in wanted:
        run_summary(benchmark, scenario, seed, args)
  rows, record = table(kept(FOLDER))
  tuned, tuned_record = tuned_rows(names)
  rows, record = rows + tuned, {**record, **tuned_record}
  print('\n'.join(rows))
  atomic.write_text(
      'docs/results/rehearsal-map.json', json.dumps(record, indent=2) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
