"""A user's own data: ``Dataset.from_arrays`` in Python, ``--dataset
PATH.npz`` with ``--stream`` from the command line."""

import json

import numpy as np
import pytest

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import cli
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual import train
from classp_optax.continual.datasets import Dataset
from classp_optax.continual.datasets import load_digits


def digit_arrays() -> dict:
  """The digits as a user would hold them: flat float64 features, int64
  labels."""
  d = load_digits()
  return dict(x_train=d.x_train.reshape(len(d.x_train), -1).astype(np.float64),
              y_train=d.y_train.astype(np.int64),
              x_test=d.x_test.reshape(len(d.x_test), -1).astype(np.float64),
              y_test=d.y_test.astype(np.int64))


def test_from_arrays_keeps_the_arrays_and_counts_the_classes():
  arrays = digit_arrays()
  data = Dataset.from_arrays(**arrays, name='mine')
  assert data.num_classes == 10 and data.name == 'mine'
  assert data.x_train.dtype == np.float32 and data.x_train.shape == (1347, 64)
  np.testing.assert_array_equal(data.y_test, arrays['y_test'])


def test_from_arrays_gives_grey_images_a_channel():
  x = np.zeros((6, 5, 5))
  data = Dataset.from_arrays(x, np.arange(6) % 3, x[:3], np.arange(3))
  assert data.x_train.shape == (6, 5, 5, 1) and data.num_classes == 3


@pytest.mark.parametrize('change,message', [
    (dict(y_train=np.zeros(1347)), r'y_train must hold integer labels'),
    (dict(x_test=np.zeros((450, 63))), r'inputs of shape \(64,\).*\(63,\)'),
    (dict(x_train=np.zeros(1347)), r'x_train must be real inputs'),
    (dict(y_test=np.arange(450) % 12), r'y_test holds labels in \[0, 11\]'),
])
def test_from_arrays_names_what_is_wrong(change, message):
  arrays = digit_arrays() | change
  with pytest.raises(ValueError, match=message):
    Dataset.from_arrays(**arrays, num_classes=10)


def test_own_arrays_train_in_a_python_loop():
  data = Dataset.from_arrays(**digit_arrays())
  tasks = streams.split(data, [(0, 1), (2, 3)], scenario='class')
  result = train(Run(lambda: models.make_model('mlp', (64,), 10, seed=0), tasks,
                     make_method('sgd'), TrainConfig(epochs=2, batch_size=16)))
  assert np.diag(result.accuracy).min() > 0.9


def _npz(tmp_path, **arrays):
  path = tmp_path / 'mine.npz'
  np.savez(path, **(digit_arrays() | arrays))
  return path


@pytest.mark.parametrize('stream,extra,num_tasks', [
    ('split', [], 5), ('split', ['--tasks', '2'], 2),
    ('permuted', ['--tasks', '3', '--scenario', 'task'], 3)])
def test_the_command_trains_on_an_npz_file(tmp_path, capsys, stream, extra,
                                           num_tasks):
  out = tmp_path / 'out'
  assert cli.main(['--dataset', str(_npz(tmp_path)), '--stream', stream,
                   '--methods', 'sgd', '--epochs', '1', '--out', str(out),
                   '--no-progress', *extra]) == 0
  saved = json.loads((out / 'results.json').read_text())
  assert saved['dataset'].endswith('mine.npz') and saved['stream'] == stream
  accuracy = np.array(saved['results'][0]['accuracy'])
  assert accuracy.shape == (num_tasks, num_tasks)
  assert np.diag(accuracy).mean() > 0.6          # it learns each task
  assert 'mine' in capsys.readouterr().out


@pytest.mark.parametrize('argv,message', [
    (['--stream', 'split'], '--stream applies to --dataset only'),
    (['--dataset', 'nowhere.npz'], '--dataset nowhere.npz: no such file'),
    (['--dataset', '{npz}', '--benchmark', 'split-digits'],
     '--dataset and --benchmark exclude each other'),
    (['--dataset', '{npz}', '--stream', 'split', '--tasks', '11'],
     '--tasks must be at most the 10 classes'),
])
def test_bad_own_data_arguments_exit_2_naming_them(tmp_path, capsys, argv,
                                                   message):
  argv = [a.replace('{npz}', str(_npz(tmp_path))) for a in argv]
  with pytest.raises(SystemExit) as exit_:
    cli.main([*argv, '--out', str(tmp_path / 'out'), '--no-progress'])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert message in err, err


def test_an_npz_file_missing_a_key_is_named(tmp_path, capsys):
  path = tmp_path / 'part.npz'
  np.savez(path, x_train=np.zeros((4, 2)), y_train=np.zeros(4, int))
  with pytest.raises(SystemExit):
    cli.main(['--dataset', str(path), '--out', str(tmp_path / 'o')])
  assert "lacks 'x_test', 'y_test'" in capsys.readouterr().err
