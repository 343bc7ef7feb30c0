"""The engine knows no method: a method written here, as an Optax transform
and a hook, trains through it alone and in a sweep; and the engine takes
any per-example loss and score."""

import dataclasses
import json
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import set_hyperparams
from classp_optax.continual import Hook
from classp_optax.continual import Method
from classp_optax.continual import Run
from classp_optax.continual import RunResult
from classp_optax.continual import Task
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import steps
from classp_optax.continual import streams
from classp_optax.continual import train
from classp_optax.continual.config import task_order
from classp_optax.continual.datasets import Dataset
from classp_optax.continual.datasets import load_digits

CONFIG = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128)


class PullState(NamedTuple):
  anchor: optax.Params
  active: jax.Array


def add_pull(strength) -> optax.GradientTransformation:
  """Adds ``strength * (w - anchor)`` once an anchor is set: an L2 pull
  towards the weights after the previous task."""

  def init(params):
    return PullState(jax.tree.map(jnp.zeros_like, params), jnp.float32(0))

  def update(updates, state, params):
    return jax.tree.map(lambda g, w, a: g + strength * state.active * (w - a),
                        updates, params, state.anchor), state

  return optax.GradientTransformation(init, update)


def pull_sgd(strength, learning_rate):
  return optax.chain(add_pull(strength), optax.sgd(learning_rate))


class AnchorAtTaskEnd(Hook):
  """At each task's end, the pull's anchor becomes the weights; the distance
  the weights moved from the previous anchor is recorded."""

  def end_task(self, state, data, model, plan):
    return state._replace(opt_state=optax.tree.set(
        state.opt_state, anchor=state.params, active=jnp.float32(1)))

  def readouts(self, state):
    return {'anchored': optax.tree.get(state.opt_state, 'active')}


def pull_method(strength: float, learning_rate: float = 0.1) -> Method:
  tx = optax.inject_hyperparams(pull_sgd)(strength=strength,
                                          learning_rate=learning_rate)
  return Method('pull', dict(strength=strength, learning_rate=learning_rate),
                tx, hooks=(AnchorAtTaskEnd(),), structure=('pull',))


def mlp(seed):
  return lambda: models.make_model('mlp', (8, 8, 1), 10, seed=seed,
                                   hidden=(32,))


def stream(seed):
  return streams.split(load_digits(seed=seed), scenario='task')[:3]


def _params(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def test_a_method_defined_outside_the_toolkit_trains_through_the_engine():
  """The hook runs at every task's end: the final anchor is the final
  weights, and a strong pull holds task 1's weights near task 0's."""
  tasks = stream(0)
  result = train(Run(mlp(0), tasks, pull_method(1.0), CONFIG))
  anchors = jax.tree.leaves(optax.tree.get(result.opt_state, 'anchor'))
  for anchor, w in zip(anchors, _params(result.model), strict=True):
    np.testing.assert_array_equal(anchor, w)
  assert result.readouts == {'anchored': [1.0, 1.0, 1.0]}

  after_task_0 = _params(train(Run(mlp(0), tasks[:1], pull_method(0.0),
                                         CONFIG)).model)

  def moved(strength):
    model = train(Run(mlp(0), tasks[:2], pull_method(strength),
                            CONFIG)).model
    return sum(float(jnp.sum((w - a) ** 2)) for w, a in zip(
        _params(model), after_task_0, strict=True))

  assert moved(5.0) < 0.2 * moved(0.0)


def test_a_method_defined_outside_the_toolkit_sweeps():
  """Three configurations (seeds and strengths) in one program, each what
  its own run gives."""
  runs = [Run(mlp(seed), stream(seed), pull_method(strength),
              dataclasses.replace(CONFIG, seed=seed))
          for seed, strength in enumerate((0.0, 1.0, 5.0))]
  for swept, run in zip(train(runs, steps_per_call=7), runs,
                        strict=True):
    alone = train(Run(run.make_model, run.tasks, run.method, run.config))
    np.testing.assert_allclose(swept.accuracy, alone.accuracy, atol=1e-6)
    for a, b in zip(_params(swept.model), _params(alone.model), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _regression_tasks(seed: int = 0) -> list[Task]:
  """Two linear regressions on the same inputs, y = x . v_t."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(96, 4)).astype(np.float32)
  tasks = []
  for t in range(2):
    y = (x @ rng.normal(size=4)).astype(np.float32)
    data = Dataset(f'line{t}', x[:64], y[:64], x[64:], y[64:], num_classes=1)
    tasks.append(Task(f'line{t}', data, np.arange(64), np.arange(32),
                      classes=(0,)))
  return tasks


def squared_error(outputs, targets, train_masks):
  del train_masks
  return (outputs[:, 0] - targets) ** 2


def close_enough(outputs, targets, logit_mask):
  del logit_mask
  return (jnp.abs(outputs[:, 0] - targets) < 0.5).astype(jnp.float32)


def _linear():
  return nnx.Linear(4, 1, rngs=nnx.Rngs(0))


def test_the_loss_and_score_are_arguments_of_the_engine():
  """A regression through the Python API: the engine takes the steps a
  hand-written Optax loop takes on the squared error, and scores with the
  score given."""
  tasks = _regression_tasks()
  method = Method('sgd', {}, optax.sgd(0.05), structure=('sgd',))
  config = dataclasses.replace(CONFIG, epochs=20, batch_size=8)
  result = train([Run(_linear, tasks, method, config)],
                 example_loss=squared_error, example_score=close_enough)[0]

  model = _linear()
  graphdef, params = nnx.split(model)
  opt_state = method.optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    loss = lambda p: squared_error(nnx.merge(graphdef, p)(x), y, None).mean()
    updates, opt_state = method.optimizer.update(jax.grad(loss)(params),
                                                 opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for t, task in enumerate(tasks):
    for rows in task_order(config, t, task.num_train):
      params, opt_state = step(params, opt_state, *task.train_batch(rows))
  for a, b in zip(_params(result.model), jax.tree.leaves(params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Task 1 learnt; task 0 forgotten as its line is not task 1's.
  assert result.accuracy[1, 1] > 0.9 and result.accuracy[0, 0] > 0.9
  assert result.accuracy[1, 0] < 0.5
  assert result.majority_accuracy == [None, None] and result.not_learnt == []


def test_the_classp_schedule_is_a_hook_on_the_injected_state():
  """CLASSP's schedule sets the injected hyperparameters for each task."""
  from classp_optax.continual import methods  # noqa: PLC0415
  method = methods.make_method(
    'classp',
    learning_rate=0.05,
    threshold=1e-3,
    decay_from_task=1,
    later_learning_rate=0.02,
  )
  schedule = method.hooks[0]
  state = method.optimizer.init({'w': jnp.zeros(1)})
  for task, (lr, threshold, decay) in enumerate(
    [(0.05, 1e-3, False), (0.02, 0.0, True)]
  ):
    values = schedule.hyperparams_for_task(task)
    assert (values['learning_rate'], values['threshold'], values['apply_decay']) == (
      np.float32(lr),
      np.float32(threshold),
      decay,
    )
    updated = set_hyperparams(state, **values)
    assert float(updated.hyperparams['learning_rate']) == np.float32(lr)


class ReadsOutAnchored(Hook):
  """A second hook that reads out the name ``AnchorAtTaskEnd`` reads out."""

  def readouts(self, state):
    return {'anchored': jnp.float32(0)}


def test_two_hooks_reading_out_one_name_are_refused_before_training():
  method = pull_method(1.0)
  clash = dataclasses.replace(method, hooks=(*method.hooks, ReadsOutAnchored()))
  trained = []
  with pytest.raises(ValueError, match="AnchorAtTaskEnd and ReadsOutAnchored "
                     "both read out 'anchored'"):
    train(Run(mlp(0), stream(0), clash, CONFIG),
          on_step=lambda *args: trained.append(args))
  assert trained == []


class PlansEveryExample(AnchorAtTaskEnd):
  """A plan as long as the task: seeds whose tasks differ in length give
  plans of other shapes, and this hook does not pad them."""

  def plan(self, tasks, t, seed):
    return (np.ones(tasks[t].num_train, np.float32),)


def test_a_sweep_whose_plans_differ_and_cannot_be_padded_is_refused_first():
  def validation_stream(seed):
    return streams.validation_tasks(stream(seed)[:2], 0.2, seed)

  method = dataclasses.replace(pull_method(1.0), hooks=(PlansEveryExample(),))
  runs = [Run(mlp(seed), validation_stream(seed), method,
              dataclasses.replace(CONFIG, seed=seed)) for seed in (0, 1)]
  trained = []
  with pytest.raises(ValueError, match=r'PlansEveryExample.plan gives the '
                     r'configurations of one sweep plans of other shapes: '
                     r'give the hook pad_plan\(plan, length\)'):
    train(runs, on_step=lambda *args: trained.append(args))
  assert trained == []


def test_every_read_out_and_bound_is_in_the_results_json():
  """A hook's own read-out (the pull's ``anchored``) and a penalty's bound
  are written to results.json and read back."""
  tasks = stream(0)[:2]
  pulled = train(Run(mlp(0), tasks, pull_method(1.0), CONFIG))
  ewc = train(Run(mlp(0), tasks, make_method('ewc', fisher_samples=16),
                  CONFIG))
  for result in (pulled, ewc):
    row = json.loads(json.dumps(result.to_json()))
    again = RunResult.from_json(row)
    assert again.readouts == result.readouts and again.bounds == result.bounds
  assert json.loads(json.dumps(pulled.to_json()))['readouts'] == {
      'anchored': [1.0, 1.0]}
  assert ewc.to_json()['bounds'] == {'stiffness': 2.0}


def test_no_end_of_task_program_without_a_hook_acting_there(monkeypatch):
  """Plain SGD has no hook: the end of a task only checks the state is
  finite, and compiles nothing else; EWC's end of task does run."""
  called = []
  original = steps.end_tasks
  monkeypatch.setattr(steps, 'end_tasks', lambda *args, **kwargs: (
      called.append(1), original(*args, **kwargs))[1])
  tasks = stream(0)[:2]
  plain = train(Run(mlp(0), tasks, make_method('sgd', learning_rate=0.1),
                    CONFIG))
  assert called == [] and plain.diverged is None
  assert np.all(np.diag(plain.accuracy) > 0.85)
  train(Run(mlp(0), tasks, make_method('ewc', fisher_samples=16), CONFIG))
  assert called == [1, 1]
