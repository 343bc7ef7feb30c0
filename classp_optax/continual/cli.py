"""classp-continual: compare optimizers on a continual-learning benchmark.

    classp-continual                                   # split-digits, embedded
    classp-continual --benchmark permuted-mnist --data-dir ../shared/data \\
        --methods classp,adam --set classp.learning_rate=1e-3 --tasks 20
    classp-continual --scenario class --methods classp,classp:sparse \\
        --set classp:sparse.threshold=1e-3               # a labelled variant
    classp-continual --resume                          # continue a killed run

Prints a table, and writes ``results.json`` and ``accuracy.png`` to the output
folder; checkpoints go to its ``checkpoints/<method>/``.
"""

import argparse
import ast
import dataclasses
import json
import pathlib
import shlex
import shutil
import sys

import jax
from jax.sharding import Mesh
import numpy as np

from classp_optax.continual import datasets
from classp_optax.continual import loop
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import plots
from classp_optax.continual import streams
from classp_optax.continual.suites import SUITES


def parse_overrides(items) -> dict[str, dict]:
  """``['classp.learning_rate=0.1', ...]`` -> ``{'classp': {...}}``."""
  overrides: dict[str, dict] = {}
  for item in items:
    key, sep, value = item.partition('=')
    method, dot, name = key.partition('.')  # method may be name:label
    if not (sep and dot and name):
      raise ValueError(
          f'--set takes METHOD.NAME=VALUE, e.g. classp.threshold=0.5; got '
          f'{item!r}.'
      )
    try:
      parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      parsed = value  # a bare word, such as online
    overrides.setdefault(method, {})[name] = parsed
  return overrides


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='classp-continual', description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='benchmarks:\n' + '\n'.join(
          f'  {name:16} {suite.description}' for name, suite in SUITES.items()),
  )
  parser.add_argument('--benchmark', default='split-digits', choices=SUITES)
  parser.add_argument('--scenario', choices=streams.SCENARIOS,
                      help='of a split benchmark: task- (the default), '
                           'domain- or class-incremental')
  parser.add_argument('--methods', default='classp,ewc,si,sgd,adam',
                      help=f'comma-separated, from {sorted(methods.METHODS)}; '
                           'NAME:LABEL adds a labelled variant')
  parser.add_argument('--set', action='append', default=[], metavar='M.K=V',
                      help='a hyperparameter, e.g. ewc.strength=1000 or '
                           'classp:sparse.threshold=1e-3 (repeatable)')
  parser.add_argument('--epochs', help='per task: N, or N1,N2,... per task')
  parser.add_argument('--steps-per-task', type=int, metavar='N',
                      help='train every task for N steps instead of epochs')
  parser.add_argument('--batch-size', type=int)
  parser.add_argument('--tasks', type=int, help='tasks of a permuted stream')
  parser.add_argument('--model', choices=('mlp', 'cnn'))
  parser.add_argument('--init', choices=models.INITS,
                      help="the MLP's initialisation: Flax's or PyTorch's "
                           "(default: the benchmark's, mostly Flax's)")
  parser.add_argument('--standardize', action='store_true',
                      help="scale pixels by the training set's mean and std")
  parser.add_argument('--validation', type=float, metavar='FRACTION',
                      help='score on this fraction of the training data, '
                           'held out, instead of the test set (for tuning)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data-dir', default=None,
                      help=f'folder with mnist/ and fashion-mnist/; default '
                           f'${datasets.DATA_DIR_ENV}')
  parser.add_argument('--download', action='store_true',
                      help='download missing MNIST-style data first '
                           '(needs internet)')
  parser.add_argument('--out', default=None,
                      help='output folder; default results/<benchmark>')
  parser.add_argument('--resume', action='store_true',
                      help='continue from the checkpoints in the output folder')
  parser.add_argument('--overwrite', action='store_true',
                      help='delete the checkpoints of an earlier run in the '
                           'output folder and start again')
  parser.add_argument('--checkpoint-every', type=int, metavar='STEPS',
                      help='also checkpoint every STEPS steps within a task')
  parser.add_argument('--checkpoint-minutes', type=float, default=5.0,
                      help='also checkpoint within a task after this many '
                           'minutes since the last checkpoint (default 5)')
  parser.add_argument('--no-progress', action='store_true')
  return parser


def _epochs(text):
  if text is None:
    return None
  values = tuple(int(v) for v in text.split(','))
  if any(v < 1 for v in values):
    raise ValueError(f'--epochs must be positive integers, got {text!r}.')
  return values[0] if len(values) == 1 else values


def format_table(results) -> str:
  """One row per method. A run that diverged shows where, not numbers; tasks
  learnt to within a few points of their majority-class accuracy are named."""
  width = max(10, *(len(r.method) for r in results))
  header = (f'{"method":{width}} {"avg acc":>8} {"forgetting":>10} {"BWT":>7} '
            f'{"learn acc":>9} {"state bytes":>12} {"wall s":>7}')
  lines = [header, '-' * len(header)]
  notes = []
  for r in results:
    if r.diverged is not None:
      d = r.diverged
      lines.append(f'{r.method:{width}} diverged in task {d["task"]} at step '
                   f'{d["step"]} ({d["what"]} not finite): no result')
      continue
    s = r.summary
    mark = '*' if r.not_learnt else ' '
    lines.append(
        f'{r.method:{width}} {s["average_accuracy"]:8.3f} {s["forgetting"]:10.3f} '
        f'{s["backward_transfer"]:7.3f} {s["learning_accuracy"]:8.3f}{mark} '
        f'{r.state_bytes:12,d} {r.wall_time:7.1f}'
    )
    if r.not_learnt:
      tasks = ', '.join(f'{j} ({r.accuracy[j, j]:.3f} vs '
                        f'{r.majority_accuracy[j]:.3f})' for j in r.not_learnt)
      notes.append(f'* {r.method}: not learnt, within '
                   f'{loop.CHANCE_MARGIN:.2f} of always answering the most '
                   f'frequent label: task {tasks}')
  return '\n'.join(lines + notes)


def check_args(args, suite) -> None:
  """Every numeric option in its range, before any data is loaded."""
  if args.batch_size is not None and args.batch_size < 1:
    raise ValueError(f'--batch-size must be >= 1, got {args.batch_size}.')
  if args.seed < 0:
    raise ValueError(f'--seed must be >= 0, got {args.seed}.')
  if args.tasks is not None:
    if suite.num_tasks is None:
      raise ValueError(
          f'--tasks applies to permuted benchmarks only, not {args.benchmark}.')
    if args.tasks < 1:
      raise ValueError(f'--tasks must be >= 1, got {args.tasks}.')
  if args.validation is not None and not 0 < args.validation < 1:
    raise ValueError(f'--validation must be in (0, 1), got {args.validation}.')
  if args.scenario is not None and suite.scenarios is None:
    raise ValueError(f'--scenario applies to split benchmarks only, not '
                     f'{args.benchmark}.')
  if args.checkpoint_every is not None and args.checkpoint_every < 1:
    raise ValueError(
        f'--checkpoint-every must be >= 1, got {args.checkpoint_every}.')
  if not args.checkpoint_minutes > 0:
    raise ValueError(
        f'--checkpoint-minutes must be > 0, got {args.checkpoint_minutes}.')
  if args.steps_per_task is not None:
    if args.steps_per_task < 1:
      raise ValueError(
          f'--steps-per-task must be >= 1, got {args.steps_per_task}.')
    if args.epochs is not None:
      raise ValueError('--steps-per-task and --epochs exclude each other.')
  if args.resume and args.overwrite:
    raise ValueError('--resume and --overwrite exclude each other.')


def choose_methods(args, suite, scenario=None) -> list[methods.Method]:
  """The methods of ``--methods`` with the benchmark's defaults (in
  ``scenario``) and ``--set``; every name and value is checked here, before
  any data is loaded."""
  labels = [m.strip() for m in args.methods.split(',') if m.strip()]
  twice = sorted({label for label in labels if labels.count(label) > 1})
  if twice:
    raise ValueError(
        f'--methods lists {", ".join(twice)} more than once; give each '
        f'variant its own label, as in {twice[0]},{twice[0]}:other.')
  overrides = parse_overrides(args.set)
  unknown = sorted(set(overrides) - set(labels))
  if unknown:
    raise ValueError(f'--set names methods not in --methods: {unknown}.')
  chosen = []
  for label in labels:
    chosen.append(methods.make_method(
        label, **{**suite.defaults_for(label, scenario),
                  **overrides.get(label, {})}))
  return chosen


def checkpoint_folder(out: pathlib.Path, method: methods.Method) -> pathlib.Path:
  return out / 'checkpoints' / method.name.replace(':', '@')


def _check_earlier_runs(args, out, chosen) -> None:
  """Refuses to train over an earlier run's checkpoints unless told what to
  do with them; with --overwrite, deletes them."""
  earlier = [checkpoint_folder(out, m) for m in chosen
             if checkpoint_folder(out, m).exists()]
  if earlier and not (args.resume or args.overwrite):
    raise ValueError(
        f'{", ".join(map(str, earlier))} hold an earlier run\'s checkpoints. '
        'Pass --resume to continue that run, or --overwrite to delete them '
        'and start again.')
  if args.overwrite:
    for folder in earlier:
      shutil.rmtree(folder)


def run(args) -> list[loop.RunResult]:
  suite = SUITES[args.benchmark]
  check_args(args, suite)
  scenario = args.scenario or (suite.scenarios or (None,))[0]
  chosen = choose_methods(args, suite, scenario)
  epochs = _epochs(args.epochs) or suite.epochs
  steps_per_task = args.steps_per_task or (
      None if args.epochs else suite.steps_per_task)
  init = args.init or suite.init
  config = loop.TrainConfig(
      epochs=epochs, batch_size=args.batch_size or suite.batch_size,
      seed=args.seed, steps_per_task=steps_per_task,
      eval_batch_size=1000 - 1000 % jax.device_count(),
  )
  if args.download:
    for name in ('mnist', 'fashion-mnist'):
      datasets.download(name, args.data_dir)
  out = pathlib.Path(args.out or f'results/{args.benchmark}')
  _check_earlier_runs(args, out, chosen)
  tasks = suite.make_tasks(args.data_dir, args.seed,
                           args.tasks or suite.num_tasks, scenario)
  if args.standardize:
    tasks = streams.standardize_tasks(tasks)
  if args.validation is not None:
    tasks = streams.validation_tasks(tasks, args.validation, args.seed)
  if (steps_per_task is None and not isinstance(epochs, int)
      and len(epochs) != len(tasks)):
    raise ValueError(
        f'--epochs lists {len(epochs)} values for {len(tasks)} tasks.')
  if any(method.joint for method in chosen):
    streams.joint(tasks)  # refuses a stream joint training cannot run on
  model_name = args.model or suite.model
  image_shape = tasks[0].dataset.x_train.shape[1:]
  num_outputs = tasks[0].num_outputs

  def make_model():
    return models.make_model(model_name, image_shape, num_outputs, args.seed,
                             hidden=suite.hidden, init=init)

  mesh = None
  if jax.device_count() > 1:
    mesh = Mesh(np.array(jax.devices()), ('data',))
  out.mkdir(parents=True, exist_ok=True)
  results = []
  for method in chosen:
    results.append(loop.train_continual(
        make_model, tasks, method, config,
        checkpoint_dir=checkpoint_folder(out, method),
        run_fingerprint=dict(
            loop.fingerprint(method, args.benchmark, config, model_name),
            scenario=scenario, standardize=args.standardize, init=init,
            validation=args.validation),
        checkpoint_every_steps=args.checkpoint_every,
        checkpoint_every_seconds=60 * args.checkpoint_minutes,
        mesh=mesh, progress=not args.no_progress,
    ))
  title = f'{args.benchmark}, seed {args.seed}'
  if scenario is not None:
    title += f', {scenario}-incremental'
  (out / 'results.json').write_text(json.dumps(
      dict(benchmark=args.benchmark, scenario=scenario, seed=args.seed,
           config=dataclasses.asdict(config), model=model_name, init=init,
           devices=[str(d) for d in jax.devices()],
           results=[r.to_json() for r in results]), indent=2))
  plots.plot_accuracy_curves(results, out / 'accuracy.png', title)
  print(f'\n{title}: {SUITES[args.benchmark].description}')
  print(format_table(results))
  print(f'\nwrote {out / "results.json"} and {out / "accuracy.png"}')
  return results


def resume_command(argv) -> str:
  """The command line that continues an interrupted run of ``argv``."""
  kept = [a for a in argv if a != '--overwrite']
  if '--resume' not in kept:
    kept.append('--resume')
  return shlex.join(['classp-continual', *kept])


def main(argv=None) -> int:
  parser = build_parser()
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser.parse_args(argv)
  try:
    run(args)
  except (ValueError, OSError) as e:
    parser.exit(2, f'classp-continual: error: {e}\n')
  except KeyboardInterrupt:
    parser.exit(130, '\nclassp-continual: interrupted. The checkpoints keep '
                'the work up to the last one; continue with\n  '
                f'{resume_command(argv)}\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
