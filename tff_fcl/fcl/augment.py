"""Augmentations of preprocessed traffic features for the contrastive views (plain TF, seeded).

* Feature masking with replacement from the client's own batch: each entry is masked with probability
  `mask_rate`, and a masked x[b, j] is replaced by x[b', j] from a random row b' of the same batch
  (so the marginal of every feature stays the client's own; nothing crosses clients).
* Gaussian jitter: x + N(0, jitter_std^2) on every entry (the features are standardised per client).
Random draws are stateless: the same `seed` (shape [2], int32) gives the same views.
"""

import tensorflow as tf


def augment(x: tf.Tensor, seed: tf.Tensor, mask_rate: float, jitter_std: float) -> tf.Tensor:
  """Returns one augmented view of x: [B, F] float32."""
  seeds = tf.random.experimental.stateless_split(seed, num=3)
  shape = tf.shape(x)
  if mask_rate > 0:
    mask = tf.random.stateless_uniform(shape, seeds[0]) < mask_rate
    donors = tf.random.stateless_uniform(shape, seeds[1], minval=0, maxval=shape[0], dtype=tf.int32)
    columns = tf.broadcast_to(tf.range(shape[1])[tf.newaxis, :], shape)
    replacement = tf.gather_nd(x, tf.stack([donors, columns], axis=-1))
    x = tf.where(mask, replacement, x)
  if jitter_std > 0:
    x = x + jitter_std * tf.random.stateless_normal(shape, seeds[2])
  return x
