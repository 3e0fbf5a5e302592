"""The N-BaIoT deep autoencoder and its anomaly score, the reconstruction error.

Architecture (Meidan et al., IEEE Pervasive Computing 2018): for n = 115 inputs, tanh encoder layers
of ceil(0.75 n), ceil(0.50 n), ceil(0.33 n) and ceil(0.25 n) units (87, 58, 38, 29), then the
mirrored decoder (38, 58, 87) and a linear output layer of n units:

    x [B, 115] -> 87 -> 58 -> 38 -> 29 -> 38 -> 58 -> 87 -> x^ [B, 115]

Trained on benign rows only with the mean squared error; a row's anomaly score is its reconstruction
error  s(x) = (1/n) sum_j (x_j - x^_j)^2  (higher = more anomalous). Rows are the preprocessed
features of `tff_fcl.data` (log-scaled and standardised), so every feature weighs alike.

Missing features (NaN, issue 7's incomplete-data conditions) are imputed with 0, the client's own
standardised mean, at the input, and left out of the loss and of the score: both average the squared
error over the row's present features only (`MaskedMeanSquaredError`, `reconstruction_errors`).
Without missing values both are exactly the mean squared error above.
"""

import math

import numpy as np
import tensorflow as tf

from tff_fcl.data import schema

LAYER_FRACTIONS = (0.75, 0.50, 0.33, 0.25)
_BATCH = 8192


def layer_sizes(num_features: int = schema.NUM_FEATURES) -> tuple:
  """Units of every hidden layer, encoder then decoder: (87, 58, 38, 29, 38, 58, 87) for 115."""
  encoder = tuple(int(math.ceil(fraction * num_features)) for fraction in LAYER_FRACTIONS)
  return encoder + encoder[-2::-1]


def build_autoencoder(seed: int, num_features: int = schema.NUM_FEATURES) -> tf.keras.Model:
  """A built, uncompiled autoencoder [B, n] -> [B, n], its initial weights seeded by `seed`."""
  layers = [tf.keras.layers.InputLayer(input_shape=(num_features,)),
            tf.keras.layers.Lambda(lambda x: tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), name="impute")]
  for index, units in enumerate(layer_sizes(num_features)):
    layers.append(tf.keras.layers.Dense(
        units, activation="tanh", name=f"hidden_{index}",
        kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed * 1000 + index)))
  layers.append(tf.keras.layers.Dense(
      num_features, name="reconstruction",
      kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed * 1000 + 999)))
  return tf.keras.Sequential(layers, name="nbaiot_autoencoder")


class MaskedMeanSquaredError(tf.keras.losses.Loss):
  """Mean over a row's present (non-NaN) targets of (x_j - x^_j)^2, then the batch mean."""

  def call(self, y_true, y_pred):
    present = tf.logical_not(tf.math.is_nan(y_true))
    squared = tf.where(present, tf.square(y_pred - tf.where(present, y_true, 0.0)), 0.0)
    count = tf.reduce_sum(tf.cast(present, y_pred.dtype), axis=-1)
    return tf.reduce_sum(squared, axis=-1) / tf.maximum(count, 1.0)


def reconstruction_errors(model: tf.keras.Model, x: np.ndarray) -> np.ndarray:
  """Per-row mean squared reconstruction error over present features: x [N, n] -> scores float64 [N]."""
  errors = [np.nanmean(np.square(model(x[i:i + _BATCH], training=False).numpy() - x[i:i + _BATCH]), axis=1)
            for i in range(0, len(x), _BATCH)]
  return np.concatenate(errors).astype(np.float64) if errors else np.zeros((0,), np.float64)
