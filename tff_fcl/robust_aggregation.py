"""Robust server aggregation: coordinate-wise median, trimmed mean, and median-norm bounding.

All three need every participating client's value at once. TFF has no "collect" intrinsic, so the
values are stacked by `tff.federated_aggregate` with a growing accumulator, one leaf at a time:

    zero       = leaf of shape [0, ...]                      (per leaf of the value structure)
    accumulate = concat(stack, v_i[None])   -> [n, ...]
    merge      = concat(stack_a, stack_b)
    report     = the reduction over axis 0, at @SERVER

Memory: the server (and every merge) holds n x P numbers for n clients and P parameters; for the
demo models (P ~ 10^4) and n <= 1000 that is at most ~40 MB of float32.

Factories:
  CoordinateMedianFactory   unweighted, result[j] = median_i v_i[j] (mean of the two middle values
                            when n is even, as numpy.median)
  TrimmedMeanFactory        unweighted, result[j] = mean of sorted_i v_i[j][k : n - k],
                            k = floor(trim_fraction * n) (as scipy.stats.trim_mean)
  MedianNormBoundingFactory weighted wrapper: each client's whole value v_i (all leaves, jointly) is
                            rescaled to L2 norm at most B = multiplier * median_i ||v_i||, computed in
                            the same round, before the inner weighted mean. With fewer than half of the
                            clients malicious, B lies within the honest clients' norms, so a scaled or
                            noise update cannot exceed it (the smallest fix found for issue 7 item 5:
                            consistency weights w_i in (0, 1] alone do not bound s * delta_i).
The two unweighted factories ignore client weights; use `tff.aggregators.as_weighted_aggregator`
where a weighted factory is required (FCL, `build_weighted_fed_avg`). Clients that send a zero update
with weight 0 (FCL's non-finite guard) still count as a zero value in the median.
"""

import collections
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


def coordinate_median(stacked: tf.Tensor) -> tf.Tensor:
  """[n, ...] -> [...]: per-coordinate median (mean of the two middle values for even n); 0 if n = 0."""
  n = tf.shape(stacked)[0]
  middle = lambda: tf.gather(tf.sort(stacked, axis=0), tf.stack([(n - 1) // 2, n // 2]), axis=0)
  return _empty_safe(stacked, lambda: tf.reduce_mean(middle(), axis=0))


def _empty_safe(stacked: tf.Tensor, reduce_fn: Callable[[], tf.Tensor]) -> tf.Tensor:
  return tf.cond(tf.shape(stacked)[0] > 0, reduce_fn,
                 lambda: tf.zeros(stacked.shape[1:], stacked.dtype))


def trimmed_mean(stacked: tf.Tensor, trim_fraction: float) -> tf.Tensor:
  """[n, ...] -> [...]: per-coordinate mean after dropping the k lowest and k highest values,
  k = floor(trim_fraction * n); 0 if n = 0."""
  n = tf.shape(stacked)[0]
  k = tf.cast(tf.floor(trim_fraction * tf.cast(n, tf.float64)), tf.int32)
  return _empty_safe(stacked, lambda: tf.reduce_mean(tf.sort(stacked, axis=0)[k:n - k], axis=0))


def _stacked_specs(value_type):
  return tf.nest.map_structure(
      lambda s: tf.TensorSpec([None] + s.shape.as_list(), s.dtype),
      tff.types.type_to_tf_tensor_specs(value_type))


def collect_and_reduce(value, value_type, reduce_fn: Callable):
  """value@CLIENTS -> OrderedDict(result=reduce_fn(stacked values), num_clients=n)@SERVER.

  `reduce_fn` maps a structure of stacked leaves [n, ...] (the value structure) to the result.
  Must be called inside a `tff.federated_computation`.
  """
  specs = tff.types.type_to_tf_tensor_specs(value_type)
  stacked_type = tff.types.tensorflow_to_type(_stacked_specs(value_type))

  @tff.tensorflow.computation
  def empty():
    return tf.nest.map_structure(lambda s: tf.zeros([0] + s.shape.as_list(), s.dtype), specs)

  @tff.tensorflow.computation(stacked_type, value_type)
  def accumulate(stacked, client_value):
    return tf.nest.map_structure(lambda a, v: tf.concat([a, v[tf.newaxis]], axis=0), stacked, client_value)

  @tff.tensorflow.computation(stacked_type, stacked_type)
  def merge(first, second):
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=0), first, second)

  @tff.tensorflow.computation(stacked_type)
  def report(stacked):
    count = tf.shape(tf.nest.flatten(stacked)[0])[0]
    return collections.OrderedDict(result=reduce_fn(stacked), num_clients=count)

  return tff.federated_aggregate(value, empty(), accumulate, merge, report)


class _CoordinatewiseFactory(tff.aggregators.UnweightedAggregationFactory):
  """Unweighted factory applying `self._reduce` ([n, ...] -> [...]) to every leaf of the stacked values.

  next: (<state=()@SERVER, value@CLIENTS> -> <state=()@SERVER, result=value@SERVER,
         measurements=OrderedDict(num_clients=int32)@SERVER>)
  """

  def _reduce(self, stacked: tf.Tensor) -> tf.Tensor:
    raise NotImplementedError

  def create(self, value_type) -> tff.templates.AggregationProcess:
    if not tff.types.is_structure_of_floats(value_type):
      raise TypeError(f"{type(self).__name__} needs a structure of float tensors. Found {value_type}.")

    @tff.federated_computation()
    def init_fn():
      return tff.federated_value((), tff.SERVER)

    @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      # Clients -> server: every value, stacked; server: the coordinate-wise reduction.
      reduced = collect_and_reduce(value, value_type, lambda s: tf.nest.map_structure(self._reduce, s))
      measurements = tff.federated_zip(collections.OrderedDict(num_clients=reduced.num_clients))
      return tff.templates.MeasuredProcessOutput(state=state, result=reduced.result, measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


class CoordinateMedianFactory(_CoordinatewiseFactory):
  """Coordinate-wise median of the clients' values (Yin et al., ICML 2018), unweighted."""

  def _reduce(self, stacked):
    return coordinate_median(stacked)


class TrimmedMeanFactory(_CoordinatewiseFactory):
  """Coordinate-wise trimmed mean (Yin et al., ICML 2018), unweighted; trims floor(beta n) per side."""

  def __init__(self, trim_fraction: float):
    if not 0 <= trim_fraction < 0.5:
      raise ValueError(f"trim_fraction must be in [0, 0.5). Found {trim_fraction}.")
    self._trim_fraction = float(trim_fraction)

  def _reduce(self, stacked):
    return trimmed_mean(stacked, self._trim_fraction)


class MedianNormBoundingFactory(tff.aggregators.WeightedAggregationFactory):
  """Rescales each client's value to L2 norm <= multiplier * (median client norm), then `inner`.

  next: (<state@SERVER, value@CLIENTS, weight@CLIENTS> -> <state@SERVER, result=value@SERVER,
         measurements=OrderedDict(norm_bound, bounded_clients, inner)@SERVER>)
  `norm_bound` is the round's B, `bounded_clients` the number of clients whose value was scaled down.
  """

  def __init__(self, inner: tff.aggregators.WeightedAggregationFactory, multiplier: float = 1.0):
    if not multiplier > 0:
      raise ValueError(f"multiplier must be positive. Found {multiplier}.")
    self._inner = inner
    self._multiplier = float(multiplier)

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    inner_process = self._inner.create(value_type, weight_type)
    multiplier = self._multiplier

    @tff.tensorflow.computation(value_type)
    def norm(value):
      return tf.linalg.global_norm([tf.cast(v, tf.float32) for v in tf.nest.flatten(value)])

    @tff.tensorflow.computation(value_type, np.float32, np.float32)
    def bound(value, value_norm, norm_bound):
      scale = tf.minimum(1.0, tf.math.divide_no_nan(norm_bound, value_norm))
      return tf.nest.map_structure(lambda v: v * tf.cast(scale, v.dtype), value)

    @tff.tensorflow.computation(np.float32, np.float32)
    def exceeds(value_norm, norm_bound):
      return tf.cast(value_norm > norm_bound, tf.int32)

    @tff.federated_computation(inner_process.initialize.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      # Clients: ||v_i||; server: B = multiplier * median_i ||v_i||, sent back to the clients.
      norms = tff.federated_map(norm, value)
      median = collect_and_reduce(norms, tff.TensorType(np.float32),
                                  lambda stacked: multiplier * coordinate_median(stacked))
      norm_bound = median.result
      norm_bound_at_clients = tff.federated_broadcast(norm_bound)
      # Clients: v_i * min(1, B / ||v_i||).
      bounded = tff.federated_map(bound, (value, norms, norm_bound_at_clients))
      bounded_clients = tff.federated_sum(tff.federated_map(exceeds, (norms, norm_bound_at_clients)))
      # Inner weighted aggregation of the bounded values.
      inner_output = inner_process.next(state, bounded, weight)
      measurements = tff.federated_zip(collections.OrderedDict(
          norm_bound=norm_bound, bounded_clients=bounded_clients, inner=inner_output.measurements))
      return tff.templates.MeasuredProcessOutput(
          state=inner_output.state, result=inner_output.result, measurements=measurements)

    return tff.templates.AggregationProcess(inner_process.initialize, next_fn)


AGGREGATORS = ("default", "median", "trimmed", "median_norm_bound", "tff_robust")


def build_aggregator(name: str, *, trim_fraction: float = 0.2,
                     bound_multiplier: float = 1.0) -> "tff.aggregators.WeightedAggregationFactory | None":
  """The weighted aggregation factory called `name` (None = the algorithm's own default).

  median / trimmed: the coordinate-wise factories above, as weighted aggregators (weights ignored);
  median_norm_bound: Eq. 6's consistency-weighted mean after median-norm bounding;
  tff_robust: TFF's `tff.learning.robust_aggregator(zeroing=True, clipping=True)` (weighted mean).
  """
  from tff_fcl import aggregation  # pylint: disable=g-import-not-at-top
  if name not in AGGREGATORS:
    raise ValueError(f"Unknown aggregator {name!r}; expected one of {', '.join(AGGREGATORS)}.")
  if name == "median":
    return tff.aggregators.as_weighted_aggregator(CoordinateMedianFactory())
  if name == "trimmed":
    return tff.aggregators.as_weighted_aggregator(TrimmedMeanFactory(trim_fraction))
  if name == "median_norm_bound":
    return MedianNormBoundingFactory(aggregation.ConsistencyWeightedMeanFactory(), bound_multiplier)
  if name == "tff_robust":
    return tff.learning.robust_aggregator(zeroing=True, clipping=True)
  return None
