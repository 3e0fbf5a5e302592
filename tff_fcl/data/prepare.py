"""Raw N-BaIoT-layout CSV files -> the prepared cache (see `cache.py`), streamed in bounded memory.

Per device (the federated client), with N benign rows in file (time) order:

    n_val = floor(N * val_fraction), n_test = floor(N * test_fraction), n_train = N - n_val - n_test
    train = benign rows [0, n_train), val = [n_train, n_train + n_val), test = the last n_test rows

(chronological: the model is evaluated on later traffic than it trained on). Every attack row goes to
the device's test split; `max_attack_rows_per_kind` > 0 keeps a seeded uniform sample of at most that
many rows per (device, kind), in file order. With `attack_pool_dir`, the pool's rows (any folder
structure) are shuffled with the seed and dealt out in disjoint slices to the devices in sorted order,
`attack_pool_rows_per_device` each (0: as many as the device's benign test rows); if the pool is too
small every request is scaled down by the same factor.

Memory: one CSV chunk (`chunk_rows` rows) plus, with a pool, a permutation of the pool's row indices.
Everything is written to `<output_dir>.tmp-<pid>` and renamed at the end, so a failed run leaves no
half-written cache.
"""

import dataclasses
import logging
import math
import os
import shutil
import time
import typing
import zlib

import numpy as np

from tff_fcl.data import cache
from tff_fcl.data import csv_reader
from tff_fcl.data import layouts
from tff_fcl.data import schema
from tff_fcl.data.errors import DataError

_COPY_ROWS = 65536


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  val_fraction: float = 0.2
  test_fraction: float = 0.2
  max_attack_rows_per_kind: int = 0  # 0: keep every attack row
  attack_pool_dir: typing.Optional[str] = None
  attack_pool_rows_per_device: int = 0  # 0: the device's number of benign test rows
  on_bad_rows: str = "fail"
  seed: int = 0
  chunk_rows: int = 65536

  def validate(self) -> None:
    for name in ("val_fraction", "test_fraction"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise DataError(f"{name} must be in [0, 1). Found {value}.")
    if self.val_fraction + self.test_fraction >= 1.0:
      raise DataError(f"val_fraction + test_fraction must be below 1 to leave training rows. "
                      f"Found {self.val_fraction} + {self.test_fraction}.")
    for name in ("max_attack_rows_per_kind", "attack_pool_rows_per_device"):
      if getattr(self, name) < 0:
        raise DataError(f"{name} must be >= 0 (0 = default). Found {getattr(self, name)}.")
    if self.on_bad_rows not in csv_reader.ON_BAD_ROWS:
      raise DataError(f"on_bad_rows must be one of {', '.join(csv_reader.ON_BAD_ROWS)}. "
                      f"Found {self.on_bad_rows!r}.")
    if self.chunk_rows < 1:
      raise DataError(f"chunk_rows must be positive. Found {self.chunk_rows}.")


def split_sizes(num_rows: int, val_fraction: float, test_fraction: float) -> typing.Tuple[int, int, int]:
  """(n_train, n_val, n_test) of the chronological split of `num_rows` benign rows."""
  n_val = math.floor(num_rows * val_fraction)
  n_test = math.floor(num_rows * test_fraction)
  return num_rows - n_val - n_test, n_val, n_test


def _rng(seed: int, *keys: str) -> np.random.Generator:
  return np.random.default_rng([seed] + [zlib.crc32(key.encode()) for key in keys])


def _copy_rows(array: np.ndarray, rows: np.ndarray, append) -> None:
  """Calls append(array[rows chunk]) over `rows` (sorted indices or a slice range) in chunks."""
  for start in range(0, len(rows), _COPY_ROWS):
    append(np.asarray(array[rows[start:start + _COPY_ROWS]]))


class _Preparer:
  """One prepare run into a temporary folder."""

  def __init__(self, input_dir: str, work_dir: str, options: PrepareOptions):
    self.input_dir = input_dir
    self.work_dir = work_dir
    self.options = options
    self.sources = []

  def _stream(self, source: layouts.SourceFile, writer_append, root: str) -> int:
    stats = csv_reader.ReadStats()
    for chunk in csv_reader.read_chunks(source, chunk_rows=self.options.chunk_rows,
                                        on_bad_rows=self.options.on_bad_rows, stats=stats):
      writer_append(chunk)
    sha256, size = cache.record_source(source.path)
    self.sources.append(dict(
        path=os.path.relpath(source.path, root), member=source.member, sha256=sha256, bytes=size,
        device=source.device, kind=source.kind, label=source.label, rows=stats.rows,
        dropped_rows=stats.dropped_rows))
    if stats.dropped_rows:
      logging.warning("%s: dropped %d bad rows", source.name, stats.dropped_rows)
    return stats.rows

  def _to_temp(self, source: layouts.SourceFile, root: str) -> str:
    path = os.path.join(self.work_dir, "_temp.npy")
    writer = cache.NpyWriter(path, np.float32, (schema.NUM_FEATURES,))
    try:
      self._stream(source, writer.append, root)
    finally:
      writer.close()
    return path

  def device(self, device: str, files: list, kinds: list) -> typing.Tuple[dict, cache.SplitWriter]:
    """Writes the device's train / val and the first part of test; returns (sizes, open test writer)."""
    benign, attacks = files[0], files[1:]
    temp = self._to_temp(benign, self.input_dir)
    rows = np.load(temp, mmap_mode="r")
    n_train, n_val, n_test = split_sizes(len(rows), self.options.val_fraction, self.options.test_fraction)
    if n_train < 2:
      raise DataError(f"{benign.name}: device {device} has {len(rows)} benign rows, too few for a "
                      f"training split of at least 2 rows")
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(rows))}
    writers = {split: cache.SplitWriter(self.work_dir, device, split) for split in cache.SPLITS}
    for split, (start, stop) in bounds.items():
      _copy_rows(rows, np.arange(start, stop), lambda x, w=writers[split]: w.append(x, 0, 0))
    del rows
    os.remove(temp)
    writers["train"].close()
    writers["val"].close()
    attack_rows = {}
    cap = self.options.max_attack_rows_per_kind
    test = writers["test"]
    for source in attacks:
      kind_index = kinds.index(source.kind)
      if not cap:
        attack_rows[source.kind] = self._stream(
            source, lambda x, k=kind_index: test.append(x, 1, k), self.input_dir)
        continue
      temp = self._to_temp(source, self.input_dir)
      rows = np.load(temp, mmap_mode="r")
      keep = np.arange(len(rows))
      if len(rows) > cap:
        keep = np.sort(_rng(self.options.seed, device, source.kind).choice(len(rows), cap, replace=False))
      _copy_rows(rows, keep, lambda x, k=kind_index: test.append(x, 1, k))
      attack_rows[source.kind] = len(keep)
      del rows
      os.remove(temp)
    sizes = dict(benign_rows=n_train + n_val + n_test, train=n_train, val=n_val, test_benign=n_test,
                 attack_rows=attack_rows)
    return sizes, test

  def pool(self, pool_files: list, kinds: list, pool_dir: str):
    """Streams the pool into temporary files; returns (rows memmap, kinds memmap)."""
    x_path = os.path.join(self.work_dir, "_pool_x.npy")
    k_path = os.path.join(self.work_dir, "_pool_kinds.npy")
    x_writer = cache.NpyWriter(x_path, np.float32, (schema.NUM_FEATURES,))
    k_writer = cache.NpyWriter(k_path, np.int32)
    try:
      for source in pool_files:
        kind_index = kinds.index(source.kind)
        def append(x, k=kind_index):
          x_writer.append(x)
          k_writer.append(np.full(len(x), k, np.int32))
        self._stream(source, append, pool_dir)
    finally:
      x_writer.close()
      k_writer.close()
    return np.load(x_path, mmap_mode="r"), np.load(k_path, mmap_mode="r")


def deal_pool(pool_rows: int, requests: typing.Sequence[int], seed: int) -> list:
  """Disjoint sorted index arrays into a pool of `pool_rows` rows, one per request, seeded.

  The pool is permuted with `seed` and cut into consecutive slices of the requested sizes; if the
  requests exceed the pool, each is scaled by pool_rows / sum(requests) (rounded down).
  """
  total = sum(requests)
  if total > pool_rows:
    logging.warning("The attack pool has %d rows, %d requested: scaling every device's share by %.3f",
                    pool_rows, total, pool_rows / total)
    requests = [math.floor(r * pool_rows / total) for r in requests]
  order = _rng(seed, "attack_pool").permutation(pool_rows)
  dealt, start = [], 0
  for request in requests:
    dealt.append(np.sort(order[start:start + request]))
    start += request
  return dealt


def _group_by_device(sources: list, input_dir: str) -> dict:
  by_device = {}
  for source in sources:
    by_device.setdefault(source.device, []).append(source)
  for device, files in sorted(by_device.items()):
    if files[0].kind != layouts.BENIGN:
      raise DataError(f"{os.path.join(input_dir, device)}: device {device} has attack files "
                      f"({files[0].name}, ...) but no benign traffic (no benign_traffic.csv); add its "
                      f"benign file or remove the device")
  return by_device


def _check_output_dir(output_dir: str) -> None:
  if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
    raise DataError(f"{output_dir}: output folder exists and is not empty; choose a new folder")


def prepare_nbaiot(input_dir: str, output_dir: str, options: PrepareOptions = PrepareOptions()) -> dict:
  """Prepares `input_dir` (UCI / Kaggle layout) into the cache `output_dir`; returns the manifest."""
  started = time.time()
  options.validate()
  _check_output_dir(output_dir)
  sources = layouts.discover(input_dir)
  by_device = _group_by_device(sources, input_dir)
  pool_files = layouts.discover_pool(options.attack_pool_dir) if options.attack_pool_dir else []
  kinds = [layouts.BENIGN] + sorted({s.kind for s in sources + pool_files if s.kind != layouts.BENIGN})
  parent = os.path.dirname(os.path.abspath(output_dir))
  os.makedirs(parent, exist_ok=True)
  work_dir = f"{os.path.abspath(output_dir)}.tmp-{os.getpid()}"
  shutil.rmtree(work_dir, ignore_errors=True)
  os.makedirs(work_dir)
  try:
    preparer = _Preparer(input_dir, work_dir, options)
    pool_x = pool_kinds = None
    if pool_files:
      pool_x, pool_kinds = preparer.pool(pool_files, kinds, options.attack_pool_dir)
    splits, test_writers = {}, {}
    for device in sorted(by_device):
      splits[device], test_writers[device] = preparer.device(device, by_device[device], kinds)
    if pool_files:
      requests = [options.attack_pool_rows_per_device or splits[d]["test_benign"] for d in sorted(splits)]
      for device, rows in zip(sorted(splits), deal_pool(len(pool_x), requests, options.seed)):
        def append(x, r, w=test_writers[device]):
          w.x.append(x)
          w.labels.append(np.ones(len(x), np.int32))
          w.kinds.append(r)
        for start in range(0, len(rows), _COPY_ROWS):
          chunk = rows[start:start + _COPY_ROWS]
          append(np.asarray(pool_x[chunk]), np.asarray(pool_kinds[chunk]))
        splits[device]["pool_rows"] = int(len(rows))
      del pool_x, pool_kinds
      os.remove(os.path.join(work_dir, "_pool_x.npy"))
      os.remove(os.path.join(work_dir, "_pool_kinds.npy"))
    for device, writer in test_writers.items():
      splits[device]["test"] = writer.close()
    manifest = dict(
        format_version=cache.FORMAT_VERSION,
        input_dir=os.path.abspath(input_dir),
        devices=sorted(splits),
        kinds=kinds,
        feature_names=list(schema.FEATURE_NAMES),
        splits=splits,
        sources=[s for s in preparer.sources if s["device"] != "pool"],
        pool_sources=[s for s in preparer.sources if s["device"] == "pool"],
        options=dataclasses.asdict(options),
        total_rows=sum(s["rows"] for s in preparer.sources),
        seconds=round(time.time() - started, 3),
    )
    cache.write_manifest(work_dir, manifest)
    if os.path.isdir(output_dir):
      os.rmdir(output_dir)  # empty, checked above
    os.rename(work_dir, output_dir)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  return manifest
