"""Every method's defaults learn: each method of the catalogue, made in
Python as ``make_method(name)`` (or ``make_method(name, optimizer=...)``:
moved to another optimizer with that optimizer's defaults), on the embedded
``split-digits`` and ``permuted-digits`` in every scenario, with the
command's model and training settings.

    python benchmarks/defaults_learn.py                      # declared defaults
    python benchmarks/defaults_learn.py --optimizer classp   # moved to CLASSP
    python benchmarks/defaults_learn.py --benchmark-defaults \
        --summary docs/results/defaults-learn-benchmarks.json

``--benchmark-defaults`` takes instead the settings the command uses on each
benchmark in each scenario (``make_method(name, benchmark=..., scenario=...)``,
tuned.json's choices): the suite checks that today's settings are those of
the committed summary, which says every one of them learnt.

Prints one line a run (final average and learning accuracy) and exits 1 if
any run diverged, left a task within 0.05 of its majority-class accuracy, or
passed its penalty's stability bound before a task it then trained on.
"""

import argparse
import functools
import json
import sys
import time
import warnings

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import atomic
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import train
from classp_optax.continual.methods import METHODS
from classp_optax.continual.methods import StiffnessWarning
from classp_optax.continual.methods import settings_of
from classp_optax.continual.suites import SUITES


def runs(methods, optimizer, benchmark_defaults=False):
  """``(benchmark, scenario, method, RunResult, stiff)`` for every cell;
  ``stiff`` the stiffness warnings the run gave."""
  for benchmark in ('split-digits', 'permuted-digits'):
    suite = SUITES[benchmark]
    for scenario in suite.scenarios:
      tasks = suite.make_tasks(None, 0, suite.num_tasks, scenario)
      make = functools.partial(
          models.make_model, 'mlp', tasks[0].dataset.x_train.shape[1:],
          tasks[0].num_outputs, 0, hidden=suite.hidden)
      config = TrainConfig(epochs=suite.epochs, batch_size=suite.batch_size)
      for name in methods:
        moved = dict(optimizer=optimizer) if optimizer else {}
        where = dict(benchmark=benchmark, scenario=scenario) if (
            benchmark_defaults) else {}
        with warnings.catch_warnings(record=True) as caught:
          warnings.simplefilter('always', StiffnessWarning)
          result = train(Run(make, tasks, make_method(name, **where, **moved),
                             config))
        yield benchmark, scenario, name, result, [
            str(w.message) for w in caught if w.category is StiffnessWarning]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--optimizer', help='move every method that runs on '
                      'an optimizer to this one')
  parser.add_argument('--methods', help='comma-separated; default: all')
  parser.add_argument('--benchmark-defaults', action='store_true',
                      help="each benchmark's settings in each scenario, as "
                           'the command uses them')
  parser.add_argument('--summary', help='write every run\'s settings and '
                      'scores here (JSON)')
  args = parser.parse_args(argv)
  methods = args.methods.split(',') if args.methods else [
      name for name in METHODS
      if not args.optimizer or 'optimizer' in settings_of(name)]
  failed, cells = 0, {}
  warnings.simplefilter('ignore')
  for benchmark, scenario, name, result, stiff in runs(
      methods, args.optimizer, args.benchmark_defaults):
    s = result.summary
    bad = result.status != 'finished' or bool(result.not_learnt) or bool(stiff)
    failed += bad
    print(f'{benchmark:16} {scenario:7} {name:8} avg acc '
          f'{s["average_accuracy"]:.3f} learn acc '
          f'{s["learning_accuracy"]:.3f} {result.status}'
          + (f' NOT LEARNT {result.not_learnt}' if result.not_learnt else '')
          + (' PAST THE STABILITY BOUND' if stiff else ''), flush=True)
    cells.setdefault(benchmark, {}).setdefault(scenario, {})[name] = dict(
        hyperparams=result.hyperparams, status=result.status,
        not_learnt=result.not_learnt, stiff=stiff,
        average_accuracy=s['average_accuracy'],
        learning_accuracy=s['learning_accuracy'])
  if args.summary:
    atomic.write_text(args.summary, json.dumps(dict(
        command=' '.join(['python', *sys.argv]), cells=cells), indent=2,
        default=repr) + '\n')
  print(f'{failed} runs failed' if failed else 'every run learnt')
  return 1 if failed else 0


if __name__ == '__main__':
  start = time.monotonic()
  code = main()
  print(f'{time.monotonic() - start:.0f} s')
  sys.exit(code)
