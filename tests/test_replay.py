"""Experience replay: what the buffer holds, the step it takes, and that it
is part of the run like any state."""

import dataclasses

from flax import nnx
import jax
import numpy as np
import optax
import pytest

from classp_optax.continual import config as configs
from classp_optax.continual import engine
from classp_optax.continual import hooks as hooklib
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import steps
from classp_optax.continual import streams
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.methods.replay import Replay
from classp_optax.continual.methods.replay import ReplayBuffer
from tests.resume import killed_and_resumed

CONFIG = configs.TrainConfig(epochs=1, batch_size=16, eval_batch_size=128,
                             seed=3)


def mlp(outputs=10, seed=0):
  return lambda: models.make_model('mlp', (8, 8, 1), outputs, seed=seed,
                                   hidden=(32,))


def test_the_buffer_holds_budget_examples_of_each_trained_class():
  """After each task, ``budget`` more examples of each of its classes; each
  a training example of its class, each stored once."""
  tasks = streams.split(load_digits(), scenario='class')[:3]
  result = engine.train(engine.Run(mlp(), tasks, methods.make_method(
      'replay', budget=5, learning_rate=1e-3), CONFIG))
  assert result.readouts['stored'] == [10.0, 20.0, 30.0]
  buffer = result.hook_states[0]
  assert buffer.stored.all() and buffer.inputs.shape == (30, 8, 8, 1)
  for t, task in enumerate(tasks):
    labels = np.asarray(buffer.labels[10 * t:10 * t + 10])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10)[
        list(task.classes)], [5, 5])
    x, y = task.train_batch(np.arange(task.num_train))
    for row, label in zip(np.asarray(buffer.inputs[10 * t:10 * t + 10]),
                          labels, strict=True):
      same = np.flatnonzero((x == row).all(axis=(1, 2, 3)))
      assert len(same) >= 1 and (y[same] == label).all()
    rows = np.asarray(buffer.inputs[10 * t:10 * t + 10]).reshape(10, -1)
    assert len(np.unique(rows, axis=0)) == 10


def test_a_class_with_fewer_examples_than_the_budget_is_stored_whole():
  tasks = streams.split(load_digits(), scenario='task')[:1]
  hook = Replay(budget=500)
  positions, slots = hook.plan(tasks, 0, seed=0)
  kept = slots < 1000  # two classes of 500 slots; past the end: padding
  assert kept.sum() == tasks[0].num_train
  np.testing.assert_array_equal(np.sort(positions[kept]),
                                np.arange(tasks[0].num_train))


def test_the_replayed_batch_weighs_the_losses_as_their_code_does():
  """One step of task 2 (third task): 1/3 of the current batch's mean loss
  and 2/3 of the replayed batch's, here a buffer of one stored example, so
  that the replayed batch is that example every time."""
  model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.as_pure((params, rest))
  tx = optax.sgd(0.1)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 4)).astype(np.float32)
  y = rng.integers(0, 3, 8).astype(np.int32)
  stored_x, stored_y = rng.normal(size=(1, 4)).astype(np.float32), 2
  buffer = ReplayBuffer(
      inputs=np.concatenate([stored_x, np.zeros((2, 4), np.float32)]),
      labels=np.array([stored_y, 0, 0], np.int32),
      stored=np.array([True, False, False]),
      key=np.asarray(jax.random.key_data(jax.random.key(0))))
  masks = np.ones((3, 3), bool)
  data = hooklib.TaskData(x, y, masks, np.int32(2))
  state = hooklib.TrainState(params, rest, tx.init(params), (buffer,))
  step = jax.jit(steps._step, static_argnums=(0, 1, 2, 7))  # as the engine
  new, _ = step(graphdef, tx, steps.masked_cross_entropy, (Replay(budget=1),),
                data, state, np.arange(8), None)

  def by_hand(p):
    def ce(inputs, labels):
      logits = nnx.merge(graphdef, p, rest, copy=True)(inputs)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (ce(x, y).mean() / 3
            + 2 / 3 * ce(stored_x, np.array([stored_y]))[0])

  expected = jax.tree.map(lambda p, g: p - 0.1 * g, params,
                          jax.grad(by_hand)(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               new.params, expected)


def test_a_buffer_of_size_0_is_plain_training_bit_for_bit():
  tasks = streams.split(load_digits(), scenario='class')[:3]
  plain = engine.train(
    engine.Run(mlp(), tasks, methods.make_method('adam', learning_rate=1e-3), CONFIG)
  )
  replay = engine.train(
    engine.Run(
      mlp(), tasks, methods.make_method('replay', budget=0, learning_rate=1e-3), CONFIG
    )
  )
  np.testing.assert_array_equal(replay.accuracy, plain.accuracy)
  jax.tree.map(
    np.testing.assert_array_equal,
    nnx.state(replay.model, nnx.Param),
    nnx.state(plain.model, nnx.Param),
  )
  assert replay.state_bytes == plain.state_bytes


@pytest.mark.parametrize('scenario', streams.SCENARIOS)
def test_replay_keeps_earlier_tasks_in_every_scenario(scenario):
  """In the class-incremental scenario fine-tuning ends near chance on the
  earlier tasks; replay keeps them well above it. It forgets much less than
  fine-tuning where fine-tuning forgets (the domain and class scenarios; the
  task-incremental heads of split digits barely forget), and its buffer
  counts in its state."""
  tasks = streams.split(
    load_digits(),
    scenario=scenario,
    train_outputs='seen' if scenario == 'class' else 'all',
  )
  outputs = tasks[0].num_outputs
  config = dataclasses.replace(CONFIG, epochs=3)
  adam = engine.train(
    engine.Run(
      mlp(outputs), tasks, methods.make_method('adam', learning_rate=3e-3), config
    )
  )
  replay = engine.train(
    engine.Run(
      mlp(outputs),
      tasks,
      methods.make_method('replay', budget=20, learning_rate=3e-3),
      config,
    )
  )
  forgetting = replay.summary['forgetting'], adam.summary['forgetting']
  assert forgetting[0] < (
    forgetting[1] - 0.05 if scenario != 'task' else forgetting[1] + 0.01
  ), forgetting
  buffer_bytes = 20 * 10 * (64 * 4 + 4 + 1) + 8
  assert replay.state_bytes == adam.state_bytes + buffer_bytes
  if scenario == 'class':
    assert adam.summary['average_accuracy'] < 0.35
    assert replay.summary['average_accuracy'] > 0.7


@pytest.mark.parametrize('optimizer', ['sgd', 'classp'])
def test_replay_runs_on_any_optimizer_and_sweeps(optimizer):
  """Two seeds of replay on SGD or CLASSP in one program, each what its own
  run gives."""
  settings = dict(threshold=1e-6, power=2.0) if optimizer == 'classp' else {}
  method = methods.make_method(
    'replay', budget=5, optimizer=optimizer, learning_rate=0.05, **settings
  )
  runs = [
    engine.Run(
      mlp(seed=seed),
      streams.split(load_digits(seed=seed), scenario='class')[:3],
      method,
      dataclasses.replace(CONFIG, seed=seed),
    )
    for seed in (0, 1)
  ]
  swept = engine.train(
    runs, mesh=placement.mesh_for(2, jax.devices()[:2]), steps_per_call=7
  )
  for run, result in zip(runs, swept, strict=True):
    alone = engine.train(engine.Run(run.make_model, run.tasks, run.method, run.config))
    np.testing.assert_allclose(result.accuracy, alone.accuracy, atol=1e-6)
    jax.tree.map(
      np.testing.assert_array_equal,
      result.hook_states[0].labels,
      alone.hook_states[0].labels,
    )
  assert ('capacity_used' in swept[0].readouts) == (optimizer == 'classp')


def test_a_killed_replay_run_resumes_with_the_same_buffer(tmp_path):
  tasks = streams.split(load_digits(), scenario='class')[:3]
  method = methods.make_method('replay', budget=5)
  straight = engine.train(engine.Run(mlp(), tasks, method, CONFIG))

  resumed = killed_and_resumed(engine.Run(mlp(), tasks, method, CONFIG),
                               tmp_path)
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)
  jax.tree.map(np.testing.assert_array_equal, resumed.hook_states, straight.hook_states)
