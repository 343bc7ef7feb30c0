"""classp-continual: compare optimizers on a continual-learning benchmark.

    classp-continual                                   # permuted-digits, embedded
    classp-continual --benchmark permuted-mnist --data-dir ../shared/data \\
        --methods classp,adam --set classp.learning_rate=1e-3 --tasks 20
    classp-continual --scenario class --methods classp,classp:sparse \\
        --set classp:sparse.threshold=1e-3               # a labelled variant
    classp-continual --resume                          # continue a killed run
    classp-continual --methods classp --seeds 0,1,2 \
        --sweep classp.learning_rate=0.01,0.03,0.1     # 9 runs, one program

Prints a table, and writes ``results.json`` and ``accuracy.png`` to the output
folder; checkpoints go to its ``checkpoints/<method>/``.
"""

import argparse
import dataclasses
import functools
import itertools
import pathlib
import shlex
import shutil
import sys

import jax

from classp_optax.continual import config as config_lib
from classp_optax.continual import datasets
from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import report
from classp_optax.continual import results as results_lib
from classp_optax.continual import runs as runs_lib
from classp_optax.continual import streams
from classp_optax.continual.suites import SUITES


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


def _seeds(text: str | None) -> list[int] | None:
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


def build_parser() -> argparse.ArgumentParser:
  width = max(map(len, SUITES))
  parser = argparse.ArgumentParser(
      prog='classp-continual', description=__doc__.split('\n')[0],
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
  group.add_argument('--benchmark', default='permuted-digits', choices=SUITES)
  group.add_argument('--scenario', choices=streams.SCENARIOS,
                     help='task-, domain- or class-incremental; default: '
                          'task for split benchmarks, domain (one shared '
                          'head) for permuted ones')
  group.add_argument('--epochs', help='per task: N, or N1,N2,... per task')
  group.add_argument('--steps-per-task', type=int, metavar='N',
                     help='train every task for N steps instead of epochs')
  group.add_argument('--batch-size', type=int)
  group.add_argument('--tasks', type=int, help='tasks of a permuted stream')
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


def _epochs(text):
  if text is None:
    return None
  values = tuple(int(v) for v in text.split(','))
  if any(v < 1 for v in values):
    raise ValueError(f'--epochs must be positive integers, got {text!r}.')
  return values[0] if len(values) == 1 else values


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
    raise ValueError(f'--scenario applies to split and permuted benchmarks '
                     f'only, not {args.benchmark}.')
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
  return [methods.make_method(label, **{
      **suite.defaults_for(label, scenario),
      **methods.parse_settings(label, overrides.get(label, {}))}) for label in labels]


def checkpoint_folder(out: pathlib.Path, method: methods.Method) -> pathlib.Path:
  return out / 'checkpoints' / method.label.replace(':', '@')


def _check_earlier_runs(args, out, chosen) -> None:
  """Refuses to train over an earlier run's checkpoints unless told what to
  do with them (--overwrite deletes them once the run starts)."""
  earlier = [checkpoint_folder(out, m) for m in chosen
             if checkpoint_folder(out, m).exists()]
  if earlier and not (args.resume or args.overwrite):
    raise ValueError(
        f'{", ".join(map(str, earlier))} hold an earlier run\'s checkpoints. '
        'Pass --resume to continue that run, or --overwrite to delete them '
        'and start again.')


@dataclasses.dataclass(frozen=True)
class Configuration:
  """One run of a command: a method with its settings, and its seed."""

  method: methods.Method
  seed: int
  swept: dict  # what sets it apart in a sweep: swept settings and the seed


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a command will train and where its results go, every name and
  value checked before any data is loaded."""

  args: argparse.Namespace
  suite: object
  scenario: str | None
  runs: dict  # {method label: [Configuration]}
  epochs: object
  steps_per_task: int | None
  init: str
  model: str
  out: pathlib.Path
  settings: dict  # what the results of every method share

  def config(self, seed: int, data_devices: int = 1
             ) -> config_lib.TrainConfig:
    """A run's configuration; its evaluation batches are split over
    ``data_devices`` (the mesh's data axis)."""
    return config_lib.TrainConfig(
        epochs=self.epochs,
        batch_size=self.args.batch_size or self.suite.batch_size, seed=seed,
        steps_per_task=self.steps_per_task,
        eval_batch_size=1000 - 1000 % data_devices)


def _configurations(args, suite, scenario, chosen) -> dict:
  """``{method label: [Configuration]}``: every seed and swept value."""
  seeds = _seeds(args.seeds)
  sweeps = parse_sweeps(args.sweep)
  unknown = sorted(set(sweeps) - {m.label for m in chosen})
  if unknown:
    raise ValueError(f'--sweep names methods not in --methods: {unknown}.')
  overrides = parse_overrides(args.set)
  runs = {}
  for method in chosen:
    label = method.label
    settings = {**suite.defaults_for(label, scenario),
                **methods.parse_settings(label, overrides.get(label, {}))}
    swept = [methods.parse_settings(label, texts) for texts in sweeps.get(label, [{}])]
    runs[label] = [
        Configuration(
            methods.make_method(label, **{**settings, **values}) if values
            else method, seed, dict(values, **({'seed': seed} if seeds
                                               else {})))
        for seed in seeds or [args.seed] for values in swept]
    runs_lib.check_structure([c.method for c in runs[method.label]])
  return runs


def plan_runs(args) -> Plan:
  """The command's plan (see :class:`Plan`)."""
  suite = SUITES[args.benchmark]
  check_args(args, suite)
  scenario = args.scenario or suite.default_scenario
  runs = _configurations(args, suite, scenario,
                         choose_methods(args, suite, scenario))
  epochs = _epochs(args.epochs) or suite.epochs
  plan = Plan(
      args=args, suite=suite, scenario=scenario, runs=runs, epochs=epochs,
      steps_per_task=args.steps_per_task or (
          None if args.epochs else suite.steps_per_task),
      init=args.init or suite.init, model=args.model or suite.model,
      out=pathlib.Path(args.out or f'results/{args.benchmark}'), settings={})
  settings = dict(
      benchmark=args.benchmark, scenario=scenario, seed=args.seed,
      seeds=_seeds(args.seeds), config=dataclasses.asdict(plan.config(
          args.seed)), model=plan.model, init=plan.init,
      standardize=args.standardize, validation=args.validation,
      tasks=args.tasks)
  plan = dataclasses.replace(plan, settings=settings)
  _check_earlier_runs(args, plan.out, [c[0].method for c in runs.values()])
  report.check_earlier_results(plan.out, settings, set(runs), args.overwrite)
  return plan


def _tasks(plan: Plan, seed: int) -> list:
  args, suite = plan.args, plan.suite
  tasks = suite.make_tasks(args.data_dir, seed, args.tasks or suite.num_tasks,
                           plan.scenario)
  if args.standardize:
    tasks = streams.standardize_tasks(tasks)
  if args.validation is not None:
    tasks = streams.validation_tasks(tasks, args.validation, seed)
  if (plan.steps_per_task is None and not isinstance(plan.epochs, int)
      and len(plan.epochs) != len(tasks)):
    raise ValueError(
        f'--epochs lists {len(plan.epochs)} values for {len(tasks)} tasks.')
  return tasks


def train_all(plan: Plan) -> list[results_lib.RunResult]:
  """Every method's configurations, each method as one engine run."""
  args = plan.args
  if args.download:
    for name in ('mnist', 'fashion-mnist'):
      datasets.download(name, args.data_dir)
  tasks_for = functools.cache(functools.partial(_tasks, plan))
  first = tasks_for(next(iter(plan.runs.values()))[0].seed)
  image_shape = first[0].dataset.x_train.shape[1:]
  num_outputs = first[0].num_outputs
  plan.out.mkdir(parents=True, exist_ok=True)
  trained = []
  for configurations in plan.runs.values():
    mesh = placement.mesh_for(len(configurations), jax.devices())
    runs = [engine.Run(
        functools.partial(models.make_model, plan.model, image_shape,
                          num_outputs, c.seed, hidden=plan.suite.hidden,
                          init=plan.init),
        tasks_for(c.seed), c.method, plan.config(c.seed, mesh.shape['data']))
        for c in configurations]
    folder = checkpoint_folder(plan.out, configurations[0].method)
    if args.overwrite and folder.exists():
      shutil.rmtree(folder)
    fingerprint = dict(plan.settings, runs=[
        dict(method=c.method.label, hyperparams=c.method.hyperparams,
             seed=c.seed) for c in configurations])
    done = engine.train(
        runs, mesh=mesh, checkpoint_dir=folder,
        fingerprint=fingerprint, checkpoint_every_steps=args.checkpoint_every,
        checkpoint_every_seconds=60 * args.checkpoint_minutes,
        progress=not args.no_progress)
    for result, c in zip(done, configurations, strict=True):
      result.swept = c.swept
    trained.extend(done)
  return trained


def list_settings(args) -> None:
  suite = SUITES[args.benchmark]
  scenario = args.scenario or suite.default_scenario
  print(f'Settings of each method (--set METHOD.NAME=VALUE), with the '
        f'defaults of {args.benchmark}'
        + (f' in the {scenario} scenario' if scenario else '') + ':\n')
  for name in methods.METHODS:
    print(methods.describe(name, suite.defaults_for(name, scenario)) + '\n')


def run(args) -> list[results_lib.RunResult]:
  """Plans, trains and reports: the whole command."""
  if args.list_settings:
    list_settings(args)
    return []
  plan = plan_runs(args)
  trained = train_all(plan)
  report.write(plan.out, plan.settings, trained, devices=[
      str(d) for d in jax.devices()], sweep=args.sweep)
  return trained


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
