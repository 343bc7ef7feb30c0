"""The continual loop: accuracy matrix, resume after a kill, refusal of
foreign checkpoints, data parallelism, per-task hyperparameters."""

import dataclasses
import warnings

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import optax
import pytest

from classp_optax import EwcState
from classp_optax import SiState
from classp_optax import _ewc
from classp_optax import classp_stats
from classp_optax import set_hyperparams
from classp_optax._state_search import find_unique
from classp_optax.continual import cli
from classp_optax.continual import loop
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual.datasets import load_digits

CONFIG = loop.TrainConfig(epochs=1, batch_size=16, eval_batch_size=128, seed=3,
                          fisher_samples=64)


@pytest.fixture(scope='module')
def tasks():
  return streams.split(load_digits(), scenario='task')[:3]


def cnn():
  return models.make_model('cnn', (8, 8, 1), 10, seed=0)


def mlp(hidden=(32,)):
  return lambda: models.make_model('mlp', (8, 8, 1), 10, seed=0, hidden=hidden)


class Interrupted(Exception):
  pass


def _killed_then_resumed(make_model, tasks, method, config, directory,
                         kill_at, **options):
  """Runs until ``on_step`` reaches ``kill_at`` = (task, step), killed there,
  then resumes from ``directory`` with the same ``options``. Returns the
  resumed result and the (task, step) of every step it trained."""

  def kill(task, step, loss):
    if (task, step) == kill_at:
      raise Interrupted

  with pytest.raises(Interrupted):
    loop.train_continual(make_model, tasks, method, config,
                         checkpoint_dir=directory, on_step=kill, **options)
  trained = []
  resumed = loop.train_continual(
      make_model, tasks, method, config, checkpoint_dir=directory,
      on_step=lambda task, step, loss: trained.append((task, step)), **options)
  return resumed, trained


def test_accuracy_matrix_is_filled(tasks):
  result = loop.train_continual(mlp(), tasks, methods.sgd_method(0.1), CONFIG)
  r = result.accuracy
  assert r.shape == (3, 3)
  assert np.all((0 <= r) & (r <= 1))
  assert np.all(np.diag(r) > 0.85)  # each pair is learnt
  # Plain SGD keeps no state but its injected learning rate and step count.
  assert result.state_bytes == 8 and result.summary['forgetting'] >= 0


@pytest.mark.parametrize('method', [
    methods.classp_method(0.05, threshold=1e-4),
    methods.ewc_method(0.1, strength=50.0),
    methods.si_method(0.1, strength=1.0),
])
def test_killed_mid_task_and_resumed_equals_uninterrupted(tasks, tmp_path, method):
  """A kill in task 1 after a mid-task checkpoint (every 4 steps) resumes at
  that checkpoint, and the run ends with the same accuracy matrix."""
  straight = loop.train_continual(cnn, tasks, method, CONFIG)
  resumed, resumed_steps = _killed_then_resumed(
      cnn, tasks, method, CONFIG, tmp_path, kill_at=(1, 10),
      checkpoint_every_steps=4)
  assert resumed_steps[0] == (1, 9)  # from the checkpoint after step 8
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)
  assert resumed.state_bytes == straight.state_bytes > 0
  assert resumed.stiffness == straight.stiffness


def test_killed_in_the_first_task_resumes_from_its_checkpoint(tasks, tmp_path):
  sgd = methods.sgd_method(0.1)
  straight = loop.train_continual(mlp(), tasks[:2], sgd, CONFIG)
  resumed, resumed_steps = _killed_then_resumed(
      mlp(), tasks[:2], sgd, CONFIG, tmp_path, kill_at=(0, 7),
      checkpoint_every_steps=3)
  assert resumed_steps[0] == (0, 7)
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)


def test_killed_between_tasks_resumes_at_the_next_task(tasks, tmp_path):
  sgd = methods.sgd_method(0.1)
  straight = loop.train_continual(mlp(), tasks, sgd, CONFIG)
  resumed, resumed_steps = _killed_then_resumed(
      mlp(), tasks, sgd, CONFIG, tmp_path, kill_at=(1, 2),
      checkpoint_every_seconds=None)
  assert resumed_steps[0] == (1, 1)
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)


def test_foreign_checkpoints_are_refused_before_anything_changes(tasks, tmp_path):
  sgd = methods.sgd_method(0.1)
  loop.train_continual(mlp(), tasks[:1], sgd, CONFIG, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match='from another run: hyperparams, method'):
    loop.train_continual(mlp(), tasks[:1], methods.adam_method(), CONFIG,
                         checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match='another model or optimizer'):
    loop.train_continual(mlp(hidden=(16,)), tasks[:1], sgd, CONFIG,
                         checkpoint_dir=tmp_path)
  # The checkpoint is intact: the right run resumes from it, finished.
  done = loop.train_continual(mlp(), tasks[:1], sgd, CONFIG,
                              checkpoint_dir=tmp_path,
                              on_step=lambda *a: pytest.fail('retrained'))
  assert done.accuracy[0, 0] > 0.85


def test_resume_with_per_task_epochs_and_refusal_of_another_stream(tasks, tmp_path):
  config = dataclasses.replace(CONFIG, epochs=(1, 2))
  sgd = methods.sgd_method(0.1)
  straight = loop.train_continual(mlp(), tasks[:2], sgd, config)
  resumed, _ = _killed_then_resumed(mlp(), tasks[:2], sgd, config, tmp_path,
                                    kill_at=(1, 3))
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)
  with pytest.raises(ValueError, match='from another run: config, tasks'):
    loop.train_continual(mlp(), tasks, sgd, CONFIG, checkpoint_dir=tmp_path)


def test_a_task_smaller_than_a_batch_is_refused(tasks):
  with pytest.raises(ValueError, match='batch_size must be at most'):
    loop.train_continual(mlp(), tasks, methods.sgd_method(0.1),
                         loop.TrainConfig(batch_size=1000))


def test_data_parallel_on_eight_devices_matches_one_device(tasks):
  method = methods.classp_method(0.05, threshold=1e-4)
  one = loop.train_continual(mlp(), tasks, method, CONFIG)
  mesh = Mesh(np.array(jax.devices()), ('data',))
  assert mesh.devices.size == 8
  eight = loop.train_continual(mlp(), tasks, method, CONFIG, mesh=mesh)
  np.testing.assert_allclose(eight.accuracy, one.accuracy, atol=1 / 70)
  with pytest.raises(ValueError, match='batch_size must be a multiple of the 8'):
    loop.train_continual(mlp(), tasks, method,
                         loop.TrainConfig(batch_size=12), mesh=mesh)


def test_classp_schedule_switches_hyperparameters_and_keeps_memory(tasks):
  method = methods.classp_method(0.05, threshold=1e-3, decay_from_task=1)
  tx = method.optimizer
  grads = {'w': jax.numpy.array([2.0])}
  state = tx.init(grads)
  u0, state = tx.update(grads, state)
  np.testing.assert_allclose(u0['w'], [-0.1])  # plain step: lr * g
  state = set_hyperparams(state, **method.hyperparams_for_task(1))
  u1, _ = tx.update(grads, state)
  np.testing.assert_allclose(u1['w'], [-0.05 * 2 / (1e-5 + 4)], rtol=1e-6)

  result = loop.train_continual(mlp(), tasks, method, CONFIG)
  assert result.summary['average_accuracy'] > 0.8


def test_reset_state_starts_each_task_afresh(tasks):
  kept = methods.adagrad_method(0.05)
  reset = dataclasses.replace(kept, reset_state=True)
  a = loop.train_continual(mlp(), tasks[:2], kept, CONFIG)
  b = loop.train_continual(mlp(), tasks[:2], reset, CONFIG)
  np.testing.assert_array_equal(a.accuracy[0], b.accuracy[0])
  assert not np.array_equal(a.accuracy[1], b.accuracy[1])


@pytest.mark.parametrize('make_method, state_type', [
    (methods.ewc_method, EwcState), (methods.si_method, SiState)])
def test_reset_state_keeps_the_penalty_memory(tasks, make_method, state_type):
  """On plain SGD (no optimizer state of its own but the injected learning
  rate and step count) a reset must change nothing but that count: the
  penalty's Fisher / importances are the memory of the tasks."""
  kept = make_method(0.1, strength=1.0)
  reset = dataclasses.replace(kept, reset_state=True)
  a = loop.train_continual(mlp(), tasks, kept, CONFIG)
  b = loop.train_continual(mlp(), tasks, reset, CONFIG)
  np.testing.assert_array_equal(a.accuracy, b.accuracy)
  jax.tree.map(np.testing.assert_array_equal,
               find_unique(a.opt_state, state_type, 'penalty'),
               find_unique(b.opt_state, state_type, 'penalty'))
  assert a.opt_state.hyperparams == b.opt_state.hyperparams
  last_task_steps = tasks[-1].num_train // CONFIG.batch_size
  assert int(b.opt_state.count) == last_task_steps < int(a.opt_state.count)


def test_fresh_state_resets_the_optimizer_and_keeps_the_penalty():
  method = methods.ewc_method(0.1, strength=2.0, momentum=0.9)
  tx = method.optimizer
  params = {'w': jnp.ones(3)}
  state = tx.init(params)
  _, state = tx.update({'w': jnp.ones(3)}, state, params)
  state = method.consolidate(state, params, lambda: {'w': jnp.full(3, 5.0)})
  fresh = methods.fresh_state(tx, params, state)
  np.testing.assert_array_equal(find_unique(fresh, EwcState, 'e').fisher['w'], 5.0)
  trace = find_unique(fresh, optax.TraceState, 'trace').trace['w']
  np.testing.assert_array_equal(trace, 0.0)
  assert float(jnp.abs(find_unique(state, optax.TraceState, 't').trace['w']).max()) > 0


def test_make_method_takes_reset_state_for_every_method():
  for name in methods.METHODS:
    plain = methods.make_method(name)
    assert not plain.reset_state and 'reset_state' not in plain.hyperparams
    reset = methods.make_method(name, reset_state=True)
    assert reset.reset_state and reset.hyperparams['reset_state'] is True
    assert reset.hyperparams == {**plain.hyperparams, 'reset_state': True}
  with pytest.raises(ValueError, match='reset_state must be True or False'):
    methods.make_method('adam', reset_state='yes')


@pytest.mark.parametrize('make_method,state_type,field,steps_per_unit', [
    (methods.ewc_method, EwcState, 'fisher', 1.0),
    (methods.si_method, SiState, 'importance', 2.0),
])
def test_penalty_acts_inside_the_loop(tasks, make_method, state_type, field,
                                      steps_per_unit):
  """The in-loop penalty is not silently zero: it holds weights near task 0's."""
  config = dataclasses.replace(CONFIG, epochs=3)
  first = loop.train_continual(mlp(), tasks[:1], make_method(0.1), config)
  weight = getattr(find_unique(first.opt_state, state_type, 'state'), field)
  assert sum(float(jnp.sum(f)) for f in jax.tree.leaves(weight)) > 0
  anchor = nnx.state(first.model, nnx.Param)

  def drift(strength):
    run = loop.train_continual(mlp(), tasks[:2],
                               make_method(0.1, strength=strength), config)
    moved = nnx.state(run.model, nnx.Param)
    return sum(float(jnp.sum(f * (w - a) ** 2)) for f, w, a in zip(
        jax.tree.leaves(weight), jax.tree.leaves(moved),
        jax.tree.leaves(anchor), strict=True))

  # Strong, yet stable for SGD: lr * (penalty curvature) * max weight = 1 < 2.
  max_weight = max(float(jnp.max(f)) for f in jax.tree.leaves(weight))
  free = drift(0.0)
  held = drift(1.0 / (0.1 * steps_per_unit * max_weight))
  assert free > 0
  assert held < 0.5 * free


def test_a_run_made_to_diverge_stops_with_the_divergence_named(tasks):
  """A penalty far past SGD's stability bound blows up in task 1."""
  steps = []
  with pytest.warns(loop.DivergenceWarning,
                    match=r'ewc diverged in task 1 at step \d+: the loss'):
    result = loop.train_continual(
        mlp(), tasks, methods.ewc_method(0.1, strength=1e9), CONFIG,
        on_step=lambda task, step, loss: steps.append((task, step, loss)))
  task, step = result.diverged['task'], result.diverged['step']
  assert task == 1
  # The step named is the first whose loss was not finite.
  losses = {s: loss for t, s, loss in steps if t == 1}
  assert not np.isfinite(losses[step])
  assert all(np.isfinite(losses[s]) for s in range(1, step))
  assert max(losses) < loop.STEPS_PER_CALL + step  # stopped at that dispatch
  np.testing.assert_array_equal(np.isnan(result.accuracy[:, 0]),
                                [False, True, True])
  assert result.summary['average_accuracy'] is None
  saved = result.to_json()
  assert saved['diverged'] == result.diverged and saved['accuracy'][1][0] is None
  assert 'diverged in task 1 at step' in cli.format_table([result])


def test_a_task_learnt_to_chance_is_marked(tasks):
  def frozen():  # constant logits: the first allowed class, always
    model = mlp()()
    model.out.kernel.value = jnp.zeros_like(model.out.kernel.value)
    return model

  result = loop.train_continual(frozen, tasks, methods.sgd_method(1e-9), CONFIG)
  assert result.not_learnt == [0, 1, 2]
  assert result.to_json()['not_learnt'] == [0, 1, 2]
  table = cli.format_table([result])
  assert 'not learnt' in table and 'task 0 (' in table
  learnt = loop.train_continual(mlp(), tasks, methods.sgd_method(0.1), CONFIG)
  assert learnt.not_learnt == []
  assert 'not learnt' not in cli.format_table([learnt])


def test_the_stiffness_warning_fires_on_a_stiff_penalty(tasks):
  with pytest.warns(loop.StiffnessWarning, match='ewc: after task 0'):
    loop.train_continual(mlp(), tasks[:2],
                         methods.ewc_method(0.1, strength=1e6), CONFIG)


def test_no_stiffness_warning_for_the_last_consolidation(tasks):
  """Nothing trains after the last task, so its stiffness is recorded but
  cannot make anything oscillate."""
  with warnings.catch_warnings():
    warnings.simplefilter('error', loop.StiffnessWarning)
    result = loop.train_continual(mlp(), tasks[:1],
                                  methods.ewc_method(0.1, strength=1e6), CONFIG)
  assert result.stiffness[0] > 2


def test_each_test_set_is_prepared_once_per_run(tasks, monkeypatch):
  calls = []
  original = streams.Task.test_set
  monkeypatch.setattr(streams.Task, 'test_set',
                      lambda self: calls.append(self.name) or original(self))
  result = loop.train_continual(mlp(), tasks, methods.sgd_method(0.1), CONFIG)
  assert sorted(calls) == sorted(task.name for task in tasks)
  # The same accuracies as evaluating each task from scratch.
  result.model.eval()
  np.testing.assert_array_equal(
      result.accuracy[-1],
      [loop.evaluate(result.model, task, CONFIG.eval_batch_size)
       for task in tasks])


@pytest.mark.parametrize('name', sorted(methods.METHODS))
def test_each_compiled_function_compiles_once_in_a_five_task_run(name):
  """The train step (CLASSP's schedule included: injected, not rebuilt),
  the evaluation and EWC's Fisher compile once per run, not once per task,
  though the tasks differ in size."""
  tasks = streams.split(load_digits(), scenario='task')
  assert len(tasks) == 5 and len({t.num_train for t in tasks}) > 1
  method = methods.make_method(name)
  # A width no other run uses, so that nothing is in the caches yet.
  make_model = mlp(hidden=(40 + sorted(methods.METHODS).index(name),))
  compiled = dict(train=loop.compiled.train_steps,
                  evaluation=loop.compiled.correct_count,
                  fisher=_ewc.squared_gradient_sum)
  before = {key: f._cache_size() for key, f in compiled.items()}
  loop.train_continual(make_model, tasks, method, CONFIG, steps_per_call=5)
  grown = {key: f._cache_size() - before[key] for key, f in compiled.items()}
  assert grown == dict(train=1, evaluation=1, fisher=int(name == 'ewc'))


def _per_step_reference(make_model, tasks, method, config):
  """The loop written plainly: one jitted step per batch from the host, the
  same batches in the same order, a new step per task's hyperparameters."""
  model = make_model()
  optimizer = nnx.Optimizer(model, method.optimizer, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y, mask):
    def loss_fn(model):
      return loop.compiled.masked_cross_entropy(model(x), y, mask).mean()
    optimizer.update(model, nnx.grad(loss_fn)(model))

  for t, task in enumerate(tasks):
    if method.hyperparams_for_task is not None:
      values = method.hyperparams_for_task(t)
      state = set_hyperparams(nnx.as_pure(optimizer.opt_state), **values)
      nnx.update(optimizer.opt_state, nnx.state(state))
    for rows in loop.task_order(config, t, task.num_train):
      x, y = task.train_batch(rows)
      # Each example's loss over the outputs its label's row names.
      step(model, optimizer, jnp.asarray(x), jnp.asarray(y),
           jnp.asarray(task.train_logit_masks()[y]))
  return model


def test_device_loop_takes_the_steps_of_a_plain_per_step_loop(tasks):
  """Batches gathered on the device, many steps per dispatch, padded task
  data: the same weights as a plain loop; and among looped dispatches
  (more than one step), the dispatch size changes nothing at all."""
  method = methods.classp_method(0.05, threshold=1e-4, decay_from_task=1)
  config = dataclasses.replace(CONFIG, epochs=2)
  runs = {n: loop.train_continual(cnn, tasks, method, config, steps_per_call=n)
          for n in (100, 3, 1)}
  plain = _per_step_reference(cnn, tasks, method, config)
  jax.tree.map(np.testing.assert_array_equal,
               nnx.state(runs[100].model, nnx.Param),
               nnx.state(runs[3].model, nnx.Param))
  np.testing.assert_array_equal(runs[100].accuracy, runs[3].accuracy)
  # Float rounding only: XLA fuses a loop's body differently from one step.
  for n in (100, 1):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                         atol=2e-5),
                 nnx.state(runs[n].model, nnx.Param),
                 nnx.state(plain, nnx.Param))


def test_convolutional_models_take_one_step_per_dispatch_on_the_cpu():
  """XLA:CPU is an order of magnitude slower on a convolution's gradient
  inside a loop; everything else runs many steps per dispatch."""
  on_cpu = jax.default_backend() == 'cpu'
  assert loop.default_steps_per_call(cnn()) == (1 if on_cpu else
                                                loop.STEPS_PER_CALL)
  assert loop.default_steps_per_call(mlp()()) == loop.STEPS_PER_CALL
  with pytest.raises(ValueError, match='steps_per_call must be None or an'):
    loop.train_continual(mlp(), [], methods.sgd_method(0.1), CONFIG,
                         steps_per_call=0)


def test_capacity_used_is_recorded_after_every_task_for_classp(tasks, tmp_path):
  """The fraction of weights CLASSP ever updated, after each task: it only
  grows, and survives a resume. Methods without a ClasspState record none."""
  method = methods.classp_method(0.05, threshold=1e-4, decay_from_task=1)
  result = loop.train_continual(mlp(), tasks, method, CONFIG)
  used = result.capacity_used
  assert len(used) == 3 and used == sorted(used) and 0 < used[0] <= used[-1] <= 1
  assert used[-1] == pytest.approx(
      float(classp_stats(result.opt_state).capacity_used))
  assert result.to_json()['capacity_used'] == used
  resumed, _ = _killed_then_resumed(mlp(), tasks, method, CONFIG, tmp_path,
                                    kill_at=(2, 1))
  assert resumed.capacity_used == used
  assert loop.train_continual(mlp(), tasks[:1], methods.sgd_method(0.1),
                              CONFIG).capacity_used == []


def test_steps_per_task_takes_that_many_steps_through_successive_epochs(tasks):
  """A fixed number of steps per task (van de Ven & Tolias's iterations):
  epoch after epoch of the seeded permutations, cut where the count ends."""
  config = dataclasses.replace(CONFIG, epochs=1, steps_per_task=25)
  n = tasks[0].num_train
  per_epoch = n // config.batch_size
  assert per_epoch < 25 < 2 * per_epoch
  order = loop.task_order(config, 0, n)
  assert order.shape == (25, config.batch_size)
  np.testing.assert_array_equal(
      order[:per_epoch], loop.task_order(dataclasses.replace(
          config, steps_per_task=None), 0, n))
  np.testing.assert_array_equal(
      order[per_epoch:], loop.task_order(dataclasses.replace(
          config, steps_per_task=None, epochs=2), 0, n)[per_epoch:25])
  seen = []
  loop.train_continual(mlp(), tasks, methods.sgd_method(0.1), config,
                       on_step=lambda task, step, loss: seen.append(task))
  assert [seen.count(t) for t in range(3)] == [25, 25, 25]
  with pytest.raises(ValueError, match='steps_per_task must be None or an'):
    loop.train_continual(mlp(), tasks, methods.sgd_method(0.1),
                         dataclasses.replace(CONFIG, steps_per_task=0))


@pytest.mark.parametrize('scenario', streams.SCENARIOS)
def test_joint_training_takes_the_steps_of_a_plain_loop_on_every_task_so_far(
    scenario):
  """The upper bound: task t trains on tasks 0..t together, each example's
  loss over its own task's outputs (task-incremental), and is scored on
  the tasks as they are."""
  tasks = streams.split(load_digits(), scenario=scenario)[:3]
  method = methods.make_method('joint', learning_rate=0.1)
  outputs = tasks[0].num_outputs
  make_model = lambda: models.make_model('mlp', (8, 8, 1), outputs, seed=0,
                                         hidden=(32,))
  result = loop.train_continual(make_model, tasks, method, CONFIG)
  plain = _per_step_reference(make_model, streams.joint(tasks), method, CONFIG)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=2e-5),
               nnx.state(result.model, nnx.Param), nnx.state(plain, nnx.Param))
  expected = [loop.evaluate(plain, task, 128) for task in tasks]
  np.testing.assert_allclose(result.accuracy[-1], expected, atol=1e-3)
  # Trained on every task so far, it keeps them: no forgetting to speak of.
  assert result.summary['forgetting'] < 0.05
