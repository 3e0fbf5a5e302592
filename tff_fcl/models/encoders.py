"""Local encoders f_theta (Eq. 1): a preprocessed N-BaIoT row [batch, 115] -> z [batch, embedding_dim].

* `mlp`: 115 -> hidden layers (ReLU) -> embedding_dim.
* `windows`: the row as 5 damped windows x 23 statistics (`schema.WINDOW_MAJOR_INDEX`); one Dense layer
  shared by all windows embeds each window, a 1-D convolution over the window axis (ordered from the
  fastest decay L5 to the slowest L0.01) mixes neighbouring time scales, then mean pooling over windows
  and a Dense layer give z.
With `missing_mask=True` a missing feature is coded as NaN in x, and both encoders see each feature
as two channels, (value with NaN -> 0, present = 1 / missing = 0), so that a missing value is never
confused with a zero (issue 7's incomplete-data conditions); without it x must be finite.
The output layer of both has no bias: Eq. 2 subtracts the client's mean from z, which cancels any
bias exactly (its gradient is 0, and Adam would turn rounding noise into steps), and without Eq. 2
the projection head's own bias follows it.
"""

import tensorflow as tf

from tff_fcl.data import schema

ENCODERS = ("mlp", "windows")


def split_missing(x: tf.Tensor):
  """x [..., F] with NaN = missing -> (values with NaN -> 0, presence mask 1/0), both [..., F]."""
  missing = tf.math.is_nan(x)
  return tf.where(missing, tf.zeros_like(x), x), tf.cast(tf.logical_not(missing), x.dtype)


def _mlp(hidden_units, embedding_dim, missing_mask):
  inputs = tf.keras.Input(shape=(schema.NUM_FEATURES,))
  hidden = tf.concat(split_missing(inputs), axis=-1) if missing_mask else inputs  # [B, 115 or 230]
  for units in hidden_units:
    hidden = tf.keras.layers.Dense(units, activation="relu")(hidden)
  outputs = tf.keras.layers.Dense(embedding_dim, use_bias=False)(hidden)
  return tf.keras.Model(inputs, outputs, name="mlp_encoder")


def _windows(hidden_units, embedding_dim, missing_mask):
  window_units = hidden_units[0] if hidden_units else 32
  inputs = tf.keras.Input(shape=(schema.NUM_FEATURES,))
  channels = split_missing(inputs) if missing_mask else (inputs,)
  per_window = [tf.keras.layers.Reshape((schema.NUM_WINDOWS, schema.STATS_PER_WINDOW))(
      tf.gather(channel, list(schema.WINDOW_MAJOR_INDEX), axis=-1)) for channel in channels]
  per_window = tf.concat(per_window, axis=-1) if missing_mask else per_window[0]  # [B, 5, 23 or 46]
  per_window = tf.keras.layers.Dense(window_units, activation="relu")(per_window)  # [B, 5, units]
  mixed = tf.keras.layers.Conv1D(window_units, kernel_size=3, padding="same", activation="relu")(per_window)
  pooled = tf.keras.layers.GlobalAveragePooling1D()(mixed)  # [B, units]
  outputs = tf.keras.layers.Dense(embedding_dim, use_bias=False)(pooled)
  return tf.keras.Model(inputs, outputs, name="windows_encoder")


def build_encoder(kind: str, embedding_dim: int, hidden_units=(64, 64),
                  missing_mask: bool = False) -> tf.keras.Model:
  """Returns an encoder mapping float32 [batch, 115] to [batch, embedding_dim]."""
  if kind not in ENCODERS:
    raise ValueError(f"Unknown encoder {kind!r}; expected one of {', '.join(ENCODERS)}.")
  if embedding_dim < 1:
    raise ValueError(f"embedding_dim must be positive. Found {embedding_dim}.")
  builder = _mlp if kind == "mlp" else _windows
  return builder(tuple(hidden_units), embedding_dim, missing_mask)
