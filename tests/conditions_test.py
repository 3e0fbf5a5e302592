"""Data conditions change exactly what they say, seeded, at training and scoring time (synthetic data)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tff_fcl import conditions
from tff_fcl import models
from tff_fcl.data import schema


class ShardedSyntheticData:
  """Synthetic `FederatedData`: 4 devices x 2 shards; device k's rows are N(k, 1) (labelled synthetic)."""

  def __init__(self):
    rng = np.random.default_rng(0)
    self.devices = ["d0", "d1", "d2", "d3"]
    self.client_ids = [f"{d}/{s}" for d in self.devices for s in range(2)]
    self.manifest = {"kinds": ["benign", "synthetic/attack"]}
    self._rows = {}
    for k, device in enumerate(self.devices):
      labels = np.r_[np.zeros(40), np.ones(20)].astype(np.int32)
      self._rows[device] = {split: (rng.normal(k, 1.0, (n, 115)).astype(np.float32),
                                    labels[-n:] if split == "test" else np.zeros(n, np.int32),
                                    labels[-n:] if split == "test" else np.zeros(n, np.int32))
                            for split, n in (("train", 100), ("val", 30), ("test", 60))}

  def device_of(self, client_id):
    return client_id.split("/")[0]

  def _client_rows(self, client_id):
    shard = int(client_id.split("/")[1])
    return self._rows[self.device_of(client_id)]["train"][0][shard::2]

  def num_train_examples(self, client_id):
    return len(self._client_rows(client_id))

  def train_dataset(self, client_id, *, batch_size, shuffle_seed):
    x = self._client_rows(client_id)
    return tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=shuffle_seed).batch(batch_size)

  def split_arrays(self, device, split):
    return self._rows[device][split]


def train_rows(data, client_id):
  return np.concatenate(list(data.train_dataset(client_id, batch_size=64, shuffle_seed=1).as_numpy_iterator()))


def test_random_missing_rate_is_seeded_and_leaves_present_values_unchanged():
  base = ShardedSyntheticData()
  data = conditions.ConditionedData(base, conditions.DataConditions(missing_rate=0.3, seed=5))
  for device in base.devices:
    x, labels, _ = data.split_arrays(device, "test")
    original, original_labels, _ = base.split_arrays(device, "test")
    missing = np.isnan(x)
    # 6900 Bernoulli(0.3) entries: std 0.0055, so 0.03 is > 5 sigma (flake rate < 1e-6).
    assert abs(missing.mean() - 0.3) < 0.03
    np.testing.assert_array_equal(x[~missing], original[~missing])
    np.testing.assert_array_equal(labels, original_labels)
    np.testing.assert_array_equal(np.isnan(data.split_arrays(device, "test")[0]), missing)  # seeded
  again = conditions.ConditionedData(base, conditions.DataConditions(missing_rate=0.3, seed=6))
  assert not np.array_equal(np.isnan(again.split_arrays("d0", "test")[0]), np.isnan(data.split_arrays("d0", "test")[0]))
  rows = train_rows(data, "d1/0")
  assert rows.shape == (50, 115) and abs(np.isnan(rows).mean() - 0.3) < 0.06
  present = ~np.isnan(rows)
  assert set(rows[present].tolist()) <= set(base.split_arrays("d1", "train")[0].ravel().tolist())


def test_missing_family_removes_the_whole_family_on_the_chosen_devices_only():
  base = ShardedSyntheticData()
  data = conditions.ConditionedData(base, conditions.DataConditions(
      missing_families=("HpHp",), missing_family_fraction=0.5, seed=1))
  assert len(data.family_missing_devices) == 2
  hphp = np.array(schema.family_columns("HpHp"))
  others = np.setdiff1d(np.arange(115), hphp)
  assert len(hphp) == 35
  for device in base.devices:
    for split in ("train", "val", "test"):
      x, original = data.split_arrays(device, split)[0], base.split_arrays(device, split)[0]
      if device in data.family_missing_devices:
        assert np.isnan(x[:, hphp]).all()
        np.testing.assert_array_equal(x[:, others], original[:, others])
      else:
        np.testing.assert_array_equal(x, original)
  device = data.family_missing_devices[0]
  rows = train_rows(data, f"{device}/1")
  assert np.isnan(rows[:, hphp]).all() and not np.isnan(rows[:, others]).any()


def test_noise_has_the_given_scale_on_the_chosen_fraction_of_devices():
  base = ShardedSyntheticData()
  data = conditions.ConditionedData(base, conditions.DataConditions(noise_scale=0.5, noise_fraction=0.25, seed=2))
  assert len(data.noisy_devices) == 1
  for device in base.devices:
    for split in ("val", "test"):
      difference = data.split_arrays(device, split)[0] - base.split_arrays(device, split)[0]
      if device in data.noisy_devices:
        # >= 3450 N(0, 0.25) draws: the sample std is within 5% with probability > 1 - 1e-6.
        assert difference.std() == pytest.approx(0.5, rel=0.05) and abs(difference.mean()) < 0.05
      else:
        np.testing.assert_array_equal(difference, 0.0)
  noisy = data.noisy_devices[0]
  rows, clean = train_rows(data, f"{noisy}/0"), base._client_rows(f"{noisy}/0")
  nearest = np.linalg.norm(rows[:, None, :] - clean[None, :, :], axis=-1).min(axis=1)
  # Each row is a clean row + 115 N(0, 0.25) draws: ~5.4 away from it, ~15 from the others.
  assert rows.shape == clean.shape and nearest.min() > 3.0, "training rows are noisy too"


def test_quantity_skew_subsamples_each_client_by_its_dirichlet_share():
  base = ShardedSyntheticData()
  data = conditions.ConditionedData(base, conditions.DataConditions(quantity_alpha=0.5, seed=3))
  shares = np.random.default_rng([3, 4]).dirichlet(np.full(8, 0.5))  # the documented draw
  for share, client in zip(shares, base.client_ids):
    expected = min(50, max(2, math.ceil(share / shares.max() * 50)))
    rows = train_rows(data, client)
    assert data.num_train_examples(client) == expected == len(rows)
    original = {r.tobytes() for r in base._client_rows(client)}
    assert all(r.tobytes() in original for r in rows), "a subsample of the client's own rows"
  assert max(data.num_train_examples(c) for c in base.client_ids) == 50
  np.testing.assert_array_equal(data.split_arrays("d2", "test")[0], base.split_arrays("d2", "test")[0])


def test_unseen_devices_evaluate_but_never_train():
  base = ShardedSyntheticData()
  data = conditions.ConditionedData(base, conditions.DataConditions(unseen_devices=("d1",)))
  assert data.client_ids == ["d0/0", "d0/1", "d2/0", "d2/1", "d3/0", "d3/1"]
  assert data.devices == base.devices
  with pytest.raises(conditions.ConditionError, match="client 'd1/0' does not train"):
    data.train_dataset("d1/0", batch_size=8, shuffle_seed=0)
  with pytest.raises(conditions.ConditionError, match=r"unseen_devices: dX not among the devices \(d0, d1"):
    conditions.ConditionedData(base, conditions.DataConditions(unseen_devices=("dX",)))


def test_no_condition_is_the_data_itself_and_bad_settings_fail_clearly():
  base = ShardedSyntheticData()
  assert conditions.apply_conditions(base, conditions.DataConditions(seed=4)) is base
  with pytest.raises(conditions.ConditionError, match=r"DataConditions.missing_rate must be in \[0, 1\). Found 1.0."):
    conditions.DataConditions(missing_rate=1.0)
  with pytest.raises(conditions.ConditionError, match="unknown family 'Hp'"):
    conditions.DataConditions(missing_families=("Hp",))
  with pytest.raises(conditions.ConditionError, match=r"the model needs missing_mask=True \(--missing_mask\)"):
    conditions.DataConditions(missing_rate=0.2).require_missing_mask(False)
  conditions.DataConditions(missing_rate=0.2).require_missing_mask(True)


def test_missing_features_reach_the_model_as_a_mask():
  data = conditions.ConditionedData(ShardedSyntheticData(), conditions.DataConditions(missing_rate=0.5, seed=0))
  x = train_rows(data, "d0/0")
  tf.keras.utils.set_random_seed(0)
  network = models.build_embedding_network("mlp", 8, 4, (16,), missing_mask=True)
  with_nan, zero_filled = network.encode(x).numpy(), network.encode(np.nan_to_num(x)).numpy()
  assert np.isfinite(with_nan).all(), "NaN features give finite embeddings"
  assert np.abs(with_nan - zero_filled).max() > 1e-3, "missing is not the same as zero"
