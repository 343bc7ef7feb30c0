"""Sweeps: K configurations in one vmapped program equal K separate runs."""

import dataclasses
import functools

from flax import nnx
import jax
import numpy as np
import pytest

from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.datasets import load_digits
from tests.compiles import compiled
from tests.compiles import forget_engine_programs

CONFIG = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128)


def mlp(seed, hidden=(32,)):
  return lambda: models.make_model('mlp', (8, 8, 1), 10, seed=seed,
                                   hidden=hidden)


def stream(seed):
  return streams.split(load_digits(seed=seed), scenario='task')[:3]


def _params(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def _assert_same_as_separate_runs(runs, results, **options):
  for run, swept in zip(runs, results, strict=True):
    alone = engine.train(engine.Run(run.make_model, run.tasks, run.method,
                                   run.config), **options)
    np.testing.assert_allclose(swept.accuracy, alone.accuracy, atol=1e-6)
    assert swept.diverged == alone.diverged
    if alone.diverged is not None:
      continue  # a diverged run's weights are NaN, wherever it stopped
    for a, b in zip(_params(swept.model), _params(alone.model), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swept.stiffness, alone.stiffness, rtol=1e-5)
    np.testing.assert_allclose(swept.capacity_used, alone.capacity_used,
                               rtol=1e-5)
    assert swept.hyperparams == alone.hyperparams


@pytest.mark.parametrize('name, settings', [
    # CLASSP's paper schedule: plain steps on task 0, decayed ones after.
    ('classp', [dict(learning_rate=0.05, threshold=1e-4),
                dict(learning_rate=0.2, threshold=0.0, later_threshold=1e-4)]),
    ('ewc', [dict(strength=10.0, fisher_samples=64),
             dict(strength=50.0, learning_rate=0.01, fisher_samples=64)]),
    ('si', [dict(strength=1.0), dict(strength=5.0, damping=0.5)]),
    ('sgd', [dict(momentum=0.5), dict(learning_rate=0.1, momentum=0.9)]),
    ('adam', [dict(learning_rate=1e-3), dict(learning_rate=3e-3)]),
])
def test_each_configuration_equals_its_own_run(name, settings):
  """Seeds 0 and 1 (their own streams, inits and data orders) and different
  hyperparameters, in one sweep."""
  runs = [engine.Run(mlp(seed), stream(seed),
                         methods.make_method(name, **config),
                         dataclasses.replace(CONFIG, seed=seed))
          for seed, config in enumerate(settings)]
  _assert_same_as_separate_runs(runs, engine.train(runs, steps_per_call=7))


@pytest.mark.parametrize('scenario, train_outputs', [('task', 'all'),
                                                    ('class', 'seen')])
def test_joint_on_a_permuted_stream_equals_its_own_run(scenario, train_outputs):
  """Joint training draws a task's examples from every permuted task so far,
  each with its own outputs; in a sweep, each seed gives its own run."""
  runs = [engine.Run(
      lambda seed=seed: models.make_model('mlp', (8, 8, 1), 30, seed=seed,
                                          hidden=(32,)),
      streams.permuted(load_digits(seed=seed), 3, seed, scenario=scenario,
                       train_outputs=train_outputs),
      methods.make_method('joint'), dataclasses.replace(CONFIG, seed=seed))
      for seed in (0, 1)]
  _assert_same_as_separate_runs(runs, engine.train(runs, steps_per_call=7))


def test_configurations_on_one_stream_share_its_data(monkeypatch):
  """One copy of the data for all, each configuration its own index rows (a
  shared order is slower on XLA:CPU: the product of one batch with the K
  stacked first-layer weights makes XLA transpose them at every step)."""
  tasks = stream(0)
  runs = [
    engine.Run(mlp(0), tasks, methods.make_method('classp', learning_rate=lr), CONFIG)
    for lr in (0.05, 0.1, 0.2)
  ]
  calls = []
  original = engine.compiled.train_steps

  def spy(graphdef, tx, loss, hooks, state, data, index, *args, **kwargs):
    calls.append((kwargs['shared_data'], data.inputs.ndim, index.shape))
    return original(graphdef, tx, loss, hooks, state, data, index, *args, **kwargs)

  monkeypatch.setattr(engine.compiled, 'train_steps', spy)
  results = engine.train(runs)
  # The inputs (N, 8, 8, 1) once; the index (K, steps, batch).
  assert calls and all(
    shared and ndim == 4 and index[0] == len(runs) for shared, ndim, index in calls
  )
  _assert_same_as_separate_runs(runs, results)


@pytest.mark.parametrize('num_devices', [1, 2])
def test_configurations_are_split_over_the_devices(monkeypatch, num_devices,
                                                  caplog):
  """Three configurations on two devices: padded to four (a copy of the
  last), two a device; each still equals its own run. Every test set is
  scored for all configurations in one compiled call, and the sweep's train
  step compiles once, though its tasks differ in size."""
  devices = jax.devices()[:num_devices]
  tasks = stream(0)
  runs = [
    engine.Run(
      mlp(seed),
      tasks,
      methods.make_method('sgd', learning_rate=lr),
      dataclasses.replace(CONFIG, seed=seed),
    )
    for seed, lr in enumerate((0.05, 0.1, 0.2))
  ]
  placed, scored = [], []
  train = engine.compiled.train_steps
  score = engine.compiled.correct_counts

  def train_spy(*args, **kwargs):
    leaf = jax.tree.leaves(args[4])[0]
    placed.append((leaf.shape[0], leaf.sharding.device_set))
    return train(*args, **kwargs)

  def score_spy(*args, **kwargs):
    scored.append(args[2])
    return score(*args, **kwargs)

  monkeypatch.setattr(engine.compiled, 'train_steps', train_spy)
  monkeypatch.setattr(engine.compiled, 'correct_counts', score_spy)
  assert len({t.num_train for t in tasks}) > 1
  forget_engine_programs()
  with jax.log_compiles(), caplog.at_level('WARNING'):
    results = engine.train(
      runs, mesh=placement.mesh_for(len(runs), devices), steps_per_call=7
    )
  assert compiled(caplog)['stacked_train_steps'] == 1
  slots = 3 if num_devices == 1 else 4
  assert placed and all(
    size == slots and devices_used == set(devices) for size, devices_used in placed
  )
  assert len(scored) == len(tasks) ** 2  # one call per task and test set
  assert len(results) == len(runs)
  _assert_same_as_separate_runs(runs, results)


@pytest.mark.parametrize('steps_per_call', [1, 5])
def test_configurations_whose_tasks_differ_in_length_equal_their_own_runs(
  steps_per_call
):
  """Held-out validation data gives each seed tasks of other lengths (12 and
  13 steps): a configuration whose task has ended takes no more steps, also
  with one step per dispatch (as the engine runs a CNN on the CPU), where
  the step is not in a loop that its count stops."""

  def validation_stream(seed):
    return streams.validation_tasks(stream(seed)[:2], 0.2, seed)

  assert [t.num_train // 16 for t in validation_stream(0)] != [
    t.num_train // 16 for t in validation_stream(1)
  ]
  runs = [
    engine.Run(
      functools.partial(models.make_model, 'mlp', (8, 8, 1), 10, seed),
      validation_stream(seed),
      methods.make_method('sgd', learning_rate=0.1),
      dataclasses.replace(CONFIG, seed=seed),
    )
    for seed in (0, 1)
  ]
  _assert_same_as_separate_runs(
    runs,
    engine.train(runs, steps_per_call=steps_per_call),
    steps_per_call=steps_per_call,
  )


def test_seeds_whose_tasks_differ_in_length_sweep_a_fisher_of_every_example():
  """EWC's Fisher on every example of a task (``fisher_samples`` past every
  task's size, as the presets take it) over seeds whose tasks differ in
  length: one sweep, each configuration what its own run gives."""

  def validation_stream(seed):
    return streams.validation_tasks(stream(seed)[:2], 0.2, seed)

  assert ({t.num_train for t in validation_stream(0)}
          != {t.num_train for t in validation_stream(1)})
  ewc = methods.make_method('ewc', learning_rate=0.1, strength=10.0,
                            fisher_samples=10**6, fisher='predicted')
  runs = [engine.Run(mlp(seed), validation_stream(seed), ewc,
                     dataclasses.replace(CONFIG, seed=seed))
          for seed in (0, 1)]
  _assert_same_as_separate_runs(runs, engine.train(runs))


def test_a_sweep_of_another_shape_is_refused_before_training(tmp_path):
  tasks = stream(0)
  with pytest.raises(ValueError, match='Method.structure'):
    engine.train(
      [
        engine.Run(mlp(0), tasks, methods.make_method('classp', power=1.0)),
        engine.Run(mlp(0), tasks, methods.make_method('classp', power=2.0)),
      ]
    )
  with pytest.raises(ValueError, match='Method.structure'):
    engine.train(
      [
        engine.Run(mlp(0), tasks, methods.make_method('sgd', momentum=0.0)),
        engine.Run(mlp(0), tasks, methods.make_method('sgd', momentum=0.9)),
      ]
    )
  with pytest.raises(ValueError, match='config.batch_size'):
    engine.train(
      [
        engine.Run(mlp(0), tasks, methods.make_method('adam'), CONFIG),
        engine.Run(
          mlp(0),
          tasks,
          methods.make_method('adam'),
          dataclasses.replace(CONFIG, batch_size=32),
        ),
      ]
    )
  with pytest.raises(ValueError, match=r'runs\[1\].*another shape'):
    engine.train(
      [
        engine.Run(mlp(0), tasks, methods.make_method('adam'), CONFIG),
        engine.Run(mlp(0, hidden=(16,)), tasks, methods.make_method('adam'), CONFIG),
      ]
    )
  with pytest.raises(ValueError, match='at least one'):
    engine.train([])
