"""The prepared cache: per device and split, memory-mappable `.npy` files plus `manifest.json`.

    CACHE/manifest.json
    CACHE/<device>/<split>_x.npy        float32 [n, 115], raw features (not preprocessed), time order
    CACHE/<device>/<split>_labels.npy   int32 [n], 0 benign / 1 attack
    CACHE/<device>/<split>_kinds.npy    int32 [n], index into manifest["kinds"] (0 = "benign")

for split in train / val / test. train and val hold benign rows only; test holds the device's benign
test rows first, then its attack rows (grouped by kind, each kind in file order). Every `.npy` file has
a fixed 128-byte header (`HEADER_BYTES`), so TensorFlow reads rows straight from disk with
`tf.data.FixedLengthRecordDataset(path, record_bytes=460, header_bytes=128)` and numpy memory-maps it.

Files are written incrementally by `NpyWriter` (header placeholder, raw rows appended, header
rewritten with the final row count on close), so a split of any size needs one chunk of memory.
`manifest.json` lists the devices, kinds, feature order, split sizes, every source file (sha256, rows,
dropped rows, device, label, kind) and the options used; `FORMAT_VERSION` guards against old caches.
"""

import hashlib
import json
import os
import typing

import numpy as np

from tff_fcl.data import schema
from tff_fcl.data.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"


def _header(dtype: np.dtype, shape: tuple) -> bytes:
  text = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': {shape!r}, }}"
  body_len = HEADER_BYTES - len(_MAGIC) - 2
  body = text.ljust(body_len - 1) + "\n"
  return _MAGIC + body_len.to_bytes(2, "little") + body.encode("latin1")


class NpyWriter:
  """Appends rows of a fixed dtype and row shape to a `.npy` file whose length is unknown up front."""

  def __init__(self, path: str, dtype, row_shape: tuple = ()):
    self.path = path
    self.dtype = np.dtype(dtype)
    self.row_shape = tuple(row_shape)
    self.rows = 0
    self._file = open(path, "wb")
    self._file.write(_header(self.dtype, (0,) + self.row_shape))

  def append(self, values: np.ndarray) -> None:
    values = np.ascontiguousarray(values, dtype=self.dtype)
    if values.shape[1:] != self.row_shape:
      raise ValueError(f"{self.path}: rows of shape {values.shape[1:]}, expected {self.row_shape}")
    self._file.write(values.tobytes())
    self.rows += len(values)

  def close(self) -> None:
    self._file.seek(0)
    self._file.write(_header(self.dtype, (self.rows,) + self.row_shape))
    self._file.close()


def array_path(cache_dir: str, device: str, split: str, what: str) -> str:
  return os.path.join(cache_dir, device, f"{split}_{what}.npy")


class SplitWriter:
  """The three files (x, labels, kinds) of one device's split."""

  def __init__(self, cache_dir: str, device: str, split: str):
    os.makedirs(os.path.join(cache_dir, device), exist_ok=True)
    self.x = NpyWriter(array_path(cache_dir, device, split, "x"), np.float32, (schema.NUM_FEATURES,))
    self.labels = NpyWriter(array_path(cache_dir, device, split, "labels"), np.int32)
    self.kinds = NpyWriter(array_path(cache_dir, device, split, "kinds"), np.int32)

  def append(self, x: np.ndarray, label: int, kind: int) -> None:
    self.x.append(x)
    self.labels.append(np.full(len(x), label, np.int32))
    self.kinds.append(np.full(len(x), kind, np.int32))

  def close(self) -> int:
    for writer in (self.x, self.labels, self.kinds):
      writer.close()
    return self.x.rows


def write_manifest(cache_dir: str, manifest: dict) -> None:
  with open(os.path.join(cache_dir, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)


def read_manifest(cache_dir: str) -> dict:
  path = os.path.join(cache_dir, MANIFEST)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as error:
    raise DataError(f"{path}: cannot read the cache manifest ({error})") from None
  if manifest.get("format_version") != FORMAT_VERSION:
    raise DataError(f"{path}: cache format version {manifest.get('format_version')!r}, this code reads "
                    f"version {FORMAT_VERSION}; prepare the data again")
  if tuple(manifest.get("feature_names", ())) != schema.FEATURE_NAMES:
    raise DataError(f"{path}: the cache's feature_names are not the 115 N-BaIoT columns in order")
  return manifest


def load_array(cache_dir: str, device: str, split: str, what: str) -> np.ndarray:
  """The memory-mapped array (read-only)."""
  path = array_path(cache_dir, device, split, what)
  try:
    return np.load(path, mmap_mode="r")
  except (OSError, ValueError) as error:
    raise DataError(f"{path}: cannot read the cache file ({error})") from None


def record_source(path: str) -> typing.Tuple[str, int]:
  """(sha256 hex, size in bytes) of a file on disk."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest(), os.path.getsize(path)
