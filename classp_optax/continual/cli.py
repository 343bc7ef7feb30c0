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
import os
import pathlib
import shlex
import shutil
import sys
import traceback

import jax

from classp_optax.continual import arguments
from classp_optax.continual import compile_cache
from classp_optax.continual import config as config_lib
from classp_optax.continual import datasets
from classp_optax.continual import engine
from classp_optax.continual import hooks
from classp_optax.continual import interrupts
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import report
from classp_optax.continual import results as results_lib
from classp_optax.continual import runs as runs_lib
from classp_optax.continual import streams
from classp_optax.continual import suites
from classp_optax.continual.arguments import parse_overrides
from classp_optax.continual.arguments import parse_seeds
from classp_optax.continual.arguments import parse_sweeps
from classp_optax.continual.methods.catalogue import with_defaults
from classp_optax.continual.suites import SUITES


def build_parser():
  """The command's argument parser (:mod:`arguments`)."""
  return arguments.build_parser(__doc__.split('\n')[0])


def suite_of(args) -> tuple[str, suites.Suite]:
  """The benchmark's name and suite: ``--benchmark``'s, or one of
  ``--dataset``'s data cut by ``--stream`` (its file loaded and checked)."""
  arguments.check_source(args)
  if args.dataset is None:
    name = args.benchmark or arguments.DEFAULT_BENCHMARK
    return name, SUITES[name]
  data = datasets.load_npz(args.dataset)
  stream = args.stream or 'split'
  return f'{data.name}-{stream}', suites.own_data(data, stream)


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
  return [methods.make_method(label, **with_defaults(
      label, suite.defaults_for(label, scenario),
      methods.parse_settings(label, overrides.get(label, {}))))
          for label in labels]


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
  finished: list | None = None  # the results, if the folder holds them all

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
  seeds = parse_seeds(args.seeds)
  sweeps = parse_sweeps(args.sweep)
  unknown = sorted(set(sweeps) - {m.label for m in chosen})
  if unknown:
    raise ValueError(f'--sweep names methods not in --methods: {unknown}.')
  overrides = parse_overrides(args.set)
  runs = {}
  for method in chosen:
    label = method.label
    settings = with_defaults(
        label, suite.defaults_for(label, scenario),
        methods.parse_settings(label, overrides.get(label, {})))
    swept = [methods.parse_settings(label, texts) for texts in sweeps.get(label, [{}])]
    runs[label] = [
        Configuration(
            methods.make_method(label, **{**settings, **values}) if values
            else method, seed, dict(values, **({'seed': seed} if seeds
                                               else {})))
        for seed in seeds or [args.seed] for values in swept]
    _check_sweep(label, settings, swept, [c.method for c in runs[label]])
  return runs


def _check_sweep(label: str, settings: dict, swept: list[dict],
                 made: list) -> None:
  """ValueError unless ``made`` can train as one program, naming the swept
  settings that change what is compiled and the variants that run them."""
  try:
    runs_lib.check_structure(made)
  except ValueError:
    static = sorted({name for values in swept for name in values
                     if methods.make_method(label, **{
                         **settings, name: values[name]}).sweep_structure
                     != methods.make_method(label, **{
                         **settings, name: swept[0][name]}).sweep_structure})
    if not static:
      raise
    name = static[0]
    raise ValueError(
        f'--sweep {", ".join(f"{label}.{n}" for n in static)}: a change of '
        'this setting changes the compiled program (a shape or a choice, not '
        'a number), so its values cannot train as one vmapped program. Run '
        f'each value as a labelled variant instead: --methods {label}:a,'
        f'{label}:b --set {label}:a.{name}=... --set {label}:b.{name}=...'
        ) from None


def plan_runs(args) -> Plan:
  """The command's plan (see :class:`Plan`)."""
  name, suite = suite_of(args)
  arguments.check_args(args, name, suite)
  scenario = args.scenario or suite.default_scenario
  runs = _configurations(args, suite, scenario,
                         choose_methods(args, suite, scenario))
  epochs = arguments.parse_epochs(args.epochs) or suite.epochs
  plan = Plan(
      args=args, suite=suite, scenario=scenario, runs=runs, epochs=epochs,
      steps_per_task=args.steps_per_task or (
          None if args.epochs else suite.steps_per_task),
      init=args.init or suite.init, model=args.model or suite.model,
      out=pathlib.Path(args.out or f'results/{name}'), settings={})
  settings = dict(
      benchmark=name, scenario=scenario, seed=args.seed,
      seeds=parse_seeds(args.seeds), config=dataclasses.asdict(plan.config(
          args.seed)), model=plan.model, init=plan.init,
      standardize=args.standardize, validation=args.validation,
      tasks=args.tasks)
  if args.dataset is not None:  # the file's content identifies the run too
    settings.update(dataset=str(args.dataset), stream=args.stream or 'split',
                    dataset_sha256=datasets.sha256_of(args.dataset))
  done = None if args.overwrite or args.resume else report.finished(
      plan.out, settings, {label: [(c.method.hyperparams, c.swept)
                                   for c in configurations]
                           for label, configurations in runs.items()})
  plan = dataclasses.replace(plan, settings=settings, finished=done)
  if done:
    return plan
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
  sweeps = []
  for configurations in plan.runs.values():
    mesh = placement.mesh_for(len(configurations), jax.devices())
    runs = [engine.Run(
        functools.partial(models.make_model, plan.model, image_shape,
                          num_outputs, c.seed, hidden=plan.suite.hidden,
                          init=plan.init),
        tasks_for(c.seed), c.method, plan.config(c.seed, mesh.shape['data']))
        for c in configurations]
    # Each method's sweep is checked before the first one trains.
    hooks.checked_streams(runs)
    sweeps.append((configurations, mesh, runs))
  trained = []
  for configurations, mesh, runs in sweeps:
    folder = checkpoint_folder(plan.out, configurations[0].method)
    if args.overwrite and folder.exists():
      shutil.rmtree(folder)
    fingerprint = dict(plan.settings, runs=[
        dict(method=c.method.label, hyperparams=c.method.hyperparams,
             seed=c.seed) for c in configurations])
    done = engine.train(
        runs, mesh=mesh, checkpoint_dir=folder, on_step=interrupts.check,
        fingerprint=fingerprint, checkpoint_every_steps=args.checkpoint_every,
        checkpoint_every_seconds=60 * args.checkpoint_minutes,
        progress=not args.no_progress)
    for result, c in zip(done, configurations, strict=True):
      result.swept = c.swept
    trained.extend(done)
  return trained


def list_settings(args) -> None:
  name, suite = suite_of(args)
  scenario = args.scenario or suite.default_scenario
  print(f'Settings of each method (--set METHOD.NAME=VALUE), with the '
        f'defaults of {name}'
        + (f' in the {scenario} scenario' if scenario else '') + ':\n')
  for name in methods.METHODS:
    print(methods.describe(name, suite.defaults_for(name, scenario)) + '\n')


def run(args) -> list[results_lib.RunResult]:
  """Plans, trains and reports: the whole command."""
  if args.list_settings:
    list_settings(args)
    return []
  plan = plan_runs(args)
  if plan.finished:
    report.show(plan.settings, plan.finished, plan.suite.description)
    print(f'\nfinished earlier, with these settings: {plan.out / "results.json"}'
          '. Pass --overwrite to train again.')
    return plan.finished
  trained = train_all(plan)
  report.write(plan.out, plan.settings, trained, plan.suite.description,
               devices=[str(d) for d in jax.devices()], sweep=args.sweep)
  return trained


def resume_command(argv) -> str:
  """The command line that continues an interrupted run of ``argv``."""
  kept = [a for a in argv if a != '--overwrite']
  if '--resume' not in kept:
    kept.append('--resume')
  return shlex.join(['classp-continual', *kept])


def error_text(error: Exception) -> str:
  """What the command prints for ``error``: one line where this package
  raised it (its checks of the user's input); where a library raised it
  (NumPy, JAX: a bug to report), its traceback before that line."""
  frames = traceback.extract_tb(error.__traceback__)
  line = f'classp-continual: error: {error}\n'
  ours = pathlib.Path(__file__).parents[1]
  if not frames or pathlib.Path(frames[-1].filename).is_relative_to(ours):
    return line
  return ''.join(traceback.format_exception(error)) + line


def main(argv=None) -> int:
  parser = build_parser()
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser.parse_args(argv)
  if not args.no_compile_cache:
    compile_cache.enable()
  try:
    with interrupts.deferred():
      run(args)
  except (ValueError, OSError) as e:
    parser.exit(2, error_text(e))
  except KeyboardInterrupt:
    parser.exit(130, '\nclassp-continual: interrupted. The checkpoints keep '
                'the work up to the last one; continue with\n  '
                f'{resume_command(argv)}\n')
  return 0


def entry() -> None:
  """The installed command: :func:`main`, then an exit that skips the
  interpreter's teardown. Everything is written by then; tearing down
  JAX's threads takes a moment, during which Python has given SIGINT
  back to the system (a Ctrl-C there killed a finished run) and during
  which an interrupted compile could crash the process at exit."""
  try:
    code = main()
  except SystemExit as exit_:
    code = exit_.code if isinstance(exit_.code, int) else 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


if __name__ == '__main__':
  entry()
