"""The FCL server finalizer: a server-optimizer step on the model, and the global reference update.

Given the aggregated client update <model_delta, embedding_mean> (Eq. 6, a weighted mean over the
round's clients) the finalizer

  1. applies `server_optimizer` to the trainable weights with model_delta as the gradient, using TFF's
     own `build_apply_optimizer_finalizer` (which also rejects non-finite updates);
  2. moves the global reference, a non-trainable model weight:
         g <- normalize(beta * g + (1 - beta) * m),     m = aggregated embedding_mean, float32 [p]
     (momentum beta = `FCLConfig.reference_momentum`; renormalised to the unit sphere where the
     embeddings u live). While m = 0 (no client had rows) g keeps its value.

next: (<state@SERVER, ModelWeights@SERVER, <model_delta, embedding_mean>@SERVER> ->
       <state@SERVER, ModelWeights@SERVER, measurements@SERVER>)
Measurements: the optimizer finalizer's (`update_non_finite`), `reference_norm` (||g|| after the
update) and `reference_shift` (||g_new - g_old||).
"""

import collections

import tensorflow as tf
import tensorflow_federated as tff


def build_fcl_finalizer(weights_type, update_type, *, reference_index: int,
                        server_optimizer: tff.learning.optimizers.Optimizer,
                        reference_momentum: float) -> tff.learning.templates.FinalizerProcess:
  """Builds the finalizer for `weights_type` (a ModelWeights type with g at non_trainable[reference_index])."""
  optimizer_finalizer = tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer, weights_type)
  non_trainable_type = weights_type.non_trainable
  embedding_type = update_type.embedding_mean

  @tff.tensorflow.computation(non_trainable_type, embedding_type)
  def update_reference(non_trainable, embedding_mean):
    values = list(non_trainable)
    old = values[reference_index]
    mixed = reference_momentum * old + (1.0 - reference_momentum) * embedding_mean
    has_signal = tf.reduce_sum(tf.square(embedding_mean)) > 0
    new = tf.where(has_signal, tf.math.l2_normalize(mixed), old)
    values[reference_index] = new
    measurements = collections.OrderedDict(reference_norm=tf.norm(new), reference_shift=tf.norm(new - old))
    return values, measurements

  @tff.tensorflow.computation(weights_type, non_trainable_type)
  def with_non_trainable(weights, non_trainable):
    return tff.learning.models.ModelWeights(trainable=weights.trainable, non_trainable=non_trainable)

  @tff.federated_computation(optimizer_finalizer.initialize.type_signature.result,
                             tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(update_type, tff.SERVER))
  def next_fn(state, weights, update):
    stepped = optimizer_finalizer.next(state, weights, update.model_delta)
    non_trainable, reference_measurements = tff.federated_map(
        update_reference, (stepped.result.non_trainable, update.embedding_mean))
    new_weights = tff.federated_map(with_non_trainable, (stepped.result, non_trainable))
    measurements = tff.federated_zip(collections.OrderedDict(
        optimizer=stepped.measurements, reference=reference_measurements))
    return tff.templates.MeasuredProcessOutput(stepped.state, new_weights, measurements)

  return tff.learning.templates.FinalizerProcess(optimizer_finalizer.initialize, next_fn)
