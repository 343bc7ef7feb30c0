"""One ``classp-continual`` run per output folder, run once and then reused."""

import argparse
import json
import pathlib

from classp_optax.continual import atomic
from classp_optax.continual import cli
from classp_optax.continual import metrics
from classp_optax.continual.arguments import parse_seeds


def seed_list(text: str) -> list[int]:
  """``--seeds`` as argparse's ``type``: the CLI's rule and message, refused
  by argparse (exit 2, ``argument --seeds: ...``) rather than a traceback."""
  try:
    return parse_seeds(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def run_once(argv: list[str], out: pathlib.Path, progress: bool = True) -> dict:
  """Runs ``classp-continual argv`` into ``out`` unless its ``results.json``
  exists (resuming from its checkpoints otherwise); returns that JSON."""
  done = out / 'results.json'
  if not done.exists():
    argv = [*argv, '--out', str(out), '--resume',
            *([] if progress else ['--no-progress'])]
    print('+ classp-continual ' + ' '.join(argv), flush=True)
    if cli.main(argv) != 0:
      raise SystemExit(1)
  return json.loads(done.read_text())


def summary_of(results: dict) -> dict:
  """What a map's table needs of a run's results.json, by method."""
  keep = ('hyperparams', 'accuracy', 'average_accuracy', 'forgetting',
          'backward_transfer', 'learning_accuracy', 'wall_time', 'diverged',
          'not_learnt', 'made_with')
  return dict(command=results.get('command'), results={
      r['method']: {key: r.get(key) for key in keep}
      for r in results['results']})


def run_and_summarise(argv: list[str], out: pathlib.Path) -> dict:
  """:func:`run_once` without progress bars, as :func:`summary_of` keeps it
  (with the command that made it)."""
  return summary_of(dict(run_once(argv, out, progress=False),
                         command='classp-continual ' + ' '.join(argv)))


def run_and_keep(argv: list[str], out: pathlib.Path,
                 path: pathlib.Path) -> dict:
  """:func:`run_once`, then its summary written to ``path`` (committed
  beside the tables, so that they can be made again from the repository)."""
  summary = run_and_summarise(argv, out)
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(path, json.dumps(summary, indent=2) + '\n')
  return summary


def kept(folder: pathlib.Path) -> dict:
  """``{name: {seed: summary}}`` of every ``<name>-seed<k>.json`` in
  ``folder``, the per-seed summaries a map keeps."""
  summaries = {}
  for path in sorted(folder.glob('*-seed*.json')):
    name, _, seed = path.stem.rpartition('-seed')
    summaries.setdefault(name, {})[int(seed)] = json.loads(path.read_text())
  return summaries


def failure(run: dict) -> str | None:
  """Why a run's scores are no result: it diverged, or it left a task
  unlearnt (``not_learnt``, as ``results.json`` and the summaries say); None
  if it trained."""
  if run['diverged'] is not None:
    return (f'diverged at task {run["diverged"]["task"]}, step '
            f'{run["diverged"]["step"]}')
  if run['not_learnt']:
    return f'tasks {", ".join(map(str, run["not_learnt"]))} not learnt'
  return None


def failures(runs: dict) -> dict:
  """{seed: why} for the seeds whose run is no result."""
  return {str(seed): why for seed, run in runs.items()
          if (why := failure(run)) is not None}


def failed_cell(failed: dict) -> str:
  """The first failed seed, as a table cell."""
  seed, why = next(iter(failed.items()))
  if why.startswith('diverged'):
    return f'diverged (seed {seed}: {why.removeprefix("diverged at ")})'
  return f'not learnt (seed {seed}: {why.removesuffix(" not learnt")})'


def mean_cell(mean: float, spread: float, seeds: int) -> str:
  """A table cell of a percentage over seeds: mean ± spread (how many); one
  seed has no spread, so its cell is the value (1)."""
  if seeds == 1:
    return f'{mean:.2f} (1)'
  return f'{mean:.2f} ± {spread:.2f} ({seeds})'


def seeds_cell(runs: dict) -> str:
  """A table cell from ``{seed: run}``: the final average accuracy (%)
  over the seeds, or why a seed's run is no result; '-' if none ran."""
  if not runs:
    return '-'
  if failed := failures(runs):
    return failed_cell(failed)
  mean, spread = metrics.mean_and_spread(
      [100 * r['average_accuracy'] for r in runs.values()])
  return mean_cell(mean, spread, len(runs))
