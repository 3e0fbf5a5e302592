"""Losses of federated contrastive learning, plain TensorFlow (no TFF), on unit vectors u.

* Eq. 3, temperature-scaled InfoNCE with cosine similarity (the NT-Xent form): each of the 2B views
  in a batch is an anchor; its positive is the other view of the same row, the other 2B - 2 views are
  its negatives:

      l(a) = -log( exp(s(a, a+)/tau) / sum_{k != a} exp(s(a, k)/tau) ),  L_ctr = mean_a l(a)

  with s the cosine similarity (a dot product, since u is L2-normalised).
* Eq. 4, alignment to the global reference g in the same space: L_align = mean_b ||u_b - g||^2.
* Total: L = L_ctr + lambda_align * L_align.
"""

import tensorflow as tf


def info_nce_loss(u1: tf.Tensor, u2: tf.Tensor, temperature: float) -> tf.Tensor:
  """Eq. 3 on two views u1, u2: [B, p] (unit rows) -> scalar. B >= 2."""
  u = tf.concat([u1, u2], axis=0)  # [2B, p]
  batch = tf.shape(u1)[0]
  logits = tf.matmul(u, u, transpose_b=True) / temperature  # [2B, 2B]
  logits -= tf.eye(2 * batch, dtype=u.dtype) * 1e9  # an anchor is not its own negative
  positives = tf.concat([tf.range(batch, 2 * batch), tf.range(batch)], axis=0)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
  return tf.reduce_mean(losses)


def alignment_loss(u: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
  """Eq. 4: mean over rows of ||u_b - g||^2; u: [B, p], g: [p] -> scalar."""
  return tf.reduce_mean(tf.reduce_sum(tf.square(u - g[tf.newaxis, :]), axis=-1))


def consistency_weight(distance: tf.Tensor) -> tf.Tensor:
  """Eq. 5: w_i = 1 / (1 + d_i), with d_i = ||m_i - g||^2."""
  return 1.0 / (1.0 + distance)
