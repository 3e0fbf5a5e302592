"""`build_fcl_process`: federated contrastive learning as a composed `tff.learning` process.

    distributor  broadcast global ModelWeights            (tff.learning.templates.build_broadcast_process)
    client_work  local FCL training, w_i, m_i, g update     (client_work.build_fcl_client_work)
    aggregator   Eq. 6 consistency-weighted mean [+ clip]  (aggregation.build_consistency_aggregator)
    finalizer    server optimizer step on the mean update   (build_apply_optimizer_finalizer, SGD)

composed with `tff.learning.templates.compose_learning_process`. The learning state is a
`LearningAlgorithmState`; g lives in `state.client_work["reference"]`, so it is checkpointed with
the model.
"""

from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import aggregation
from tff_fcl.fcl import client_work as client_work_lib
from tff_fcl.fcl.config import FCLConfig


def model_weights_type(network: tf.keras.Model):
  """The unplaced TFF type of `ModelWeights.from_model(network)`."""
  weights = tff.learning.models.ModelWeights.from_model(network)
  return tff.types.to_type(tf.nest.map_structure(
      lambda v: tff.TensorType(v.dtype.as_numpy_dtype, v.shape), weights))


def build_fcl_process(model_fn: Callable, *, initial_weights: tff.learning.models.ModelWeights,
                      num_clients: int, config: FCLConfig,
                      aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None
                      ) -> tff.learning.templates.LearningProcess:
  """Builds the FCL learning process.

  Args:
    model_fn: no-arg callable returning a fresh `EmbeddingNetwork` (built, any initial values).
    initial_weights: ModelWeights of numpy arrays, the round-0 global model (seeded by the caller).
    num_clients: size of the client population (indices of `client_index` are in [0, num_clients)).
    config: an `FCLConfig`.
    aggregator: overrides the Eq. 6 aggregator (e.g. a DP or robust factory); must be weighted.

  Returns:
    A `tff.learning.templates.LearningProcess` whose `next` takes client data of
    `client_work.ELEMENT_SPEC` sequences.
  """
  if num_clients < 1:
    raise ValueError(f"num_clients must be positive. Found {num_clients}.")
  probe = model_fn()
  weights_type = model_weights_type(probe)
  projection_dim = probe.projection.units
  initial_values = tf.nest.map_structure(np.asarray, initial_weights)

  @tff.tensorflow.computation
  def initial_model_weights():
    return tf.nest.map_structure(tf.constant, initial_values)

  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  work = client_work_lib.build_fcl_client_work(
      model_fn, weights_type, projection_dim=projection_dim, num_clients=num_clients, config=config)
  aggregator = aggregator or aggregation.build_consistency_aggregator(config.clip_norm)
  aggregation_process = aggregator.create(weights_type.trainable, tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      tff.learning.optimizers.build_sgdm(learning_rate=config.server_learning_rate), weights_type)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights, distributor, work, aggregation_process, finalizer)
