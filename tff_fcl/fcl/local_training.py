"""One client's local FCL training, in plain TensorFlow (no TFF): used inside the TFF client work,
by the plain-TF benchmark loop and by the centralised-equivalence test.

Per batch x [B, 115] (Algorithm: steps 1-3 of the method):
  v1, v2 = augment(x), augment(x)                     two views, seeded
  u1, u2 = net(v1), net(v2)                           Eq. 1-2 with batch moments, unit vectors [B, p]
  L = InfoNCE(u1, u2; tau) + lambda * (L_align(u1, g) + L_align(u2, g)) / 2     (Eq. 3, Eq. 4)
and one optimizer step. After the local epochs the client reports its mean normalised embedding
m_i = mean_rows u(x) (clean rows, batch moments) and d_i = ||m_i - g||^2 (Eq. 5).
"""

import collections

import tensorflow as tf

from tff_fcl.fcl import augment as augment_lib
from tff_fcl.fcl import losses

TRAIN_LOSS_KEYS = ("loss", "contrastive_loss", "alignment_loss")


def batch_losses(network, x, reference, seed, config):
  """Returns OrderedDict(loss, contrastive_loss, alignment_loss) for one batch; seed: int32 [2]."""
  seeds = tf.random.experimental.stateless_split(seed, num=2)
  u1 = network(augment_lib.augment(x, seeds[0], config.mask_rate, config.jitter_std))
  u2 = network(augment_lib.augment(x, seeds[1], config.mask_rate, config.jitter_std))
  contrastive = losses.info_nce_loss(u1, u2, config.temperature)
  alignment = 0.5 * (losses.alignment_loss(u1, reference) + losses.alignment_loss(u2, reference))
  return collections.OrderedDict(loss=contrastive + config.align_weight * alignment,
                                 contrastive_loss=contrastive, alignment_loss=alignment)


def train_locally(network, optimizer, dataset, reference, seed, config):
  """Runs `config.local_epochs` passes of FCL steps over `dataset` (batches of float32 [B, 115]).

  Args:
    network: an `EmbeddingNetwork` holding the starting weights (updated in place).
    optimizer: a `tff.learning.optimizers.Optimizer`.
    dataset: tf.data.Dataset of float32 [B, 115].
    reference: the global reference g, float32 [p].
    seed: int32 [2]; step k of the run uses stateless seeds derived from (seed, k).
    config: an `FCLConfig`.

  Returns:
    OrderedDict(num_examples int64, loss / contrastive_loss / alignment_loss: example-weighted means).
  """
  trainable = network.trainable_variables
  specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in trainable)

  def step(state, x):
    step_index, num_examples, loss_sums, optimizer_state = state
    step_seed = tf.stack([seed[0], seed[1] + step_index])
    with tf.GradientTape() as tape:
      step_losses = batch_losses(network, x, reference, step_seed, config)
    gradients = tape.gradient(step_losses["loss"], trainable)
    optimizer_state, new_weights = optimizer.next(optimizer_state, tuple(trainable), tuple(gradients))
    for variable, value in zip(trainable, new_weights):
      variable.assign(value)
    batch = tf.cast(tf.shape(x)[0], tf.float32)
    loss_sums = tuple(s + batch * step_losses[k] for s, k in zip(loss_sums, TRAIN_LOSS_KEYS))
    return step_index + 1, num_examples + tf.shape(x, out_type=tf.int64)[0], loss_sums, optimizer_state

  initial = (tf.constant(0, tf.int32), tf.constant(0, tf.int64),
             tuple(tf.constant(0.0) for _ in TRAIN_LOSS_KEYS), optimizer.initialize(specs))
  _, num_examples, loss_sums, _ = dataset.repeat(config.local_epochs).reduce(initial, step)
  examples = tf.maximum(tf.cast(num_examples, tf.float32), 1.0)
  result = collections.OrderedDict(num_examples=num_examples // config.local_epochs)
  for key, total in zip(TRAIN_LOSS_KEYS, loss_sums):
    result[key] = total / examples
  return result


def mean_embedding(network, dataset):
  """m_i: the mean of u over the client's clean rows, float32 [p] (zeros for an empty dataset)."""
  projection_dim = network.projection.units

  def accumulate(state, x):
    total, count = state
    return total + tf.reduce_sum(network(x), axis=0), count + tf.cast(tf.shape(x)[0], tf.float32)

  total, count = dataset.reduce((tf.zeros([projection_dim]), tf.constant(0.0)), accumulate)
  return tf.math.divide_no_nan(total, count)
