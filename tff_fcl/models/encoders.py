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


class MlpEncoder(tf.keras.Model):
  """`mlp`: [B, 115] (or 230 with the mask channels) -> hidden layers (ReLU) -> [B, embedding_dim]."""

  def __init__(self, hidden_units, embedding_dim, missing_mask):
    super().__init__(name="mlp_encoder")
    self.missing_mask = missing_mask
    self.hidden = [tf.keras.layers.Dense(units, activation="relu") for units in hidden_units]
    self.out = tf.keras.layers.Dense(embedding_dim, use_bias=False)

  def call(self, x):
    h = tf.concat(split_missing(x), axis=-1) if self.missing_mask else x
    for layer in self.hidden:
      h = layer(h)
    return self.out(h)


class WindowsEncoder(tf.keras.Model):
  """`windows`: [B, 115] -> [B, 5 windows, 23 stats (46 with the mask)] -> shared Dense per window ->
  Conv1D across windows -> mean over windows -> [B, embedding_dim]."""

  def __init__(self, hidden_units, embedding_dim, missing_mask):
    super().__init__(name="windows_encoder")
    units = hidden_units[0] if hidden_units else 32
    self.missing_mask = missing_mask
    self.per_window = tf.keras.layers.Dense(units, activation="relu")
    self.across = tf.keras.layers.Conv1D(units, kernel_size=3, padding="same", activation="relu")
    self.out = tf.keras.layers.Dense(embedding_dim, use_bias=False)

  def call(self, x):
    channels = split_missing(x) if self.missing_mask else (x,)
    windows = [tf.reshape(tf.gather(c, list(schema.WINDOW_MAJOR_INDEX), axis=-1),
                          [-1, schema.NUM_WINDOWS, schema.STATS_PER_WINDOW]) for c in channels]
    h = self.per_window(tf.concat(windows, axis=-1))  # [B, 5, units]
    h = self.across(h)
    return self.out(tf.reduce_mean(h, axis=1))


_BUILDERS = {"mlp": MlpEncoder, "windows": WindowsEncoder}


def build_encoder(kind: str, embedding_dim: int, hidden_units=(64, 64),
                  missing_mask: bool = False) -> tf.keras.Model:
  """Returns an encoder mapping float32 [batch, 115] to [batch, embedding_dim]."""
  if kind not in ENCODERS:
    raise ValueError(f"Unknown encoder {kind!r}; expected one of {', '.join(ENCODERS)}.")
  if embedding_dim < 1:
    raise ValueError(f"embedding_dim must be positive. Found {embedding_dim}.")
  encoder = _BUILDERS[kind](tuple(hidden_units), embedding_dim, missing_mask)
  encoder(tf.zeros([1, schema.NUM_FEATURES]))  # creates the variables
  return encoder
