"""Per-client preprocessing: a log transform of heavy-tailed statistics, then the client's own z-score.

For a row x [115] (columns `schema.FEATURE_NAMES`):

    t_j = sign(x_j) * log(1 + |x_j|)   for weight, variance, std, magnitude, radius
                                       (all >= 0, so this is log1p) and covariance (signed log1p)
    t_j = x_j                          for mean and pcc
    z_j = (t_j - mu_j) / sigma_j       mu, sigma: mean and std of t over the client's OWN training rows

Columns with sigma_j < `STD_FLOOR` (constant on the client's training rows) map to 0. Statistics are
never pooled across clients: a device shard `<device>/<k>` uses its own rows, and device-level
evaluation (`FederatedData.split_arrays`) uses all of the device's training rows. The same maths runs
in numpy (`Standardizer.apply`) and in TensorFlow (`Standardizer.apply_tf`, inside tf.data).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tff_fcl.data import schema

STD_FLOOR = 1e-6
LOG_MASK = np.array([a or b for a, b in zip(schema.LOG_FEATURE_MASK, schema.SIGNED_LOG_FEATURE_MASK)])
_CHUNK = 65536


def log_transform(x: np.ndarray) -> np.ndarray:
  """float32 [..., 115]: signed log1p on the heavy-tailed columns, the others unchanged."""
  x = np.asarray(x, np.float32)
  return np.where(LOG_MASK, np.sign(x) * np.log1p(np.abs(x)), x).astype(np.float32)


def log_transform_tf(x: tf.Tensor) -> tf.Tensor:
  mask = tf.constant(LOG_MASK)
  return tf.where(mask, tf.sign(x) * tf.math.log1p(tf.abs(x)), x)


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """mean [115] and inv_std [115] (0 for constant columns) of log-transformed training rows."""
  mean: np.ndarray
  inv_std: np.ndarray

  @classmethod
  def fit(cls, rows: np.ndarray) -> "Standardizer":
    """Fits on raw rows [n, 115] (e.g. a memory-mapped array), streamed in chunks, in float64."""
    if len(rows) < 1:
      raise ValueError("Cannot fit preprocessing statistics on zero rows.")
    total = np.zeros(schema.NUM_FEATURES)
    for start in range(0, len(rows), _CHUNK):
      total += log_transform(rows[start:start + _CHUNK]).sum(axis=0, dtype=np.float64)
    mean = total / len(rows)
    squares = np.zeros(schema.NUM_FEATURES)
    for start in range(0, len(rows), _CHUNK):
      squares += ((log_transform(rows[start:start + _CHUNK]) - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / len(rows))
    inv_std = np.where(std < STD_FLOOR, 0.0, 1.0 / np.maximum(std, STD_FLOOR))
    return cls(mean.astype(np.float32), inv_std.astype(np.float32))

  def apply(self, x: np.ndarray) -> np.ndarray:
    """float32 [n, 115] preprocessed rows."""
    return ((log_transform(x) - self.mean) * self.inv_std).astype(np.float32)

  def apply_tf(self, x: tf.Tensor) -> tf.Tensor:
    return (log_transform_tf(x) - tf.constant(self.mean)) * tf.constant(self.inv_std)
