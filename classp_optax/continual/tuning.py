"""Choosing a method's settings on held-out data, with a stated budget.

:func:`tune` trains every configuration of a grid on ``validation`` of each
task's training data held out (the test sets are never seen), chooses the
one with the best final average accuracy there among the configurations
that are a result (:func:`rejection`), and trains it on the test sets with
each test seed. The grid trains as one vmapped program (one per group of
configurations that compile alike, such as one per buffer size), and with
``checkpoint_dir`` every run resumes from its checkpoints, so a search can
be stopped and started.

    choice = tune('ewc', grid(learning_rate=[1e-3, 1e-2],
                              strength=[10.0, 100.0, 1000.0]),
                  tasks=tasks, make_model=lambda seed: make_mlp(seed))
    print(choice.best, choice.test_summary)
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import hashlib
import itertools
import json
import math
import pathlib

from flax import nnx

from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import metrics
from classp_optax.continual import runs as runs_lib
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.results import RunResult

TEST_METRICS = ('average_accuracy', 'forgetting', 'learning_accuracy')


def grid(**axes: Sequence) -> list[dict]:
  """Every combination of the values of ``axes``, the last axis fastest:
  ``grid(learning_rate=[0.01, 0.1], threshold=[0.0])``."""
  for name, values in axes.items():
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
      raise ValueError(f'grid: {name} must be a non-empty list of values, '
                       f'got {values!r}.')
  return [dict(zip(axes, values, strict=True))
          for values in itertools.product(*axes.values())]


def rejection(result: RunResult) -> str | None:
  """Why a search run may not be chosen, or None: it diverged, left a task
  unlearnt (one that learns too little to forget can score well on average
  accuracy), or its penalty went past its stability bound (learning rate x
  largest curvature >= 2) before a task it then trained on."""
  if result.diverged is not None:
    return result.status
  if result.not_learnt:
    return f'tasks {", ".join(map(str, result.not_learnt))} not learnt'
  bound = result.bounds.get('stiffness')
  if bound is not None and any(s >= bound for s in result.stiffness[:-1]):
    return f'stiffness past its bound {bound} before the last task'
  return None


def _scores(search: list[RunResult]) -> list[float]:
  return [math.nan if rejection(r) else r.summary['average_accuracy']
          for r in search]


@dataclasses.dataclass(frozen=True)
class Tuned:
  """What :func:`tune` found.

  Attributes:
    label: the method tuned.
    grid: the configurations tried, in order.
    search: their runs on the validation data, in the grid's order.
    best: the configuration chosen.
    tests: the chosen configuration's runs on the test sets, one per seed.
  """

  label: str
  grid: list[dict]
  search: list[RunResult]
  best: dict
  tests: list[RunResult]

  @property
  def scores(self) -> list[float]:
    """Each configuration's validation score; NaN where :func:`rejection`
    refuses it."""
    return _scores(self.search)

  @property
  def test_summary(self) -> dict:
    """``{metric: (mean, spread)}`` over the test seeds, or ``{'failed':
    {seed: why}}`` if a seed's run diverged or left a task unlearnt; empty
    without test seeds."""
    if not self.tests:
      return {}
    failed = {r.swept['seed']: why for r in self.tests
              if (why := rejection(r)) is not None}
    if failed:
      return {'failed': failed}
    return {key: metrics.mean_and_spread([r.summary[key] for r in self.tests])
            for key in TEST_METRICS}


def _folder(root, name: str, configs: list[dict]) -> pathlib.Path | None:
  """A checkpoint folder named by what trains there, so that another grid
  never resumes from these runs."""
  if root is None:
    return None
  text = json.dumps(configs, sort_keys=True, default=repr)
  return pathlib.Path(root) / f'{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}'


def _train_groups(made: list, make_run: Callable, root, name: str,
                  progress: bool) -> list[RunResult]:
  """Trains ``made`` (methods) as few programs as their structures allow;
  the results in ``made``'s order."""
  groups = {}
  for k, method in enumerate(made):
    key = method.sweep_structure
    groups.setdefault(('alone', k) if key is None else key, []).append(k)
  results = [None] * len(made)
  for members in groups.values():
    runs = [make_run(k) for k in members]
    done = engine.train(runs, checkpoint_dir=_folder(
        root, name, [runs_lib.default_fingerprint(runs)]), progress=progress)
    for k, result in zip(members, done, strict=True):
      results[k] = result
  return results


@dataclasses.dataclass(frozen=True)
class _Protocol:
  """How every run of a tuning trains: the stream and model of a seed."""

  tasks: Callable[[int], Sequence]
  make_model: Callable[[int], nnx.Module]
  config: TrainConfig

  def run(self, method, seed: int, validation: float | None) -> engine.Run:
    tasks = self.tasks(seed)
    if validation is not None:
      tasks = streams.validation_tasks(tasks, validation, seed)
    return engine.Run(lambda: self.make_model(seed), tasks, method,
                      dataclasses.replace(self.config, seed=seed))


def _is_seed(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check(label: str, configs: list[dict], validation: float,
           test_seeds: Sequence[int], seed, seed_name: str) -> None:
  if not _is_seed(seed):
    raise ValueError(f'tune: {seed_name} must be an integer >= 0, got '
                     f'{seed!r}.')
  if not configs:
    raise ValueError(f'tune: grid for {label!r} is empty; give at least one '
                     'configuration, such as tuning.grid(learning_rate=[...]).')
  if not 0 < validation < 1:
    raise ValueError(f'tune: validation must be in (0, 1), got {validation}.')
  if not all(map(_is_seed, test_seeds)) or len(set(test_seeds)) < len(
      test_seeds):
    raise ValueError('tune: test_seeds must be distinct integers >= 0, got '
                     f'{test_seeds!r}.')


def _made(label: str, configs: list[dict], benchmark, scenario, settings):
  base = dict(settings or {}, benchmark=benchmark, scenario=scenario)
  return [methods.make_method(label, **{**base, **c}) for c in configs]


def _stream(tasks) -> Callable[[int], Sequence]:
  return tasks if callable(tasks) else lambda seed: tasks


def search(label: str, configs: Sequence[dict] | None = None, *,
           tasks: Sequence | Callable[[int], Sequence],
           make_model: Callable[[int], nnx.Module],
           config: TrainConfig | None = None, benchmark: str | None = None,
           scenario: str | None = None, settings: dict | None = None,
           validation: float = 0.1, seed: int = 0, checkpoint_dir=None,
           progress: bool = False) -> list[RunResult]:
  """Every configuration of ``configs`` trained with ``seed`` on each task's
  training data less ``validation`` of it, and scored on that held-out part:
  their runs, in order, nothing chosen. The arguments are :func:`tune`'s."""
  configs = list(methods.tuning_grid(label) if configs is None else configs)
  _check(label, configs, validation, (), seed, 'seed')
  made = _made(label, configs, benchmark, scenario, settings)
  protocol = _Protocol(_stream(tasks), make_model, config or TrainConfig())
  return _train_groups(made, lambda k: protocol.run(made[k], seed, validation),
                       checkpoint_dir, 'search', progress)


def tune(label: str, configs: Sequence[dict] | None = None, *,
         tasks: Sequence | Callable[[int], Sequence],
         make_model: Callable[[int], nnx.Module],
         config: TrainConfig | None = None,
         search_config: TrainConfig | None = None,
         benchmark: str | None = None, scenario: str | None = None,
         settings: dict | None = None, validation: float = 0.1,
         search_seed: int = 0, test_seeds: Sequence[int] = (0, 1, 2),
         checkpoint_dir=None, progress: bool = False) -> Tuned:
  """Chooses ``label``'s configuration on held-out data and tests it.

  Args:
    label: a method or labelled variant (:func:`methods.make_method`).
    configs: the configurations to try (:func:`grid`); default the grid its
      settings declare (``methods.tuning_grid(label)``). Each is made over
      ``settings`` (and the defaults of ``benchmark`` in ``scenario``, as
      ``make_method`` takes them), and every one is checked before anything
      trains.
    tasks: the stream, or ``tasks(seed)`` where it depends on the seed (a
      permutation, a class order).
    make_model: ``make_model(seed)``, the model a run of that seed starts
      from.
    config: how each task trains (default ``TrainConfig()``); its seed is
      each run's.
    search_config: how the search trains, if not as ``config`` (fewer steps
      a task, for a long protocol: then check that the choice holds).
    validation: the fraction of each task's training data the search holds
      out and is scored on.
    search_seed: the seed of the search runs and of the held-out split.
    test_seeds: the seeds the chosen configuration is tested with (none:
      the search alone).
    checkpoint_dir: where every run keeps its checkpoints and resumes from.
    progress: show progress bars.

  Returns:
    A :class:`Tuned`. Among configurations that score alike, the first in
    ``configs`` is chosen.

  Raises:
    ValueError, before anything trains, for an unknown setting or a value
    out of range (naming ``label.setting``), and after the search if every
    configuration was rejected (naming why each was).
  """
  configs = list(methods.tuning_grid(label) if configs is None else configs)
  _check(label, configs, validation, test_seeds, search_seed, 'search_seed')
  common = dict(tasks=tasks, make_model=make_model, benchmark=benchmark,
                scenario=scenario, settings=settings, progress=progress)
  runs = search(label, configs, config=search_config or config,
                validation=validation, seed=search_seed,
                checkpoint_dir=checkpoint_dir, **common)
  best = _choose(label, configs, runs)
  method, = _made(label, [configs[best]], benchmark, scenario, settings)
  protocol = _Protocol(_stream(tasks), make_model, config or TrainConfig())
  tests = engine.train(
      [protocol.run(method, seed, None) for seed in test_seeds],
      checkpoint_dir=_folder(checkpoint_dir, 'test', [configs[best], list(
          test_seeds)]), progress=progress) if test_seeds else []
  for seed, result in zip(test_seeds, tests, strict=True):
    result.swept = dict(result.swept, seed=seed)
  return Tuned(label, configs, runs, configs[best], tests)


def _choose(label: str, configs: list[dict], search: list[RunResult]) -> int:
  """The index of the best configuration that is a result (the first of
  equal scores)."""
  scores = _scores(search)
  if all(math.isnan(score) for score in scores):
    lines = '\n'.join(f'  {c}: {rejection(r)}'
                      for c, r in zip(configs, search, strict=True))
    raise ValueError(f'tune: no configuration of {label!r} is a result; '
                     f'widen or move the grid:\n{lines}')
  return max((k for k in range(len(scores)) if not math.isnan(scores[k])),
             key=lambda k: scores[k])
