"""Hypothesis properties of CLASSP's update."""

import hypothesis
from hypothesis import given
from hypothesis import strategies as st
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np

from classp_optax import classp

# Exact zeros, or magnitudes whose squares stay normal: XLA on CPU flushes
# subnormals to zero, which NumPy does not.
gradient_values = st.one_of(
    st.just(0.0),
    st.floats(-100, 100, width=32).filter(lambda x: abs(x) > 1e-3),
)
finite_grads = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
    elements=gradient_values,
)
settings = st.fixed_dictionaries({
    'learning_rate': st.floats(1e-4, 1.0),
    'threshold': st.floats(0.0, 4.0),
    'power': st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]),
    'eps': st.floats(1e-8, 1.0),
    'apply_decay': st.booleans(),
})


@st.composite
def gradient_sequences(draw):
  first = draw(finite_grads)
  more = draw(st.lists(
      hnp.arrays(np.float32, first.shape, elements=gradient_values),
      max_size=3,
  ))
  return [first, *more]


@given(grads=gradient_sequences(), kwargs=settings)
def test_mask_governs_every_coordinate(grads, kwargs):
  tx = classp(**kwargs)
  params = jnp.asarray(np.linspace(-1, 1, grads[0].size, dtype=np.float32)
                       .reshape(grads[0].shape))
  state = tx.init(params)
  update = jax.jit(tx.update)
  for g in grads:
    old_sum = np.asarray(state[0].grad_sum)
    updates, state = update(jnp.asarray(g), state, params)
    new_params = np.asarray(params + updates)
    new_sum = np.asarray(state[0].grad_sum)
    passes = g.astype(np.float32) ** 2 > np.float32(kwargs['threshold'])
    # Structure, shape and dtype are preserved.
    assert updates.shape == g.shape and updates.dtype == np.float32
    assert new_sum.shape == g.shape and new_sum.dtype == np.float32
    # Masked coordinates never move, nor does their memory.
    np.testing.assert_array_equal(new_params[~passes], np.asarray(params)[~passes])
    np.testing.assert_array_equal(new_sum[~passes], old_sum[~passes])
    # The update is zero exactly where the mask is false.
    np.testing.assert_array_equal(np.asarray(updates) != 0, passes)
    # grad_sum never decreases (it may not visibly grow: 1 + 1e-9 == 1).
    assert np.all(new_sum >= old_sum)
    # Every passing update points against its gradient.
    assert np.all(np.sign(updates)[passes] == -np.sign(g[passes]))
    params = jnp.asarray(new_params)


# Each example is a new tree of new shapes and dtypes, so a new compile: a
# third of the profile's examples cover three dtypes and three powers.
@hypothesis.settings(max_examples=max(20, hypothesis.settings().max_examples // 3))
@given(
    shapes=st.lists(hnp.array_shapes(max_dims=2, max_side=4), min_size=1,
                    max_size=4),
    power=st.sampled_from([1.0, 2.0, 2.5]),
)
def test_tree_structure_and_dtypes_preserved(shapes, power):
  dtypes = [jnp.float32, jnp.bfloat16, jnp.float16]
  params = {f'p{i}': jnp.ones(s, dtypes[i % 3]) for i, s in enumerate(shapes)}
  tx = classp(0.1, power=power)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, -0.75), params)
  # Compiled: one program per example, not one per operation, leaf and dtype.
  updates, state = jax.jit(tx.update)(grads, state)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  assert jax.tree.structure(state[0].grad_sum) == jax.tree.structure(params)
  for p, u, s in zip(jax.tree.leaves(params), jax.tree.leaves(updates),
                     jax.tree.leaves(state[0].grad_sum), strict=True):
    assert u.shape == p.shape == s.shape
    assert u.dtype == p.dtype
    assert s.dtype == jnp.float32
