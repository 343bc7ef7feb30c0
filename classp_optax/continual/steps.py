"""The compiled functions of the continual loop, pure functions of split
model state.

The loop splits its model and optimizer once per dispatch into a graph
definition (static: the architecture, the train/eval mode, the Optax
transform) and a state pytree (weights, dropout RNG, optimizer state), and
calls these. Each compiles once per run: its shapes are the same for every
task (the loop pads), and what changes between tasks (the data, the output
mask, injected hyperparameters) is an argument or part of the state.

* :func:`train_steps`: many steps per dispatch, each gathering its batch
  from the task's data on the device by an index array;
  :func:`sweep_train_steps` the same for K configurations at once.
* :func:`correct_count`: a whole test set, stacked into batches;
  :func:`sweep_correct_count` the same for K models at once.
* :func:`fisher_example_loss`: one example's loss, for
  :func:`classp_optax.empirical_fisher`.
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import optax

MASKED_LOGIT = -1e9


def masked_cross_entropy(logits, labels, logit_mask):
  logits = jnp.where(logit_mask, logits, MASKED_LOGIT)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _train_steps(graphdef, state, inputs, labels, index, count, logit_masks,
                 batch_sharding=None):
  """Steps ``0 .. count - 1`` of one dispatch.

  Args:
    graphdef: of ``nnx.split((model, optimizer))``, the model in train mode.
    state: the matching state; donated.
    inputs, labels: the task's training data on the device.
    index: ``(max_steps, batch)`` positions in ``inputs``; row ``i`` is step
      ``i``'s batch. Rows from ``count`` on are not used. With one row, the
      step is compiled without a loop around it: XLA:CPU runs a
      convolution's gradient an order of magnitude slower inside a loop
      (jax-ml/jax#12868), so the loop dispatches convolutional models on the
      CPU one step at a time.
    count: how many steps to take (traced: any count up to ``max_steps``
      runs the same compiled loop); 1 when ``index`` has one row.
    logit_masks: ``(labels, outputs)``; row ``y`` names the outputs the loss
      of an example labelled ``y`` is taken over.
    batch_sharding: where a batch lives (data parallelism), or None.

  Returns:
    The new state and the ``(max_steps,)`` losses, NaN from ``count`` on.
  """

  def step(i, carry):
    state, losses = carry
    model, optimizer = nnx.merge(graphdef, state)
    x, y = inputs[index[i]], labels[index[i]]
    if batch_sharding is not None:
      x = jax.lax.with_sharding_constraint(x, batch_sharding)

    def loss_fn(model):
      return masked_cross_entropy(model(x), y, logit_masks[y]).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), losses.at[i].set(loss)

  losses = jnp.full(index.shape[:1], jnp.nan, jnp.float32)
  if index.shape[0] == 1:
    return step(0, (state, losses))
  return jax.lax.fori_loop(0, count, step, (state, losses))


train_steps = jax.jit(_train_steps,
                      static_argnames=('graphdef', 'batch_sharding'),
                      donate_argnames=('state',))


@functools.partial(jax.jit, static_argnames=('graphdef', 'shared_data'),
                   donate_argnames=('states',))
def sweep_train_steps(graphdef, states, inputs, labels, index, counts,
                      logit_masks, shared_data=False):
  """:func:`train_steps` of K configurations in one program: ``jax.vmap``
  over the leading axis of ``states`` (stacked), of ``inputs``, ``labels``
  and ``logit_masks`` unless ``shared_data`` (every configuration trains on
  the same data), of ``index`` (``(K, max_steps, batch)``; a shared
  ``(max_steps, batch)`` order is accepted too, but it is slower on XLA:CPU:
  one product of the shared batch with the K stacked first-layer weights
  makes XLA transpose those weights at every step) and of ``counts`` unless
  it is a scalar. With ``(K,)`` counts a configuration whose count is
  smaller stops there while the others go on (every step then selects
  between the old and the new states); one count for all keeps a plain loop.
  Sharded inputs (the configuration axis over a mesh) give a program that
  runs each device's configurations on that device.

  Returns:
    The new states and the ``(K, max_steps)`` losses, NaN past each count.
  """
  data = None if shared_data else 0
  return jax.vmap(functools.partial(_train_steps, graphdef),
                  in_axes=(0, data, data, 0 if index.ndim == 3 else None,
                           0 if counts.ndim else None, data))(
                      states, inputs, labels, index, counts, logit_masks)


def _correct_count(graphdef, state, inputs, labels, valid, logit_mask):
  """How many of a test set's examples the model labels right.

  Args:
    graphdef, state: of ``nnx.split(model)``, the model in eval mode.
    inputs, labels, valid: the test set in ``(batches, batch_size, ...)``
      stacks; ``valid`` is False on padding.
    logit_mask: the outputs scored.
  """
  model = nnx.merge(graphdef, state)

  def batch(total, data):
    x, y, ok = data
    logits = jnp.where(logit_mask, model(x), MASKED_LOGIT)
    return total + jnp.sum(ok & (jnp.argmax(logits, axis=-1) == y)), None

  return jax.lax.scan(batch, jnp.int32(0), (inputs, labels, valid))[0]


correct_count = jax.jit(_correct_count, static_argnames='graphdef')


@functools.partial(jax.jit, static_argnames=('graphdef', 'shared_data'))
def sweep_correct_count(graphdef, states, inputs, labels, valid, logit_masks,
                        shared_data=False):
  """:func:`correct_count` of K stacked models (``(K,)`` counts): one test
  set for all if ``shared_data``, else ``(K, ...)`` stacks of them;
  ``logit_masks`` is ``(K, outputs)``."""
  data = None if shared_data else 0
  return jax.vmap(functools.partial(_correct_count, graphdef),
                  in_axes=(0, data, data, data, 0))(
                      states, inputs, labels, valid, logit_masks)


@functools.lru_cache(maxsize=16)
def fisher_example_loss(graphdef):
  """``loss(params, x, y, rest, logit_masks)`` of one example (its loss over
  the outputs of row ``y`` of ``logit_masks``), for
  :func:`classp_optax.empirical_fisher`, with ``graphdef`` from
  ``nnx.split(model, nnx.Param, ...)`` in eval mode. Cached, so that every
  task of a run (the same ``graphdef``) shares one compiled Fisher."""

  def loss(params, x, y, rest, logit_masks):
    model = nnx.merge(graphdef, params, rest, copy=True)
    return masked_cross_entropy(model(x[None]), y[None], logit_masks[y])[0]
  return loss
