"""The ``classp-continual`` command's arguments: the parser, and the checks
and parsing of what it takes, made before any data is loaded."""

import argparse
import itertools
import pathlib

from classp_optax.continual import datasets
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual.suites import SUITES

DEFAULT_BENCHMARK = 'permuted-digits'
STREAMS = ('split', 'permuted')


def parse_overrides(items) -> dict[str, dict]:
  """``['classp.learning_rate=0.1', ...]`` -> ``{'classp':
  {'learning_rate': '0.1'}}``: the texts, which
  :func:`methods.parse_settings` parses as each setting's declaration says."""
  overrides: dict[str, dict] = {}
  for item in items:
    key, sep, value = item.partition('=')
    method, dot, name = key.partition('.')  # method may be name:label
    if not (sep and dot and name):
      raise ValueError(
          f'--set takes METHOD.NAME=VALUE, e.g. classp.threshold=0.5; got '
          f'{item!r}.'
      )
    overrides.setdefault(method, {})[name] = value
  return overrides


def parse_sweeps(items) -> dict[str, list[dict]]:
  """``['classp.learning_rate=0.01,0.1', 'classp.threshold=0,1e-5']`` ->
  ``{'classp': [{'learning_rate': '0.01', 'threshold': '0'}, ...]}``: every
  combination of the values given for each method, as texts."""
  axes: dict[str, dict] = {}
  for item in items:
    key, sep, values = item.partition('=')
    method, dot, name = key.partition('.')
    if not (sep and dot and name and values):
      raise ValueError(
          '--sweep takes METHOD.NAME=V1,V2,..., e.g. '
          f'classp.learning_rate=0.01,0.1; got {item!r}.')
    if name in axes.get(method, {}):
      raise ValueError(f'--sweep names {key} twice.')
    axes.setdefault(method, {})[name] = values.split(',')
  return {method: [dict(zip(grid, values, strict=True))
                   for values in itertools.product(*grid.values())]
          for method, grid in axes.items()}


def parse_seeds(text: str | None) -> list[int] | None:
  if text is None:
    return None
  try:
    seeds = [int(v) for v in text.split(',')]
  except ValueError:
    seeds = []
  if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
    raise ValueError(f'--seeds takes distinct integers >= 0 separated by '
                     f'commas, e.g. 0,1,2; got {text!r}.')
  return seeds


def build_parser(description: str) -> argparse.ArgumentParser:
  width = max(map(len, SUITES))
  parser = argparse.ArgumentParser(
      prog='classp-continual', description=description,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='benchmarks:\n' + '\n'.join(
          f'  {name:{width}}  {suite.description}'
          for name, suite in SUITES.items()) + '\n\n' + _methods_epilog(),
  )
  _add_stream_arguments(parser.add_argument_group('the stream of tasks'))
  _add_method_arguments(parser.add_argument_group('methods and runs'))
  _add_output_arguments(parser.add_argument_group('output and checkpoints'))
  return parser


def _methods_epilog() -> str:
  """Every method of the catalogue with its settings' names."""
  width = max(map(len, methods.METHODS))
  return ('methods and their settings (--list-settings: defaults, accepted '
          'values, meaning):\n' + '\n'.join(
              f'  {name:{width}}  {", ".join(methods.settings_of(name))}'
              for name in methods.METHODS))


def _add_stream_arguments(group):
  group.add_argument('--benchmark', choices=SUITES,
                     help=f'a built-in benchmark (default {DEFAULT_BENCHMARK})')
  group.add_argument('--dataset', metavar='PATH.npz',
                     help='your own data instead of a benchmark: an .npz file '
                          'with x_train, y_train, x_test and y_test (integer '
                          'labels), cut into tasks by --stream')
  group.add_argument('--stream', choices=STREAMS,
                     help='how --dataset becomes tasks: split (classes in '
                          'groups, pairs by default; the default) or permuted '
                          '(fixed input permutations)')
  group.add_argument('--scenario', choices=streams.SCENARIOS,
                     help='task-, domain- or class-incremental; default: '
                          'task for split benchmarks, domain (one shared '
                          'head) for permuted ones')
  group.add_argument('--epochs', help='per task: N, or N1,N2,... per task')
  group.add_argument('--steps-per-task', type=int, metavar='N',
                     help='train every task for N steps instead of epochs')
  group.add_argument('--batch-size', type=int)
  group.add_argument('--tasks', type=int,
                     help='tasks of a permuted stream or of a split --dataset')
  group.add_argument('--model', choices=('mlp', 'cnn'))
  group.add_argument('--init', choices=models.INITS,
                     help="the MLP's initialisation: Flax's, PyTorch's or "
                          "Xavier's (default: the benchmark's, mostly Flax's)")
  group.add_argument('--standardize', action='store_true',
                     help="scale pixels by the training set's mean and std")
  group.add_argument('--validation', type=float, metavar='FRACTION',
                     help='score on this fraction of the training data, '
                          'held out, instead of the test set (for tuning)')
  group.add_argument('--data-dir', default=None,
                     help=f'folder with mnist/ and fashion-mnist/; default '
                          f'${datasets.DATA_DIR_ENV}')
  group.add_argument('--download', action='store_true',
                     help='download missing MNIST-style data first '
                          '(needs internet)')


def _add_method_arguments(group):
  group.add_argument('--methods', default='classp,ewc,si,sgd,adam,replay',
                     help=f'comma-separated, from {sorted(methods.METHODS)} '
                          '(and any registered with register_method); '
                          'NAME:LABEL adds a labelled variant')
  group.add_argument('--set', action='append', default=[], metavar='M.K=V',
                     help='a hyperparameter, e.g. ewc.strength=1000 or '
                          'classp:sparse.threshold=1e-3 (repeatable); '
                          '--list-settings lists them all')
  group.add_argument('--list-settings', action='store_true',
                     help="print every method's settings, with the "
                          "benchmark's defaults (in --scenario), the values "
                          'each accepts and what it does, and exit')
  group.add_argument('--seed', type=int, default=0)
  group.add_argument('--seeds', metavar='S1,S2,...',
                     help='one run per seed (initialisation, data order and '
                          'stream), all of a method trained as one program')
  group.add_argument('--sweep', action='append', default=[],
                     metavar='M.K=V1,V2,...',
                     help='one run per value (repeatable: every '
                          'combination), trained with the seeds as one '
                          'vmapped program, e.g. classp.learning_rate=0.01,0.1')


def _add_output_arguments(group):
  group.add_argument('--out', default=None,
                     help='output folder; default results/<benchmark>')
  group.add_argument('--resume', action='store_true',
                     help='continue from the checkpoints in the output folder')
  group.add_argument('--overwrite', action='store_true',
                     help='delete the checkpoints of an earlier run in the '
                          'output folder and start again')
  group.add_argument('--checkpoint-every', type=int, metavar='STEPS',
                     help='also checkpoint every STEPS steps within a task')
  group.add_argument('--checkpoint-minutes', type=float, default=5.0,
                     help='also checkpoint within a task after this many '
                          'minutes since the last checkpoint (default 5)')
  group.add_argument('--no-progress', action='store_true')
  group.add_argument('--no-compile-cache', action='store_true',
                     help='compile every program afresh instead of keeping '
                          'them for the next run in ~/.cache/classp-optax/xla')


def parse_epochs(text):
  if text is None:
    return None
  values = tuple(int(v) for v in text.split(','))
  if any(v < 1 for v in values):
    raise ValueError(f'--epochs must be positive integers, got {text!r}.')
  return values[0] if len(values) == 1 else values


def check_source(args) -> None:
  """``--benchmark`` or ``--dataset`` (with ``--stream``), not both."""
  if args.dataset is None:
    if args.stream is not None:
      raise ValueError('--stream applies to --dataset only; a benchmark '
                       'has its own stream.')
    return
  if args.benchmark is not None:
    raise ValueError('--dataset and --benchmark exclude each other: the '
                     'dataset is the benchmark.')
  if not pathlib.Path(args.dataset).is_file():
    raise ValueError(f'--dataset {args.dataset}: no such file.')


def check_args(args, benchmark: str, suite) -> None:
  """Every numeric option in its range, before any data is loaded."""
  if args.batch_size is not None and args.batch_size < 1:
    raise ValueError(f'--batch-size must be >= 1, got {args.batch_size}.')
  if args.seed < 0:
    raise ValueError(f'--seed must be >= 0, got {args.seed}.')
  if args.tasks is not None:
    if suite.num_tasks is None:
      raise ValueError(
          f'--tasks applies to permuted benchmarks only, not {benchmark}.')
    if args.tasks < 1:
      raise ValueError(f'--tasks must be >= 1, got {args.tasks}.')
    if suite.max_tasks is not None and args.tasks > suite.max_tasks:
      raise ValueError(f'--tasks must be at most the {suite.max_tasks} '
                       f'classes a split stream divides, got {args.tasks}.')
  if args.validation is not None and not 0 < args.validation < 1:
    raise ValueError(f'--validation must be in (0, 1), got {args.validation}.')
  if args.scenario is not None and suite.scenarios is None:
    raise ValueError(f'--scenario applies to split and permuted benchmarks '
                     f'only, not {benchmark}.')
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


