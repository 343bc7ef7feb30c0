"""IDX reading with validation, dataset loading, and the sha256-checked download."""

import functools
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from classp_optax.continual import datasets
from classp_optax.continual import idx


def write_fake_dataset(folder, n_train=12, n_test=5, compress=True):
  """Writes the four MNIST-style IDX files; returns the arrays written."""
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  arrays = {
      'train_images': rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
      'train_labels': rng.integers(0, 10, n_train, dtype=np.uint8),
      'test_images': rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
      'test_labels': rng.integers(0, 10, n_test, dtype=np.uint8),
  }
  suffix = '.gz' if compress else ''
  for key, array in arrays.items():
    idx.write_idx(folder / f'{datasets.IDX_FILES[key]}{suffix}', array)
  return arrays


@pytest.mark.parametrize('name', ['x.idx', 'x.idx.gz'])
def test_roundtrip(tmp_path, name):
  array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  idx.write_idx(tmp_path / name, array)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / name, 2051), array)
  raw = (tmp_path / name).read_bytes()
  if name.endswith('.gz'):
    raw = gzip.decompress(raw)
  assert raw[:4] == b'\x00\x00\x08\x03'
  assert raw[4:8] == (2).to_bytes(4, 'big')


def test_missing_file(tmp_path):
  with pytest.raises(idx.IdxError, match='not found'):
    idx.read_idx(tmp_path / 'nope')


def test_truncated_and_oversized_files(tmp_path):
  idx.write_idx(tmp_path / 'a', np.zeros((10, 2, 2), np.uint8))
  raw = (tmp_path / 'a').read_bytes()
  (tmp_path / 'short').write_bytes(raw[:-3])
  with pytest.raises(idx.IdxError, match='truncated or corrupt'):
    idx.read_idx(tmp_path / 'short')
  (tmp_path / 'long').write_bytes(raw + b'\x00')
  with pytest.raises(idx.IdxError, match='truncated or corrupt'):
    idx.read_idx(tmp_path / 'long')
  (tmp_path / 'header').write_bytes(raw[:6])
  with pytest.raises(idx.IdxError, match='inside its header'):
    idx.read_idx(tmp_path / 'header')


def test_wrong_magic_and_corrupt_gzip(tmp_path):
  idx.write_idx(tmp_path / 'labels', np.zeros(4, np.uint8))
  with pytest.raises(idx.IdxError, match='magic number 2049, expected 2051'):
    idx.read_idx(tmp_path / 'labels', idx.IMAGES_MAGIC)
  (tmp_path / 'text').write_bytes(b'hello world')
  with pytest.raises(idx.IdxError, match='not an unsigned-byte IDX'):
    idx.read_idx(tmp_path / 'text')
  good = gzip.compress(b'\x00\x00\x08\x01' + bytes(8))
  (tmp_path / 'bad.gz').write_bytes(good[:-6])
  with pytest.raises(idx.IdxError, match='corrupt gzip'):
    idx.read_idx(tmp_path / 'bad.gz')


def test_pair_checks_counts_and_label_range(tmp_path):
  idx.write_idx(tmp_path / 'i', np.zeros((3, 2, 2), np.uint8))
  idx.write_idx(tmp_path / 'l', np.zeros(4, np.uint8))
  with pytest.raises(idx.IdxError, match='3 images but .* 4 labels'):
    idx.read_image_label_pair(tmp_path / 'i', tmp_path / 'l')
  idx.write_idx(tmp_path / 'l', np.array([0, 1, 10], np.uint8))
  with pytest.raises(idx.IdxError, match=r'label 10 outside \[0, 10\)'):
    idx.read_image_label_pair(tmp_path / 'i', tmp_path / 'l')


@pytest.mark.parametrize('compress', [True, False])
def test_load_idx_dataset_from_dir_or_env(tmp_path, monkeypatch, compress):
  arrays = write_fake_dataset(tmp_path / 'mnist', compress=compress)
  ds = datasets.load_idx_dataset('mnist', tmp_path)
  assert ds.x_train.shape == (12, 4, 3, 1) and ds.x_train.dtype == np.float32
  np.testing.assert_allclose(ds.x_train[..., 0] * 255, arrays['train_images'])
  np.testing.assert_array_equal(ds.y_test, arrays['test_labels'])
  monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / 'mnist'))
  np.testing.assert_array_equal(datasets.load_idx_dataset('mnist').y_train,
                                arrays['train_labels'])


def test_no_data_dir_is_a_clear_error(monkeypatch):
  monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
  with pytest.raises(ValueError, match='--data-dir or set CLASSP_DATA_DIR'):
    datasets.load_idx_dataset('mnist')


def test_digits_is_the_embedded_default():
  ds = datasets.load_digits()
  assert ds.x_train.shape[1:] == (8, 8, 1)
  assert len(ds.y_train) + len(ds.y_test) == 1797
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  assert set(np.unique(ds.y_test)) == set(range(10))


@pytest.fixture
def local_mirror(tmp_path):
  """Serves a folder over HTTP on loopback, as a mirror would."""
  served = tmp_path / 'served'
  write_fake_dataset(served)
  handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                              directory=str(served))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield served, f'http://127.0.0.1:{server.server_address[1]}/'
  server.shutdown()
  server.server_close()


def test_download_checks_sha256(tmp_path, local_mirror, monkeypatch):
  served, url = local_mirror
  sums = {key: hashlib.sha256(
      (served / f'{stem}.gz').read_bytes()).hexdigest()
          for key, stem in datasets.IDX_FILES.items()}
  monkeypatch.setitem(datasets.MIRRORS, 'mnist', {'url': url, 'sha256': sums})
  folder = datasets.download('mnist', tmp_path / 'data')
  assert datasets.load_idx_dataset('mnist', tmp_path / 'data').x_train.shape[0] == 12
  assert sorted(p.name for p in folder.iterdir()) == sorted(
      f'{s}.gz' for s in datasets.IDX_FILES.values())

  bad = dict(sums, test_labels='0' * 64)
  monkeypatch.setitem(datasets.MIRRORS, 'mnist', {'url': url, 'sha256': bad})
  (folder / 't10k-labels-idx1-ubyte.gz').unlink()
  with pytest.raises(ValueError, match='sha256 mismatch'):
    datasets.download('mnist', tmp_path / 'data')
  assert not (folder / 't10k-labels-idx1-ubyte.gz').exists()
  assert len(list(folder.iterdir())) == 3  # no temporary file left behind

  (served / 't10k-labels-idx1-ubyte.gz').unlink()  # the mirror now fails
  monkeypatch.setitem(datasets.MIRRORS, 'mnist', {'url': url, 'sha256': sums})
  with pytest.raises(OSError):
    datasets.download('mnist', tmp_path / 'data')
  assert len(list(folder.iterdir())) == 3  # nor after a failed request


def test_mirror_table_covers_every_file():
  for mirror in datasets.MIRRORS.values():
    assert set(mirror['sha256']) == set(datasets.IDX_FILES)
    assert all(len(h) == 64 for h in mirror['sha256'].values())
