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
* ``exact``: ``sum_c p(c|x) g_c**2``, the expectation over every label (one
  backward pass per output).

``p(c|x) = exp(-loss(x, c))`` for the engine's loss taken over the
example's own head (row ``y`` of the task's training masks). The examples
are reduced in chunks under ``lax.scan``: memory holds one chunk's
per-example gradients, whatever the number of samples.
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


def _per_example_squares(model, params, x, labels, own, weights):
  """``sum_n weights_n g_n**2`` from each example's own gradient ``g_n``
  (of its negative log-likelihood of ``labels[n]``): any model."""
  nll = lambda params, x, c, own: _nll(  # noqa: E731
      model, model.outputs(params, x[None])[0], c, own)
  grads = jax.vmap(jax.grad(nll), in_axes=(None, 0, 0, 0))(
      params, x, labels, own)
  return jax.tree.map(  # |g|**2, real also for complex parameters
      lambda g: jnp.tensordot(weights, jnp.real(g * jnp.conj(g)), axes=1),
      grads)


def _dense_squares(module, model, params, x, labels, own, weights):
  """The same sum in closed form for a model of dense layers (``module``
  has ``dense_layers`` and ``tapped``, as :class:`models.MLP`): example
  ``n``'s gradient for a layer's kernel is ``a_n (x) d_n``, its input and
  the gradient at its output, so ``sum_n w_n g_n**2`` is
  ``(w a**2)^T d**2``, and ``sum_n w_n d_n**2`` for the bias. One backward
  pass over the chunk gives every ``d_n``; no per-example gradient is
  held."""
  layers = module.dense_layers()

  def total(shifts):
    outputs, inputs = module.tapped(x, shifts)
    nlls = jax.vmap(lambda *a: _nll(model, *a))(outputs, labels, own)
    return jnp.sum(nlls), inputs

  shifts = [jnp.zeros((len(x), layer.out_features), layer.kernel.dtype)
            for layer in layers]
  deltas, inputs = jax.grad(total, has_aux=True)(shifts)
  for layer, a, d in zip(layers, inputs, deltas, strict=True):
    layer.kernel.set_value((weights[:, None] * a * a).T @ (d * d))
    layer.bias.set_value(weights @ (d * d))
  found = jax.tree.leaves(nnx.split(module, nnx.Param, ...)[1])
  return jax.tree.unflatten(jax.tree.structure(params), found)


def _squares(model, params, x, labels, own, weights):
  """``sum_n weights_n g_n**2``, ``g_n`` the gradient of example ``n``'s
  negative log-likelihood of ``labels[n]``: in closed form where the model
  is made of dense layers only (real weights, each with a bias), else
  example by example."""
  module = nnx.merge(model.graphdef, params, model.rest, copy=True)
  dense = getattr(module, 'dense_layers', lambda: ())()
  covered = sum(2 if layer.use_bias else 1 for layer in dense)
  if covered and covered == len(jax.tree.leaves(params)) and all(
      layer.use_bias and jnp.issubdtype(layer.kernel.dtype, jnp.floating)
      for layer in dense):
    return _dense_squares(module, model, params, x, labels, own, weights)
  return _per_example_squares(model, params, x, labels, own, weights)


def _probabilities(model, params, x, own):
  """``(examples, outputs)``: each example's model distribution, 0 outside
  its own head (one forward pass, then the loss of each label)."""
  outputs = model.outputs(params, x)
  labels = jnp.arange(own.shape[1])
  each = lambda z, own: jax.vmap(  # noqa: E731
      lambda c: _nll(model, z, c, own))(labels)
  return jax.lax.stop_gradient(
      jnp.where(own, jnp.exp(-jax.vmap(each)(outputs, own)), 0.0))


def _chunk(kind, model, params, x, y, own, weights, keys):
  """One chunk's weighted sum of squared gradients, as ``kind`` takes them
  (``keys``: one per example, for ``sampled``)."""
  if kind == 'empirical':
    return _squares(model, params, x, y, own, weights)
  p = _probabilities(model, params, x, own)
  if kind == 'predicted':
    return _squares(model, params, x, jnp.argmax(p, axis=1), own, weights)
  if kind == 'sampled':
    drawn = jax.vmap(jax.random.categorical)(keys, jnp.log(p))
    return _squares(model, params, x, drawn, own, weights)

  def add(total, c):  # exact: one label at a time, each weighted by p
    labels = jnp.full(y.shape, c, y.dtype)
    part = _squares(model, params, x, labels, own, weights * p[:, c])
    return jax.tree.map(jnp.add, total, part), None
  return jax.lax.scan(add, real_zeros_like(params), jnp.arange(p.shape[1]))[0]


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
