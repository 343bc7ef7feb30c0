"""EWC's diagonal Fisher four ways (van de Ven 2025, arXiv 2502.11756),
each against a direct per-example reference on a tiny model, and reduced in
chunks so that its memory does not grow with the number of samples."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_optax.continual import hooks as hooklib
from classp_optax.continual import make_method
from classp_optax.continual import steps
from classp_optax.continual import streams
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.methods import fisher as fisher_lib
from classp_optax.continual.models import MLP

NUM_OUTPUTS = 4


def tiny():
  """A 3-4-4 MLP in evaluation mode, a task's data whose examples train the
  first three outputs (the fourth masked), and the weights."""
  model = MLP(3, (4,), NUM_OUTPUTS, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 10), jnp.int32)
  masks = jnp.asarray(np.broadcast_to([True, True, True, False], (4, 4)))
  data = hooklib.TaskData(x, y, masks, jnp.int32(0))
  return hooklib.Model(graphdef, rest, steps.masked_cross_entropy), params, data


def probabilities(model, params, x):
  logits = np.asarray(model.outputs(params, x[None])[0], np.float64)[:3]
  p = np.exp(logits - logits.max())
  return np.append(p / p.sum(), 0.0)


def squared_grads(model):
  """``(params, x, label) ->`` the squared gradient of -log p(label | x),
  one example, compiled once for all of them."""
  masks = jnp.ones((NUM_OUTPUTS, NUM_OUTPUTS), bool).at[:, 3].set(False)

  @jax.jit
  def grad(params, x, label):
    return jax.grad(lambda p: model.loss(p, x[None], label[None], masks)[0])(
        params)

  return lambda params, x, label: jax.tree.map(
      lambda g: np.asarray(g, np.float64) ** 2,
      grad(params, x, jnp.int32(label)))


def reference(model, params, data, label_weights):
  """Mean over examples of sum_c w(n, c) (d -log p(c|x_n) / dw)^2, one
  example and one class at a time."""
  squared_grad = squared_grads(model)
  total = jax.tree.map(lambda p: np.zeros(p.shape), params)
  for n in range(len(data.inputs)):
    for c, w in label_weights(n, probabilities(model, params, data.inputs[n])):
      g = squared_grad(params, data.inputs[n], c)
      total = jax.tree.map(lambda t, g, w=w: t + w * g, total, g)
  return jax.tree.map(lambda t: t / len(data.inputs), total)


def computed(kind, model, params, data, key=None, chunk=4):
  key = jax.random.key(0) if key is None else key
  positions = np.arange(12, dtype=np.int32) % 10   # 10 examples, 2 padding
  weights = (np.arange(12) < 10).astype(np.float32)
  return fisher_lib.fisher_of(kind, model, params, data, positions, weights,
                              key, chunk=chunk)


@pytest.mark.parametrize('kind,label_weights', [
    ('empirical', lambda data: lambda n, p: [(int(data.labels[n]), 1.0)]),
    ('predicted', lambda data: lambda n, p: [(int(np.argmax(p)), 1.0)]),
    ('exact', lambda data: lambda n, p: list(enumerate(p))),
])
def test_each_kind_equals_its_per_example_reference(kind, label_weights):
  model, params, data = tiny()
  want = reference(model, params, data, label_weights(data))
  got = computed(kind, model, params, data)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-9)


def test_the_chunk_size_changes_nothing():
  model, params, data = tiny()
  for kind in fisher_lib.KINDS:
    a = computed(kind, model, params, data, chunk=4)
    b = computed(kind, model, params, data, chunk=12)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-10)


def test_the_sampled_fisher_is_the_exact_one_in_expectation():
  """The mean of 400 sampled Fishers is within 5 standard errors of the
  exact one, weight by weight; each draw differs."""
  model, params, data = tiny()
  exact = jnp.concatenate([jnp.ravel(f) for f in jax.tree.leaves(
      computed('exact', model, params, data))])
  draw = jax.jit(lambda key: jnp.concatenate([jnp.ravel(f) for f in
                                              jax.tree.leaves(computed(
      'sampled', model, params, data, key))]))
  samples = np.stack([draw(k) for k in jax.random.split(jax.random.key(1), 400)])
  assert not np.allclose(samples[0], samples[1])
  mean, sem = samples.mean(0), samples.std(0) / np.sqrt(len(samples))
  big = np.asarray(exact) > 1e-6
  assert np.all(np.abs(mean - exact)[big] <= 5 * sem[big] + 1e-7)


def test_an_unknown_kind_is_refused_naming_the_kinds():
  model, params, data = tiny()
  with pytest.raises(ValueError, match=r"fisher must be one of \('empirical'"):
    computed('true', model, params, data)


def test_ewc_takes_each_kind_through_the_engine_and_records_it():
  """On two tasks of split digits, the kind reaches the consolidated
  Fisher (exact and empirical differ) and the run's hyperparameters."""
  from classp_optax import EwcState
  from classp_optax._state_search import find_unique
  from classp_optax.continual import Run
  from classp_optax.continual import TrainConfig
  from classp_optax.continual import make_method
  from classp_optax.continual import models
  from classp_optax.continual import streams
  from classp_optax.continual import train
  from classp_optax.continual.datasets import load_digits

  tasks = streams.split(load_digits(), [(0, 1), (2, 3)], scenario='class')
  found = {}
  for kind in ('empirical', 'exact'):
    method = make_method('ewc', fisher=kind, fisher_samples=100)
    assert method.hyperparams['fisher'] == kind
    result = train(Run(lambda: models.make_model('mlp', (8, 8, 1), 10, seed=0,
                                                 hidden=(16,)),
                       tasks, method, TrainConfig(batch_size=16)))
    found[kind] = find_unique(result.opt_state, EwcState, 'EwcState').fisher
  a, b = (np.concatenate([np.ravel(f) for f in jax.tree.leaves(found[k])])
          for k in ('empirical', 'exact'))
  assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
  assert not np.allclose(a, b)


def test_more_samples_than_a_task_has_take_the_whole_task_once():
  """``fisher_samples`` past every task's size is the whole task, each
  example once (their code's ``fisher_n=None``), padded only to the largest
  task of the stream, so that no sample is computed for nothing."""
  tasks = streams.split(load_digits(), scenario='task')
  largest = max(task.num_train for task in tasks)
  hook = make_method('ewc', fisher_samples=60_000).hooks[0]
  for t, task in enumerate(tasks):
    positions, weights, _ = hook.plan(tasks, t, seed=3)
    assert len(positions) == largest
    np.testing.assert_array_equal(positions[:task.num_train],
                                  np.arange(task.num_train))
    assert weights.sum() == task.num_train and weights[:task.num_train].all()


def test_the_van_de_ven_presets_take_the_fisher_their_code_takes():
  """Their code's default Fisher: each example's gradient at the model's
  most probable label (``output.max(1)[1]`` without ``--emp-fi``), over
  every example of the task."""
  for benchmark in ('split-mnist-vdv', 'permuted-mnist-vdv'):
    for label in ('ewc', 'ewc:online'):
      made = make_method(label, benchmark=benchmark).hyperparams
      assert made['fisher'] == 'predicted', (benchmark, label)
      assert made['fisher_samples'] >= 60_000, (benchmark, label)


class Opaque(nnx.Module):
  """The same MLP, its dense layers hidden: the Fisher of any model."""

  def __init__(self, mlp):
    self.mlp = mlp

  def __call__(self, x):
    return self.mlp(x)


def two_heads(wrap=lambda m: m):
  """A 6-8-8-4 MLP whose examples train two heads of two outputs each
  (task-incremental masks), as ``tiny``."""
  model = wrap(MLP(6, (8, 8), 4, rngs=nnx.Rngs(1)))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(20, 6)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, 20), jnp.int32)
  masks = jnp.asarray(np.arange(4)[:, None] // 2 == np.arange(4)[None] // 2)
  data = hooklib.TaskData(x, y, masks, jnp.int32(0))
  return hooklib.Model(graphdef, rest, steps.masked_cross_entropy), params, data


@pytest.mark.parametrize('kind', fisher_lib.KINDS)
def test_the_closed_form_of_an_mlp_equals_its_per_example_gradients(kind):
  """An MLP's Fisher, taken from its dense layers' inputs and output
  gradients, equals the per-example gradients' of the same MLP seen as any
  model, each kind, with two heads masked per example."""
  fast, slow = two_heads(), two_heads(Opaque)
  positions = np.arange(24, dtype=np.int32) % 20
  weights = (np.arange(24) < 20).astype(np.float32)
  got, want = (fisher_lib.fisher_of(kind, model, params, data, positions,
                                    weights, jax.random.key(2), chunk=8)
               for model, params, data in (fast, slow))
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-9)


def test_an_mlps_fisher_holds_no_per_example_gradient():
  """The compiled Fisher of a 784-256-256-10 MLP over chunks of 256 needs
  a twentieth of what 256 per-example gradients hold (276 MB)."""
  model = MLP(784, (256, 256), 10, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  view = hooklib.Model(graphdef, rest, steps.masked_cross_entropy)
  data = hooklib.TaskData(jnp.zeros((512, 784)), jnp.zeros(512, jnp.int32),
                          jnp.ones((10, 10), bool), jnp.int32(0))
  compiled = jax.jit(lambda params, data: fisher_lib.fisher_of(
      'predicted', view, params, data, jnp.arange(512), jnp.ones(512),
      jax.random.key(0))).lower(params, data).compile()
  held = 256 * sum(p.size for p in jax.tree.leaves(params)) * 4
  assert compiled.memory_analysis().temp_size_in_bytes < held / 20, held


def own_head_reference(model, params, data):
  """Mean over examples of ``sum_c p(c|x) g_c**2`` over the labels ``c`` of
  each example's own head, one example and one label at a time."""
  grad = jax.jit(lambda params, x, c: jax.grad(lambda p: model.loss(
      p, x[None], c[None], data.train_masks)[0])(params))
  total = jax.tree.map(lambda p: np.zeros(p.shape), params)
  for x, y in zip(data.inputs, np.asarray(data.labels), strict=True):
    own = np.flatnonzero(np.asarray(data.train_masks[y]))
    logits = np.asarray(model.outputs(params, x[None])[0], np.float64)[own]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for c, pc in zip(own, p, strict=True):
      g = grad(params, x, jnp.int32(c))
      total = jax.tree.map(lambda t, g, pc=pc: t + pc * np.asarray(
          g, np.float64) ** 2, total, g)
  return jax.tree.map(lambda t: t / len(data.inputs), total)


@pytest.mark.parametrize('wrap', [lambda m: m, Opaque],
                         ids=['closed-form', 'per-example'])
def test_the_exact_fisher_sums_each_examples_own_head(wrap):
  """With two heads of two outputs, the examples of both in each chunk,
  the exact Fisher is the probability-weighted sum over each example's own
  head, on either path."""
  model, params, data = two_heads(wrap)
  positions = np.arange(24, dtype=np.int32) % 20
  weights = (np.arange(24) < 20).astype(np.float32)
  got = fisher_lib.fisher_of('exact', model, params, data, positions,
                             weights, jax.random.key(2), chunk=8)
  want = own_head_reference(model, params, data)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-9)


def test_the_exact_fisher_takes_a_backward_pass_per_label_of_the_head():
  """On 8 outputs in heads of 2 (task-incremental), the exact Fisher
  evaluates the loss once for the probabilities (every output of every
  example at once) and then once per label of a head, its gradient taken
  for the whole chunk: 1 + 2 times, not one per output, 1 + 8 (the labels
  outside a head weigh 0)."""
  model = MLP(6, (8,), 8, rngs=nnx.Rngs(1))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  calls = []

  def counted(outputs, labels, masks):
    jax.debug.callback(lambda: calls.append(1))
    return steps.masked_cross_entropy(outputs, labels, masks)

  y = jnp.arange(16, dtype=jnp.int32) % 8
  masks = jnp.asarray(np.arange(8)[:, None] // 2 == np.arange(8)[None] // 2)
  data = hooklib.TaskData(jnp.ones((16, 6)), y, masks, jnp.int32(0))
  jax.block_until_ready(fisher_lib.fisher_of(
      'exact', hooklib.Model(graphdef, rest, counted), params, data,
      np.arange(16), np.ones(16, np.float32), jax.random.key(0), chunk=16))
  assert len(calls) == 1 + 2
