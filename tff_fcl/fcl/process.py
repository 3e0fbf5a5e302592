"""`build_fcl_process`: federated contrastive learning as a composed `tff.learning` process.

    distributor  broadcast the global ModelWeights, g included  (tff.learning.templates.build_broadcast_process)
    client_work  local FCL training, m_i, d_i, w_i (Eq. 1-5)    (client_work.build_fcl_client_work)
    aggregator   Eq. 6 weighted mean of <model_delta, m_i>      (aggregation.build_consistency_aggregator,
                 [+ joint clipping, or a DP / robust factory]    or the `aggregator` argument)
    finalizer    server optimizer step; g <- normalize(beta g + (1 - beta) m)   (finalizer.build_fcl_finalizer)

composed with `tff.learning.templates.compose_learning_process`. The learning state is a
`LearningAlgorithmState`; g is a non-trainable weight of `global_model_weights`, so it is broadcast,
checkpointed and exported with the model (`reference_from_weights` reads it).
"""

from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import aggregation
from tff_fcl.fcl import client_work as client_work_lib
from tff_fcl.fcl import finalizer as finalizer_lib
from tff_fcl.fcl.config import FCLConfig


def model_weights_type(network: tf.keras.Model):
  """The unplaced TFF type of `ModelWeights.from_model(network)`."""
  weights = tff.learning.models.ModelWeights.from_model(network)
  return tff.types.to_type(tf.nest.map_structure(
      lambda v: tff.TensorType(v.dtype.as_numpy_dtype, v.shape), weights))


def reference_from_weights(weights: tff.learning.models.ModelWeights, network) -> np.ndarray:
  """g, float32 [p], from global model weights of `network`'s architecture."""
  return np.asarray(weights.non_trainable[network.reference_index()])


def build_fcl_process(model_fn: Callable, *, initial_weights: tff.learning.models.ModelWeights,
                      num_clients: int, config: FCLConfig,
                      aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
                      client_work_wrapper: Optional[Callable] = None,
                      ) -> tff.learning.templates.LearningProcess:
  """Builds the FCL learning process.

  Args:
    model_fn: no-arg callable returning a fresh `EmbeddingNetwork` (built, any initial values).
    initial_weights: ModelWeights of numpy arrays, the round-0 global model (seeded by the caller),
      with g (normally zeros) among its non-trainable weights.
    num_clients: size of the client population (indices of `client_index` are in [0, num_clients)).
    config: an `FCLConfig`.
    aggregator: replaces the Eq. 6 aggregator (e.g. a DP or robust factory); must be weighted. It
      aggregates `client_work.client_update_type(...)` values with float32 weights.
    client_work_wrapper: ClientWorkProcess -> ClientWorkProcess with the same type signature, applied
      to FCL's client work (e.g. simulated malicious clients); None leaves it as it is.

  Returns:
    A `tff.learning.templates.LearningProcess` whose `next` takes client data of
    `client_work.ELEMENT_SPEC` sequences.
  """
  if num_clients < 1:
    raise ValueError(f"num_clients must be positive. Found {num_clients}.")
  probe = model_fn()
  weights_type = model_weights_type(probe)
  update_type = client_work_lib.client_update_type(weights_type, probe.projection.units)
  initial_values = tf.nest.map_structure(np.asarray, initial_weights)

  @tff.tensorflow.computation
  def initial_model_weights():
    return tf.nest.map_structure(tf.constant, initial_values)

  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  work = client_work_lib.build_fcl_client_work(model_fn, weights_type, num_clients=num_clients,
                                               config=config)
  if client_work_wrapper is not None:
    work = client_work_wrapper(work)
  aggregator = aggregator or aggregation.build_consistency_aggregator(config.clip_norm)
  aggregation_process = aggregator.create(update_type, tff.TensorType(np.float32))
  finalizer = finalizer_lib.build_fcl_finalizer(
      weights_type, update_type, reference_index=probe.reference_index(),
      server_optimizer=tff.learning.optimizers.build_sgdm(learning_rate=config.server_learning_rate),
      reference_momentum=config.reference_momentum)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights, distributor, work, aggregation_process, finalizer)
