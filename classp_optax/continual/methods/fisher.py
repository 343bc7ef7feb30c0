"""EWC's diagonal Fisher information, four ways, in constant memory.

For an example ``x`` whose model distribution over its own head's outputs
is ``p(c|x)`` and a label ``c``, let ``g_c = d(-log p(c|x))/dw``. Each kind
averages over the task's sampled examples (van de Ven, "On the computation
of the Fisher Information in continual learning", ICLR 2025 blog track,
arXiv 2502.11756, compares them):

* ``empirical``: ``g_y**2`` with the true label ``y``;
* ``predicted``: ``g_c**2`` with the model's most probable label, what van
  de Ven & Tolias's 2019 code computes by default (``emp_FI=False``);
* ``sampled``: ``g_c**2`` with ``c`` drawn from ``p(.|x)``: an unbiased
  one-draw estimate of the exact one;
* ``exact``: ``sum_c p(c|x) g_c**2``, the expectation over every label of
  the example's own head (one backward pass per label of the head: 10 on a
  task-incremental head of 10 among 100 outputs).

``p(c|x) = exp(-loss(x, c))`` for the engine's loss taken over the
example's own head (row ``y`` of the task's training masks). The examples
are reduced in chunks under ``lax.scan``, so memory does not grow with the
number of samples. A model of dense layers (:class:`models.MLP`) takes the
closed form: example ``n``'s gradient for a dense layer's kernel is the
outer product ``a_n (x) d_n`` of the layer's input and the gradient at its
output, so ``sum_n w_n g_n**2`` is ``(w a**2)^T d**2`` (``sum_n w_n
d_n**2`` for the bias): one forward pass over a chunk and a backward pass
per label, no per-example gradient held. Any other model takes each
example's gradient, a chunk of them at a time.
"""

from flax import nnx
import jax
import jax.numpy as jnp

from classp_optax._state_search import real_zeros_like

KINDS = ('empirical', 'predicted', 'sampled', 'exact')


def check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f'fisher must be one of {KINDS}, got {kind!r}.')


def _nll(model, outputs, label, own):
  """``-log p(label|x)`` from one example's ``outputs``, over the outputs
  ``own`` names (x's own head)."""
  table = jnp.broadcast_to(own, (own.shape[0], own.shape[0]))
  return model.example_loss(outputs[None], label[None], table)[0]


def _probabilities(model, outputs, own):
  """``(examples, outputs)``: each example's model distribution, 0 outside
  its own head."""
  labels = jnp.arange(own.shape[1])
  each = lambda z, own: jax.vmap(  # noqa: E731
      lambda c: _nll(model, z, c, own))(labels)
  return jax.lax.stop_gradient(
      jnp.where(own, jnp.exp(-jax.vmap(each)(outputs, own)), 0.0))


def _label(kind, p, y, keys):
  """The one label each example's gradient is taken at, for the kinds that
  take one (all but ``exact``)."""
  if kind == 'empirical':
    return y
  if kind == 'predicted':
    return jnp.argmax(p, axis=1)
  return jax.vmap(jax.random.categorical)(keys, jnp.log(p))


def _by_label(kind, squares, p, y, own, keys, zeros):
  """``squares(labels)`` at the kind's labels, or for ``exact`` summed over
  every label of each example's own head, each weighted by ``p`` (a pytree
  of ``zeros`` to start).

  ``exact`` visits the ``k``-th label of every example's head at step ``k``,
  for as many steps as the largest head in the chunk: a task-incremental
  head of 10 among 100 outputs takes 10 backward passes, not 100. The
  labels outside a head (``p`` 0) would add exact zeros, so this is the sum
  over every output: bit for bit on the closed form, and on the per-example
  path where a chunk's examples share one head (as a task's do); to
  rounding where they do not."""
  if kind != 'exact':
    return squares(_label(kind, p, y, keys), jnp.ones(y.shape))
  heads = jnp.argsort(~own, axis=1, stable=True).astype(y.dtype)

  def add(k, total):
    labels = heads[:, k]
    part = squares(labels, jnp.take_along_axis(p, labels[:, None], 1)[:, 0])
    return jax.tree.map(jnp.add, total, part)
  return jax.lax.fori_loop(0, jnp.max(jnp.sum(own, axis=1)), add, zeros)


def _per_example(kind, model, params, x, y, own, weights, keys):
  """One chunk's weighted sum of squared gradients, from each example's
  own gradient: any model."""
  nll = lambda params, x, c, own: _nll(  # noqa: E731
      model, model.outputs(params, x[None])[0], c, own)
  grad = jax.vmap(jax.grad(nll), in_axes=(None, 0, 0, 0))

  def squares(labels, scale):
    grads = grad(params, x, labels, own)
    return jax.tree.map(  # |g|**2, real also for complex parameters
        lambda g: jnp.tensordot(weights * scale, jnp.real(g * jnp.conj(g)),
                                axes=1), grads)

  p = _probabilities(model, model.outputs(params, x), own)
  return _by_label(kind, squares, p, y, own, keys, real_zeros_like(params))


def _dense(kind, module, model, params, x, y, own, weights, keys):
  """The same sum in closed form for ``module`` of dense layers: each
  layer's ``sum_n s_n d_n**2`` over the labels, then ``(w a**2)^T`` of it
  for the kernel and ``w`` of it for the bias."""
  layers = module.dense_layers()
  shifts = [jnp.zeros((len(x), layer.out_features), layer.kernel.dtype)
            for layer in layers]
  outputs, backward, inputs = jax.vjp(lambda s: module.tapped(x, s), shifts,
                                      has_aux=True)
  at_outputs = jax.vmap(jax.grad(lambda *a: _nll(model, *a)))

  def squares(labels, scale):
    deltas = backward(at_outputs(outputs, labels, own))[0]
    return [scale[:, None] * d * d for d in deltas]

  p = _probabilities(model, outputs, own)
  summed = _by_label(kind, squares, p, y, own, keys, shifts)
  for layer, a, s in zip(layers, inputs, summed, strict=True):
    layer.kernel.set_value((weights[:, None] * a * a).T @ s)
    layer.bias.set_value(weights @ s)
  found = jax.tree.leaves(nnx.split(module, nnx.Param, ...)[1])
  return jax.tree.unflatten(jax.tree.structure(params), found)


def _is_dense(module, params) -> bool:
  """Whether ``module``'s weights are all its dense layers' real kernels
  and biases (``dense_layers`` and ``tapped``, as :class:`models.MLP`)."""
  layers = getattr(module, 'dense_layers', lambda: ())()
  return bool(layers) and len(jax.tree.leaves(params)) == 2 * len(
      layers) and all(layer.use_bias and jnp.issubdtype(
          layer.kernel.dtype, jnp.floating) for layer in layers)


def _chunk(kind, model, params, x, y, own, weights, keys):
  """One chunk's weighted sum of squared gradients, as ``kind`` takes them
  (``keys``: one per example, for ``sampled``)."""
  module = nnx.merge(model.graphdef, params, model.rest, copy=True)
  if _is_dense(module, params):
    return _dense(kind, module, model, params, x, y, own, weights, keys)
  return _per_example(kind, model, params, x, y, own, weights, keys)


def fisher_of(kind: str, model, params, data, positions, weights, key,
              chunk: int = 256):
  """The diagonal Fisher of ``kind`` over the examples at ``positions`` of
  ``data`` (a :class:`hooks.TaskData`), weighted by ``weights`` (0 on
  padding): a pytree like ``params``. ``key`` draws ``sampled`` labels,
  the ``n``-th sample's from ``fold_in(key, n)``. ``positions`` are padded
  to a multiple of ``chunk``, the examples whose per-example gradients are
  held at once; the result does not depend on it."""
  check_kind(kind)
  pad = -len(positions) % chunk
  positions = jnp.pad(jnp.asarray(positions), (0, pad))
  weights = jnp.pad(jnp.asarray(weights, jnp.float32), (0, pad))
  rows, w = positions.reshape(-1, chunk), weights.reshape(-1, chunk)
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      key, jnp.arange(rows.size)).reshape(rows.shape)

  def add(total, part):
    rows, w, key = part
    x, y = data.inputs[rows], data.labels[rows]
    found = _chunk(kind, model, params, x, y, data.train_masks[y], w, key)
    return jax.tree.map(jnp.add, total, found), None

  total = jax.lax.scan(add, real_zeros_like(params), (rows, w, keys))[0]
  return jax.tree.map(lambda f: f / jnp.sum(weights), total)
