"""Image-classification datasets: scikit-learn's digits, MNIST, Fashion-MNIST.

Images come back as float32 ``(n, height, width, 1)`` in ``[0, 1]``, labels as
int32. MNIST-style data is read from IDX files in a directory given as an
argument or by the ``CLASSP_DATA_DIR`` environment variable; a user with
internet access may opt in to :func:`download`, which checks each file's
sha256.
"""

import dataclasses
import hashlib
import os
import pathlib
import shutil
import tempfile
import urllib.request

import numpy as np

from classp_optax.continual import idx

DATA_DIR_ENV = 'CLASSP_DATA_DIR'

IDX_FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}

# The files as the public mirrors serve them (gzip), with their sha256.
MIRRORS = {
    'mnist': {
        'url': 'https://storage.googleapis.com/cvdf-datasets/mnist/',
        'sha256': {
            'train_images': '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
            'train_labels': '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
            'test_images': '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
            'test_labels': 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
        },
    },
    'fashion-mnist': {
        'url': 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
        'sha256': {
            'train_images': '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
            'train_labels': 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
            'test_images': '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
            'test_labels': '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
        },
    },
}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A labelled train/test split of images."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int = 10

  def __post_init__(self):
    if isinstance(self.num_classes, bool) or not (
        isinstance(self.num_classes, int) and self.num_classes >= 1):
      raise ValueError(f'{self.name}: num_classes must be an integer >= 1, '
                       f'got {self.num_classes!r}.')
    for split in ('train', 'test'):
      _check_split(self, split)
    if self.x_train.shape[1:] != self.x_test.shape[1:]:
      raise ValueError(
          f'{self.name}: x_train holds inputs of shape {self.x_train.shape[1:]}'
          f' but x_test of shape {self.x_test.shape[1:]}.')

  @classmethod
  def from_arrays(cls, x_train, y_train, x_test, y_test, *, name: str = 'data',
                  num_classes: int | None = None) -> 'Dataset':
    """A classification dataset of your own arrays: inputs ``(n, ...)`` of
    any real dtype (kept as float32; images ``(n, height, width)`` gain a
    channel axis), integer labels in ``[0, num_classes)``; ``num_classes`` defaults to the
    largest label plus one. ValueError, naming the array, otherwise."""
    x_train, x_test = (_inputs(x, f'x_{s}') for x, s in ((x_train, 'train'),
                                                         (x_test, 'test')))
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    check_labels(y_train, 'y_train')
    check_labels(y_test, 'y_test')
    if num_classes is None and y_train.size:
      num_classes = int(max(np.max(y_train), np.max(y_test, initial=0))) + 1
    return cls(name, x_train, y_train, x_test, y_test, num_classes or 1)


def _inputs(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
    raise ValueError(f'{name} must be real inputs of shape (examples, ...), '
                     f'got dtype {x.dtype} and shape {x.shape}.')
  return x.astype(np.float32)[..., None] if x.ndim == 3 else x.astype(
      np.float32)


def check_labels(y, name: str) -> None:
  """ValueError unless ``y`` holds integer class labels, one per example."""
  y = np.asarray(y)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(
        f'{name} must hold integer labels, one per example (shape (n,)), got '
        f'dtype {y.dtype} and shape {y.shape}; whole numbers stored as '
        'floats become labels with y.astype(np.int32).')


def _check_split(data: 'Dataset', split: str) -> None:
  """ValueError unless ``split``'s inputs and labels agree and integer
  labels lie in ``[0, num_classes)`` (other targets are a custom loss's)."""
  x, y = getattr(data, f'x_{split}'), getattr(data, f'y_{split}')
  if len(x) != len(y):
    raise ValueError(f'{data.name}: {len(x)} {split} images but {len(y)} '
                     'labels.')
  y = np.asarray(y)
  if not np.issubdtype(y.dtype, np.integer):
    return  # targets of a loss of the user's own (regression); see below
  if y.size and not 0 <= y.min() <= y.max() < data.num_classes:
    raise ValueError(
        f'{data.name}: y_{split} holds labels in [{y.min()}, {y.max()}] but '
        f'they must lie in [0, {data.num_classes}): set num_classes to the '
        'number of classes, or map the labels to 0..num_classes-1.')


NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def load_npz(path) -> Dataset:
  """Your own data from an ``.npz`` file holding :data:`NPZ_KEYS` (as
  ``np.savez(path, x_train=..., ...)`` writes), checked as
  :meth:`Dataset.from_arrays` checks; named after the file."""
  path = pathlib.Path(path)
  try:
    arrays = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as error:
    raise ValueError(f'{path} is not an .npz file: {error}') from error
  with arrays:
    missing = [key for key in NPZ_KEYS if key not in arrays.files]
    if missing:
      raise ValueError(f'{path} lacks {", ".join(map(repr, missing))}: an '
                       f'.npz dataset holds {", ".join(NPZ_KEYS)}.')
    return Dataset.from_arrays(*(arrays[key] for key in NPZ_KEYS),
                               name=path.stem)


def standardize(dataset: Dataset) -> Dataset:
  """Pixels shifted and scaled by the training split's mean and std.

  As PyTorch's usual MNIST pipeline does (``Normalize((0.1307,), (0.3081,))``);
  the statistics come from the training images only.
  """
  mean, std = dataset.x_train.mean(), dataset.x_train.std()
  return dataclasses.replace(
      dataset,
      x_train=((dataset.x_train - mean) / std).astype(np.float32),
      x_test=((dataset.x_test - mean) / std).astype(np.float32),
  )


def pad(dataset: Dataset, pixels: int) -> Dataset:
  """Images (``N x H x W x C``) framed by ``pixels`` zeros on every side
  (MNIST's 28x28 become 32x32 with ``pixels=2``, as in van de Ven &
  Tolias's permuted MNIST)."""
  if pixels < 0:
    raise ValueError(f'pixels must be >= 0, got {pixels}.')
  frame = ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0))
  return dataclasses.replace(
      dataset, x_train=np.pad(dataset.x_train, frame),
      x_test=np.pad(dataset.x_test, frame))


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
  """scikit-learn's 1,797 8x8 digits, split train/test stratified by class.

  They ship inside scikit-learn: no download, no data directory.
  """
  from sklearn import datasets as sk_datasets  # noqa: PLC0415
  from sklearn import model_selection  # noqa: PLC0415

  digits = sk_datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, labels, test_size=test_fraction, random_state=seed,
      stratify=labels,
  )
  return Dataset('digits', x_train, y_train, x_test, y_test)


def resolve_data_dir(data_dir=None) -> pathlib.Path:
  """``data_dir``, else ``$CLASSP_DATA_DIR``; a clear error if neither."""
  data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
  if not data_dir:
    raise ValueError(
        f'data_dir is needed for this dataset: pass --data-dir or set '
        f'{DATA_DIR_ENV} to a folder holding mnist/ and fashion-mnist/.'
    )
  return pathlib.Path(data_dir).expanduser()


def _find_file(folder: pathlib.Path, stem: str) -> pathlib.Path:
  for candidate in (folder / f'{stem}.gz', folder / stem):
    if candidate.is_file():
      return candidate
  raise idx.IdxError(f'{folder}: no {stem}.gz or {stem} found.')


def load_idx_dataset(name: str, data_dir=None) -> Dataset:
  """MNIST-style data from ``<data_dir>/<name>/`` (or ``data_dir`` itself).

  Args:
    name: ``'mnist'`` or ``'fashion-mnist'``.
    data_dir: the folder; defaults to ``$CLASSP_DATA_DIR``.

  Raises:
    ValueError: no data directory. IdxError: a missing, truncated or corrupt
      file, or images and labels that disagree.
  """
  root = resolve_data_dir(data_dir)
  folder = root / name if (root / name).is_dir() else root
  arrays = {}
  for split in ('train', 'test'):
    images, labels = idx.read_image_label_pair(
        _find_file(folder, IDX_FILES[f'{split}_images']),
        _find_file(folder, IDX_FILES[f'{split}_labels']),
    )
    # One pass, one new array: the first touch of fresh memory is what a
    # conversion of all of MNIST costs (2 s for two passes on a 2-core VM).
    arrays[f'x_{split}'] = np.divide(images, np.float32(255.0),
                                     dtype=np.float32)[..., None]
    arrays[f'y_{split}'] = labels
  return Dataset(name, **arrays)


def sha256_of(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def download(name: str, data_dir=None, base_url: str | None = None) -> pathlib.Path:
  """Downloads a dataset's four IDX files into ``<data_dir>/<name>/``.

  Each file is written under a temporary name, checked against its sha256,
  and only then moved into place; files already present with the right hash
  are kept.

  Args:
    name: a key of :data:`MIRRORS`.
    data_dir: where to put it; defaults to ``$CLASSP_DATA_DIR``.
    base_url: another mirror serving the same files.

  Returns:
    The dataset's folder.

  Raises:
    ValueError: an unknown name, or a file whose sha256 does not match.
  """
  if name not in MIRRORS:
    raise ValueError(f'name must be one of {sorted(MIRRORS)}, got {name!r}.')
  mirror = MIRRORS[name]
  folder = resolve_data_dir(data_dir) / name
  folder.mkdir(parents=True, exist_ok=True)
  for key, stem in IDX_FILES.items():
    target = folder / f'{stem}.gz'
    expected = mirror['sha256'][key]
    if target.is_file() and sha256_of(target) == expected:
      continue
    url = (base_url or mirror['url']) + f'{stem}.gz'
    fd, tmp = tempfile.mkstemp(dir=folder)
    try:
      with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(
          url, timeout=60) as response:
        shutil.copyfileobj(response, f)
      if sha256_of(tmp) != expected:
        raise ValueError(f'{url}: sha256 mismatch, expected {expected}.')
    except BaseException:  # a failed or interrupted download leaves nothing
      os.unlink(tmp)
      raise
    os.replace(tmp, target)
  return folder
