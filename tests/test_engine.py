"""The engine, for one configuration and for three: accuracy matrix, resume
after a kill, refusal of foreign checkpoints, divergence, data parallelism,
fresh states, joint training, compiles per run."""

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
from classp_optax import classp_stats
from classp_optax import consolidate_ewc
from classp_optax import set_hyperparams
from classp_optax._state_search import find_unique
from classp_optax.continual import config as configs
from classp_optax.continual import engine
from classp_optax.continual import evaluation
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import report
from classp_optax.continual import results
from classp_optax.continual import steps
from classp_optax.continual import streams
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.methods import classp as classp_methods
from classp_optax.continual.methods.reset import ResetState
from tests.resume import killed_and_resumed

CONFIG = configs.TrainConfig(epochs=1, batch_size=16, eval_batch_size=128,
                             seed=3)


@pytest.fixture(scope='module')
def tasks():
  return streams.split(load_digits(), scenario='task')[:3]


def cnn(seed=0):
  return lambda: models.make_model('cnn', (8, 8, 1), 10, seed=seed)


def mlp(hidden=(32,), seed=0):
  return lambda: models.make_model('mlp', (8, 8, 1), 10, seed=seed,
                                   hidden=hidden)


def runs_of(method, tasks, num_configs, make=mlp, config=CONFIG):
  """``num_configs`` configurations of ``method``: model seeds and data
  orders 0, 1, ... on one stream."""
  return [engine.Run(make(seed=seed), tasks, method,
                     dataclasses.replace(config, seed=config.seed + seed))
          for seed in range(num_configs)]


def one_device(runs):
  return placement.mesh_for(len(runs), jax.devices()[:1])


def fit(runs, **options):
  """:func:`engine.train` on one device."""
  return engine.train(runs, mesh=options.pop('mesh', one_device(runs)),
                      **options)


def _assert_same_results(a, b):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x.accuracy, y.accuracy)
    assert x.readouts == y.readouts and x.state_bytes == y.state_bytes
    jax.tree.map(np.testing.assert_array_equal, nnx.state(x.model, nnx.Param),
                 nnx.state(y.model, nnx.Param))


def test_accuracy_matrix_is_filled(tasks):
  result = engine.train(
    engine.Run(mlp(), tasks, methods.make_method('sgd', learning_rate=0.1), CONFIG)
  )
  r = result.accuracy
  assert r.shape == (3, 3)
  assert np.all((0 <= r) & (r <= 1))
  assert np.all(np.diag(r) > 0.85)  # each pair is learnt
  # Plain SGD keeps no state but its injected learning rate and step count.
  assert result.state_bytes == 8 and result.summary['forgetting'] >= 0


@pytest.mark.parametrize(
  'method, num_configs, make',
  [
    (methods.make_method('classp', learning_rate=0.05, threshold=1e-4), 1, cnn),
    (methods.make_method('si', learning_rate=0.1, strength=1.0), 1, mlp),
    (
      methods.make_method('ewc', learning_rate=0.1, strength=50.0, fisher_samples=64),
      3,
      mlp,
    ),
  ],
  ids=['classp-1-cnn', 'si-1-mlp', 'ewc-3-mlp'],
)
def test_killed_mid_task_and_resumed_equals_uninterrupted(
  tasks, tmp_path, method, num_configs, make
):
  """A kill in task 1 after a mid-task checkpoint (every 4 steps) resumes at
  that checkpoint, and the run ends with the same results: on the CNN, which
  takes one step per dispatch on the CPU, and on the MLP, whose dispatches
  stop at each checkpoint."""
  runs = runs_of(method, tasks, num_configs, make=make)
  straight = fit(runs)
  resumed_steps = []
  resumed = killed_and_resumed(runs, tmp_path, at=(1, 10),
                               trained=resumed_steps, mesh=one_device(runs))
  assert resumed_steps[0] == (1, 9)  # from the checkpoint after step 8
  _assert_same_results(resumed, straight)
  assert all(r.state_bytes > 0 for r in resumed)


@pytest.mark.parametrize('num_configs', [1, 3])
def test_killed_in_the_first_task_resumes_from_its_checkpoint(
  tasks, tmp_path, num_configs
):
  runs = runs_of(methods.make_method('sgd', learning_rate=0.1), tasks[:2], num_configs)
  straight = fit(runs)
  resumed_steps = []
  resumed = killed_and_resumed(runs, tmp_path, at=(0, 7), trained=resumed_steps,
                               mesh=one_device(runs), checkpoint_every_steps=3)
  assert resumed_steps[0] == (0, 7)
  _assert_same_results(resumed, straight)


def test_killed_between_tasks_resumes_at_the_next_task(tasks, tmp_path):
  runs = runs_of(methods.make_method('sgd', learning_rate=0.1), tasks, 1)
  straight = fit(runs)
  resumed_steps = []
  resumed = killed_and_resumed(runs, tmp_path, at=(1, 2), trained=resumed_steps,
                               mesh=one_device(runs), checkpoint_every_steps=None,
                               checkpoint_every_seconds=None)
  assert resumed_steps[0] == (1, 1)
  _assert_same_results(resumed, straight)


def test_checkpoints_are_numbered_by_the_runs_step(tasks, tmp_path):
  """Tasks of 16, 16 and 17 steps, a checkpoint every 5 steps: the last two
  kept are the mid-task one at step 47 of the run (32 + 15) and the end at
  49."""
  runs = runs_of(methods.make_method('sgd', learning_rate=0.1), tasks, 2)
  fit(runs, checkpoint_dir=tmp_path, checkpoint_every_steps=5)
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [47, 49]


def test_foreign_checkpoints_are_refused_before_anything_changes(tasks, tmp_path):
  sgd = methods.make_method('sgd', learning_rate=0.1)
  engine.train(engine.Run(mlp(), tasks[:1], sgd, CONFIG), checkpoint_dir=tmp_path)
  with pytest.raises(
    ValueError,
    match=(
      r'from another run: runs.0.hyperparams.learning_rate: saved 0.1, now '
      r'0.001; runs.0.hyperparams.momentum: saved 0.0, now None; '
      r'runs.0.method: saved \'sgd\', now \'adam\''
    ),
  ):
    engine.train(
      engine.Run(mlp(), tasks[:1], methods.make_method('adam'), CONFIG),
      checkpoint_dir=tmp_path,
    )
  with pytest.raises(ValueError, match='another model or optimizer'):
    engine.train(
      engine.Run(mlp(hidden=(16,)), tasks[:1], sgd, CONFIG), checkpoint_dir=tmp_path
    )
  # The checkpoint is intact: the right run resumes from it, finished.
  done = engine.train(
    engine.Run(mlp(), tasks[:1], sgd, CONFIG),
    checkpoint_dir=tmp_path,
    on_step=lambda *a: pytest.fail('retrained'),
  )
  assert done.accuracy[0, 0] > 0.85


def test_resume_with_per_task_epochs_and_refusal_of_another_stream(tasks, tmp_path):
  config = dataclasses.replace(CONFIG, epochs=(1, 2))
  runs = runs_of(
    methods.make_method('sgd', learning_rate=0.1), tasks[:2], 1, config=config
  )
  straight = fit(runs)
  resumed = killed_and_resumed(runs, tmp_path, at=(1, 3), mesh=one_device(runs),
                               checkpoint_every_steps=None)
  _assert_same_results(resumed, straight)
  with pytest.raises(ValueError, match='from another run: runs.0.config'):
    engine.train(
      engine.Run(mlp(), tasks, methods.make_method('sgd', learning_rate=0.1), CONFIG),
      checkpoint_dir=tmp_path,
    )


def test_bad_settings_are_refused_naming_them(tasks):
  sgd = methods.make_method('sgd', learning_rate=0.1)
  cases = [
    (dict(config=configs.TrainConfig(batch_size=1000)), 'batch_size must be at most'),
    (dict(steps_per_call=0), 'steps_per_call must be None or an integer'),
    (dict(checkpoint_every_steps=0), 'checkpoint_every_steps must be None'),
    (
      dict(checkpoint_every_seconds=0.0),
      'checkpoint_every_seconds must be None or > 0',
    ),
  ]
  for options, message in cases:
    config = options.pop('config', CONFIG)
    with pytest.raises(ValueError, match=message):
      engine.train(engine.Run(mlp(), tasks, sgd, config), **options)


@pytest.mark.parametrize('num_configs', [1, 3])
def test_data_parallel_matches_one_device(tasks, num_configs):
  """One configuration's batches split over 8 devices, or three
  configurations over a (3, 2) mesh: the single-device results, to float
  rounding (the gradient is summed in another order)."""
  runs = runs_of(methods.make_method('classp', learning_rate=0.05), tasks, num_configs)
  one = fit(runs)
  mesh = placement.mesh_for(num_configs, jax.devices())
  assert dict(mesh.shape) == {'config': num_configs, 'data': 8 // num_configs}
  split = engine.train(runs, mesh=mesh)
  for a, b in zip(split, one, strict=True):
    np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1 / 70)
    for x, y in zip(
      jax.tree.leaves(nnx.state(a.model, nnx.Param)),
      jax.tree.leaves(nnx.state(b.model, nnx.Param)),
      strict=True,
    ):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  with pytest.raises(
    ValueError, match='batch_size must be a multiple of the 8 devices'
  ):
    engine.train(
      engine.Run(
        mlp(),
        tasks,
        methods.make_method('sgd', learning_rate=0.1),
        configs.TrainConfig(batch_size=12),
      ),
      mesh=Mesh(np.array(jax.devices()), ('data',)),
    )


@pytest.mark.parametrize('num_configs', [1, 3])
def test_reset_state_starts_each_task_afresh(tasks, num_configs):
  kept = methods.make_method('adagrad', learning_rate=0.05)
  reset = methods.make_method('adagrad', learning_rate=0.05, reset_state=True)
  a = fit(runs_of(kept, tasks[:2], num_configs))
  b = fit(runs_of(reset, tasks[:2], num_configs))
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x.accuracy[0], y.accuracy[0])
    kept_params = jax.tree.leaves(nnx.state(x.model, nnx.Param))
    reset_params = jax.tree.leaves(nnx.state(y.model, nnx.Param))
    assert not np.array_equal(kept_params[0], reset_params[0])
    # The fresh accumulator holds task 1's gradients only.
    assert int(y.opt_state.count) == tasks[1].num_train // 16


@pytest.mark.parametrize(
  'make_method, state_type',
  [('ewc', EwcState), ('si', SiState)],
)
def test_reset_state_keeps_the_penalty_memory(tasks, make_method, state_type):
  """On plain SGD (no optimizer state of its own but the injected learning
  rate and step count) a reset must change nothing but that count: the
  penalty's Fisher / importances are the memory of the tasks."""
  kept = methods.make_method(make_method, learning_rate=0.1, strength=1.0)
  reset = methods.make_method(kept.label, **kept.hyperparams, reset_state=True)
  a = engine.train(engine.Run(mlp(), tasks, kept, CONFIG))
  b = engine.train(engine.Run(mlp(), tasks, reset, CONFIG))
  np.testing.assert_array_equal(a.accuracy, b.accuracy)
  jax.tree.map(
    np.testing.assert_array_equal,
    find_unique(a.opt_state, state_type, 'penalty'),
    find_unique(b.opt_state, state_type, 'penalty'),
  )
  assert a.opt_state.hyperparams == b.opt_state.hyperparams
  last_task_steps = tasks[-1].num_train // CONFIG.batch_size
  assert int(b.opt_state.count) == last_task_steps < int(a.opt_state.count)


def test_fresh_state_resets_the_optimizer_and_keeps_penalty_and_settings():
  method = methods.make_method('ewc', learning_rate=0.1, strength=2.0, momentum=0.9)
  tx = method.optimizer
  params = {'w': jnp.ones(3)}
  state = tx.init(params)
  _, state = tx.update({'w': jnp.ones(3)}, state, params)
  state = consolidate_ewc(state, params, {'w': jnp.full(3, 5.0)})
  state = set_hyperparams(state, learning_rate=0.3)
  fresh = methods.fresh_state(tx, params, state)
  np.testing.assert_array_equal(find_unique(fresh, EwcState, 'e').fisher['w'], 5.0)
  assert float(jnp.abs(find_unique(state, optax.TraceState, 't').trace['w']).max()) > 0
  trace = find_unique(fresh, optax.TraceState, 'trace').trace['w']
  np.testing.assert_array_equal(trace, 0.0)
  assert int(fresh.count) == 0 < int(state.count)
  assert float(fresh.hyperparams['learning_rate']) == np.float32(0.3)


def test_make_method_takes_reset_state_for_every_method():
  for name in methods.METHODS:
    plain = methods.make_method(name)
    assert 'reset_state' not in plain.hyperparams
    reset = methods.make_method(name, reset_state=True)
    assert isinstance(reset.hooks[0], ResetState)
    assert reset.hyperparams == {**plain.hyperparams, 'reset_state': True}
    assert reset.sweep_structure != plain.sweep_structure
  with pytest.raises(ValueError, match='reset_state must be True or False'):
    methods.make_method('adam', reset_state='yes')


@pytest.mark.parametrize(
  'make_method,state_type,field,steps_per_unit',
  [
    ('ewc', EwcState, 'fisher', 1.0),
    ('si', SiState, 'importance', 2.0),
  ],
)
def test_penalty_acts_inside_the_engine(
  tasks, make_method, state_type, field, steps_per_unit
):
  """The in-engine penalty is not silently zero: it holds weights near task
  0's."""
  config = dataclasses.replace(CONFIG, epochs=3)
  method = methods.make_method(make_method, learning_rate=0.1)
  first = engine.train(engine.Run(mlp(), tasks[:1], method, config))
  weight = getattr(find_unique(first.opt_state, state_type, 'state'), field)
  assert sum(float(jnp.sum(f)) for f in jax.tree.leaves(weight)) > 0
  anchor = nnx.state(first.model, nnx.Param)

  def drift(strength):
    run = engine.train(
      engine.Run(
        mlp(),
        tasks[:2],
        methods.make_method(make_method, learning_rate=0.1, strength=strength),
        config,
      )
    )
    moved = nnx.state(run.model, nnx.Param)
    return sum(
      float(jnp.sum(f * (w - a) ** 2))
      for f, w, a in zip(
        jax.tree.leaves(weight),
        jax.tree.leaves(moved),
        jax.tree.leaves(anchor),
        strict=True,
      )
    )

  # Strong, yet stable for SGD: lr * (penalty curvature) * max weight = 1 < 2.
  max_weight = max(float(jnp.max(f)) for f in jax.tree.leaves(weight))
  free = drift(0.0)
  held = drift(1.0 / (0.1 * steps_per_unit * max_weight))
  assert free > 0
  assert held < 0.5 * free


@pytest.mark.parametrize('num_configs', [1, 3])
def test_a_configuration_made_to_diverge_stops_alone(tasks, num_configs):
  """A penalty far past SGD's stability bound blows up in task 1; in a
  sweep, its neighbours go on as if alone. The step named is the first
  whose loss was not finite."""
  strengths = [1e9, 10.0, 1.0][:num_configs]
  runs = [
    engine.Run(
      mlp(),
      tasks,
      methods.make_method('ewc', learning_rate=0.1, strength=s, fisher_samples=64),
      CONFIG,
    )
    for s in strengths
  ]
  seen = []
  with pytest.warns(
    results.DivergenceWarning, match=r'ewc diverged in task 1 at step \d+: the loss.*'
    r"make_method\('ewc', learning_rate=\.\.\.\)"
  ):
    swept = fit(runs, on_step=lambda t, s, losses: seen.append((t, s, losses[0])))
  task, step = swept[0].diverged['task'], swept[0].diverged['step']
  assert task == 1
  losses = {s: loss for t, s, loss in seen if t == 1}
  assert not np.isfinite(losses[step])
  assert all(np.isfinite(losses[s]) for s in range(1, step))
  if num_configs == 1:  # nothing left to train: it stopped at that dispatch
    assert max(losses) < engine.STEPS_PER_CALL + step
  np.testing.assert_array_equal(np.isnan(swept[0].accuracy[:, 0]), [False, True, True])
  assert all(np.isnan(v) for v in swept[0].summary.values())
  assert swept[0].status.startswith('diverged in task 1 at step')
  saved = swept[0].to_json()
  assert saved['average_accuracy'] is None and saved['status'] == swept[0].status
  assert saved['diverged'] == swept[0].diverged and saved['accuracy'][1][0] is None
  assert 'diverged in task 1 at step' in report.format_table([swept[0]])
  for other, run in zip(swept[1:], runs[1:], strict=True):
    alone = engine.train(engine.Run(run.make_model, run.tasks, run.method, run.config))
    assert other.diverged is None
    np.testing.assert_allclose(other.accuracy, alone.accuracy, atol=1e-6)


def test_a_task_learnt_to_chance_is_marked(tasks):
  def frozen():  # constant logits: the first allowed class, always
    model = mlp()()
    model.out.kernel.value = jnp.zeros_like(model.out.kernel.value)
    return model

  result = engine.train(
    engine.Run(frozen, tasks, methods.make_method('sgd', learning_rate=1e-9), CONFIG)
  )
  assert result.not_learnt == [0, 1, 2]
  assert result.to_json()['not_learnt'] == [0, 1, 2]
  table = report.format_table([result])
  assert 'not learnt' in table and 'task 0 (' in table
  learnt = engine.train(
    engine.Run(mlp(), tasks, methods.make_method('sgd', learning_rate=0.1), CONFIG)
  )
  assert learnt.not_learnt == []
  assert 'not learnt' not in report.format_table([learnt])


def test_the_stiffness_warning_names_the_fix_and_the_callers_line(tasks):
  with pytest.warns(
    methods.StiffnessWarning, match=r"ewc: after task 0.*make_method\('ewc', "
    r'strength=\.\.\.\) in Python, --set ewc.strength=\.\.\. on the command'
  ) as caught:
    engine.train(
      engine.Run(
        mlp(),
        tasks[:2],
        methods.make_method('ewc', learning_rate=0.1, strength=1e6, fisher_samples=64),
        CONFIG,
      )
    )
  assert caught[0].filename == __file__


def test_no_stiffness_warning_for_the_last_consolidation(tasks):
  """Nothing trains after the last task, so its stiffness is recorded but
  cannot make anything oscillate."""
  with warnings.catch_warnings():
    warnings.simplefilter('error', methods.StiffnessWarning)
    result = engine.train(
      engine.Run(
        mlp(),
        tasks[:1],
        methods.make_method('ewc', learning_rate=0.1, strength=1e6, fisher_samples=64),
        CONFIG,
      )
    )
  assert result.stiffness[0] > 2


def test_each_test_set_is_prepared_once_per_run(tasks, monkeypatch):
  calls = []
  original = streams.Task.test_set
  monkeypatch.setattr(
    streams.Task, 'test_set', lambda self: calls.append(self.name) or original(self)
  )
  result = engine.train(
    engine.Run(mlp(), tasks, methods.make_method('sgd', learning_rate=0.1), CONFIG)
  )
  assert sorted(calls) == sorted(task.name for task in tasks)
  # The same accuracies as evaluating each task from scratch.
  result.model.eval()
  np.testing.assert_array_equal(
    result.accuracy[-1],
    [evaluation.evaluate(result.model, task, CONFIG.eval_batch_size) for task in tasks],
  )


def _per_step_reference(make_model, tasks, method, config):
  """The loop written plainly: one jitted step per batch from the host, the
  same batches in the same order, a new step per task's hyperparameters."""
  model = make_model()
  optimizer = nnx.Optimizer(model, method.optimizer, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y, masks):
    def loss_fn(model):
      return steps.masked_cross_entropy(model(x), y, masks).mean()

    optimizer.update(model, nnx.grad(loss_fn)(model))

  schedule = [h for h in method.hooks if isinstance(h, classp_methods.ClasspSchedule)]
  for t, task in enumerate(tasks):
    for hook in schedule:
      state = set_hyperparams(
        nnx.as_pure(optimizer.opt_state), **hook.hyperparams_for_task(t)
      )
      nnx.update(optimizer.opt_state, nnx.state(state))
    for rows in configs.task_order(config, t, task.num_train):
      x, y = task.train_batch(rows)
      step(
        model,
        optimizer,
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.asarray(task.train_logit_masks()),
      )
  return model


def test_the_engine_takes_the_steps_of_a_plain_per_step_loop(tasks):
  """Batches gathered on the device, many steps per dispatch, padded task
  data: the same weights as a plain loop; and among looped dispatches
  (more than one step), the dispatch size changes nothing at all."""
  method = methods.make_method(
    'classp', learning_rate=0.05, threshold=1e-4, decay_from_task=1
  )
  config = dataclasses.replace(CONFIG, epochs=2)
  runs = {
    n: engine.train(engine.Run(cnn(), tasks, method, config), steps_per_call=n)
    for n in (100, 3, 1)
  }
  plain = _per_step_reference(cnn(), tasks, method, config)
  jax.tree.map(
    np.testing.assert_array_equal,
    nnx.state(runs[100].model, nnx.Param),
    nnx.state(runs[3].model, nnx.Param),
  )
  np.testing.assert_array_equal(runs[100].accuracy, runs[3].accuracy)
  # Float rounding only: XLA fuses a loop's body differently from one step.
  for n in (100, 1):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5),
      nnx.state(runs[n].model, nnx.Param),
      nnx.state(plain, nnx.Param),
    )


def test_convolutional_models_take_one_step_per_dispatch_on_the_cpu():
  """XLA:CPU is an order of magnitude slower on a convolution's gradient
  inside a loop; everything else runs many steps per dispatch."""
  on_cpu = jax.default_backend() == 'cpu'
  assert engine.default_steps_per_call(cnn()()) == (
    1 if on_cpu else engine.STEPS_PER_CALL
  )
  assert engine.default_steps_per_call(mlp()()) == engine.STEPS_PER_CALL


def test_capacity_used_is_recorded_after_every_task_for_classp(tasks, tmp_path):
  """The fraction of weights CLASSP ever updated, after each task: it only
  grows, and survives a resume. Methods without CLASSP record none."""
  method = methods.make_method(
    'classp', learning_rate=0.05, threshold=1e-4, decay_from_task=1
  )
  result = engine.train(engine.Run(mlp(), tasks, method, CONFIG))
  used = result.capacity_used
  assert len(used) == 3 and used == sorted(used) and 0 < used[0] <= used[-1] <= 1
  assert used[-1] == pytest.approx(float(classp_stats(result.opt_state).capacity_used))
  assert result.to_json()['capacity_used'] == used
  runs = runs_of(method, tasks, 1)
  resumed = killed_and_resumed(runs, tmp_path, at=(2, 1), mesh=one_device(runs),
                               checkpoint_every_steps=None)
  assert resumed[0].capacity_used == used
  assert (
    engine.train(
      engine.Run(
        mlp(), tasks[:1], methods.make_method('sgd', learning_rate=0.1), CONFIG
      )
    ).capacity_used
    == []
  )


def test_steps_per_task_takes_that_many_steps_through_successive_epochs(tasks):
  """A fixed number of steps per task (van de Ven & Tolias's iterations):
  epoch after epoch of the seeded permutations, cut where the count ends."""
  config = dataclasses.replace(CONFIG, epochs=1, steps_per_task=25)
  n = tasks[0].num_train
  per_epoch = n // config.batch_size
  assert per_epoch < 25 < 2 * per_epoch
  order = configs.task_order(config, 0, n)
  assert order.shape == (25, config.batch_size)
  np.testing.assert_array_equal(
    order[:per_epoch],
    configs.task_order(dataclasses.replace(config, steps_per_task=None), 0, n),
  )
  np.testing.assert_array_equal(
    order[per_epoch:],
    configs.task_order(
      dataclasses.replace(config, steps_per_task=None, epochs=2), 0, n
    )[per_epoch:25],
  )
  seen = []
  engine.train(
    engine.Run(mlp(), tasks, methods.make_method('sgd', learning_rate=0.1), config),
    on_step=lambda task, step, losses: seen.append(task),
  )
  assert [seen.count(t) for t in range(3)] == [25, 25, 25]


@pytest.mark.parametrize('num_configs', [1, 3])
@pytest.mark.parametrize('scenario', streams.SCENARIOS)
def test_joint_training_takes_the_steps_of_a_plain_loop_on_every_task_so_far(
  scenario, num_configs
):
  """The upper bound: task t trains on tasks 0..t together, each example's
  loss over its own task's outputs (task-incremental), and is scored on
  the tasks as they are."""
  tasks = streams.split(load_digits(), scenario=scenario)[:3]
  method = methods.make_method('joint', learning_rate=0.1)
  outputs = tasks[0].num_outputs

  def make(seed=0):
    return lambda: models.make_model('mlp', (8, 8, 1), outputs, seed=seed, hidden=(32,))

  runs = runs_of(method, tasks, num_configs, make=make)
  results = fit(runs)
  plain = _per_step_reference(
    runs[0].make_model, streams.joint(tasks), method, runs[0].config
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5),
    nnx.state(results[0].model, nnx.Param),
    nnx.state(plain, nnx.Param),
  )
  expected = [evaluation.evaluate(plain, task, 128) for task in tasks]
  np.testing.assert_allclose(results[0].accuracy[-1], expected, atol=1e-3)
  for run, result in zip(runs[1:], results[1:], strict=True):  # the sweep's
    alone = engine.train(engine.Run(run.make_model, run.tasks, run.method, run.config))
    np.testing.assert_allclose(result.accuracy, alone.accuracy, atol=1e-6)
  # Trained on every task so far, it keeps them: no forgetting to speak of.
  assert all(result.summary['forgetting'] < 0.05 for result in results)


def test_the_run_says_where_its_time_went(tasks):
  """Training, the hooks' end of each task and the evaluation, each timed:
  together no more than the wall time, and written to results.json."""
  method = methods.make_method('ewc', learning_rate=0.1, fisher_samples=64)
  result = engine.train(engine.Run(mlp(), tasks, method, CONFIG))
  phases = result.phase_seconds
  assert set(phases) == {'train', 'end_task', 'evaluation'}
  assert all(seconds > 0 for seconds in phases.values())
  assert sum(phases.values()) <= result.wall_time
  assert result.to_json()['phase_seconds'] == phases


def test_an_xla_that_lacks_the_cpu_options_compiles_without_them(
    monkeypatch):
  """The CPU train step's compiler options are probed once: a jaxlib whose
  XLA does not know one (XLA rejects it) compiles the step without them."""
  monkeypatch.setattr(steps, '_CPU_OPTIONS', {'xla_cpu_no_such_option': True})
  steps._cpu_options.cache_clear()
  try:
    assert steps._cpu_options() == {}
  finally:
    steps._cpu_options.cache_clear()
