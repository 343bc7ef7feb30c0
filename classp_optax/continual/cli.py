"""classp-continual: compare optimizers on a continual-learning benchmark.

    classp-continual                                   # split-digits, embedded
    classp-continual --benchmark permuted-mnist --data-dir ../shared/data \\
        --methods classp,adam --set classp.learning_rate=1e-3 --tasks 20
    classp-continual --resume                          # continue a killed run

Prints a table, and writes ``results.json`` and ``accuracy.png`` to the output
folder; checkpoints go to its ``checkpoints/<method>/``.
"""

import argparse
import ast
import json
import pathlib
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
    method, dot, name = key.partition('.')
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
  parser.add_argument('--methods', default='classp,ewc,sgd,adam',
                      help=f'comma-separated, from {sorted(methods.METHODS)}')
  parser.add_argument('--set', action='append', default=[], metavar='M.K=V',
                      help='a hyperparameter, e.g. ewc.strength=1000 '
                           '(repeatable)')
  parser.add_argument('--epochs', help='per task: N, or N1,N2,... per task')
  parser.add_argument('--batch-size', type=int)
  parser.add_argument('--tasks', type=int, help='tasks of a permuted stream')
  parser.add_argument('--model', choices=('mlp', 'cnn'))
  parser.add_argument('--init', choices=models.INITS, default='flax',
                      help="the MLP's initialisation: Flax's or PyTorch's")
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
  header = (f'{"method":10} {"avg acc":>8} {"forgetting":>10} {"BWT":>7} '
            f'{"learn acc":>9} {"state bytes":>12} {"wall s":>7}')
  lines = [header, '-' * len(header)]
  for r in results:
    s = r.summary
    lines.append(
        f'{r.method:10} {s["average_accuracy"]:8.3f} {s["forgetting"]:10.3f} '
        f'{s["backward_transfer"]:7.3f} {s["learning_accuracy"]:9.3f} '
        f'{r.state_bytes:12,d} {r.wall_time:7.1f}'
    )
  return '\n'.join(lines)


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


def run(args) -> list[loop.RunResult]:
  suite = SUITES[args.benchmark]
  check_args(args, suite)
  names = [m.strip() for m in args.methods.split(',') if m.strip()]
  overrides = parse_overrides(args.set)
  unknown = sorted(set(overrides) - set(names))
  if unknown:
    raise ValueError(f'--set names methods not in --methods: {unknown}.')
  # Build every method first: a bad name or value stops the run here.
  chosen = [methods.make_method(n, **{**suite.method_defaults.get(n, {}),
                                      **overrides.get(n, {})})
            for n in names]
  epochs = _epochs(args.epochs) or suite.epochs
  config = loop.TrainConfig(
      epochs=epochs, batch_size=args.batch_size or suite.batch_size,
      seed=args.seed,
      eval_batch_size=1000 - 1000 % jax.device_count(),
  )
  if args.download:
    for name in ('mnist', 'fashion-mnist'):
      datasets.download(name, args.data_dir)
  tasks = suite.make_tasks(args.data_dir, args.seed,
                           args.tasks or suite.num_tasks)
  if args.standardize:
    tasks = streams.standardize_tasks(tasks)
  if args.validation is not None:
    tasks = streams.validation_tasks(tasks, args.validation, args.seed)
  if not isinstance(epochs, int) and len(epochs) != len(tasks):
    raise ValueError(
        f'--epochs lists {len(epochs)} values for {len(tasks)} tasks.')
  model_name = args.model or suite.model
  image_shape = tasks[0].dataset.x_train.shape[1:]
  num_classes = tasks[0].dataset.num_classes

  def make_model():
    return models.make_model(model_name, image_shape, num_classes, args.seed,
                             hidden=suite.hidden, init=args.init)

  mesh = None
  if jax.device_count() > 1:
    mesh = Mesh(np.array(jax.devices()), ('data',))
  out = pathlib.Path(args.out or f'results/{args.benchmark}')
  out.mkdir(parents=True, exist_ok=True)
  results = []
  for method in chosen:
    ckpt = out / 'checkpoints' / method.name
    if not args.resume and ckpt.exists():
      shutil.rmtree(ckpt)
    results.append(loop.train_continual(
        make_model, tasks, method, config, checkpoint_dir=ckpt,
        run_fingerprint=dict(
            loop.fingerprint(method, args.benchmark, config, model_name),
            standardize=args.standardize, init=args.init,
            validation=args.validation),
        mesh=mesh, progress=not args.no_progress,
    ))
  title = f'{args.benchmark}, seed {args.seed}'
  (out / 'results.json').write_text(json.dumps(
      dict(benchmark=args.benchmark, seed=args.seed,
           devices=[str(d) for d in jax.devices()],
           results=[r.to_json() for r in results]), indent=2))
  plots.plot_accuracy_curves(results, out / 'accuracy.png', title)
  print(f'\n{title}: {SUITES[args.benchmark].description}')
  print(format_table(results))
  print(f'\nwrote {out / "results.json"} and {out / "accuracy.png"}')
  return results


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    run(args)
  except (ValueError, OSError) as e:
    parser.exit(2, f'classp-continual: error: {e}\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
