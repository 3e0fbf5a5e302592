"""FederatedData: per-client preprocessing, datasets, ClientData, sharding and prepare-on-first-use."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.fixtures.nbaiot import fixture_layouts
from tff_fcl import data as data_lib
from tff_fcl.data import cache
from tff_fcl.data import preprocessing

ENNIO = "Ennio_Doorbell"


@pytest.fixture(scope="module")
def raw_and_cache(tmp_path_factory):
  root = tmp_path_factory.mktemp("fd")
  raw = fixture_layouts.uci_layout(root / "raw")
  data_lib.prepare_nbaiot(raw, str(root / "cache"))
  return raw, str(root / "cache")


def raw_train(cache_dir, device):
  return np.array(cache.load_array(cache_dir, device, "train", "x"))


def numpy_preprocess(rows, fit_rows):
  """Reference: signed log1p on the heavy-tailed columns, z-score with fit_rows' mean/std (float64)."""
  def log(x):
    x = x.astype(np.float64)
    return np.where(preprocessing.LOG_MASK, np.sign(x) * np.log1p(np.abs(x)), x)
  mean, std = log(fit_rows).mean(axis=0), log(fit_rows).std(axis=0)
  return np.where(std < 1e-6, 0.0, (log(rows) - mean) / np.where(std < 1e-6, 1.0, std))


def test_log_transform_columns():
  x = np.zeros((1, 115), np.float32)
  names = list(data_lib.schema.FEATURE_NAMES)
  for name, value in (("HH_L1_weight", 9.0), ("HH_L1_covariance", -9.0), ("HH_L1_mean", 9.0), ("HH_L1_pcc", -0.5)):
    x[0, names.index(name)] = value
  t = data_lib.log_transform(x)[0]
  assert t[names.index("HH_L1_weight")] == pytest.approx(np.log(10.0))
  assert t[names.index("HH_L1_covariance")] == pytest.approx(-np.log(10.0))
  assert t[names.index("HH_L1_mean")] == pytest.approx(np.log(10.0))
  assert t[names.index("HH_L1_pcc")] == -0.5, "pcc is bounded: no log"


def test_split_arrays_use_the_devices_own_training_statistics(raw_and_cache):
  _, cache_dir = raw_and_cache
  data = data_lib.FederatedData(cache_dir)
  train = raw_train(cache_dir, ENNIO)
  for split, n in (("train", 180), ("val", 60), ("test", 460)):
    x, labels, kinds = data.split_arrays(ENNIO, split)
    assert x.dtype == np.float32 and x.shape == (n, 115) and labels.dtype == np.int32 and kinds.dtype == np.int32
    raw = np.array(cache.load_array(cache_dir, ENNIO, split, "x"))
    np.testing.assert_allclose(x, numpy_preprocess(raw, train), rtol=1e-4, atol=1e-4)
  x, labels, kinds = data.split_arrays(ENNIO, "test")
  assert labels.sum() == 400 and list(np.bincount(kinds)) == [60, 200, 200]
  assert data.manifest["kinds"] == ["benign", "gafgyt/tcp", "gafgyt/udp"]
  x, _, _ = data.split_arrays(ENNIO, "train")
  np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-3)


def test_constant_columns_map_to_zero():
  rows = np.random.default_rng(0).normal(size=(50, 115)).astype(np.float32)
  rows[:, 4] = 7.0
  standardizer = data_lib.Standardizer.fit(rows)
  assert standardizer.inv_std[4] == 0.0
  shifted = rows.copy()
  shifted[:, 4] = 1e6
  z = standardizer.apply(shifted)
  assert not z[:, 4].any()
  np.testing.assert_allclose(z[:, 5:], numpy_preprocess(rows, rows)[:, 5:], rtol=1e-4, atol=1e-4)


def test_one_clients_statistics_never_depend_on_another_clients_rows(raw_and_cache, tmp_path):
  raw, cache_dir = raw_and_cache
  other_raw = str(tmp_path / "raw")
  shutil.copytree(raw, other_raw)
  shutil.copy(os.path.join(raw, ENNIO, "gafgyt_attacks", "udp.csv.gz"),
              os.path.join(other_raw, "HueBridge", "benign_traffic.csv.gz"))  # HueBridge's rows change
  data_lib.prepare_nbaiot(other_raw, str(tmp_path / "cache"))
  a, b = data_lib.FederatedData(cache_dir), data_lib.FederatedData(str(tmp_path / "cache"))
  assert not np.array_equal(a.standardizer("HueBridge").mean, b.standardizer("HueBridge").mean)
  np.testing.assert_array_equal(a.standardizer(ENNIO).mean, b.standardizer(ENNIO).mean)
  np.testing.assert_array_equal(a.standardizer(ENNIO).inv_std, b.standardizer(ENNIO).inv_std)
  np.testing.assert_array_equal(a.split_arrays(ENNIO, "test")[0], b.split_arrays(ENNIO, "test")[0])
  batches = [np.concatenate(list(d.train_dataset(ENNIO, batch_size=32, shuffle_seed=1).as_numpy_iterator()))
             for d in (a, b)]
  np.testing.assert_array_equal(*batches)


def test_train_dataset_is_a_seeded_pass_without_batches_of_one(raw_and_cache):
  _, cache_dir = raw_and_cache
  data = data_lib.FederatedData(cache_dir)
  assert data.num_train_examples(ENNIO) == 180
  run = lambda seed, batch: list(data.train_dataset(ENNIO, batch_size=batch, shuffle_seed=seed).as_numpy_iterator())
  first = run(3, 32)
  assert [b.shape for b in first] == [(32, 115)] * 5 + [(20, 115)] and first[0].dtype == np.float32
  expected, _, _ = data.split_arrays(ENNIO, "train")
  got = np.concatenate(first)
  np.testing.assert_allclose(got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.concatenate(run(3, 32)), got)
  assert not np.array_equal(np.concatenate(run(4, 32)), got)
  assert [len(b) for b in run(3, 179)] == [179], "a final batch of 1 row is dropped"


def test_eval_dataset_matches_split_arrays(raw_and_cache):
  _, cache_dir = raw_and_cache
  data = data_lib.FederatedData(cache_dir)
  dataset = data.eval_dataset(ENNIO, "test")
  assert dataset.element_spec == (tf.TensorSpec([115], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.int32))
  rows = list(dataset.as_numpy_iterator())
  x, labels, kinds = data.split_arrays(ENNIO, "test")
  np.testing.assert_allclose(np.stack([r[0] for r in rows]), x, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal([r[1] for r in rows], labels)
  np.testing.assert_array_equal([r[2] for r in rows], kinds)


def test_sharding_and_client_data(raw_and_cache):
  import tensorflow_federated as tff
  _, cache_dir = raw_and_cache
  data = data_lib.FederatedData(cache_dir, shards_per_device=3)
  assert data.client_ids == [f"{ENNIO}/0", f"{ENNIO}/1", f"{ENNIO}/2", "HueBridge/0", "HueBridge/1", "HueBridge/2"]
  assert data.devices == [ENNIO, "HueBridge"] and data.device_of("HueBridge/2") == "HueBridge"
  assert [data.num_train_examples(c) for c in data.client_ids[:3]] == [60, 60, 60]
  train = raw_train(cache_dir, ENNIO)
  client_data = data.client_data
  assert isinstance(client_data, tff.simulation.datasets.ClientData)
  assert not isinstance(client_data, tff.simulation.datasets.TestClientData)
  assert client_data.client_ids == data.client_ids
  assert client_data.element_type_structure == tf.TensorSpec([115], tf.float32)
  rows = np.stack(list(client_data.create_tf_dataset_for_client(f"{ENNIO}/1").as_numpy_iterator()))
  # Shard 1 holds rows 60..119 in file order, standardised with ITS OWN rows' statistics.
  np.testing.assert_allclose(rows, numpy_preprocess(train[60:120], train[60:120]), rtol=1e-4, atol=1e-4)
  batch = next(iter(data.train_dataset(f"{ENNIO}/1", batch_size=60, shuffle_seed=0)))
  np.testing.assert_allclose(np.sort(batch.numpy(), axis=0), np.sort(rows, axis=0), rtol=1e-5, atol=1e-5)
  # Device-level evaluation keeps the device's statistics over all its training rows.
  np.testing.assert_allclose(data.split_arrays(ENNIO, "train")[0], numpy_preprocess(train, train), rtol=1e-4, atol=1e-4)
  with pytest.raises(data_lib.DataError, match="device Ennio_Doorbell has 180 training rows, too few for 91 shards"):
    data_lib.FederatedData(cache_dir, shards_per_device=91)
  with pytest.raises(data_lib.DataError, match="unknown client id 'nope'"):
    data.train_dataset("nope", batch_size=2, shuffle_seed=0)


def test_open_federated_data_prepares_once_and_reuses(tmp_path, monkeypatch):
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  cache_root = str(tmp_path / "caches")
  first = data_lib.open_federated_data(raw, cache_root=cache_root)
  assert first.cache_dir == data_lib.prepared_cache_dir(raw, cache_root)
  assert os.path.dirname(first.cache_dir) == cache_root and os.path.basename(first.cache_dir).startswith("raw-")
  assert first.manifest["options"]["seed"] == 0 and first.devices == [ENNIO, "HueBridge"]
  from tff_fcl.data import prepare as prepare_lib
  def fail(*args, **kwargs):
    raise AssertionError("prepared a second time")
  monkeypatch.setattr(prepare_lib, "prepare_nbaiot", fail)
  again = data_lib.open_federated_data(raw, cache_root=cache_root, shards_per_device=2)
  assert again.cache_dir == first.cache_dir and len(again.client_ids) == 4
  direct = data_lib.open_federated_data(first.cache_dir, cache_root="unused")
  assert direct.cache_dir == first.cache_dir
  monkeypatch.undo()
  os.utime(os.path.join(raw, "HueBridge", "benign_traffic.csv.gz"), ns=(1, 1))  # the input changed
  changed = data_lib.open_federated_data(raw, cache_root=cache_root)
  assert changed.cache_dir != first.cache_dir and len(os.listdir(cache_root)) == 2
  with pytest.raises(data_lib.DataError, match="data folder does not exist"):
    data_lib.open_federated_data(str(tmp_path / "missing"), cache_root=cache_root)
