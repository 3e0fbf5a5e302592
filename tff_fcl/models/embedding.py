"""The embedding network: encoder (Eq. 1), per-client standardisation (Eq. 2) and projection.

    z   = f_theta(x)                      x: [B, 115] -> z: [B, d]              (Eq. 1)
    z~  = (z - mu_i) / sigma_i            mu_i, sigma_i: [d], client i's own     (Eq. 2)
    u   = normalize(h(z~))                h: Dense(d -> p) with bias, u on the unit sphere

In training, mu_i and sigma_i are the moments of the current local batch (the client's local window).
For scoring they are the client's calibration statistics, computed from its own benign training rows
(`embedding_moments`); they never leave the client. u is the "normalised space" shared by the
InfoNCE loss (Eq. 3, cosine similarity), the alignment loss (Eq. 4), the consistency weights (Eq. 5)
and the `global` anomaly score. The projection's bias is what lets all clients' normal traffic sit
around one global direction g after each client has removed its own mean and scale (BUILD_NOTES.md).

The global reference g (float32 [p], Eq. 4-5) is a non-trainable variable of the network, so it is
part of the global `ModelWeights`: the server broadcasts it with the model, checkpoints it with the
learning state and exports it with the encoder. Clients read it and never change it; the server's
finalizer sets it each round (`tff_fcl.fcl.finalizer`).
"""

from typing import Optional, Tuple

import tensorflow as tf

from tff_fcl.data import schema
from tff_fcl.models import encoders

_EPSILON = 1e-6


class EmbeddingNetwork(tf.keras.Model):
  """Encoder + optional Eq. 2 standardisation + projection head."""

  def __init__(self, encoder: tf.keras.Model, projection_dim: int, standardize: bool = True):
    super().__init__(name="embedding_network")
    self.encoder = encoder
    self.projection = tf.keras.layers.Dense(projection_dim, name="projection")
    self.standardize = standardize
    self.reference = self.add_weight(name="reference", shape=[projection_dim], initializer="zeros",
                                     trainable=False)

  def encode(self, x: tf.Tensor) -> tf.Tensor:
    """z = f(x): [B, 115] -> [B, d]."""
    return self.encoder(x)

  def standardize_embedding(self, z: tf.Tensor,
                             moments: Optional[Tuple[tf.Tensor, tf.Tensor]] = None) -> tf.Tensor:
    """z~ of Eq. 2: [B, d] -> [B, d] (identity when standardisation is off).

    Args:
      z: encoder outputs [B, d].
      moments: (mean [d], variance [d]) of the client's calibration rows; None uses the batch's own.
    """
    if not self.standardize:
      return z
    mean, variance = moments if moments is not None else tf.nn.moments(z, axes=[0])
    return (z - mean) / tf.sqrt(variance + _EPSILON)

  def project(self, z_tilde: tf.Tensor) -> tf.Tensor:
    """u = normalize(h(z~)): [B, d] -> [B, p] unit rows."""
    return tf.math.l2_normalize(self.projection(z_tilde), axis=-1)

  def reference_index(self) -> int:
    """Position of g in `non_trainable_variables` (and so in `ModelWeights.non_trainable`)."""
    for index, variable in enumerate(self.non_trainable_variables):
      if variable is self.reference:
        return index
    raise AssertionError("the reference vector is not a non-trainable variable")

  def call(self, x, training=False):
    del training
    return self.project(self.standardize_embedding(self.encode(x)))


def build_embedding_network(encoder: str = "mlp", embedding_dim: int = 32, projection_dim: int = 16,
                            hidden_units=(64, 64), standardize: bool = True,
                            missing_mask: bool = False) -> EmbeddingNetwork:
  """Builds an `EmbeddingNetwork` with all variables created (input [B, 115], NaN = missing when
  `missing_mask`, see `encoders`)."""
  if projection_dim < 2:
    raise ValueError(f"projection_dim must be at least 2. Found {projection_dim}.")
  network = EmbeddingNetwork(encoders.build_encoder(encoder, embedding_dim, hidden_units, missing_mask),
                             projection_dim, standardize)
  network(tf.zeros([2, schema.NUM_FEATURES]))
  return network


def embedding_moments(network: EmbeddingNetwork, x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Per-dimension mean and variance of z = f(x) over a client's rows [N, 115] -> ([d], [d])."""
  return tf.nn.moments(network.encode(x), axes=[0])
