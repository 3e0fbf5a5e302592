"""Augmentations: masked entries come from the same feature of another row; seeded and repeatable."""
import numpy as np
import tensorflow as tf

from tff_fcl.fcl import augment


def test_masking_replaces_from_same_column_of_the_batch():
  x = np.arange(40, dtype=np.float32).reshape(8, 5) * 10 + np.arange(5)  # column j ends in digit j
  view = augment.augment(tf.constant(x), tf.constant([1, 2]), mask_rate=0.5, jitter_std=0.0).numpy()
  changed = view != x
  assert 0 < changed.sum() < x.size, "about half the entries should be masked"
  np.testing.assert_array_equal(view % 10, x % 10)  # every value stays in its own column
  for j in range(5):
    assert set(view[:, j]) <= set(x[:, j])


def test_same_seed_same_view_and_jitter_scale():
  x = tf.zeros([2000, 10])
  a = augment.augment(x, tf.constant([3, 4]), mask_rate=0.0, jitter_std=0.1).numpy()
  b = augment.augment(x, tf.constant([3, 4]), mask_rate=0.0, jitter_std=0.1).numpy()
  c = augment.augment(x, tf.constant([3, 5]), mask_rate=0.0, jitter_std=0.1).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # 20,000 draws: the sample std is within 3% of 0.1 with probability far above 1 - 1e-6.
  np.testing.assert_allclose(a.std(), 0.1, rtol=0.03)
