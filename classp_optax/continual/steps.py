"""The engine's compiled functions: pure functions of split state, each
written for one configuration and run over a stack of them.

The engine splits each model once into a graph definition (static: the
architecture, the train or eval mode) and a
:class:`~classp_optax.continual.hooks.TrainState` (weights, dropout RNG,
optimizer and hook states), stacks the states of its K configurations
along a leading axis, and calls these. :func:`over_configs` runs a
function of one configuration under ``jax.vmap``; a stack of one is
squeezed instead, so that a single run compiles the program it would
without a sweep. Each function compiles once per run: shapes are the same
for every task (the engine pads), and what changes between tasks (the
data, the task's index, injected hyperparameters) is an argument or state.

* :func:`train_steps`: many steps per dispatch, each gathering its batch
  from the task's data on the device by an index array.
* :func:`start_tasks`, :func:`end_tasks`: the hooks' events between tasks.
* :func:`correct_counts`: a whole test set, stacked into batches.
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import optax

from classp_optax.continual import hooks as hooklib
from classp_optax.continual.hooks import TaskData
from classp_optax.continual.hooks import TrainState

MASKED_LOGIT = -1e9


def masked_cross_entropy(logits, labels, train_masks):
  """Each example's softmax cross-entropy over the outputs that row
  ``labels[i]`` of ``train_masks`` names: the engine's default loss."""
  logits = jnp.where(train_masks[labels], logits, MASKED_LOGIT)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def correct(outputs, labels, logit_mask):
  """1 where the highest of the scored outputs is the label, else 0: the
  engine's default score (accuracy)."""
  outputs = jnp.where(logit_mask, outputs, MASKED_LOGIT)
  return (jnp.argmax(outputs, axis=-1) == labels).astype(jnp.float32)


def over_configs(fn, stacked: tuple, spmd_axis_name=None):
  """``fn`` of one configuration, over a stack of them.

  Args:
    fn: a function of one configuration.
    stacked: per positional argument, whether it is stacked (a leading
      configuration axis) or shared by every configuration.
    spmd_axis_name: the mesh axis the configurations are split over, for
      sharding constraints inside ``fn``.
  """
  axes = tuple(0 if s else None for s in stacked)

  def run(*args):
    sizes = {leaf.shape[0] for arg, s in zip(args, stacked, strict=True) if s
             for leaf in jax.tree.leaves(arg)}
    if sizes == {1}:
      squeezed = [jax.tree.map(lambda x: x[0], a) if s else a
                  for a, s in zip(args, stacked, strict=True)]
      return jax.tree.map(lambda x: x[None], fn(*squeezed))
    return jax.vmap(fn, in_axes=axes, spmd_axis_name=spmd_axis_name)(*args)
  return run


def _in_step(hooks, event: str) -> list:
  """The positions of the hooks that act at step event ``event``."""
  return [k for k, hook in enumerate(hooks) if hooklib.overrides(hook, event)]


def _loss(graphdef, hooks, view, weights, extras, params):
  """The step's loss at ``params`` (its examples' losses, mean or weighted
  by ``weights``, and the hooks' terms) and ``(rest, outputs, extras)``;
  ``view`` is the step as hooks see it, its weights and outputs not yet
  set."""
  model = nnx.merge(graphdef, params, view.model.rest, copy=True)
  outputs = model(view.inputs)
  losses = view.model.example_loss(outputs, view.labels,
                                   view.data.train_masks)
  loss = losses.mean() if weights is None else jnp.sum(weights * losses)
  rest = nnx.as_pure(nnx.split(model, nnx.Param, ...)[2])
  view = view._replace(params=params, outputs=outputs)
  extras = list(extras)
  for k in _in_step(hooks, 'loss'):
    term, extras[k] = hooks[k].loss(extras[k], view)
    loss = loss + term
  return loss, (rest, outputs, extras)


def _step(graphdef, tx, example_loss, hooks, data: TaskData, state: TrainState,
          rows, batch_sharding):
  """One train step on the examples at ``rows``: the new state and loss.
  The hooks' step events run in :class:`~hooks.Hook`'s order."""
  x, y, weights = data.inputs[rows], data.labels[rows], None
  extras = list(state.extras)
  for k, hook in enumerate(hooks):
    x, y, weights, extras[k] = hook.batch(extras[k], data, x, y, weights)
  if batch_sharding is not None:
    x = jax.lax.with_sharding_constraint(x, batch_sharding)
  view = hooklib.Step(data, hooklib.Model(graphdef, state.rest, example_loss),
                      state.params, x, y, len(rows), None)
  loss_fn = functools.partial(_loss, graphdef, hooks, view, weights, extras)
  (loss, (rest, outputs, extras)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  view = view._replace(outputs=jax.lax.stop_gradient(outputs))
  for k in _in_step(hooks, 'gradients'):
    grads, extras[k] = hooks[k].gradients(extras[k], view, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  for k in _in_step(hooks, 'after_step'):
    extras[k] = hooks[k].after_step(extras[k], view)
  return TrainState(params, rest, opt_state, tuple(extras)), loss


def _train_steps(graphdef, tx, example_loss, batch_sharding, guard, hooks,
                 state, data, index, count):
  """Steps ``0 .. count - 1`` of one dispatch of one configuration.

  ``index`` is ``(max_steps, batch)`` positions in ``data``; row ``i`` is
  step ``i``'s batch. With one row, the step is compiled without a loop
  around it: XLA:CPU runs a convolution's gradient an order of magnitude
  slower inside a loop (jax-ml/jax#12868), so the engine dispatches
  convolutional models on the CPU one step at a time; then ``guard`` keeps
  the state where ``count`` is 0 (in a sweep whose configurations' tasks
  differ in length). Returns the state and the ``(max_steps,)`` losses,
  NaN from ``count`` on.
  """
  step = functools.partial(_step, graphdef, tx, example_loss, hooks, data)

  def body(i, carry):
    state, losses = carry
    state, loss = step(state, index[i], batch_sharding)
    return state, losses.at[i].set(loss)

  losses = jnp.full(index.shape[:1], jnp.nan, jnp.float32)
  if index.shape[0] > 1:
    return jax.lax.fori_loop(0, count, body, (state, losses))
  new_state, losses = body(0, (state, losses))
  if guard:
    new_state = jax.tree.map(lambda new, old: jnp.where(count > 0, new, old),
                             new_state, state)
    losses = jnp.where(count > 0, losses, jnp.nan)
  return new_state, losses


def stacked_train_steps(graphdef, tx, example_loss, hooks, state, data, index,
                        counts, *, shared_data: bool, batch_sharding=None):
  """:func:`_train_steps` of every configuration: ``hooks``, ``state`` and
  ``index`` (``(K, max_steps, batch)``) are stacked, and so are ``data``
  unless ``shared_data`` and ``counts`` unless it is a scalar. With one
  count for all, a loop of many steps stays a plain loop; with ``(K,)``
  counts a configuration whose count is smaller stops there (its state is
  selected at every step) while the others go on."""
  per_config = counts.ndim == 1
  fn = functools.partial(_train_steps, graphdef, tx, example_loss,
                         batch_sharding, per_config)
  return over_configs(fn, (True, True, not shared_data, True, per_config),
                      'config' if batch_sharding is not None else None)(
                          hooks, state, data, index, counts)


_STATIC = ('graphdef', 'tx', 'example_loss', 'shared_data', 'batch_sharding')
_donating = jax.jit(stacked_train_steps, static_argnames=_STATIC,
                    donate_argnames=('state',))

# XLA:CPU's copy insertion cannot tell by default that a step's draws from a
# rehearsal buffer are read before the in-place insert that follows them,
# and copies the whole buffer twice at every step of the loop; analysing the
# loop's regions, it updates the buffer in place. A DER++ run on the DER
# paper's MNIST protocol trains some 12% faster, bit for bit the same.
_CPU_OPTIONS = {'xla_cpu_copy_insertion_use_region_analysis': True}


@functools.cache
def _cpu_options() -> dict:
  """:data:`_CPU_OPTIONS` where this jaxlib's XLA knows them, else none (it
  rejects an option it does not know)."""
  try:
    jax.jit(lambda x: x, compiler_options=_CPU_OPTIONS).lower(0.0).compile()
  except jax.errors.JaxRuntimeError:
    return {}
  return _CPU_OPTIONS


@functools.cache
def _copying():
  return jax.jit(stacked_train_steps, static_argnames=_STATIC,
                 compiler_options=_cpu_options())


def train_program():
  """:func:`stacked_train_steps`, compiled for the default backend: the
  state is donated except on the CPU, where XLA copies a donated state at
  every dispatch (the paper's CNN at batch 32: 52 ms a step donated, 40 ms
  not; the MLPs' steps are equal either way)."""
  return _copying() if jax.default_backend() == 'cpu' else _donating


def train_steps(*args, **kwargs):
  """:func:`stacked_train_steps`, run by :func:`train_program`."""
  return train_program()(*args, **kwargs)


@functools.partial(jax.jit, donate_argnames=('state',),
                   static_argnames=('tx',))
def start_tasks(tx, hooks, state, task):
  """Every hook's :meth:`~hooks.Hook.start_task`, in every configuration."""

  def start(hooks, state):
    return hooklib.each(hooks, state, lambda hook, seen: hook.start_task(
        seen, task, tx))
  return over_configs(start, (True, True))(hooks, state)


@functools.partial(jax.jit, donate_argnames=('state',),
                   static_argnames=('graphdef', 'example_loss', 'shared_data'))
def end_tasks(graphdef, example_loss, hooks, state, data, plans, *,
              shared_data: bool):
  """Every hook's :meth:`~hooks.Hook.end_task`, in every configuration,
  with ``graphdef`` in evaluation mode. Returns the new states, their
  read-outs, and whether each state was finite before the hooks and
  after them."""

  def end(hooks, state, data, plans):
    before = hooklib.all_finite(state)
    model = hooklib.Model(graphdef, state.rest, example_loss)
    extras = list(state.extras)
    for k, hook in enumerate(hooks):
      seen = hook.end_task(hooklib.HookState(state.params, state.opt_state,
                                             extras[k]), data, model, plans[k])
      state = state._replace(params=seen.params, opt_state=seen.opt_state)
      extras[k] = seen.extra
    state = state._replace(extras=tuple(extras))
    after = hooklib.all_finite(state)
    return state, hooklib.readouts(hooks, state), before, after
  return over_configs(end, (True, True, not shared_data, True))(
      hooks, state, data, plans)


@jax.jit
def finite_states(state):
  """Whether each configuration's state is finite: the end of a task for a
  method none of whose hooks acts there."""
  return over_configs(hooklib.all_finite, (True,))(state)


def _correct_count(graphdef, example_score, params, rest, inputs, labels,
                   valid, logit_mask):
  """The summed score of a test set in ``(batches, batch_size, ...)``
  stacks, ``valid`` False on padding; ``graphdef`` in evaluation mode."""
  model = nnx.merge(graphdef, params, rest, copy=True)

  def batch(total, data):
    x, y, ok = data
    scores = example_score(model(x), y, logit_mask)
    return total + jnp.sum(jnp.where(ok, scores, 0.0)), None

  return jax.lax.scan(batch, jnp.float32(0), (inputs, labels, valid))[0]


@functools.partial(jax.jit,
                   static_argnames=('graphdef', 'example_score', 'shared_data'))
def correct_counts(graphdef, example_score, params, rest, inputs, labels,
                   valid, logit_masks, *, shared_data: bool):
  """:func:`_correct_count` of every configuration (``(K,)``): one test
  set for all if ``shared_data``, else stacks of them."""
  fn = functools.partial(_correct_count, graphdef, example_score)
  data = not shared_data
  return over_configs(fn, (True, True, data, data, data, True))(
      params, rest, inputs, labels, valid, logit_masks)
