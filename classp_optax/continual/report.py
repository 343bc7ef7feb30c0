"""What a command reports: the table, the spread over seeds, the figure,
and ``results.json``, which keeps every method a folder's runs trained."""

import json
import pathlib

from classp_optax.continual import atomic
from classp_optax.continual import metrics
from classp_optax.continual import plots
from classp_optax.continual.results import CHANCE_MARGIN
from classp_optax.continual.results import RunResult

RESULTS = 'results.json'


def format_spread(results) -> str:
  """Mean ± std over seeds of each configuration of a sweep, a row each."""
  groups: dict[str, list] = {}
  for r in results:
    settings = {k: v for k, v in r.swept.items() if k != 'seed'}
    name = ' '.join([r.method, *(f'{k}={v}' for k, v in settings.items())])
    groups.setdefault(name, []).append(r)
  width = max(10, *map(len, groups))
  header = (f'{"configuration":{width}} {"seeds":>5} {"avg acc":>15} '
            f'{"forgetting":>15} {"learn acc":>15}')
  lines = [header, '-' * len(header)]
  for name, runs in groups.items():
    finished = [r.summary for r in runs if r.diverged is None]
    cells = []
    for key in ('average_accuracy', 'forgetting', 'learning_accuracy'):
      values = [s[key] for s in finished]
      cells.append('{:.3f} ± {:.3f}'.format(*metrics.mean_and_spread(values))
                   if values else 'diverged')
    diverged = len(runs) - len(finished)
    lines.append(f'{name:{width}} {len(finished):5d} ' + ' '.join(
        f'{c:>15}' for c in cells)
        + (f'  ({diverged} diverged, left out)' if diverged else ''))
  return '\n'.join(lines)


def format_table(results) -> str:
  """One row per method. A run that diverged shows where, not numbers; tasks
  learnt to within a few points of their majority-class accuracy are named."""
  width = max(10, *(len(r.label) for r in results))
  header = (f'{"method":{width}} {"avg acc":>8} {"forgetting":>10} {"BWT":>7} '
            f'{"learn acc":>9} {"state bytes":>12} {"wall s":>7}')
  lines = [header, '-' * len(header)]
  notes = []
  for r in results:
    if r.diverged is not None:
      lines.append(f'{r.label:{width}} {r.status}')
      continue
    s = r.summary
    mark = '*' if r.not_learnt else ' '
    lines.append(
        f'{r.label:{width}} {s["average_accuracy"]:8.3f} '
        f'{s["forgetting"]:10.3f} '
        f'{s["backward_transfer"]:7.3f} {s["learning_accuracy"]:8.3f}{mark} '
        f'{r.state_bytes:12,d} {r.wall_time:7.1f}'
    )
    if r.not_learnt:
      tasks = ', '.join(f'{j} ({r.accuracy[j, j]:.3f} vs '
                        f'{r.majority_accuracy[j]:.3f})' for j in r.not_learnt)
      notes.append(f'* {r.label}: not learnt, within '
                   f'{CHANCE_MARGIN:.2f} of always answering the most '
                   f'frequent label: task {tasks}')
  return '\n'.join(lines + notes)


def _settings_differ(saved: dict, settings: dict) -> list[str]:
  return sorted(k for k in settings if saved.get(k) != settings[k])


def check_earlier_results(out: pathlib.Path, settings: dict, labels: set,
                          overwrite: bool) -> None:
  """Refuses, before anything trains, to write results beside those of
  other settings in ``out`` (they would be lost or mixed), unless told to
  ``overwrite`` them."""
  path = out / RESULTS
  if overwrite or not path.exists():
    return
  differ = _settings_differ(json.loads(path.read_text()), settings)
  if differ:
    raise ValueError(
        f'{path} holds results of other settings ({", ".join(differ)} '
        'differ). Give another --out, or pass --overwrite to replace them.')


def _rows(out: pathlib.Path, settings: dict, results: list) -> list[dict]:
  """The rows of ``results``, and those of every other method ``out``'s
  earlier results hold with the same settings, in their first order."""
  rows = {r.label: r.to_json() for r in results}
  path = out / RESULTS
  if path.exists():
    saved = json.loads(path.read_text())
    if not _settings_differ(saved, settings):
      earlier = {RunResult.from_json(row).label: row
                 for row in saved['results']}
      rows = {**{label: rows.get(label, row) for label, row in earlier.items()},
              **rows}
  return list(rows.values())


def finished(out: pathlib.Path, settings: dict, runs: dict) -> list | None:
  """The results ``out`` already holds for every configuration of ``runs``
  (``{label: [(hyperparams, swept)]}``) under ``settings``, or None unless
  all of them are there: a run that finished needs no training again."""
  path = out / RESULTS
  if not path.exists():
    return None
  saved = json.loads(path.read_text())
  if _settings_differ(saved, settings):
    return None
  normal = lambda value: json.loads(json.dumps(value))  # noqa: E731
  rows = {(row['method'], json.dumps(row['hyperparams'], sort_keys=True),
           json.dumps(row.get('swept', {}), sort_keys=True)): row
          for row in saved['results']}
  keys = [(label, json.dumps(normal(hyperparams), sort_keys=True),
           json.dumps(normal(swept), sort_keys=True))
          for label, configurations in runs.items()
          for hyperparams, swept in configurations]
  if not all(key in rows for key in keys):
    return None
  return [RunResult.from_json(rows[key]) for key in keys]


def _title(settings: dict) -> str:
  seeds = settings['seeds']
  title = f'{settings["benchmark"]}, ' + (
      f'seeds {",".join(map(str, seeds))}' if seeds
      else f'seed {settings["seed"]}')
  if settings['scenario'] is not None:
    title += f', {settings["scenario"]}-incremental'
  return title


def show(settings: dict, results: list, description: str) -> None:
  """Prints the table of ``results`` (and the spread over seeds)."""
  seeds = settings['seeds']
  print(f'\n{_title(settings)}: {description}')
  print(format_table(results))
  if seeds and len(seeds) > 1:
    print(f'\nover seeds {",".join(map(str, seeds))}:')
    print(format_spread(results))


def write(out: pathlib.Path, settings: dict, results: list, description: str,
          **extra) -> None:
  """Writes ``results.json`` and ``accuracy.png`` and prints the table,
  under the benchmark's ``description``."""
  rows = _rows(out, settings, results)
  atomic.write_text(out / RESULTS, json.dumps(
      dict(settings, **extra, results=rows), indent=2))
  shown = [RunResult.from_json(row) for row in rows]
  plots.plot_accuracy_curves(shown, out / 'accuracy.png', _title(settings))
  show(settings, shown, description)
  print(f'\nwrote {out / RESULTS} and {out / "accuracy.png"}')
