"""Named continual-learning benchmarks: a stream, a model, and defaults.

The hyperparameters here are sensible defaults for a first run, not tuned
results; see the README's Results section for tuned ones.
"""

from collections.abc import Callable
import dataclasses

from classp_optax.continual import datasets
from classp_optax.continual import streams


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark: how to build its tasks, its model and its defaults."""

  description: str
  make_tasks: Callable  # (data_dir, seed, num_tasks) -> list[Task]
  model: str
  hidden: tuple[int, ...] = (256, 256)
  epochs: int | tuple[int, ...] = 1
  batch_size: int = 32
  num_tasks: int | None = None
  method_defaults: dict = dataclasses.field(default_factory=dict)


def _split_digits(data_dir, seed, num_tasks):
  return streams.split(datasets.load_digits(seed=seed), heads='per-task')


def _permuted_digits(data_dir, seed, num_tasks):
  return streams.permuted(datasets.load_digits(seed=seed), num_tasks, seed)


def _split_idx(name):
  def make_tasks(data_dir, seed, num_tasks):
    return streams.split(datasets.load_idx_dataset(name, data_dir),
                         heads='per-task')
  return make_tasks


def _permuted_mnist(data_dir, seed, num_tasks):
  return streams.permuted(datasets.load_idx_dataset('mnist', data_dir),
                          num_tasks, seed)


def _mnist_fashion(data_dir, seed, num_tasks):
  return streams.sequence(
      datasets.load_idx_dataset('mnist', data_dir),
      datasets.load_idx_dataset('fashion-mnist', data_dir),
  )


_SMALL_DEFAULTS = {
    'classp': dict(learning_rate=0.05, threshold=1e-4, power=1.0, eps=1e-5),
    'ewc': dict(learning_rate=0.1, strength=100.0),
    'sgd': dict(learning_rate=0.1),
    'adam': dict(learning_rate=1e-3),
    'adagrad': dict(learning_rate=0.05),
}

# The CLASSP paper's vision experiment (and the protocol).
_PAPER_DEFAULTS = {
    'classp': dict(learning_rate=0.2, threshold=0.5, power=1.0, eps=1e-5,
                   decay_from_task=1, later_threshold=0.0),
    'ewc': dict(learning_rate=0.25, strength=5000.0),
    'sgd': dict(learning_rate=0.25),
    'adam': dict(learning_rate=1e-3),
    'adagrad': dict(learning_rate=0.05),
}

_PERMUTED_DEFAULTS = {
    'classp': dict(learning_rate=3e-4, threshold=1e-5, power=2.0, eps=1e-5,
                   decay_from_task=0, later_threshold=None),
    'ewc': dict(learning_rate=0.05, strength=100.0),
    'sgd': dict(learning_rate=0.05),
    'adam': dict(learning_rate=3e-4),
    'adagrad': dict(learning_rate=0.01),
}

SUITES = {
    'split-digits': Suite(
        "scikit-learn's digits in 5 tasks of 2 classes, per-task heads "
        '(embedded, no download)', _split_digits, 'mlp', hidden=(128, 128),
        epochs=5, batch_size=16, method_defaults=_SMALL_DEFAULTS),
    'permuted-digits': Suite(
        "scikit-learn's digits under fixed pixel permutations, shared head "
        '(embedded)', _permuted_digits, 'mlp', hidden=(128, 128), epochs=5,
        batch_size=16, num_tasks=5, method_defaults=_SMALL_DEFAULTS),
    'split-mnist': Suite(
        'MNIST in 5 tasks of 2 classes, per-task heads', _split_idx('mnist'), 'mlp',
        method_defaults=_SMALL_DEFAULTS),
    'split-fmnist': Suite(
        'Fashion-MNIST in 5 tasks of 2 classes, per-task heads',
        _split_idx('fashion-mnist'),
        'mlp', method_defaults=_SMALL_DEFAULTS),
    'permuted-mnist': Suite(
        'MNIST under fixed pixel permutations, task 0 the identity, shared '
        'head', _permuted_mnist, 'mlp', batch_size=500, num_tasks=10,
        method_defaults=_PERMUTED_DEFAULTS),
    'mnist-fashion': Suite(
        "MNIST for 4 epochs then Fashion-MNIST for 1, the paper's CNN",
        _mnist_fashion, 'cnn', epochs=(4, 1), batch_size=32,
        method_defaults=_PAPER_DEFAULTS),
}
