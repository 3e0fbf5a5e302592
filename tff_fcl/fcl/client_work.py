"""The FCL `tff.learning.templates.ClientWorkProcess`: local contrastive training toward g.

State (@SERVER): OrderedDict(round_num=int32), which seeds the clients' augmentations.
  server -> clients:  the global ModelWeights, broadcast by the distributor; they hold the encoder and
                      the global reference g (`EmbeddingNetwork.reference`, non-trainable)
  clients:            train_locally (Eq. 1-4 against g), then on the client's clean rows
                      m_i = mean u,  d_i = ||m_i - g||^2  and  w_i = 1 / (1 + d_i)            (Eq. 5)
  clients -> server:  ClientResult(update=OrderedDict(model_delta=theta_start - theta_trained,
                      embedding_mean=m_i), update_weight=w_i). Both parts go through ONE weighted
                      aggregator (Eq. 6), so clipping and DP noise cover everything a client sends;
                      the server's finalizer applies model_delta and moves g toward the mean m.
Before g is first set (||g|| = 0) every client gets d_i = 0 (w_i = 1): a distance to an undefined
reference carries no consistency information. `FCLConfig.weighting` replaces w_i by 1 ("uniform") or
by n_i ("examples", plain FedAvg). A client whose update is not finite, or that has no rows, sends a
zero update with weight 0.

Client data: a sequence of OrderedDict(x=float32[B, 115], client_index=int32[B]) where client_index
is the client's position in the population; it seeds the client's augmentations and places d_i in
the `distance_per_client` measurement (float32[num_clients], d_i at each participant, 0 elsewhere;
`participated` has 1.0 at participants).
Measurements: example-weighted means of loss, contrastive_loss and alignment_loss; the aggregation
weight's mean/min/max; distance mean; client_update_norm mean; num_examples; the two vectors above.
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


def client_update_type(weights_type, projection_dim: int) -> tff.Type:
  """The unplaced type of what one client sends: <model_delta=trainable, embedding_mean=float32[p]>."""
  return tff.types.to_type(collections.OrderedDict(
      model_delta=weights_type.trainable, embedding_mean=tff.TensorType(np.float32, [projection_dim])))


def _aggregation_weight(config: FCLConfig, distance, num_examples):
  if config.weighting == "consistency":
    return losses.consistency_weight(distance)
  if config.weighting == "examples":
    return tf.cast(num_examples, tf.float32)
  return tf.constant(1.0)


def build_fcl_client_work(model_fn: Callable, weights_type, *, num_clients: int,
                          config: FCLConfig) -> tff.learning.templates.ClientWorkProcess:
  """Builds the FCL client work for networks made by `model_fn` (an `EmbeddingNetwork` factory).

  Args:
    model_fn: no-arg callable returning a fresh `EmbeddingNetwork`.
    weights_type: the unplaced `ModelWeights` type of that network (g included).
    num_clients: size of the population; `client_index` values lie in [0, num_clients).
    config: an `FCLConfig`.

  Returns:
    A `ClientWorkProcess` whose `next` is
    (<state@SERVER, ModelWeights@CLIENTS, data*@CLIENTS> ->
     <state@SERVER, ClientResult(<model_delta, embedding_mean>, float32)@CLIENTS, measurements@SERVER>).
  """
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(ELEMENT_SPEC))
  state_type = tff.types.to_type(collections.OrderedDict(round_num=np.int32))
  client_optimizer = tff.learning.optimizers.build_adam(learning_rate=config.client_learning_rate)

  @tff.tensorflow.computation
  def initial_state():
    return collections.OrderedDict(round_num=tf.constant(0))

  @tff.federated_computation()
  def init_fn():
    return tff.federated_eval(initial_state, tff.SERVER)

  def local_update(network, state, initial_weights, data):
    weights = tff.learning.models.ModelWeights.from_model(network)
    tf.nest.map_structure(lambda v, t: v.assign(t), weights, initial_weights)
    client_index = data.take(1).reduce(tf.constant(0), lambda _, e: e["client_index"][0])
    features = data.map(lambda e: e["x"])
    reference = tf.identity(network.reference)
    seed = tf.stack([state["round_num"], client_index * 65536])
    train = local_training.train_locally(network, client_optimizer, features, reference, seed, config)
    # Eq. 5: consistency of the client's normalised embeddings with g.
    embedding_mean = local_training.mean_embedding(network, features)
    has_reference = tf.reduce_sum(tf.square(reference)) > 0
    distance = tf.where(has_reference, tf.reduce_sum(tf.square(embedding_mean - reference)), 0.0)
    weight = _aggregation_weight(config, distance, train["num_examples"])
    model_delta = tf.nest.map_structure(tf.subtract, initial_weights.trainable, weights.trainable)
    update = collections.OrderedDict(model_delta=model_delta, embedding_mean=embedding_mean)
    update_norm = tf.linalg.global_norm(tf.nest.flatten(model_delta))
    finite = tf.math.is_finite(tf.linalg.global_norm(tf.nest.flatten(update)))
    update = tf.nest.map_structure(lambda u: tf.where(finite, u, tf.zeros_like(u)), update)
    weight = tf.where(finite & (train["num_examples"] > 0), weight, 0.0)
    one_hot = tf.one_hot(client_index, num_clients)
    diagnostics = collections.OrderedDict(
        weight=weight, distance=distance, update_norm=update_norm,
        num_examples=tf.cast(train["num_examples"], tf.float32),
        distance_per_client=one_hot * distance, participated=one_hot,
        **{key: train[key] for key in local_training.TRAIN_LOSS_KEYS})
    return tff.learning.templates.ClientResult(update=update, update_weight=weight), diagnostics

  @tff.tensorflow.computation(state_type, weights_type, data_type)
  def client_update(state, initial_weights, data):
    # Variables are created outside the tf.function, which gives the assignments control dependencies.
    return tf.function(local_update)(model_fn(), state, initial_weights, data)

  @tff.tensorflow.computation(state_type)
  def advance(state):
    return collections.OrderedDict(round_num=state["round_num"] + 1)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    # Server -> clients: the round number (the weights, g included, come from the distributor).
    state_at_clients = tff.federated_broadcast(state)
    # Clients.
    client_result, diagnostics = tff.federated_map(client_update, (state_at_clients, weights, client_data))
    # Server.
    new_state = tff.federated_map(advance, state)
    measurements = tff.federated_zip(collections.OrderedDict(
        loss=tff.federated_mean(diagnostics.loss, weight=diagnostics.num_examples),
        contrastive_loss=tff.federated_mean(diagnostics.contrastive_loss, weight=diagnostics.num_examples),
        alignment_loss=tff.federated_mean(diagnostics.alignment_loss, weight=diagnostics.num_examples),
        weight_mean=tff.federated_mean(diagnostics.weight),
        weight_min=tff.federated_min(diagnostics.weight),
        weight_max=tff.federated_max(diagnostics.weight),
        distance_mean=tff.federated_mean(diagnostics.distance),
        client_update_norm=tff.federated_mean(diagnostics.update_norm),
        num_examples=tff.federated_sum(diagnostics.num_examples),
        distance_per_client=tff.federated_sum(diagnostics.distance_per_client),
        participated=tff.federated_sum(diagnostics.participated),
    ))
    return tff.templates.MeasuredProcessOutput(new_state, client_result, measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)
