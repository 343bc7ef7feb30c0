"""Sweeps: K configurations in one vmapped program equal K separate runs."""

import dataclasses
import warnings

from flax import nnx
import jax
import numpy as np
import pytest

from classp_optax.continual import loop
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual import sweep
from classp_optax.continual.datasets import load_digits

CONFIG = loop.TrainConfig(epochs=1, batch_size=16, eval_batch_size=128,
                          fisher_samples=64)


def mlp(seed, hidden=(32,)):
  return lambda: models.make_model('mlp', (8, 8, 1), 10, seed=seed,
                                   hidden=hidden)


def stream(seed):
  return streams.split(load_digits(seed=seed), scenario='task')[:3]


def _params(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def _assert_same_as_separate_runs(runs, results):
  for run, swept in zip(runs, results, strict=True):
    alone = loop.train_continual(run.make_model, run.tasks, run.method,
                                 run.config)
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
    ('ewc', [dict(strength=10.0), dict(strength=50.0, learning_rate=0.01)]),
    ('si', [dict(strength=1.0), dict(strength=5.0, damping=0.5)]),
    ('sgd', [dict(momentum=0.5), dict(learning_rate=0.1, momentum=0.9)]),
    ('adam', [dict(learning_rate=1e-3), dict(learning_rate=3e-3)]),
])
def test_each_configuration_equals_its_own_run(name, settings):
  """Seeds 0 and 1 (their own streams, inits and data orders) and different
  hyperparameters, in one sweep."""
  runs = [sweep.SweepRun(mlp(seed), stream(seed),
                         methods.make_method(name, **config),
                         dataclasses.replace(CONFIG, seed=seed))
          for seed, config in enumerate(settings)]
  _assert_same_as_separate_runs(runs, sweep.train_sweep(runs, steps_per_call=7))


@pytest.mark.parametrize('scenario, train_outputs', [('task', 'all'),
                                                    ('class', 'seen')])
def test_joint_on_a_permuted_stream_equals_its_own_run(scenario, train_outputs):
  """Joint training draws a task's examples from every permuted task so far,
  each with its own outputs; in a sweep, each seed gives its own run."""
  runs = [sweep.SweepRun(
      lambda seed=seed: models.make_model('mlp', (8, 8, 1), 30, seed=seed,
                                          hidden=(32,)),
      streams.permuted(load_digits(seed=seed), 3, seed, scenario=scenario,
                       train_outputs=train_outputs),
      methods.make_method('joint'), dataclasses.replace(CONFIG, seed=seed))
      for seed in (0, 1)]
  _assert_same_as_separate_runs(runs, sweep.train_sweep(runs, steps_per_call=7))


def test_configurations_on_one_stream_share_its_data(monkeypatch):
  """One copy of the data for all, each configuration its own index rows (a
  shared order is slower on XLA:CPU: see ``sweep_train_steps``)."""
  tasks = stream(0)
  runs = [sweep.SweepRun(mlp(0), tasks, methods.classp_method(lr), CONFIG)
          for lr in (0.05, 0.1, 0.2)]
  calls = []
  original = loop.compiled.sweep_train_steps

  def spy(graphdef, states, inputs, labels, index, *args, **kwargs):
    calls.append((kwargs['shared_data'], inputs.ndim, index.shape))
    return original(graphdef, states, inputs, labels, index, *args, **kwargs)

  monkeypatch.setattr(sweep.compiled, 'sweep_train_steps', spy)
  results = sweep.train_sweep(runs)
  # The inputs (N, 8, 8, 1) once; the index (K, steps, batch).
  assert calls and all(shared and ndim == 4 and index[0] == len(runs)
                       for shared, ndim, index in calls)
  _assert_same_as_separate_runs(runs, results)


@pytest.mark.parametrize('num_devices', [1, 2])
def test_configurations_are_split_over_the_devices(monkeypatch, num_devices):
  """Three configurations on two devices: padded to four (a copy of the
  last), two a device; each still equals its own run. Every test set is
  scored for all configurations in one compiled call."""
  devices = jax.devices()[:num_devices]
  tasks = stream(0)
  runs = [sweep.SweepRun(mlp(seed), tasks, methods.sgd_method(lr),
                         dataclasses.replace(CONFIG, seed=seed))
          for seed, lr in enumerate((0.05, 0.1, 0.2))]
  placed, scored = [], []
  train = sweep.compiled.sweep_train_steps
  score = sweep.compiled.sweep_correct_count

  def train_spy(graphdef, states, *args, **kwargs):
    leaf = jax.tree.leaves(states)[0]
    placed.append((leaf.shape[0], leaf.sharding.device_set))
    return train(graphdef, states, *args, **kwargs)

  def score_spy(*args, **kwargs):
    scored.append(args[1])
    return score(*args, **kwargs)

  monkeypatch.setattr(sweep.compiled, 'sweep_train_steps', train_spy)
  monkeypatch.setattr(sweep.compiled, 'sweep_correct_count', score_spy)
  results = sweep.train_sweep(runs, devices=devices, steps_per_call=7)
  slots = 3 if num_devices == 1 else 4
  assert placed and all(size == slots and devices_used == set(devices)
                        for size, devices_used in placed)
  assert len(scored) == len(tasks) ** 2  # one call per task and test set
  assert len(results) == len(runs)
  _assert_same_as_separate_runs(runs, results)


def test_a_configuration_that_diverges_stops_alone():
  """An EWC far past SGD's stability bound blows up in task 1; its
  neighbours in the sweep go on as if alone."""
  tasks = stream(0)
  runs = [sweep.SweepRun(mlp(0), tasks, methods.ewc_method(0.1, strength=s),
                         CONFIG) for s in (10.0, 1e9, 1.0)]
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    results = sweep.train_sweep(runs, steps_per_call=5)
  diverging = [w for w in caught if w.category is loop.DivergenceWarning]
  assert len(diverging) == 1 and 'ewc diverged in task 1' in str(
      diverging[0].message)
  assert results[1].diverged['task'] == 1
  assert np.isnan(results[1].accuracy[1:]).all()
  assert results[0].diverged is None and results[2].diverged is None
  _assert_same_as_separate_runs(runs, results)


def test_the_train_step_compiles_once_for_a_sweep_of_five_tasks():
  tasks = streams.split(load_digits(), scenario='task')
  assert len({t.num_train for t in tasks}) > 1
  runs = [sweep.SweepRun(mlp(seed, hidden=(37,)), tasks,
                         methods.classp_method(0.1, threshold=1e-4), CONFIG)
          for seed in range(3)]
  before = loop.compiled.sweep_train_steps._cache_size()
  sweep.train_sweep(runs, steps_per_call=5)
  assert loop.compiled.sweep_train_steps._cache_size() - before == 1


def test_killed_between_tasks_and_resumed_equals_uninterrupted(tmp_path,
                                                              monkeypatch):
  tasks = stream(0)
  runs = [sweep.SweepRun(mlp(seed), tasks, methods.si_method(0.05),
                         dataclasses.replace(CONFIG, seed=seed))
          for seed in range(2)]
  whole = sweep.train_sweep(runs)
  calls = []
  original = sweep.compiled.sweep_correct_count

  def killed_in_task_2(*args, **kwargs):
    if len(calls) == 2 * len(tasks):  # every test set scored after tasks 0, 1
      raise KeyboardInterrupt
    calls.append(args)
    return original(*args, **kwargs)

  monkeypatch.setattr(sweep.compiled, 'sweep_correct_count', killed_in_task_2)
  with pytest.raises(KeyboardInterrupt):
    sweep.train_sweep(runs, checkpoint_dir=tmp_path)
  monkeypatch.setattr(sweep.compiled, 'sweep_correct_count', original)
  resumed = sweep.train_sweep(runs, checkpoint_dir=tmp_path)
  for a, b in zip(whole, resumed, strict=True):
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    for x, y in zip(_params(a.model), _params(b.model), strict=True):
      np.testing.assert_array_equal(x, y)
    assert a.stiffness == b.stiffness


def test_a_sweep_of_another_shape_is_refused_before_training(tmp_path):
  tasks = stream(0)
  with pytest.raises(ValueError, match='Method.structure'):
    sweep.train_sweep([
        sweep.SweepRun(mlp(0), tasks, methods.classp_method(power=1.0)),
        sweep.SweepRun(mlp(0), tasks, methods.classp_method(power=2.0))])
  with pytest.raises(ValueError, match='Method.structure'):
    sweep.train_sweep([
        sweep.SweepRun(mlp(0), tasks, methods.sgd_method(momentum=0.0)),
        sweep.SweepRun(mlp(0), tasks, methods.sgd_method(momentum=0.9))])
  with pytest.raises(ValueError, match='config.batch_size'):
    sweep.train_sweep([
        sweep.SweepRun(mlp(0), tasks, methods.adam_method(), CONFIG),
        sweep.SweepRun(mlp(0), tasks, methods.adam_method(),
                       dataclasses.replace(CONFIG, batch_size=32))])
  with pytest.raises(ValueError, match=r'runs\[1\].*another shape'):
    sweep.train_sweep([
        sweep.SweepRun(mlp(0), tasks, methods.adam_method(), CONFIG),
        sweep.SweepRun(mlp(0, hidden=(16,)), tasks, methods.adam_method(),
                       CONFIG)])
  with pytest.raises(ValueError, match='at least one'):
    sweep.train_sweep([])
