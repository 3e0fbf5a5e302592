"""Server aggregation of FCL model updates: the consistency-weighted mean of Eq. 6.

The paper writes Eq. 6 as theta_global = sum_i w_i * delta_i. An unnormalised sum makes the server
step grow with the number of clients, so tff-fcl implements the normalised weighted mean

    delta = sum_i w_i * delta_i / sum_i w_i,     w_i = 1 / (1 + d_i)  (Eq. 5, from client work)

(BUILD_NOTES.md records the deviation). Optional per-client L2 clipping of delta_i wraps the mean with
TFF's own `tff.aggregators.clipping_factory`, and the numerator sum is an inner factory
(`tff.aggregators.SumFactory` by default) so that a noised sum can be substituted for differential
privacy without touching the mean.
"""

import collections
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


class ConsistencyWeightedMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """`tff.aggregators` factory for sum(w_i * v_i) / sum(w_i) (Eq. 6, normalised).

  The created process has
    next: (<state@SERVER, value@CLIENTS, weight@CLIENTS> ->
           <state=@SERVER, result=value_type@SERVER, measurements=@SERVER>)
  with weight a float32 scalar per client. When sum(w_i) = 0 the result is all zeros.
  Measurements: `numerator` (the inner sum's measurements) and `weight_sum` = sum(w_i).
  """

  def __init__(self, numerator_factory: Optional[tff.aggregators.UnweightedAggregationFactory] = None):
    self._numerator_factory = numerator_factory or tff.aggregators.SumFactory()

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not weight_type.is_equivalent_to(tff.TensorType(np.float32)):
      raise TypeError(f"ConsistencyWeightedMeanFactory needs float32 scalar weights. Found {weight_type}.")
    numerator_process = self._numerator_factory.create(value_type)

    @tff.federated_computation()
    def init_fn():
      return numerator_process.initialize()

    @tff.tensorflow.computation(value_type, weight_type)
    def weight_value(value, weight):
      return tf.nest.map_structure(lambda v: v * tf.cast(weight, v.dtype), value)

    @tff.tensorflow.computation(numerator_process.next.type_signature.result.result.member, np.float32)
    def divide(numerator, weight_sum):
      return tf.nest.map_structure(lambda v: tf.math.divide_no_nan(v, tf.cast(weight_sum, v.dtype)),
                                   numerator)

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      # Clients: w_i * delta_i.
      weighted_values = tff.federated_map(weight_value, (value, weight))
      # Inner aggregation: sum_i w_i * delta_i (the place for a noised sum).
      numerator_output = numerator_process.next(state, weighted_values)
      weight_sum = tff.federated_sum(weight)
      # Server: divide by sum_i w_i.
      mean = tff.federated_map(divide, (numerator_output.result, weight_sum))
      measurements = tff.federated_zip(collections.OrderedDict(
          numerator=numerator_output.measurements, weight_sum=weight_sum))
      return tff.templates.MeasuredProcessOutput(
          state=numerator_output.state, result=mean, measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def build_consistency_aggregator(clip_norm: Optional[float] = None) -> tff.aggregators.WeightedAggregationFactory:
  """Eq. 6 as a normalised weighted mean, with each delta_i first clipped to L2 norm `clip_norm`."""
  mean = ConsistencyWeightedMeanFactory()
  if clip_norm is None:
    return mean
  if not clip_norm > 0:
    raise ValueError(f"clip_norm must be positive. Found {clip_norm}.")
  return tff.aggregators.clipping_factory(float(clip_norm), mean)
