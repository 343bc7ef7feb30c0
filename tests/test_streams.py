"""Task streams: permuted, split, sequences, validation hold-out."""

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from classp_optax.continual import datasets
from classp_optax.continual import streams
from classp_optax.continual.datasets import Dataset
from classp_optax.continual.suites import split_one_head


def tiny_dataset(n=40, name='tiny'):
  rng = np.random.default_rng(1)
  x = rng.random((n, 3, 2, 1), dtype=np.float32)
  y = np.arange(n, dtype=np.int32) % 10
  return Dataset(name, x, y, x[: n // 2] + 1, y[: n // 2])


def test_permuted_task_zero_is_identity_and_permutations_are_fixed():
  ds = tiny_dataset()
  tasks = streams.permuted(ds, 3, seed=5)
  x0, y0 = tasks[0].test_set()
  np.testing.assert_array_equal(x0, ds.x_test)
  x1, y1 = tasks[1].test_set()
  perm = tasks[1].permutation
  assert sorted(perm) == list(range(6)) and list(perm) != list(range(6))
  np.testing.assert_array_equal(x1.reshape(len(x1), -1),
                                ds.x_test.reshape(len(x1), -1)[:, perm])
  np.testing.assert_array_equal(y1, ds.y_test)
  again = streams.permuted(ds, 3, seed=5)
  for a, b in zip(tasks[1:], again[1:], strict=True):
    np.testing.assert_array_equal(a.permutation, b.permutation)
  assert not np.array_equal(tasks[1].permutation, tasks[2].permutation)
  xb, _ = tasks[2].train_batch(np.array([3, 1]))
  np.testing.assert_array_equal(
      xb.reshape(2, -1), ds.x_train[[3, 1]].reshape(2, -1)[:, tasks[2].permutation])
  assert tasks[1].logit_mask().all()


def test_permuted_domain_incremental_is_the_default_shared_head():
  ds = tiny_dataset()
  default, domain = (streams.permuted(ds, 3, seed=5),
                     streams.permuted(ds, 3, seed=5, scenario='domain'))
  for a, b in zip(default, domain, strict=True):
    assert a.num_outputs == b.num_outputs == 10 and not b.own_head
    assert b.label_map is None and b.logit_mask().all()
    np.testing.assert_array_equal(a.test_set()[0], b.test_set()[0])


@pytest.mark.parametrize('scenario', ['task', 'class'])
def test_permuted_task_and_class_incremental_offset_each_tasks_labels(scenario):
  """Task t's digit y is output 10 t + y, of 10 outputs per task (their
  code's target transform); the inputs are the domain scenario's."""
  ds = tiny_dataset()
  tasks = streams.permuted(ds, 3, seed=5, scenario=scenario)
  domain = streams.permuted(ds, 3, seed=5)
  for t, (task, same) in enumerate(zip(tasks, domain, strict=True)):
    assert task.num_outputs == 30
    x, y = task.test_set()
    np.testing.assert_array_equal(x, same.test_set()[0])
    np.testing.assert_array_equal(y, ds.y_test + 10 * t)
    _, y_train = task.train_batch(np.array([0, 7]))
    np.testing.assert_array_equal(y_train, ds.y_train[[0, 7]] + 10 * t)
    scored = np.flatnonzero(task.logit_mask())
    expected = np.arange(10 * t, 10 * t + 10) if scenario == 'task' else (
        np.arange(30))
    np.testing.assert_array_equal(scored, expected)


def test_permuted_training_masks_follow_the_scenario():
  ds = tiny_dataset()
  own = streams.permuted(ds, 3, scenario='task')
  for task in own:  # every label trains its own task's outputs
    for label in (0, 14, 29):
      np.testing.assert_array_equal(
          np.flatnonzero(task.train_logit_masks()[label]),
          np.arange(10 * (label // 10), 10 * (label // 10) + 10))
  seen = streams.permuted(ds, 3, scenario='class', train_outputs='seen')
  for t, task in enumerate(seen):
    np.testing.assert_array_equal(
        np.flatnonzero(task.train_logit_masks()[10 * t + 3]),
        np.arange(10 * (t + 1)))
  every = streams.permuted(ds, 3, scenario='class')
  assert every[0].train_logit_masks().all()


@pytest.mark.parametrize('kwargs,message', [
    (dict(scenario='joint'), 'scenario must be one of'),
    (dict(scenario='task', train_outputs='seen'), 'class scenario only'),
    (dict(train_outputs='some'), 'train_outputs must be one of'),
])
def test_permuted_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    streams.permuted(tiny_dataset(), 2, **kwargs)


def test_a_validation_hold_out_keeps_a_permuted_scenario():
  tasks = streams.validation_tasks(
      streams.permuted(tiny_dataset(), 2, scenario='task'), 0.25)
  assert [t.num_train for t in tasks] == [30, 30]
  _, y = tasks[1].test_set()
  assert len(y) == 10 and set(y) <= set(range(10, 20))
  np.testing.assert_array_equal(np.flatnonzero(tasks[1].logit_mask()),
                                np.arange(10, 20))


def test_pad_frames_every_image_with_zeros():
  ds = tiny_dataset()
  framed = datasets.pad(ds, 2)
  assert framed.x_train.shape == (40, 7, 6, 1)
  np.testing.assert_array_equal(framed.x_test[:, 2:-2, 2:-2], ds.x_test)
  inner = np.zeros((7, 6), bool)
  inner[2:-2, 2:-2] = True
  assert not framed.x_train[:, ~inner].any()
  np.testing.assert_array_equal(framed.y_train, ds.y_train)
  with pytest.raises(ValueError, match='pixels must be >= 0'):
    datasets.pad(ds, -1)


def test_split_class_incremental_has_one_head_over_global_labels():
  ds = tiny_dataset()
  tasks = streams.split(ds, scenario='class')
  assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
  for t in tasks:
    _, y = t.test_set()
    assert set(y) == set(t.classes)  # global labels
    assert t.num_outputs == 10 and t.logit_mask().all()


def test_split_task_incremental_scores_each_task_on_its_classes():
  ds = tiny_dataset()
  per_task = streams.split(ds, groups=[(0, 3, 4), (9,)], scenario='task')
  np.testing.assert_array_equal(per_task[0].logit_mask(),
                                np.isin(np.arange(10), [0, 3, 4]))
  _, y = per_task[1].train_batch(np.arange(per_task[1].num_train))
  assert set(y) == {9}


def test_split_domain_incremental_has_a_two_way_head_on_class_parity():
  ds = tiny_dataset()
  tasks = streams.split(ds, scenario='domain')
  for t in tasks:
    assert t.num_outputs == 2 and t.logit_mask().tolist() == [True, True]
    x, y = t.train_batch(np.arange(t.num_train))
    rows = t.train_index
    np.testing.assert_array_equal(y, ds.y_train[rows] % 2)
    np.testing.assert_array_equal(x, ds.x_train[rows])
    xt, yt = t.test_set()
    np.testing.assert_array_equal(yt, ds.y_test[t.test_index] % 2)
  # Groups need not be pairs of neighbours: the target is the position.
  odd = streams.split(ds, groups=[(7, 2), (0, 5)], scenario='domain')
  _, y = odd[0].test_set()
  np.testing.assert_array_equal(y, (ds.y_test[odd[0].test_index] == 2) * 1)
  # Validation copies keep the mapping.
  val = streams.validation_tasks(tasks, 0.25)
  assert val[0].num_outputs == 2
  assert set(val[1].test_set()[1]) <= {0, 1}


@pytest.mark.parametrize('kwargs,message', [
    (dict(groups=[(0, 1), (1, 2)]), 'disjoint'),
    (dict(groups=[(0, 10)]), 'disjoint'),
    (dict(scenario='multi'), 'scenario must be one of'),
    (dict(groups=[(0, 1), (2,)], scenario='domain'), 'groups of one size'),
])
def test_split_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    streams.split(tiny_dataset(), **kwargs)


def test_sequence_and_validation_split():
  a, b = tiny_dataset(name='a'), tiny_dataset(name='b')
  tasks = streams.sequence(a, b)
  assert [t.name for t in tasks] == ['a', 'b']
  assert tasks[1].test_set()[0] is not None
  with pytest.raises(ValueError, match='image shape'):
    odd = Dataset('odd', np.zeros((2, 5, 5, 1), np.float32), np.zeros(2, np.int32),
                  np.zeros((1, 5, 5, 1), np.float32), np.zeros(1, np.int32))
    streams.sequence(a, odd)
  val = streams.hold_out_validation(a, 0.25, seed=0)
  assert len(val.y_test) == 10 and len(val.y_train) == 30
  train_rows = {x.tobytes() for x in val.x_train}
  assert not any(x.tobytes() in train_rows for x in val.x_test)
  assert not any(np.array_equal(x, t) for x in val.x_test for t in a.x_test)
  with pytest.raises(ValueError, match='fraction'):
    streams.hold_out_validation(a, 1.0)
  with pytest.raises(ValueError, match='num_tasks'):
    streams.permuted(a, 0)


def test_standardize_uses_training_statistics_and_shares_copies():
  ds = tiny_dataset()
  tasks = streams.standardize_tasks(streams.permuted(ds, 2))
  assert tasks[0].dataset is tasks[1].dataset
  x = tasks[0].dataset.x_train
  np.testing.assert_allclose([x.mean(), x.std()], [0.0, 1.0], atol=1e-5)
  mean, std = ds.x_train.mean(), ds.x_train.std()
  np.testing.assert_allclose(tasks[1].dataset.x_test, (ds.x_test - mean) / std,
                             rtol=1e-5)
  np.testing.assert_array_equal(tasks[1].permutation,
                                streams.permuted(ds, 2)[1].permutation)


def test_validation_tasks_never_touch_the_test_set():
  ds = tiny_dataset(n=60)
  tasks = streams.validation_tasks(streams.split(ds, scenario='task'), 0.25)
  test_rows = {x.tobytes() for x in ds.x_test}
  for task in tasks:
    x_val, y_val = task.test_set()
    assert set(y_val) <= set(task.classes)
    assert not any(x.tobytes() in test_rows for x in x_val)
    x_train, y_train = task.train_batch(np.arange(task.num_train))
    assert set(y_train) == set(task.classes)
    assert not {x.tobytes() for x in x_train} & {x.tobytes() for x in x_val}
  assert sum(len(t.test_index) for t in tasks) == 15


def test_split_training_masks_follow_the_scenario():
  """Row ``y`` of a task's training masks: the outputs the loss of an example
  labelled ``y`` is taken over, valid for every label of the stream."""
  ds = tiny_dataset()
  groups = np.arange(10)[:, None] // 2 == np.arange(10)[None] // 2
  for t in streams.split(ds, scenario='task'):
    np.testing.assert_array_equal(t.train_logit_masks(), groups)
  for t in streams.split(ds, scenario='class'):
    assert t.train_logit_masks().shape == (10, 10)
    assert t.train_logit_masks().all()
  for t in streams.split(ds, scenario='domain'):
    assert t.train_logit_masks().shape == (2, 2)
    assert t.train_logit_masks().all()
  # van de Ven & Tolias's class-incremental training: the classes seen so far.
  seen = streams.split(ds, scenario='class', train_outputs='seen')
  for i, t in enumerate(seen):
    expected = np.arange(10) < 2 * (i + 1)
    for row in t.train_logit_masks():
      np.testing.assert_array_equal(row, expected)
    assert t.logit_mask().all()  # scored on every output all the same


@pytest.mark.parametrize('kwargs,message', [
    (dict(train_outputs='some'), "train_outputs must be one of ('all', 'seen')"),
    (dict(scenario='task', train_outputs='seen'), "train_outputs='seen' applies"),
])
def test_split_rejects_bad_training_outputs(kwargs, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(
      ')', r'\)')):
    streams.split(tiny_dataset(), **kwargs)


@pytest.mark.parametrize('kind', ['split', 'permuted'])
@pytest.mark.parametrize('scenario', streams.SCENARIOS)
def test_joint_trains_task_t_on_every_task_so_far(kind, scenario):
  ds = tiny_dataset(n=60)
  tasks = (streams.split(ds, scenario=scenario) if kind == 'split'
           else streams.permuted(ds, 3, seed=2, scenario=scenario))
  joint = streams.joint(tasks)
  for t, task in enumerate(joint):
    np.testing.assert_array_equal(
        task.train_index, np.concatenate([u.train_index for u in tasks[:t + 1]]))
    np.testing.assert_array_equal(task.test_index, tasks[t].test_index)
    np.testing.assert_array_equal(task.train_logit_masks(),
                                  tasks[t].train_logit_masks())
    want_x, want_y = map(np.concatenate, zip(
        *(u.train_batch(np.arange(u.num_train)) for u in tasks[:t + 1]),
        strict=True))
    x, y = task.train_batch(np.arange(task.num_train))
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    shuffled = np.random.default_rng(t).permutation(task.num_train)[:17]
    x, y = task.train_batch(shuffled)
    np.testing.assert_array_equal(x, want_x[shuffled])
    np.testing.assert_array_equal(y, want_y[shuffled])
  assert joint[0].num_train == tasks[0].num_train
  assert joint[-1].num_train == sum(u.num_train for u in tasks)


def test_joint_needs_one_image_shape_and_one_set_of_outputs():
  ds = tiny_dataset()
  wide = dataclasses.replace(tiny_dataset(name='wide'),
                             x_train=np.zeros((40, 3, 3, 1), np.float32),
                             x_test=np.zeros((20, 3, 3, 1), np.float32))
  with pytest.raises(ValueError, match='one image shape'):
    streams.joint(streams.permuted(ds, 1) + streams.permuted(wide, 1))
  with pytest.raises(ValueError, match='one set of outputs'):
    streams.joint(streams.permuted(ds, 2, scenario='task')[:1]
                  + streams.split(ds, scenario='task'))
  own_heads = [dataclasses.replace(t, train_masks=None)
               for t in streams.split(ds, scenario='task')]
  with pytest.raises(ValueError, match='training masks for every label'):
    streams.joint(own_heads)
  assert streams.joint([]) == []


def test_rotated_tasks_rotate_every_image_by_their_seeded_angle():
  """One head, the labels as they are; each task's angle drawn from the
  range by the seed; 90 degrees is numpy's counter-clockwise rot90."""
  ds = tiny_dataset()
  square = dataclasses.replace(
      ds, x_train=np.random.default_rng(0).random((40, 4, 4, 1), np.float32),
      x_test=np.random.default_rng(1).random((20, 4, 4, 1), np.float32))
  tasks = streams.rotated(square, 4, seed=3)
  angles = [task.rotation for task in tasks]
  assert all(0 <= a < 180 for a in angles) and len(set(angles)) == 4
  assert angles == [t.rotation for t in streams.rotated(square, 4, seed=3)]
  assert angles != [t.rotation for t in streams.rotated(square, 4, seed=4)]
  quarter = dataclasses.replace(tasks[0], rotation=90.0)
  x, y = quarter.test_set()
  np.testing.assert_array_equal(x, np.rot90(square.x_test, 1, axes=(1, 2)))
  np.testing.assert_array_equal(y, square.y_test)
  assert tasks[2].logit_mask().all() and tasks[2].num_outputs == 10


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_tasks=0), 'num_tasks must be >= 1'),
    (dict(num_tasks=2, degrees=(90.0, 0.0)), 'degrees must be'),
])
def test_rotated_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    streams.rotated(tiny_dataset(), **kwargs)


def test_permute_first_permutes_task_zero_too():
  ds = tiny_dataset()
  tasks = streams.permuted(ds, 2, seed=5, permute_first=True)
  assert tasks[0].permutation is not None
  assert not np.array_equal(tasks[0].permutation, np.arange(6))


@pytest.mark.parametrize('scenario', ['class', 'task'])
def test_the_der_split_trains_one_head_and_scores_as_the_scenario_says(
    scenario):
  """Their seq-mnist: every output trained in both scenarios; scored on
  every output (class) or on the task's own (task)."""
  tasks = split_one_head(tiny_dataset(), scenario)
  assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
  for task in tasks:
    assert task.train_logit_masks().all()
    expected = np.isin(np.arange(10), task.classes) if scenario == 'task' else (
        np.ones(10, bool))
    np.testing.assert_array_equal(task.logit_mask(), expected)


def test_only_a_rotated_stream_loads_scipy():
  """SciPy's ndimage rotates images, and importing it costs a command on
  MNIST 0.2 to 0.4 s here; the other streams never load it (the embedded
  digits come through scikit-learn, which loads it anyway)."""
  code = textwrap.dedent("""\
      import sys
      import numpy as np
      from classp_optax.continual import cli, streams
      from classp_optax.continual.datasets import Dataset
      x, y = np.zeros((4, 6, 6, 1), np.float32), np.arange(4) % 2
      data = Dataset('tiny', x, y, x, y, num_classes=2)
      for stream in (streams.permuted, streams.rotated):
        stream(data, 2)[1].train_batch(np.arange(2))
        print('scipy' in sys.modules)
      """)
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout
  assert out.split() == ['False', 'True']
