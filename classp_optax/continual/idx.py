"""The IDX file format that MNIST and Fashion-MNIST are distributed in.

A big-endian header (magic ``0x0000 08 NN``: unsigned bytes, ``NN``
dimensions), one uint32 per dimension, then the raw bytes. Files may be gzip
compressed. Every check runs before any array is returned, so a bad file stops
a run before training starts.
"""

import gzip
import os
import struct

import numpy as np

IMAGES_MAGIC = 2051  # uint8, 3 dimensions
LABELS_MAGIC = 2049  # uint8, 1 dimension


class IdxError(ValueError):
  """A missing, truncated or malformed IDX file."""


def _read_bytes(path) -> bytes:
  if not os.path.isfile(path):
    raise IdxError(f'IDX file not found: {path}')
  with open(path, 'rb') as f:
    raw = f.read()
  if raw[:2] == b'\x1f\x8b':
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise IdxError(f'{path}: corrupt gzip data ({e}).') from e
  return raw


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
  """Reads an unsigned-byte IDX file (raw or gzip) into a uint8 array.

  Raises:
    IdxError: if the file is missing, not IDX, of another magic number than
      ``expected_magic``, or shorter or longer than its header says.
  """
  raw = _read_bytes(path)
  if len(raw) < 4:
    raise IdxError(f'{path}: truncated, {len(raw)} bytes, no IDX header.')
  zero, dtype_code, ndim = struct.unpack('>HBB', raw[:4])
  magic = struct.unpack('>I', raw[:4])[0]
  if zero != 0 or dtype_code != 0x08 or ndim == 0:
    raise IdxError(
        f'{path}: not an unsigned-byte IDX file (magic {magic:#010x}).'
    )
  if expected_magic is not None and magic != expected_magic:
    raise IdxError(
        f'{path}: magic number {magic}, expected {expected_magic}.'
    )
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise IdxError(f'{path}: truncated inside its header.')
  shape = struct.unpack(f'>{ndim}I', raw[4:header])
  size = int(np.prod(shape))
  if len(raw) - header != size:
    raise IdxError(
        f'{path}: header says {shape} = {size} bytes of data, file has '
        f'{len(raw) - header}: truncated or corrupt.'
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write_idx(path, array: np.ndarray, compress: bool | None = None) -> None:
  """Writes a uint8 array as IDX; gzip when ``compress`` or the name ends .gz."""
  array = np.asarray(array)
  if array.dtype != np.uint8:
    raise ValueError(f'array must be uint8, got {array.dtype}.')
  header = struct.pack('>HBB', 0, 0x08, array.ndim)
  header += struct.pack(f'>{array.ndim}I', *array.shape)
  data = header + array.tobytes()
  if compress if compress is not None else str(path).endswith('.gz'):
    data = gzip.compress(data, mtime=0)
  with open(path, 'wb') as f:
    f.write(data)


def read_image_label_pair(images_path, labels_path, num_classes: int = 10):
  """Reads matching image and label files and checks that they agree.

  Returns:
    ``(images, labels)``: uint8 ``(n, rows, cols)`` and int32 ``(n,)``.

  Raises:
    IdxError: on any problem with either file, images and labels of
      different counts, or a label outside ``[0, num_classes)``.
  """
  images = read_idx(images_path, IMAGES_MAGIC)
  labels = read_idx(labels_path, LABELS_MAGIC)
  if len(images) != len(labels):
    raise IdxError(
        f'{images_path} has {len(images)} images but {labels_path} has '
        f'{len(labels)} labels.'
    )
  if labels.size and labels.max() >= num_classes:
    raise IdxError(
        f'{labels_path}: label {int(labels.max())} outside [0, {num_classes}).'
    )
  return images, labels.astype(np.int32)
