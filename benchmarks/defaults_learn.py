"""Every method's defaults learn: each method of the catalogue, made in
Python as ``make_method(name)`` (or ``make_method(name, optimizer=...)``:
moved to another optimizer with that optimizer's defaults), on the embedded
``split-digits`` and ``permuted-digits`` in every scenario, with the
command's model and training settings.

    python benchmarks/defaults_learn.py                      # declared defaults
    python benchmarks/defaults_learn.py --optimizer classp   # moved to CLASSP

Prints one line a run (final average and learning accuracy) and exits 1 if
any run diverged or left a task within 0.05 of its majority-class accuracy.
"""

import argparse
import functools
import sys
import time
import warnings

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import train
from classp_optax.continual.methods import METHODS
from classp_optax.continual.methods import settings_of
from classp_optax.continual.suites import SUITES


def runs(methods, optimizer):
  """``(benchmark, scenario, method, RunResult)`` for every cell."""
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
        yield benchmark, scenario, name, train(
            Run(make, tasks, make_method(name, **moved), config))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--optimizer', help='move every method that runs on '
                      'an optimizer to this one')
  parser.add_argument('--methods', help='comma-separated; default: all')
  args = parser.parse_args(argv)
  methods = args.methods.split(',') if args.methods else [
      name for name in METHODS
      if not args.optimizer or 'optimizer' in settings_of(name)]
  failed = 0
  warnings.simplefilter('ignore')
  for benchmark, scenario, name, result in runs(methods, args.optimizer):
    s = result.summary
    bad = result.status != 'finished' or bool(result.not_learnt)
    failed += bad
    print(f'{benchmark:16} {scenario:7} {name:8} avg acc '
          f'{s["average_accuracy"]:.3f} learn acc '
          f'{s["learning_accuracy"]:.3f} {result.status}'
          + (f' NOT LEARNT {result.not_learnt}' if result.not_learnt else ''),
          flush=True)
  print(f'{failed} runs failed' if failed else 'every run learnt')
  return 1 if failed else 0


if __name__ == '__main__':
  start = time.monotonic()
  code = main()
  print(f'{time.monotonic() - start:.0f} s')
  sys.exit(code)
