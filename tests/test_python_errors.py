"""A Python user's mistakes get errors as good as the command's: raised
before anything compiles, naming the argument, what it accepts and the fix."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classp_optax import FrozenWeightsWarning
from classp_optax import classp
from classp_optax import set_hyperparams
from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual import train
from classp_optax.continual.datasets import Dataset


def small_dataset(**changes) -> Dataset:
  rng = np.random.default_rng(0)
  x = rng.random((40, 4, 4, 1), dtype=np.float32)
  y = np.arange(40, dtype=np.int32) % 4
  arrays = dict(x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
  return Dataset('small', **(arrays | changes), num_classes=4)


@pytest.mark.parametrize('field,value', [
    ('epochs', 0), ('epochs', 1.5), ('epochs', ()), ('epochs', (1, 0)),
    ('batch_size', 0), ('batch_size', 2.0), ('eval_batch_size', -1),
    ('seed', -1), ('seed', 0.5), ('steps_per_task', 0), ('steps_per_task', True),
])
def test_train_config_refuses_each_bad_field_at_construction(field, value):
  with pytest.raises(ValueError, match=rf'TrainConfig\.{field} must be'):
    TrainConfig(**{field: value})


def test_train_config_takes_numpy_integers():
  config = TrainConfig(epochs=np.int64(2), batch_size=np.int32(8), seed=np.int64(3))
  assert config.steps_for(0, 80) == 20


def test_float_labels_are_refused_with_the_cast_that_fixes_them():
  """A custom loss may take float targets; the default classification
  loss names the cast, before anything compiles."""
  data = small_dataset(y_train=np.arange(40, dtype=np.float32) % 4)
  tasks = streams.split(data, [(0, 1), (2, 3)])
  with pytest.raises(ValueError, match=r"y_train must hold integer labels.*"
                     r'astype\(np\.int32\)'):
    _train(lambda: models.make_model('mlp', (4, 4, 1), 4, seed=0), tasks)


@pytest.mark.parametrize('bad', [-1, 4])
def test_labels_outside_the_classes_are_refused(bad):
  y = np.arange(40, dtype=np.int32) % 4
  y[3] = bad
  with pytest.raises(ValueError, match=r'y_train.*\[0, 4\).*num_classes'):
    small_dataset(y_train=y)


def test_images_and_labels_of_other_lengths_are_refused():
  with pytest.raises(ValueError, match='40 train images but 39 labels'):
    small_dataset(y_train=np.arange(39, dtype=np.int32) % 4)


def _train(make_model, tasks):
  return train(Run(make_model, tasks, make_method('sgd'),
                   TrainConfig(batch_size=8)))


def test_a_model_built_for_other_inputs_is_named_before_compiling():
  tasks = streams.split(small_dataset(), [(0, 1), (2, 3)])
  with pytest.raises(ValueError, match=r'inputs of shape \(4, 4, 1\).*'
                     r'make_model'):
    _train(lambda: models.make_model('mlp', (28, 28, 1), 4, seed=0), tasks)


def test_a_model_with_too_few_outputs_is_named():
  tasks = streams.split(small_dataset(), [(0, 1), (2, 3)])
  with pytest.raises(ValueError, match=r'2 outputs.*needs 4'):
    _train(lambda: models.make_model('mlp', (4, 4, 1), 2, seed=0), tasks)


def test_groups_that_are_not_class_lists_are_named():
  with pytest.raises(ValueError, match=r'groups must be.*got 2'):
    streams.split(small_dataset(), 2)


def test_a_misspelt_hyperparameter_gets_the_closest_name():
  state = optax.inject_hyperparams(classp)(learning_rate=0.1).init(jnp.zeros(3))
  with pytest.raises(ValueError, match=r"learning_rat.*Did you mean "
                     r"'learning_rate'\?"):
    set_hyperparams(state, learning_rat=0.2)


def test_a_dataset_keeps_its_arrays():
  data = small_dataset()
  assert dataclasses.replace(data, name='other').x_train is data.x_train


def test_a_classp_that_moves_no_weight_is_flagged_with_the_fix():
  tasks = streams.split(small_dataset(), [(0, 1), (2, 3)])
  with pytest.warns(FrozenWeightsWarning, match=r"moved no weight.*"
                    r"make_method\('classp', threshold=\.\.\.\) in Python"):
    result = train(Run(lambda: models.make_model('mlp', (4, 4, 1), 4, seed=0),
                       tasks, make_method('classp', threshold=0.5),
                       TrainConfig(batch_size=8)))
  assert result.capacity_used[0] == 0.0  # later tasks: later_threshold, 0
