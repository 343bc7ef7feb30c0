"""The example scripts run end to end (on small synthetic data in place of
MNIST: 12 x 12 images, which the scripts' models take as they take 28 x 28)."""

import pathlib
import runpy
import sys

import numpy as np
import pytest

from classp_optax.continual import datasets

EXAMPLES = pathlib.Path(__file__).parent.parent / 'examples'


def small_mnist_like(name, data_dir=None):
  rng = np.random.default_rng(len(name))
  n_train, n_test, side = 512, 64, 12
  labels = rng.integers(0, 10, n_train + n_test).astype(np.int32)
  # Images that carry their label, so that the models can learn something.
  images = rng.random((n_train + n_test, side, side, 1), dtype=np.float32) * 0.1
  images[np.arange(len(labels)), labels, :, 0] += 1.0
  return datasets.Dataset(name, images[:n_train], labels[:n_train],
                          images[n_train:], labels[n_train:])


@pytest.mark.parametrize('script,argv', [
    ('split_digits.py', []),
    ('permuted_mnist.py', ['--tasks', '2']),
    ('mnist_then_fashion.py', ['--epochs', '1,1']),
])
def test_example_runs(script, argv, monkeypatch, capsys):
  monkeypatch.setattr(datasets, 'load_idx_dataset', small_mnist_like)
  monkeypatch.setattr(sys, 'argv', [script, *argv])
  runpy.run_path(str(EXAMPLES / script), run_name='__main__')
  out = capsys.readouterr().out
  for method in ('classp', 'ewc', 'sgd') if script != 'permuted_mnist.py' else (
      'classp', 'adam'):
    assert method in out
