"""Named continual-learning benchmarks: a stream, a model, and defaults.

Each benchmark's default hyperparameters per method are the ones that
``benchmarks/tune.py`` chose on validation data (the same budget of six
configurations per method), recorded in ``tuned.json`` beside this file with
the command that chose them. ``mnist-fashion`` is the CLASSP paper's
protocol, and keeps the paper's settings (see :data:`_PAPER_DEFAULTS`).
"""

from collections.abc import Callable
import dataclasses
import json
import pathlib

from classp_optax.continual import datasets
from classp_optax.continual import streams

TUNED_FILE = pathlib.Path(__file__).with_name('tuned.json')


def tuned_defaults() -> dict:
  """``{benchmark: {'command', 'report', 'methods': {method: settings}}}``."""
  return json.loads(TUNED_FILE.read_text())


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark: how to build its tasks, its model and its defaults.

  Attributes:
    make_tasks: ``(data_dir, seed, num_tasks, scenario) -> list[Task]``.
    scenarios: the scenarios a split benchmark offers, the first the
      default; None for benchmarks with one fixed scenario.
  """

  description: str
  make_tasks: Callable
  model: str
  hidden: tuple[int, ...] = (256, 256)
  epochs: int | tuple[int, ...] = 1
  batch_size: int = 32
  num_tasks: int | None = None
  scenarios: tuple[str, ...] | None = None
  method_defaults: dict = dataclasses.field(default_factory=dict)


def _split_digits(data_dir, seed, num_tasks, scenario):
  return streams.split(datasets.load_digits(seed=seed), scenario=scenario)


def _permuted_digits(data_dir, seed, num_tasks, scenario):
  return streams.permuted(datasets.load_digits(seed=seed), num_tasks, seed)


def _split_idx(name):
  def make_tasks(data_dir, seed, num_tasks, scenario):
    return streams.split(datasets.load_idx_dataset(name, data_dir),
                         scenario=scenario)
  return make_tasks


def _permuted_mnist(data_dir, seed, num_tasks, scenario):
  return streams.permuted(datasets.load_idx_dataset('mnist', data_dir),
                          num_tasks, seed)


def _mnist_fashion(data_dir, seed, num_tasks, scenario):
  return streams.sequence(
      datasets.load_idx_dataset('mnist', data_dir),
      datasets.load_idx_dataset('fashion-mnist', data_dir),
  )


_TUNED = {name: record['methods'] for name, record in tuned_defaults().items()}

# The CLASSP paper's vision experiment: its settings, except EWC's strength.
# The paper's 5000 with SGD at lr 0.25 is far past SGD's stability bound
# (lr * strength * max Fisher = 2) on the CNN's Fisher after MNIST (max F
# 0.063 and 0.174 on seeds 0 and 1, in evaluation mode); 20 keeps that
# product below 1 on both (see docs/results.md, part 2.2).
_PAPER_DEFAULTS = {
    'classp': dict(learning_rate=0.2, threshold=0.5, power=1.0, eps=1e-5,
                   decay_from_task=1, later_threshold=0.0),
    'ewc': dict(learning_rate=0.25, strength=20.0),
    'si': dict(learning_rate=0.25, strength=1.0),
    'sgd': dict(learning_rate=0.25),
    'adam': dict(learning_rate=1e-3),
    'adagrad': dict(learning_rate=0.05),
}

SUITES = {
    'split-digits': Suite(
        "scikit-learn's digits in 5 tasks of 2 classes (embedded, no "
        'download)', _split_digits, 'mlp', hidden=(128, 128), epochs=5,
        batch_size=16, scenarios=streams.SCENARIOS,
        method_defaults=_TUNED['split-digits']),
    'permuted-digits': Suite(
        "scikit-learn's digits under fixed pixel permutations, shared head "
        '(embedded)', _permuted_digits, 'mlp', hidden=(128, 128), epochs=5,
        batch_size=16, num_tasks=5,
        method_defaults=_TUNED['permuted-digits']),
    'split-mnist': Suite(
        'MNIST in 5 tasks of 2 classes', _split_idx('mnist'), 'mlp',
        scenarios=streams.SCENARIOS, method_defaults=_TUNED['split-mnist']),
    'split-fmnist': Suite(
        'Fashion-MNIST in 5 tasks of 2 classes', _split_idx('fashion-mnist'),
        'mlp', scenarios=streams.SCENARIOS,
        method_defaults=_TUNED['split-fmnist']),
    'permuted-mnist': Suite(
        'MNIST under fixed pixel permutations, task 0 the identity, shared '
        'head', _permuted_mnist, 'mlp', batch_size=500, num_tasks=10,
        method_defaults=_TUNED['permuted-mnist']),
    'mnist-fashion': Suite(
        "MNIST for 4 epochs then Fashion-MNIST for 1, the paper's CNN",
        _mnist_fashion, 'cnn', epochs=(4, 1), batch_size=32,
        method_defaults=_PAPER_DEFAULTS),
}
