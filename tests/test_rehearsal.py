"""Rehearsal methods (ER, DER, DER++, ER-ACE, A-GEM, LwF): the reservoir,
one step of each against a step written by hand, and each as part of a run
like any other method."""

import dataclasses
import json
import os
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax.continual import engine
from classp_optax.continual import hooks as hooklib
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import reservoir
from classp_optax.continual import steps
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.methods.agem import GradientEpisodicMemory
from classp_optax.continual.methods.lwf import Distillation
from classp_optax.continual.methods.rehearsal import AsymmetricReplay
from classp_optax.continual.methods.rehearsal import DarkExperience
from tests.resume import killed_and_resumed
from tests.subprocess_env import xla_flags_without

CONFIG = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128, seed=3)
LR = 0.1


def mlp(outputs=10, seed=0):
  return lambda: models.make_model('mlp', (8, 8, 1), outputs, seed=seed,
                                   hidden=(32,))


def digits(scenario='class', tasks=3, seed=0):
  return streams.split(load_digits(seed=seed), scenario=scenario)[:tasks]


# The reservoir.

_EMPTY = {10: reservoir.empty(10, (np.zeros((1, 2), np.float32),
                                   np.zeros(1, np.int32)), 3, 0, 0)}


def _offered(key, size=10, stream=50, batch=5):
  """Which of ``stream`` examples (labelled 0 .. stream - 1) a buffer of
  ``size`` holds after they are offered ``batch`` at a time."""
  buffer = _EMPTY[size]._replace(key=jax.random.key_data(key))
  offer = lambda buffer, labels: (  # noqa: E731
      reservoir.insert(buffer, jnp.zeros((batch, 2)), labels), None)
  # Under lax.scan, not a Python loop: ten unrolled inserts take XLA:CPU's
  # older emitters (the suite's, see conftest.py) 11 s to compile, one 1 s.
  batches = jnp.arange(stream, dtype=jnp.int32).reshape(-1, batch)
  buffer, _ = jax.lax.scan(offer, buffer, batches)
  return jnp.zeros(stream, jnp.int32).at[buffer.labels].add(1)


def test_the_reservoir_keeps_each_example_with_probability_size_over_seen():
  """After 50 examples in batches of 5, a buffer of 10 holds each with
  probability 10/50, each once (4000 independent streams; 5 standard
  errors)."""
  trials = 4000
  counts = jax.jit(jax.vmap(_offered))(jax.random.split(jax.random.key(1),
                                                         trials))
  assert int(counts.max()) == 1 and (counts.sum(axis=1) == 10).all()
  frequency = np.asarray(counts.mean(axis=0))
  bound = 5 * np.sqrt(0.2 * 0.8 / trials)
  assert np.abs(frequency - 0.2).max() < bound, frequency


def test_the_reservoir_fills_its_slots_in_order_then_replaces():
  slots = reservoir.reservoir_slots(jnp.int32(3), 8, 4, jax.random.key(0))
  np.testing.assert_array_equal(slots, [3, 4, 5, 6])
  # Past the end, a later example of the batch that takes an earlier one's
  # slot leaves the earlier one unstored, as if offered one by one.
  for seed in range(50):
    slots = np.asarray(reservoir.reservoir_slots(
        jnp.int32(8), 8, 6, jax.random.key(seed)))
    kept = slots[slots < 8]
    assert len(set(kept)) == len(kept)


def test_a_draw_is_without_replacement_from_the_stored_slots_only():
  buffer = reservoir.empty(10, (np.zeros((1, 2)), np.zeros(1, np.int32)),
                           3, 0, 0)._replace(seen=jnp.int32(4))
  for _ in range(20):
    slots, valid, buffer = reservoir.draw(buffer, 6)
    slots, valid = np.asarray(slots), np.asarray(valid)
    np.testing.assert_array_equal(valid, [True] * 4 + [False] * 2)
    assert sorted(slots[valid]) == [0, 1, 2, 3]
  slots, valid, _ = reservoir.draw(buffer._replace(seen=jnp.int32(99)), 6)
  assert len(set(np.asarray(slots))) == 6 and np.asarray(valid).all()


# One step, by hand.

def _linear(outputs=5):
  model = nnx.Linear(4, outputs, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, *nnx.as_pure((params, rest))


def _batch(rng, n=8, outputs=5, labels=(2, 3)):
  return (rng.normal(size=(n, 4)).astype(np.float32),
          rng.choice(labels, n).astype(np.int32))


def _filled(rng, size=8, stored=6, outputs=5, labels=(0, 1)):
  buffer = reservoir.empty(size, (np.zeros((1, 4), np.float32),
                                  np.zeros(1, np.int32)), outputs, 0, 11,
                           logits=True)
  return buffer._replace(
      inputs=rng.normal(size=(size, 4)).astype(np.float32),
      labels=rng.choice(labels, size).astype(np.int32),
      logits=rng.normal(size=(size, outputs)).astype(np.float32),
      seen=jnp.int32(stored))


# One program, as the engine compiles it (op by op, it is several times slower).
_COMPILED_STEP = jax.jit(steps._step, static_argnums=(0, 1, 2, 7))


def _step(hook, extra, x, y, task=1, outputs=5, params=None):
  graphdef, initial, rest = _linear(outputs)
  params = initial if params is None else params
  tx = optax.sgd(LR)
  data = hooklib.TaskData(x, y, np.ones((outputs, outputs), bool),
                          np.int32(task))
  state = hooklib.TrainState(params, rest, tx.init(params), (extra,))
  new, _ = _COMPILED_STEP(graphdef, tx, steps.masked_cross_entropy, (hook,),
                          data, state, np.arange(len(y)), None)

  def apply(p, inputs):
    return nnx.merge(graphdef, p, rest, copy=True)(inputs)
  return new, params, apply


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _assert_sgd_step(new, params, loss):
  expected = jax.tree.map(lambda p, g: p - LR * g, params,
                          jax.grad(loss)(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               new.params, expected)


@pytest.mark.parametrize('with_labels', [False, True])
def test_a_der_step_is_the_papers(with_labels):
  """DER: CE(batch) + alpha * MSE(outputs, stored logits) over a draw of
  6 of 6 stored (a draw of 10 capped); DER++ adds beta * CE on a second,
  independent draw."""
  rng = np.random.default_rng(0)
  x, y = _batch(rng)
  buffer = _filled(rng)
  hook = DarkExperience(buffer_size=8, minibatch_size=10, alpha=0.3,
                        beta=0.7, with_labels=with_labels)
  new, params, f = _step(hook, buffer, x, y)
  first, valid, after = reservoir.draw(buffer, 10)
  second, valid2, _ = reservoir.draw(after, 10)
  first, second = np.asarray(first)[valid], np.asarray(second)[valid2]

  def by_hand(p):
    loss = _ce(f(p, x), y).mean() + 0.3 * jnp.mean(
        (f(p, buffer.inputs[first]) - buffer.logits[first]) ** 2)
    if with_labels:
      loss += 0.7 * _ce(f(p, buffer.inputs[second]),
                        buffer.labels[second]).mean()
    return loss

  _assert_sgd_step(new, params, by_hand)


def test_der_stores_the_outputs_of_the_step_that_inserts():
  """Two steps into an empty buffer: each batch is stored with the outputs
  the model gave it before that step's update."""
  rng = np.random.default_rng(1)
  x, y = _batch(rng, n=8)
  hook = DarkExperience(buffer_size=16, minibatch_size=4, alpha=0.3)
  empty = reservoir.empty(16, (x[:1], y[:1]), 5, 0, 11, logits=True)
  graphdef, params, rest = _linear()
  tx = optax.sgd(LR)
  data = hooklib.TaskData(x, y, np.ones((5, 5), bool), np.int32(0))
  state = hooklib.TrainState(params, rest, tx.init(params), (empty,))
  before = [state.params]
  for rows in (np.arange(4), np.arange(4, 8)):
    state, _ = steps._step(graphdef, tx, steps.masked_cross_entropy,
                           (hook,), data, state, rows, None)
    before.append(state.params)
  buffer = state.extras[0]
  assert int(buffer.seen) == 8
  for k, rows in enumerate((np.arange(4), np.arange(4, 8))):
    outputs = nnx.merge(graphdef, before[k], rest, copy=True)(x[rows])
    np.testing.assert_allclose(buffer.logits[rows], outputs, rtol=1e-6)
    np.testing.assert_array_equal(buffer.inputs[rows], x[rows])
  assert not np.allclose(before[0]['kernel'], before[1]['kernel'])


def test_an_er_ace_step_masks_the_batch_to_its_own_and_unseen_classes():
  """Task 1: classes 0 and 1 seen before, the batch of classes 2 and 3, 5
  outputs: the batch's CE over outputs 2, 3 and 4 (4 unseen), plus a
  draw's CE over every output."""
  rng = np.random.default_rng(2)
  x, y = _batch(rng)
  buffer = _filled(rng)
  seen = np.array([True, True, False, False, False])
  hook = AsymmetricReplay(buffer_size=8, minibatch_size=4)
  new, params, f = _step(hook, (buffer, seen), x, y)
  drawn, _, _ = reservoir.draw(buffer, 4)

  def by_hand(p):
    own = _ce(f(p, x)[:, 2:], y - 2).mean()
    return own + _ce(f(p, buffer.inputs[drawn]), buffer.labels[drawn]).mean()

  _assert_sgd_step(new, params, by_hand)
  np.testing.assert_array_equal(new.extras[0][1], [True] * 4 + [False])


def test_er_ace_on_the_first_task_is_plain_cross_entropy():
  rng = np.random.default_rng(3)
  x, y = _batch(rng)
  buffer = _filled(rng)._replace(seen=jnp.int32(0))
  hook = AsymmetricReplay(buffer_size=8, minibatch_size=4)
  new, params, f = _step(hook, (buffer, np.zeros(5, bool)), x, y, task=0)
  _assert_sgd_step(new, params, lambda p: _ce(f(p, x), y).mean())


@pytest.mark.parametrize('conflict', [True, False])
def test_an_agem_step_projects_only_a_conflicting_gradient(conflict):
  """The stored examples are the batch itself: with other labels the two
  gradients conflict and the step takes g - (g.r / r.r) r; with the same
  labels they agree and the step is plain SGD."""
  rng = np.random.default_rng(4)
  x, y = _batch(rng)
  buffer = _filled(rng, size=8, stored=8)._replace(
      inputs=x, labels=(y + 1) % 5 if conflict else y)
  hook = GradientEpisodicMemory(buffer_size=8, minibatch_size=8)
  new, params, f = _step(hook, buffer, x, y)
  g = jax.grad(lambda p: _ce(f(p, x), y).mean())(params)
  r = jax.grad(lambda p: _ce(f(p, buffer.inputs), buffer.labels).mean())(
      params)
  dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g),
                                           jax.tree.leaves(r), strict=True))
  norm = sum(jnp.vdot(b, b) for b in jax.tree.leaves(r))
  assert (dot < 0) == conflict
  scale = dot / norm if conflict else 0.0
  expected = jax.tree.map(lambda p, a, b: p - LR * (a - scale * b),
                          params, g, r)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               new.params, expected)


def test_an_lwf_step_distils_the_earlier_outputs_at_its_temperature():
  """Task 1 of outputs (0 1) then (2 3): CE + alpha * the cross-entropy of
  softmax(teacher/T) and softmax(student/T) over outputs 0 and 1, plus l2
  times the squared weights."""
  rng = np.random.default_rng(5)
  x, y = _batch(rng)
  _, params, _ = _linear()
  teacher = jax.tree.map(lambda w: w + 0.5, params)
  earlier = np.zeros((2, 5), bool)
  earlier[1, :2] = True
  hook = Distillation(alpha=0.8, temperature=2.0, l2=0.01)
  new, params, f = _step(hook, (teacher, earlier), x, y)

  def by_hand(p):
    soft = jax.nn.softmax(f(teacher, x)[:, :2] / 2.0)
    log_q = jax.nn.log_softmax(f(p, x)[:, :2] / 2.0)
    squares = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(p))
    return (_ce(f(p, x), y).mean() - 0.8 * jnp.mean(jnp.sum(soft * log_q, 1))
            + 0.01 * squares)

  _assert_sgd_step(new, params, by_hand)


# In a run.

@pytest.mark.parametrize('label, settings', [
    ('er', dict(buffer_size=0)),
    ('der', dict(alpha=0.0)),
    ('derpp', dict(alpha=0.0, beta=0.0)),
    ('er_ace', dict(buffer_size=0)),
    ('agem', dict(buffer_size=0)),
    ('lwf', dict(alpha=0.0)),
])
def test_a_method_that_rehearses_nothing_is_sgd_bit_for_bit(label, settings):
  tasks = digits(tasks=2)
  plain = engine.train(engine.Run(mlp(), tasks, make_method(
      'sgd', learning_rate=LR), CONFIG))
  result = engine.train(engine.Run(mlp(), tasks, make_method(
      label, learning_rate=LR, **settings), CONFIG))
  np.testing.assert_array_equal(result.accuracy, plain.accuracy)
  jax.tree.map(np.testing.assert_array_equal,
               nnx.state(result.model, nnx.Param),
               nnx.state(plain.model, nnx.Param))


def test_rehearsal_ends_far_above_fine_tuning_class_incrementally():
  """Split digits, class-incremental, defaults: fine-tuning keeps only the
  last task; every method with a reservoir keeps the earlier ones."""
  tasks = digits(tasks=5)
  config = dataclasses.replace(CONFIG, epochs=5)
  labels = ['sgd', 'er', 'der', 'derpp', 'er_ace']
  results = {label: engine.train(engine.Run(mlp(), tasks, make_method(label),
                                            config))
             for label in labels}
  final = {label: float(r.accuracy[-1].mean()) for label, r in results.items()}
  assert final['sgd'] < 0.3, final
  for label in labels[1:]:
    assert final[label] > final['sgd'] + 0.4, final
    assert results[label].readouts['buffered'][-1] == 200


@pytest.mark.parametrize('optimizer', ['adam', 'classp'])
def test_derpp_runs_on_any_optimizer_and_sweeps(optimizer):
  """Two seeds of DER++ in one program, each what its own run gives."""
  settings = dict(threshold=1e-6, power=2.0) if optimizer == 'classp' else {}
  method = make_method('derpp', optimizer=optimizer, learning_rate=3e-3,
                       **settings)
  runs = [engine.Run(mlp(seed=seed), digits(seed=seed), method,
                     dataclasses.replace(CONFIG, seed=seed))
          for seed in (0, 1)]
  swept = engine.train(runs, mesh=placement.mesh_for(2, jax.devices()[:2]),
                       steps_per_call=7)
  for run, result in zip(runs, swept, strict=True):
    alone = engine.train(run)
    np.testing.assert_allclose(result.accuracy, alone.accuracy, atol=1e-6)
    np.testing.assert_array_equal(result.hook_states[0].labels,
                                  alone.hook_states[0].labels)
  assert ('capacity_used' in swept[0].readouts) == (optimizer == 'classp')


@pytest.mark.parametrize('label', ['derpp', 'er_ace', 'agem', 'lwf'])
def test_a_killed_rehearsal_run_resumes_to_the_same_result(label, tmp_path):
  run = engine.Run(mlp(), digits(), make_method(label), CONFIG)
  straight = engine.train(run)
  resumed = killed_and_resumed(run, tmp_path)
  np.testing.assert_array_equal(resumed.accuracy, straight.accuracy)
  jax.tree.map(np.testing.assert_array_equal, resumed.hook_states,
               straight.hook_states)


def test_the_cpu_train_loop_copies_no_buffer_at_each_step():
  """XLA's copy insertion, unable by default to order a step's draws from
  the buffer before the in-place insert that follows them, copies the whole
  buffer twice at every step; the train step is compiled so that the loop
  updates it in place. At XLA's default flags, which users run: the older
  emitters this suite compiles with copy it either way."""
  flags = xla_flags_without('fusion_emitters', 'backend_optimization_level')
  done = subprocess.run(
      [sys.executable, '-m', 'tests.train_loop_copies'], check=True,
      capture_output=True, text=True,
      env=dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu'))
  loops = json.loads(done.stdout.splitlines()[-1])
  assert loops['holding'] >= 1, loops
  assert loops['copying'] == 0, loops
