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

import numpy as np

from classp_optax.continual import datasets
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig

TUNED_FILE = pathlib.Path(__file__).with_name('tuned.json')
# A permuted stream's scenarios; the first, its shared head, is the default.
PERMUTED_SCENARIOS = ('domain', 'task', 'class')


def tuned_defaults() -> dict:
  """``{benchmark: {'command', 'report', 'methods': {method: settings}}}``."""
  return json.loads(TUNED_FILE.read_text())


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark: how to build its tasks, its model and its defaults.

  Attributes:
    make_tasks: ``(data_dir, seed, num_tasks, scenario) -> list[Task]``.
    scenarios: the scenarios a split or permuted benchmark offers, the
      first the default; None for benchmarks with one fixed scenario.
    steps_per_task: if set, steps per task instead of ``epochs``.
    max_tasks: the most tasks ``--tasks`` may ask for, if bounded.
    init: the MLP's initialisation (:data:`models.INITS`).
    method_defaults: ``{method or labelled variant: settings}``; a labelled
      variant takes its kind's settings, then its own.
    scenario_defaults: ``{scenario: {method or variant: settings}}``, over
      ``method_defaults`` in that scenario.
  """

  description: str
  make_tasks: Callable
  model: str
  hidden: tuple[int, ...] = (256, 256)
  epochs: int | tuple[int, ...] = 1
  batch_size: int = 32
  num_tasks: int | None = None
  scenarios: tuple[str, ...] | None = None
  steps_per_task: int | None = None
  init: str = 'flax'
  max_tasks: int | None = None
  method_defaults: dict = dataclasses.field(default_factory=dict)
  scenario_defaults: dict = dataclasses.field(default_factory=dict)

  @property
  def default_scenario(self) -> str | None:
    return self.scenarios[0] if self.scenarios else None

  def defaults_for(self, label: str, scenario: str | None) -> dict:
    """The settings of method ``label`` (``name`` or ``name:variant``)."""
    kind = label.partition(':')[0]
    layers = [self.method_defaults, self.scenario_defaults.get(scenario, {})]
    settings = {}
    for layer in layers:
      for key in dict.fromkeys((kind, label)):
        settings.update(layer.get(key, {}))
    return settings

  def stream(self, seed: int = 0, *, data_dir=None, scenario: str | None = None,
             num_tasks: int | None = None) -> list:
    """Its tasks for ``seed`` (its scenario and task count by default), as
    the command builds them."""
    return self.make_tasks(data_dir, seed, num_tasks or self.num_tasks,
                           scenario or self.default_scenario)

  def build_model(self, tasks, seed: int = 0):
    """Its model for ``tasks``' inputs and outputs, initialised by ``seed``."""
    return models.make_model(self.model, tasks[0].dataset.x_train.shape[1:],
                             tasks[0].num_outputs, seed, hidden=self.hidden,
                             init=self.init)

  def train_config(self, seed: int = 0) -> TrainConfig:
    """How it trains each task."""
    return TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                       seed=seed, steps_per_task=self.steps_per_task)


def _split_digits(data_dir, seed, num_tasks, scenario):
  return streams.split(datasets.load_digits(seed=seed), scenario=scenario)


def _permuted_digits(data_dir, seed, num_tasks, scenario):
  return streams.permuted(datasets.load_digits(seed=seed), num_tasks, seed,
                          scenario=scenario)


def _split_idx(name):
  def make_tasks(data_dir, seed, num_tasks, scenario):
    return streams.split(datasets.load_idx_dataset(name, data_dir),
                         scenario=scenario)
  return make_tasks


def _permuted_mnist(data_dir, seed, num_tasks, scenario):
  return streams.permuted(datasets.load_idx_dataset('mnist', data_dir),
                          num_tasks, seed, scenario=scenario)


def _mnist_fashion(data_dir, seed, num_tasks, scenario):
  return streams.sequence(
      datasets.load_idx_dataset('mnist', data_dir),
      datasets.load_idx_dataset('fashion-mnist', data_dir),
  )


def split_pairs_by_seed(dataset, seed: int, scenario: str) -> list:
  """Split tasks of two classes each, the classes paired at random by
  ``seed``, as van de Ven & Tolias's code does; a class-incremental task
  trains the outputs of the classes seen so far, as theirs does."""
  order = np.random.default_rng(seed).permutation(dataset.num_classes)
  groups = [tuple(int(c) for c in order[i:i + 2])
            for i in range(0, len(order) - 1, 2)]
  return streams.split(dataset, groups, scenario=scenario,
                       train_outputs='seen' if scenario == 'class' else 'all')


def _split_mnist_vdv(data_dir, seed, num_tasks, scenario):
  return split_pairs_by_seed(datasets.load_idx_dataset('mnist', data_dir),
                             seed, scenario)


def permuted_by_seed(dataset, seed: int, num_tasks: int,
                     scenario: str) -> list:
  """Permuted tasks of ``dataset`` framed to 32x32 as van de Ven &
  Tolias's code frames MNIST; a class-incremental task trains the outputs of
  the tasks seen so far, as theirs does."""
  return streams.permuted(
      datasets.pad(dataset, (32 - dataset.x_train.shape[1]) // 2),
      num_tasks, seed, scenario=scenario,
      train_outputs='seen' if scenario == 'class' else 'all')


def _permuted_mnist_vdv(data_dir, seed, num_tasks, scenario):
  return permuted_by_seed(datasets.load_idx_dataset('mnist', data_dir), seed,
                          num_tasks, scenario)


# van de Ven & Tolias (2019), "Three scenarios for continual learning",
# arXiv 1904.07734. Their penalties' settings per scenario are the ones their
# code sets for the paper's experiments (GMvandeVen/continual-learning,
# param_values.py at commit f0b1461); their EWC and SI penalties have this
# project's scale (lambda/2 sum F (w - w*)^2 and c sum Omega (w - w*)^2).
def _van_de_ven(learning_rate: float, per_scenario: dict) -> dict:
  """A suite's defaults in their code's terms: Adam at ``learning_rate`` for
  every method, and per scenario ``(EWC lambda, online EWC lambda, gamma,
  SI c)``."""
  adam = dict(optimizer='adam', learning_rate=learning_rate)
  # Their Fisher: the gradient at the model's most probable label
  # (``output.max(1)[1]`` unless --emp-fi), over every example of the task
  # (``fisher_n=None``; no task has more than 60,000).
  fisher = dict(fisher='predicted', fisher_samples=60_000)
  return dict(
      method_defaults={
          'adam': dict(learning_rate=learning_rate),
          'joint': adam,
          'ewc': dict(adam, mode='separate', **fisher),
          'ewc:online': dict(adam, mode='online', **fisher),
          'si': dict(adam, damping=0.1),
          'replay': adam,
      },
      scenario_defaults={
          scenario: {
              'ewc': dict(strength=ewc),
              'ewc:online': dict(strength=online, decay=gamma),
              'si': dict(strength=si),
          }
          for scenario, (ewc, online, gamma, si) in per_scenario.items()
      },
  )


# Their split MNIST: an MLP of two hidden layers of 400 ReLUs (PyTorch's
# initialisation), Adam at 1e-3, batch 128, 2000 iterations per task.
_VDV_SPLIT_MNIST = _van_de_ven(1e-3, {
    'task': (1e7, 1e8, 0.8, 50.0),
    'domain': (1e6, 1e8, 0.7, 500.0),
    'class': (1e8, 1e9, 0.8, 0.5),
})

# Their permuted MNIST (the same paper and commit): 10 tasks of MNIST framed
# to 32x32, an MLP of two hidden layers of 1000 ReLUs, Adam at 1e-4, batch
# 128, 5000 iterations per task; task- and class-incremental tasks have 10
# outputs each (100 in all), domain-incremental ones share 10.
_VDV_PERMUTED_MNIST = _van_de_ven(1e-4, {
    'task': (500.0, 500.0, 0.8, 5.0),
    'domain': (500.0, 1000.0, 0.9, 5.0),
    'class': (1.0, 5.0, 1.0, 0.1),
})

# Buzzega et al. (2020), "Dark Experience for General Continual Learning: a
# Strong, Simple Baseline", arXiv 2004.07211, as its code runs it
# (aimagelab/mammoth, tag neurips2020): an MLP of two hidden layers of 100
# ReLUs (Xavier-uniform weights, zero biases), SGD, one epoch per task, one
# head over every class trained with cross-entropy over all outputs. Each
# method's settings are that code's utils/best_args.py: for a buffer of 200
# under the method's name, for 500 under the variant ``method:500``. ER-ACE is
# not in that code; it takes ER's settings.
def _der(sgd_lr: float, best: dict, lwf: dict | None = None) -> dict:
  """A DER preset's defaults: ``best`` is ``{method: ((lr, minibatch,
  *weights) at 200, at 500)}``, the weights named as the method names them."""
  sgd = dict(learning_rate=sgd_lr)
  defaults = {'sgd': sgd, 'joint': dict(sgd, optimizer='sgd')}
  if lwf is not None:
    defaults['lwf'] = lwf
  weights = dict(der=('alpha',), derpp=('alpha', 'beta'))
  best = dict(best, er_ace=best['er'])
  for method, sizes in best.items():
    for size, (lr, minibatch, *values) in zip((200, 500), sizes, strict=True):
      label = method if size == 200 else f'{method}:{size}'
      defaults[label] = dict(
          buffer_size=size, minibatch_size=minibatch, learning_rate=lr,
          **dict(zip(weights.get(method, ()), values, strict=True)))
  return defaults


_DER_SPLIT_MNIST = _der(0.03, {
    'er': ((0.01, 10), (0.1, 10)),
    'agem': ((0.1, 128), (0.1, 128)),
    'der': ((0.03, 10, 0.2), (0.03, 128, 1.0)),
    'derpp': ((0.03, 128, 0.2, 1.0), (0.03, 10, 1.0, 0.5)),
}, lwf=dict(learning_rate=0.03, alpha=1.0, temperature=2.0, l2=5e-4))
_DER_PERMUTED_MNIST = _der(0.2, {
    'er': ((0.2, 128), (0.2, 128)),
    'agem': ((0.1, 128), (0.1, 128)),
    'der': ((0.2, 128, 1.0), (0.2, 128, 1.0)),
    'derpp': ((0.1, 128, 1.0, 1.0), (0.2, 128, 1.0, 0.5)),
})
_DER_ROTATED_MNIST = _der(0.2, {
    'er': ((0.2, 128), (0.2, 128)),
    'agem': ((0.1, 128), (0.3, 128)),
    'der': ((0.2, 128, 1.0), (0.2, 128, 0.5)),
    'derpp': ((0.1, 128, 1.0, 0.5), (0.2, 128, 0.5, 1.0)),
})


def split_one_head(dataset, scenario: str) -> list:
  """The DER paper's split tasks: pairs 0-1, 2-3, ... in order, one head
  trained over every output in both scenarios; the task-incremental
  scenario is the same training scored on each task's own outputs (their
  Task-IL accuracy masks the others' outputs)."""
  return [dataclasses.replace(task, own_head=scenario == 'task')
          for task in streams.split(dataset, scenario='class')]


def _split_mnist_der(data_dir, seed, num_tasks, scenario):
  return split_one_head(datasets.load_idx_dataset('mnist', data_dir), scenario)


def _permuted_mnist_der(data_dir, seed, num_tasks, scenario):
  return streams.permuted(datasets.load_idx_dataset('mnist', data_dir),
                          num_tasks, seed, permute_first=True)


def _rotated_mnist_der(data_dir, seed, num_tasks, scenario):
  return streams.rotated(datasets.load_idx_dataset('mnist', data_dir),
                         num_tasks, seed)


_TUNED = {name: record['methods'] for name, record in tuned_defaults().items()}
# The embedded benchmarks' choices in their other scenarios.
_TUNED_SCENARIOS = {
    name: {scenario: entry['methods']
           for scenario, entry in record.get('scenarios', {}).items()}
    for name, record in tuned_defaults().items()}

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
        method_defaults=_TUNED['split-digits'],
        scenario_defaults=_TUNED_SCENARIOS['split-digits']),
    'permuted-digits': Suite(
        "scikit-learn's digits under fixed pixel permutations (embedded)",
        _permuted_digits, 'mlp', hidden=(128, 128), epochs=5,
        batch_size=16, num_tasks=5, scenarios=PERMUTED_SCENARIOS,
        method_defaults=_TUNED['permuted-digits'],
        scenario_defaults=_TUNED_SCENARIOS['permuted-digits']),
    'split-mnist': Suite(
        'MNIST in 5 tasks of 2 classes', _split_idx('mnist'), 'mlp',
        scenarios=streams.SCENARIOS, method_defaults=_TUNED['split-mnist']),
    'split-fmnist': Suite(
        'Fashion-MNIST in 5 tasks of 2 classes', _split_idx('fashion-mnist'),
        'mlp', scenarios=streams.SCENARIOS,
        method_defaults=_TUNED['split-fmnist']),
    'permuted-mnist': Suite(
        'MNIST under fixed pixel permutations, task 0 the identity',
        _permuted_mnist, 'mlp', batch_size=500, num_tasks=10,
        scenarios=PERMUTED_SCENARIOS, method_defaults=_TUNED['permuted-mnist']),
    'split-mnist-vdv': Suite(
        'MNIST in 5 tasks of 2 classes, paired by the seed, under van de Ven '
        '& Tolias (2019)\'s protocol and settings', _split_mnist_vdv, 'mlp',
        hidden=(400, 400), batch_size=128, steps_per_task=2000,
        scenarios=streams.SCENARIOS, init='torch', **_VDV_SPLIT_MNIST),
    'permuted-mnist-vdv': Suite(
        'MNIST framed to 32x32 under 10 pixel permutations, under van de Ven '
        '& Tolias (2019)\'s protocol and settings', _permuted_mnist_vdv, 'mlp',
        hidden=(1000, 1000), batch_size=128, steps_per_task=5000,
        num_tasks=10, scenarios=streams.SCENARIOS, init='torch',
        **_VDV_PERMUTED_MNIST),
    'split-mnist-der': Suite(
        'MNIST in 5 tasks of 2 classes under the DER paper\'s protocol and '
        'per-method settings (Buzzega et al. 2020)', _split_mnist_der, 'mlp',
        hidden=(100, 100), batch_size=10, scenarios=('class', 'task'),
        init='xavier', method_defaults=_DER_SPLIT_MNIST),
    'permuted-mnist-der': Suite(
        'MNIST under 20 pixel permutations under the DER paper\'s protocol',
        _permuted_mnist_der, 'mlp', hidden=(100, 100), batch_size=128,
        num_tasks=20, init='xavier', method_defaults=_DER_PERMUTED_MNIST),
    'rotated-mnist-der': Suite(
        'MNIST under 20 rotations in [0, 180) degrees under the DER paper\'s '
        'protocol', _rotated_mnist_der, 'mlp', hidden=(100, 100),
        batch_size=128, num_tasks=20, init='xavier',
        method_defaults=_DER_ROTATED_MNIST),
    'mnist-fashion': Suite(
        "MNIST for 4 epochs then Fashion-MNIST for 1, the paper's CNN",
        _mnist_fashion, 'cnn', epochs=(4, 1), batch_size=32,
        method_defaults=_PAPER_DEFAULTS),
}


def _split_groups(num_classes: int, num_tasks: int) -> list:
  """``num_tasks`` groups of consecutive classes, as even as they go."""
  return [tuple(map(int, g))
          for g in np.array_split(np.arange(num_classes), num_tasks)]


def own_data(dataset: datasets.Dataset, stream: str) -> Suite:
  """A benchmark of your own data: its classes split into tasks (pairs by
  default), or the whole of it under ``--tasks`` input permutations (5 by
  default); an MLP of 256-256 over the flattened inputs, batches of 32, one
  epoch, and every method at its declared defaults."""
  classes = dataset.num_classes
  if stream == 'split':
    return Suite(
        f'{dataset.name} ({classes} classes), split into tasks of classes',
        lambda data_dir, seed, num_tasks, scenario: streams.split(
            dataset, _split_groups(classes, num_tasks), scenario=scenario),
        'mlp', num_tasks=max(classes // 2, 1), max_tasks=classes,
        scenarios=streams.SCENARIOS)
  return Suite(
      f'{dataset.name} under fixed input permutations',
      lambda data_dir, seed, num_tasks, scenario: streams.permuted(
          dataset, num_tasks, seed, scenario=scenario),
      'mlp', num_tasks=5, scenarios=PERMUTED_SCENARIOS)


def defaults_of(label: str, benchmark: str | None, scenario: str | None
                ) -> dict:
  """Method ``label``'s settings on ``benchmark`` (default: the command's
  default benchmark) in ``scenario`` (default: the benchmark's)."""
  benchmark = benchmark or 'permuted-digits'
  if benchmark not in SUITES:
    raise ValueError(f'benchmark must be one of {sorted(SUITES)}, got '
                     f'{benchmark!r}.')
  suite = SUITES[benchmark]
  if scenario is not None and scenario not in (suite.scenarios or ()):
    raise ValueError(f'scenario must be one of {suite.scenarios} on '
                     f'{benchmark}, got {scenario!r}.')
  return suite.defaults_for(label, scenario or suite.default_scenario)
