"""Federated client data over a prepared cache: tf.data streams read from the `.npy` files on disk.

`open_federated_data(data_dir, cache_root=...)` accepts a prepared cache (a folder with
`manifest.json`) or a raw folder in the UCI / Kaggle layout, which it prepares once with the default
options (seed 0) into `cache_root/<name>-<key>`; the key hashes the absolute input path, the options and
every input file's size and mtime, so a changed input is prepared again and an unchanged one reused.

Clients: each device is one client, or with `shards_per_device=K > 1` the K contiguous parts of its
(chronological) training rows are clients `<device>/0` ... `<device>/<K-1>`. Each client's rows are
preprocessed with statistics of that client's own training rows (`preprocessing.py`); device-level
evaluation (`split_arrays`, `eval_dataset`) uses the device's statistics over all its training rows.

Datasets read rows with `tf.data.FixedLengthRecordDataset` (460-byte float32 records after the
128-byte `.npy` header), so they are pure TensorFlow graphs that TFF can serialise and that stream
from disk; nothing is embedded in the graph except the [115] statistics.

    train_dataset(client)  -> float32 [B, 115] batches, one seeded-shuffled pass, no batch of size 1
    client_data            -> tff.simulation.datasets.ClientData of float32 [115] training rows
    split_arrays(device, split) -> (x float32 [N, 115], labels int32 [N], kinds int32 [N])
    eval_dataset(device, split) -> (features float32 [115], label int32 [], attack_kind int32 [])
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import typing

import numpy as np
import tensorflow as tf

from tff_fcl.data import cache
from tff_fcl.data import prepare as prepare_lib
from tff_fcl.data import schema
from tff_fcl.data.errors import DataError
from tff_fcl.data import preprocessing
from tff_fcl.data.preprocessing import Standardizer

SHUFFLE_BUFFER = 1 << 17  # rows; a full shuffle for clients up to this size
_RECORD_BYTES = 4 * schema.NUM_FEATURES
_CHUNK = 65536


@dataclasses.dataclass(frozen=True)
class _Client:
  device: str
  start: int  # first training row of the device's train_x.npy
  count: int
  standardizer: Standardizer


def _rows_dataset(path, start, count) -> tf.data.Dataset:
  """Raw float32 rows [115] start .. start + count - 1 of a cache `.npy` file."""
  records = tf.data.FixedLengthRecordDataset(path, record_bytes=_RECORD_BYTES, header_bytes=cache.HEADER_BYTES)
  return records.skip(tf.cast(start, tf.int64)).take(tf.cast(count, tf.int64))


def _decode(records: tf.Tensor) -> tf.Tensor:
  return tf.io.decode_raw(records, tf.float32)


class FederatedData:
  """The clients, splits and datasets of one prepared cache."""

  def __init__(self, cache_dir: str, shards_per_device: int = 1):
    if shards_per_device < 1:
      raise DataError(f"shards_per_device must be >= 1. Found {shards_per_device}.")
    self.cache_dir = cache_dir
    self.manifest = cache.read_manifest(cache_dir)
    self.devices = list(self.manifest["devices"])
    self.shards_per_device = shards_per_device
    self._device_std = {}
    self._clients = {}
    for device in self.devices:
      train = cache.load_array(cache_dir, device, "train", "x")
      self._device_std[device] = Standardizer.fit(train)
      if shards_per_device == 1:
        self._clients[device] = _Client(device, 0, len(train), self._device_std[device])
        continue
      if len(train) < 2 * shards_per_device:
        raise DataError(f"{cache.array_path(cache_dir, device, 'train', 'x')}: device {device} has "
                        f"{len(train)} training rows, too few for {shards_per_device} shards of >= 2 rows")
      bounds = np.linspace(0, len(train), shards_per_device + 1).astype(int)
      for k in range(shards_per_device):
        start, stop = int(bounds[k]), int(bounds[k + 1])
        self._clients[f"{device}/{k}"] = _Client(device, start, stop - start,
                                                 Standardizer.fit(train[start:stop]))
    self.client_ids = list(self._clients)
    self._client_data = None

  def _client(self, client_id: str) -> _Client:
    if client_id not in self._clients:
      raise DataError(f"{self.cache_dir}: unknown client id {client_id!r}")
    return self._clients[client_id]

  def _check_device(self, device: str, split: str = "train") -> None:
    if device not in self._device_std:
      raise DataError(f"{self.cache_dir}: unknown device {device!r}")
    if split not in cache.SPLITS:
      raise DataError(f"split must be one of {', '.join(cache.SPLITS)}. Found {split!r}.")

  def device_of(self, client_id: str) -> str:
    return self._client(client_id).device

  def num_train_examples(self, client_id: str) -> int:
    return self._client(client_id).count

  def standardizer(self, client_id: str) -> Standardizer:
    """The client's preprocessing statistics (from its own training rows)."""
    return self._client(client_id).standardizer

  def device_standardizer(self, device: str) -> Standardizer:
    self._check_device(device)
    return self._device_std[device]

  def train_dataset(self, client_id: str, *, batch_size: int, shuffle_seed: int) -> tf.data.Dataset:
    """One pass over the client's training rows: shuffled (seeded), preprocessed [B, 115] batches."""
    client = self._client(client_id)
    path = cache.array_path(self.cache_dir, client.device, "train", "x")
    rows = _rows_dataset(path, client.start, client.count)
    rows = rows.shuffle(min(client.count, SHUFFLE_BUFFER), seed=shuffle_seed)
    return (rows.batch(batch_size).map(lambda r: client.standardizer.apply_tf(_decode(r)))
            .filter(lambda b: tf.shape(b)[0] >= 2))

  @property
  def client_data(self):
    """`tff.simulation.datasets.ClientData` of preprocessed float32 [115] training rows, file order."""
    if self._client_data is None:
      import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
      ids = tf.constant(self.client_ids)
      clients = [self._clients[c] for c in self.client_ids]
      paths = tf.constant([cache.array_path(self.cache_dir, c.device, "train", "x") for c in clients])
      starts = tf.constant([c.start for c in clients], tf.int64)
      counts = tf.constant([c.count for c in clients], tf.int64)
      means = tf.constant(np.stack([c.standardizer.mean for c in clients]))
      inv_stds = tf.constant(np.stack([c.standardizer.inv_std for c in clients]))

      def dataset_fn(client_id):
        index = tf.argmax(tf.cast(tf.equal(ids, client_id), tf.int32))
        mean, inv_std = means[index], inv_stds[index]
        return _rows_dataset(paths[index], starts[index], counts[index]).map(
            lambda r: (preprocessing.log_transform_tf(tf.reshape(_decode(r), [schema.NUM_FEATURES])) - mean) * inv_std)

      self._client_data = tff.simulation.datasets.ClientData.from_clients_and_tf_fn(self.client_ids, dataset_fn)
    return self._client_data

  def split_arrays(self, device: str, split: str) -> typing.Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x float32 [N, 115] preprocessed with the device's statistics, labels int32 [N], kinds int32 [N])."""
    self._check_device(device, split)
    raw = cache.load_array(self.cache_dir, device, split, "x")
    x = np.empty(raw.shape, np.float32)
    standardizer = self._device_std[device]
    for start in range(0, len(raw), _CHUNK):
      x[start:start + _CHUNK] = standardizer.apply(raw[start:start + _CHUNK])
    labels = np.array(cache.load_array(self.cache_dir, device, split, "labels"))
    kinds = np.array(cache.load_array(self.cache_dir, device, split, "kinds"))
    return x, labels, kinds

  def eval_dataset(self, device: str, split: str) -> tf.data.Dataset:
    """Per row (features float32 [115] with the device's preprocessing, label int32, attack_kind int32)."""
    self._check_device(device, split)
    n = int(cache.load_array(self.cache_dir, device, split, "labels").shape[0])
    standardizer = self._device_std[device]
    x = _rows_dataset(cache.array_path(self.cache_dir, device, split, "x"), 0, n).map(
        lambda r: standardizer.apply_tf(tf.reshape(_decode(r), [schema.NUM_FEATURES])))

    def ints(what):
      records = tf.data.FixedLengthRecordDataset(cache.array_path(self.cache_dir, device, split, what),
                                                 record_bytes=4, header_bytes=cache.HEADER_BYTES)
      return records.map(lambda r: tf.reshape(tf.io.decode_raw(r, tf.int32), []))

    return tf.data.Dataset.zip((x, ints("labels"), ints("kinds")))


def _input_key(data_dir: str, options: prepare_lib.PrepareOptions) -> str:
  listing = []
  for root, dirs, names in os.walk(data_dir):
    dirs.sort()
    for name in sorted(names):
      stat = os.stat(os.path.join(root, name))
      listing.append((os.path.relpath(os.path.join(root, name), data_dir), stat.st_size, stat.st_mtime_ns))
  text = json.dumps([os.path.abspath(data_dir), dataclasses.asdict(options), listing])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepared_cache_dir(data_dir: str, cache_root: str,
                       options: prepare_lib.PrepareOptions = prepare_lib.PrepareOptions()) -> str:
  """The cache folder that `open_federated_data` uses for the raw folder `data_dir`."""
  name = os.path.basename(os.path.abspath(data_dir)) or "data"
  return os.path.join(cache_root, f"{name}-{_input_key(data_dir, options)}")


def open_federated_data(data_dir: str, *, cache_root: str, shards_per_device: int = 1) -> FederatedData:
  """FederatedData of a prepared cache, or of a raw N-BaIoT-layout folder prepared on first use."""
  if not os.path.isdir(data_dir):
    raise DataError(f"{data_dir}: data folder does not exist")
  if os.path.exists(os.path.join(data_dir, cache.MANIFEST)):
    return FederatedData(data_dir, shards_per_device)
  cache_dir = prepared_cache_dir(data_dir, cache_root)
  if not os.path.exists(os.path.join(cache_dir, cache.MANIFEST)):
    shutil.rmtree(cache_dir, ignore_errors=True)
    logging.info("Preparing %s once into %s", data_dir, cache_dir)
    try:
      prepare_lib.prepare_nbaiot(data_dir, cache_dir)
    except OSError:
      if not os.path.exists(os.path.join(cache_dir, cache.MANIFEST)):  # not a concurrent run's result
        raise
  return FederatedData(cache_dir, shards_per_device)
