"""The FCL `tff.learning.templates.ClientWorkProcess`: local contrastive training toward g.

State (@SERVER): OrderedDict(reference=g float32[p], round_num=int32). Each round
  server -> clients:  broadcast g and the round number (seeds the augmentations)
  clients:            train_locally (Eq. 1-4), then m_i, d_i = ||m_i - g||^2 and w_i = 1/(1+d_i) (Eq. 5)
  clients -> server:  ClientResult(update = theta_start - theta_trained, update_weight = w_i) for the
                      aggregator (Eq. 6), and the w_i-weighted mean of the m_i
  server:             g <- normalize(beta * g + (1 - beta) * mean_w(m_i))
Before the first update g = 0; while ||g|| = 0 every client gets d_i = 0 (w_i = 1), since a distance
to an undefined reference carries no consistency information.

Client data: a sequence of OrderedDict(x=float32[B, 115], client_index=int32[B]) where client_index
is the client's position in the population (it seeds augmentations and places d_i in the
`distance_per_client` measurement, a float32[num_clients] vector with d_i at each participant and 0
elsewhere, plus `participated` with 1.0 at participants).
Measurements: example-weighted means of loss, contrastive_loss and alignment_loss; consistency weight
mean/min/max; distance mean; reference_norm (after the update); client_update_norm mean; num_examples.
"""

import collections
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl.data import schema
from tff_fcl.fcl import local_training
from tff_fcl.fcl import losses
from tff_fcl.fcl.config import FCLConfig

ELEMENT_SPEC = collections.OrderedDict(
    x=tf.TensorSpec([None, schema.NUM_FEATURES], tf.float32),
    client_index=tf.TensorSpec([None], tf.int32),
)


def with_client_index(dataset: tf.data.Dataset, client_index: int) -> tf.data.Dataset:
  """Turns batches x [B, 115] into ELEMENT_SPEC elements for the client at `client_index`."""
  return dataset.map(lambda x: collections.OrderedDict(
      x=x, client_index=tf.fill(tf.shape(x)[:1], tf.constant(client_index, tf.int32))))


def _global_norm(structure):
  return tf.linalg.global_norm(tf.nest.flatten(structure))


def build_fcl_client_work(model_fn: Callable, weights_type, *, projection_dim: int, num_clients: int,
                          config: FCLConfig) -> tff.learning.templates.ClientWorkProcess:
  """Builds the FCL client work for networks made by `model_fn` (an `EmbeddingNetwork` factory)."""
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(ELEMENT_SPEC))
  reference_type = tff.TensorType(np.float32, [projection_dim])
  state_type = tff.types.to_type(collections.OrderedDict(reference=reference_type, round_num=np.int32))
  client_optimizer = tff.learning.optimizers.build_adam(learning_rate=config.client_learning_rate)

  @tff.tensorflow.computation
  def initial_state():
    return collections.OrderedDict(reference=tf.zeros([projection_dim]), round_num=tf.constant(0))

  @tff.federated_computation()
  def init_fn():
    return tff.federated_eval(initial_state, tff.SERVER)

  def local_update(network, state, initial_weights, data):
    weights = tff.learning.models.ModelWeights.from_model(network)
    tf.nest.map_structure(lambda v, t: v.assign(t), weights, initial_weights)
    client_index = data.take(1).reduce(tf.constant(0), lambda _, e: e["client_index"][0])
    features = data.map(lambda e: e["x"])
    reference = state["reference"]
    seed = tf.stack([state["round_num"], client_index * 65536])
    train = local_training.train_locally(network, client_optimizer, features, reference, seed, config)
    # Eq. 5: consistency of the client's normalised embeddings with g.
    embedding_mean = local_training.mean_embedding(network, features)
    has_reference = tf.reduce_sum(tf.square(reference)) > 0
    distance = tf.where(has_reference, tf.reduce_sum(tf.square(embedding_mean - reference)), 0.0)
    weight = losses.consistency_weight(distance) if config.consistency_weighting else tf.constant(1.0)
    update = tf.nest.map_structure(tf.subtract, initial_weights.trainable, weights.trainable)
    update_norm = _global_norm(update)
    finite = tf.math.is_finite(update_norm)
    update = tf.nest.map_structure(lambda u: tf.where(finite, u, tf.zeros_like(u)), update)
    weight = tf.where(finite & (train["num_examples"] > 0), weight, 0.0)
    one_hot = tf.one_hot(client_index, num_clients)
    diagnostics = collections.OrderedDict(
        embedding_mean=embedding_mean, weight=weight, distance=distance, update_norm=update_norm,
        num_examples=tf.cast(train["num_examples"], tf.float32),
        distance_per_client=one_hot * distance, participated=one_hot,
        **{key: train[key] for key in local_training.TRAIN_LOSS_KEYS})
    return tff.learning.templates.ClientResult(update=update, update_weight=weight), diagnostics

  @tff.tensorflow.computation(state_type, weights_type, data_type)
  def client_update(state, initial_weights, data):
    # Variables are created outside the tf.function, which gives the assignments control dependencies.
    return tf.function(local_update)(model_fn(), state, initial_weights, data)

  @tff.tensorflow.computation(state_type, reference_type)
  def update_reference(state, weighted_embedding_mean):
    mixed = (config.reference_momentum * state["reference"]
             + (1.0 - config.reference_momentum) * weighted_embedding_mean)
    return collections.OrderedDict(reference=tf.math.l2_normalize(mixed), round_num=state["round_num"] + 1)

  @tff.tensorflow.computation(state_type)
  def reference_norm(state):
    return tf.norm(state["reference"])

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    # Server -> clients.
    state_at_clients = tff.federated_broadcast(state)
    # Clients.
    client_result, diagnostics = tff.federated_map(client_update, (state_at_clients, weights, client_data))
    # Clients -> server: the consistency-weighted mean embedding updates g.
    embedding_mean = tff.federated_mean(diagnostics.embedding_mean, weight=diagnostics.weight)
    new_state = tff.federated_map(update_reference, (state, embedding_mean))
    # Measurements.
    measurements = tff.federated_zip(collections.OrderedDict(
        loss=tff.federated_mean(diagnostics.loss, weight=diagnostics.num_examples),
        contrastive_loss=tff.federated_mean(diagnostics.contrastive_loss, weight=diagnostics.num_examples),
        alignment_loss=tff.federated_mean(diagnostics.alignment_loss, weight=diagnostics.num_examples),
        consistency_weight_mean=tff.federated_mean(diagnostics.weight),
        consistency_weight_min=tff.federated_min(diagnostics.weight),
        consistency_weight_max=tff.federated_max(diagnostics.weight),
        distance_mean=tff.federated_mean(diagnostics.distance),
        reference_norm=tff.federated_map(reference_norm, new_state),
        client_update_norm=tff.federated_mean(diagnostics.update_norm),
        num_examples=tff.federated_sum(diagnostics.num_examples),
        distance_per_client=tff.federated_sum(diagnostics.distance_per_client),
        participated=tff.federated_sum(diagnostics.participated),
    ))
    return tff.templates.MeasuredProcessOutput(new_state, client_result, measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)
