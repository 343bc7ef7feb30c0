"""Misuse of the core API fails at once, with the leaf and the shapes named.

A state from another pytree, a state that never came from ``init``, or a
gradient or Fisher of the wrong shape must not broadcast silently.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

from classp_optax import add_ewc_penalty
from classp_optax import add_si_penalty
from classp_optax import classp
from classp_optax import consolidate_ewc
from classp_optax import consolidate_si
from classp_optax import scale_by_classp

PARAMS = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}
WRONG_SHAPE = {'w': jnp.ones((1, 2)), 'b': jnp.zeros(2)}
OTHER_TREE = {'w': jnp.ones((3, 2))}

TRANSFORMS = {
    'classp': lambda: classp(0.1),
    'scale_by_classp': lambda: scale_by_classp(),
    'ewc': lambda: add_ewc_penalty(1.0),
    'si': lambda: add_si_penalty(1.0),
}


@pytest.mark.parametrize('name', TRANSFORMS)
@pytest.mark.parametrize('jit', [False, True])
def test_gradient_of_another_shape_names_the_leaf_and_both_shapes(name, jit):
  tx = TRANSFORMS[name]()
  state = tx.init(PARAMS)
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(ValueError, match=r"\['w'\].*\(1, 2\).*\(3, 2\)"):
    update(WRONG_SHAPE, state, PARAMS)


@pytest.mark.parametrize('name', TRANSFORMS)
def test_state_of_another_pytree_is_refused(name):
  tx = TRANSFORMS[name]()
  state = tx.init(OTHER_TREE)
  with pytest.raises(ValueError, match='structure'):
    tx.update(PARAMS, state, PARAMS)


@pytest.mark.parametrize('name', TRANSFORMS)
def test_a_state_that_init_did_not_make_is_refused(name):
  tx = TRANSFORMS[name]()
  with pytest.raises(ValueError, match=r'init\(\)'):
    tx.update(PARAMS, None, PARAMS)


def test_penalties_check_params_against_updates():
  for tx in (add_ewc_penalty(1.0), add_si_penalty(1.0)):
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"params\['w'\].*\(1, 2\)"):
      tx.update(PARAMS, state, WRONG_SHAPE)


def test_consolidation_checks_the_fisher_and_the_params():
  state = optax.chain(add_ewc_penalty(1.0), optax.sgd(0.1)).init(PARAMS)
  with pytest.raises(ValueError, match=r"fisher\['w'\].*\(1, 2\).*\(3, 2\)"):
    consolidate_ewc(state, PARAMS, WRONG_SHAPE)
  with pytest.raises(ValueError, match=r"params\['w'\].*\(1, 2\)"):
    consolidate_ewc(state, WRONG_SHAPE, PARAMS)
  with pytest.raises(ValueError, match='structure'):
    consolidate_ewc(state, PARAMS, OTHER_TREE)
  si_state = add_si_penalty(1.0).init(PARAMS)
  with pytest.raises(ValueError, match=r"params\['w'\].*\(1, 2\)"):
    consolidate_si(si_state, WRONG_SHAPE)
