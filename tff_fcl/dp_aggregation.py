"""Differentially private aggregation: FCL's consistency-weighted sum (Eq. 6 with DP) and DP-FedAvg.

FCL (`DPConsistencyWeightedSumFactory`). Each client i sends one structure v_i (for FCL
`OrderedDict(model_delta=<trainable deltas>, embedding_mean=float32[p])`) with weight
w_i = 1 / (1 + d_i) in (0, 1] (Eq. 5). Per round, with clip norm C, noise multiplier z and a FIXED
denominator D (the expected number of clients per round):

    @CLIENTS  w~_i = clamp(w_i, 0, 1)                  (w_i is already in (0, 1]; clamped defensively)
              v~_i = v_i * min(1, C / ||v_i||_2)       (joint L2 clip of the whole structure)
    @SERVER   S = sum_i w~_i v~_i + N(0, (z C)^2 I)    (Gaussian mechanism on the weighted sum)
              result = S / D                            (Eq. 6 as a noised, normalised weighted sum)

||w~_i v~_i|| <= C, so adding or removing one client changes the weighted sum by at most C and the
round is the Gaussian mechanism with noise multiplier z (tff_fcl/privacy.py accounts for it). The
data-dependent sum_i w_i of the non-DP mean (tff_fcl/aggregation.py) is not released. A client whose
update or weight is not finite contributes zero (and counts as clipped).

The clip norm is fixed, or adaptive: an estimate of the `target_unclipped_quantile` of the clients'
norms, by TFF's `PrivateQuantileEstimationProcess` with a noised clipped count (Andrew, Thakkar et al.
2021, https://arxiv.org/abs/1905.03871). As in TFF's `DifferentiallyPrivateFactory.gaussian_adaptive`,
the total noise multiplier z is split between the values (z_v) and the count of norms below the
estimate (records +-1/2, noise std s), 1/z^2 = 1/z_v^2 + 1/(2 s)^2, so that both together are one
Gaussian mechanism with multiplier z and the accounting of z is unchanged.

DP-FedAvg (`dp_fedavg_aggregator`, `build_dp_fedavg`): TFF's own `DifferentiallyPrivateFactory`
(fixed or adaptive clipping of each client's model delta, noise, fixed denominator) in
`tff.learning.algorithms.build_unweighted_fed_avg` (McMahan et al. 2018,
https://arxiv.org/abs/1710.06963).
"""

import collections
import math
from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp

# TFF's default clipped-count noise is 0.05 * clients_per_round, and it refuses a noise multiplier
# z >= 2 * clipped_count_stddev (i.e. z >= 0.1 * clients_per_round). We choose the smallest
# clipped-count noise that makes the value noise at most this factor above z instead.
MAX_VALUE_NOISE_INFLATION = 1.1
DEFAULT_INITIAL_CLIP_NORM = 0.1
DEFAULT_TARGET_UNCLIPPED_QUANTILE = 0.5
DEFAULT_CLIP_LEARNING_RATE = 0.2

ClipNorm = Union[float, tff.templates.EstimationProcess]


class DPConfigError(ValueError):
  """A DP aggregation parameter is out of range (one-line message naming it and its value)."""


def clipped_count_stddev_for(noise_multiplier: float, clients_per_round: float) -> float:
  """Noise std s on the clipped count of adaptive clipping, so that TFF accepts any z.

  TFF's default is s = 0.05 K (K expected clients per round); it spends privacy on the count, and
  the value noise becomes z_v = (z^-2 - (2 s)^-2)^-1/2, undefined when z >= 2 s. We take
  s = max(0.05 K, s_min) with s_min the smallest s whose z_v <= MAX_VALUE_NOISE_INFLATION * z:

      s_min = z / (2 sqrt(1 - 1 / r^2)),   r = MAX_VALUE_NOISE_INFLATION  (s_min ~ 1.2 z for r = 1.1)

  so the count takes at most 1 - 1/r^2 (17%) of the privacy "precision" 1/z^2 and the value noise
  at most 10% more than z. The clip estimate then moves more noisily (its per-round step is
  learning_rate * (noisy fraction - target), noise std s / K), which the geometric update
  tolerates over rounds.
  """
  _check_nonnegative(noise_multiplier, "noise_multiplier")
  _check_positive(clients_per_round, "clients_per_round")
  if noise_multiplier == 0:
    return 0.0
  r = MAX_VALUE_NOISE_INFLATION
  s_min = noise_multiplier / (2.0 * math.sqrt(1.0 - 1.0 / r**2))
  return max(0.05 * clients_per_round, s_min)


def value_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
  """z_v with 1/z^2 = 1/z_v^2 + 1/(2 s)^2: the value noise of adaptive clipping for total z."""
  if noise_multiplier == 0:
    return 0.0
  if noise_multiplier >= 2.0 * clipped_count_stddev:
    raise DPConfigError(
        f"clipped_count_stddev={clipped_count_stddev} is too small for noise_multiplier="
        f"{noise_multiplier}: it must exceed noise_multiplier / 2.")
  return (noise_multiplier**-2 - (2.0 * clipped_count_stddev)**-2)**-0.5


def _constant_clip_process(clip_norm: float) -> tff.templates.EstimationProcess:
  """An EstimationProcess that always reports `clip_norm` (one code path for fixed and adaptive)."""
  init_fn = tff.federated_computation(lambda: tff.federated_value((), tff.SERVER))

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(np.float32, tff.CLIENTS))
  def next_fn(state, norms):
    del norms
    return state

  @tff.federated_computation(init_fn.type_signature.result)
  def report_fn(state):
    del state
    return tff.federated_value(np.float32(clip_norm), tff.SERVER)

  return tff.templates.EstimationProcess(init_fn, next_fn, report_fn)


def _global_l2_norm(structure) -> tf.Tensor:
  """float32 L2 norm of all tensors together, without overflow for large finite values."""
  flat = [tf.cast(tf.reshape(t, [-1]), tf.float32) for t in tf.nest.flatten(structure)]
  values = tf.concat(flat, axis=0)
  scale = tf.reduce_max(tf.abs(values))
  safe_scale = tf.where(scale > 0, scale, 1.0)
  return safe_scale * tf.norm(values / safe_scale)


class DPConsistencyWeightedSumFactory(tff.aggregators.WeightedAggregationFactory):
  """`tff.aggregators` factory: Eq. 6 with client-level DP (module docstring has the maths).

  The created process has
    initialize: ( -> <clipping_norm=C_state, noise_seed=int64[2]>@SERVER)
    next: (<state@SERVER, value@CLIENTS, weight@CLIENTS> ->
           <state=@SERVER, result=value_type@SERVER, measurements=@SERVER>)
  with value any structure of float tensors and weight a float32 scalar per client. The result is
  (sum_i w~_i v~_i + noise) / D, in the value's structure and dtypes.

  Measurements (all @SERVER):
    clipping_norm: float32, the C used this round.
    clipped_count: int32, clients whose norm exceeded C (or was not finite). Not noised: a
      diagnostic that is NOT covered by the DP guarantee (TFF's clipping factories report the same).
    noise_stddev: float32, z_v * C, the std of the noise on each coordinate of the weighted sum;
      the result's noise std is noise_stddev / D.

  The noise is drawn with `tf.random.stateless_normal` from a seed kept in the server state (a new
  one is derived each round): fixed `noise_seed` makes runs reproducible (tests), None draws the
  initial seed at random. The seed never leaves the server (central DP, trusted server).
  """

  def __init__(self, *, value_noise_multiplier: float, clip_norm: ClipNorm, denominator: float,
               noise_multiplier: Optional[float] = None, noise_seed: Optional[int] = None):
    """Low-level constructor; prefer `gaussian_fixed` / `gaussian_adaptive`.

    Args:
      value_noise_multiplier: z_v >= 0, noise std on the weighted sum is z_v * C.
      clip_norm: C > 0 (math.inf disables clipping, allowed only with z_v = 0), or an
        EstimationProcess reporting C@SERVER from the clients' norms (float32@CLIENTS).
      denominator: D > 0, the fixed divisor, normally the expected number of clients per round.
      noise_multiplier: the total z to account for (defaults to z_v; larger with adaptive clipping).
      noise_seed: seed of the noise, or None for a random one.
    """
    _check_nonnegative(value_noise_multiplier, "value_noise_multiplier")
    _check_positive(denominator, "denominator")
    if isinstance(clip_norm, tff.templates.EstimationProcess):
      self._clip_process = clip_norm
    else:
      _check_positive(clip_norm, "clip_norm")
      if math.isinf(clip_norm) and value_noise_multiplier > 0:
        raise DPConfigError("clip_norm=inf (no clipping) has unbounded sensitivity; "
                            f"it needs noise 0. Found value_noise_multiplier={value_noise_multiplier}.")
      self._clip_process = _constant_clip_process(float(clip_norm))
    self._value_noise_multiplier = float(value_noise_multiplier)
    self._noise_multiplier = float(value_noise_multiplier if noise_multiplier is None
                                   else noise_multiplier)
    self._denominator = float(denominator)
    self._noise_seed = noise_seed

  @classmethod
  def gaussian_fixed(cls, noise_multiplier: float, clip_norm: float, clients_per_round: float,
                     noise_seed: Optional[int] = None) -> "DPConsistencyWeightedSumFactory":
    """Fixed clip norm C, noise std z C on the weighted sum, denominator = clients_per_round."""
    _check_nonnegative(noise_multiplier, "noise_multiplier")
    return cls(value_noise_multiplier=noise_multiplier, clip_norm=clip_norm,
               denominator=clients_per_round, noise_seed=noise_seed)

  @classmethod
  def gaussian_adaptive(cls, noise_multiplier: float, clients_per_round: float, *,
                        initial_clip_norm: float = DEFAULT_INITIAL_CLIP_NORM,
                        target_unclipped_quantile: float = DEFAULT_TARGET_UNCLIPPED_QUANTILE,
                        learning_rate: float = DEFAULT_CLIP_LEARNING_RATE,
                        clipped_count_stddev: Optional[float] = None,
                        noise_seed: Optional[int] = None) -> "DPConsistencyWeightedSumFactory":
    """Adaptive C (geometric quantile estimate of the clients' joint norms), total multiplier z.

    clipped_count_stddev defaults to `clipped_count_stddev_for(z, clients_per_round)`, so any z is
    accepted; the value noise is `value_noise_multiplier(z, clipped_count_stddev)`.
    """
    _check_nonnegative(noise_multiplier, "noise_multiplier")
    _check_positive(clients_per_round, "clients_per_round")
    _check_positive(initial_clip_norm, "initial_clip_norm")
    _check_positive(learning_rate, "learning_rate")
    if not 0 <= target_unclipped_quantile <= 1:
      raise DPConfigError(
          f"target_unclipped_quantile must be in [0, 1]. Found {target_unclipped_quantile}.")
    if clipped_count_stddev is None:
      clipped_count_stddev = clipped_count_stddev_for(noise_multiplier, clients_per_round)
    _check_nonnegative(clipped_count_stddev, "clipped_count_stddev")
    quantile_process = tff.aggregators.PrivateQuantileEstimationProcess(
        tfp.QuantileEstimatorQuery(
            initial_estimate=float(initial_clip_norm),
            target_quantile=float(target_unclipped_quantile),
            learning_rate=float(learning_rate),
            below_estimate_stddev=float(clipped_count_stddev),
            expected_num_records=float(clients_per_round),
            geometric_update=True))
    return cls(value_noise_multiplier=value_noise_multiplier(noise_multiplier, clipped_count_stddev),
               clip_norm=quantile_process, denominator=clients_per_round,
               noise_multiplier=noise_multiplier, noise_seed=noise_seed)

  @property
  def noise_multiplier(self) -> float:
    """The total noise multiplier z to give the accountant (tff_fcl/privacy.py)."""
    return self._noise_multiplier

  @property
  def value_noise_multiplier(self) -> float:
    """z_v: the noise on the weighted sum is N(0, (z_v C)^2)."""
    return self._value_noise_multiplier

  @property
  def denominator(self) -> float:
    return self._denominator

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not weight_type.is_equivalent_to(tff.TensorType(np.float32)):
      raise TypeError(f"DPConsistencyWeightedSumFactory needs float32 scalar weights. Found {weight_type}.")
    if not tff.types.is_structure_of_floats(value_type):
      raise TypeError(f"DPConsistencyWeightedSumFactory needs a structure of float tensors. Found {value_type}.")
    clip_process = self._clip_process
    value_stddev = self._value_noise_multiplier
    denominator = self._denominator
    noise_seed = self._noise_seed

    @tff.tensorflow.computation
    def initial_seed():
      if noise_seed is None:
        return tf.random.uniform([2], minval=0, maxval=np.iinfo(np.int64).max, dtype=tf.int64)
      return tf.constant([0, noise_seed], tf.int64)

    @tff.federated_computation()
    def init_fn():
      return tff.federated_zip(collections.OrderedDict(
          clipping_norm=clip_process.initialize(),
          noise_seed=tff.federated_eval(initial_seed, tff.SERVER)))

    @tff.tensorflow.computation(value_type, weight_type, np.float32)
    def clip_and_weight(value, weight, clip_norm):
      weight = tf.where(tf.math.is_finite(weight), tf.clip_by_value(weight, 0.0, 1.0), 0.0)
      norm = _global_l2_norm(value)
      finite = tf.math.is_finite(norm)
      scale = tf.where(norm > clip_norm, clip_norm / norm, 1.0)
      factor = scale * weight
      weighted = tf.nest.map_structure(
          lambda v: tf.where(finite, v * tf.cast(factor, v.dtype), tf.zeros_like(v)), value)
      was_clipped = tf.cast(tf.logical_or(norm > clip_norm, tf.logical_not(finite)), tf.int32)
      return weighted, norm, was_clipped

    sum_type = clip_and_weight.type_signature.result[0]
    seed_type = tff.TensorType(np.int64, [2])

    @tff.tensorflow.computation(sum_type, np.float32, seed_type)
    def noise_and_divide(weighted_sum, clip_norm, seed):
      flat = tf.nest.flatten(weighted_sum)
      seeds = tf.random.experimental.stateless_split(seed, num=len(flat) + 1)
      # No noise op at all when z_v = 0 (then C may be inf, and 0 * inf would be NaN).
      stddev = value_stddev * clip_norm if value_stddev > 0 else tf.constant(0.0, tf.float32)
      if value_stddev > 0:
        flat = [t + tf.random.stateless_normal(tf.shape(t), seeds[i], stddev=tf.cast(stddev, t.dtype),
                                               dtype=t.dtype)
                for i, t in enumerate(flat)]
      # divide_no_nan (D > 0, so it is plain division) as in the non-DP mean, so that z = 0 without
      # clipping reproduces it bit for bit (grappler may rewrite "/ constant" as a product).
      result = tf.nest.pack_sequence_as(
          weighted_sum, [tf.math.divide_no_nan(t, tf.cast(denominator, t.dtype)) for t in flat])
      return result, seeds[len(flat)], stddev

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      clip_norm = clip_process.report(state.clipping_norm)
      # Clients: joint clip to C, times the clamped weight.
      weighted, norms, was_clipped = tff.federated_map(
          clip_and_weight, (value, weight, tff.federated_broadcast(clip_norm)))
      # Aggregation: the weighted sum, the clipped count, the next clip norm estimate.
      weighted_sum = tff.federated_sum(weighted)
      clipped_count = tff.federated_sum(was_clipped)
      new_clip_state = clip_process.next(state.clipping_norm, norms)
      # Server: Gaussian noise with std z_v * C, then the fixed denominator D.
      result, new_seed, noise_stddev = tff.federated_map(
          noise_and_divide, (weighted_sum, clip_norm, state.noise_seed))
      new_state = tff.federated_zip(collections.OrderedDict(
          clipping_norm=new_clip_state, noise_seed=new_seed))
      measurements = tff.federated_zip(collections.OrderedDict(
          clipping_norm=clip_norm, clipped_count=clipped_count, noise_stddev=noise_stddev))
      return tff.templates.MeasuredProcessOutput(state=new_state, result=result,
                                                 measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def fcl_dp_aggregator(*, noise_multiplier: float, clients_per_round: float,
                      clip_norm: Optional[float] = None,
                      noise_seed: Optional[int] = None) -> DPConsistencyWeightedSumFactory:
  """FCL's DP aggregator: fixed clipping when `clip_norm` is given, adaptive (TFF defaults) if None."""
  if clip_norm is None:
    return DPConsistencyWeightedSumFactory.gaussian_adaptive(
        noise_multiplier, clients_per_round, noise_seed=noise_seed)
  return DPConsistencyWeightedSumFactory.gaussian_fixed(
      noise_multiplier, clip_norm, clients_per_round, noise_seed=noise_seed)


def dp_fedavg_aggregator(*, noise_multiplier: float, clients_per_round: float,
                         clip_norm: Optional[float] = None) -> tff.aggregators.UnweightedAggregationFactory:
  """TFF's `DifferentiallyPrivateFactory`: `gaussian_fixed` if `clip_norm`, else `gaussian_adaptive`.

  TFF's adaptive mode (`differential_privacy.adaptive_clip_noise_params`) raises ValueError
  ("clipped_count_stddev ... is too low") when z >= 2 * clipped_count_stddev, i.e. with its default
  0.05 K for any z >= 0.1 K. We pass `clipped_count_stddev_for(z, K)`: TFF's default 0.05 K while
  that costs at most 10% extra value noise (z <= about K / 24), a larger one otherwise, so every
  z is accepted. Unlike `tff.learning.dp_aggregator` there is no adaptive zeroing in front (the
  clipping already bounds every update).
  """
  _check_nonnegative(noise_multiplier, "noise_multiplier")
  _check_positive(clients_per_round, "clients_per_round")
  if clip_norm is not None:
    _check_positive(clip_norm, "clip_norm")
    return tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        float(noise_multiplier), float(clients_per_round), float(clip_norm))
  return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
      float(noise_multiplier), float(clients_per_round),
      initial_l2_norm_clip=DEFAULT_INITIAL_CLIP_NORM,
      target_unclipped_quantile=DEFAULT_TARGET_UNCLIPPED_QUANTILE,
      learning_rate=DEFAULT_CLIP_LEARNING_RATE,
      clipped_count_stddev=clipped_count_stddev_for(noise_multiplier, clients_per_round))


def build_dp_fedavg(model_fn: Callable, *, noise_multiplier: float, clients_per_round: float,
                    client_optimizer: tff.learning.optimizers.Optimizer,
                    server_optimizer: Optional[tff.learning.optimizers.Optimizer] = None,
                    clip_norm: Optional[float] = None) -> tff.learning.templates.LearningProcess:
  """DP-FedAvg baseline: `build_unweighted_fed_avg` with `dp_fedavg_aggregator`.

  Args:
    model_fn: as for `tff.learning.algorithms.build_unweighted_fed_avg`.
    noise_multiplier: total z (accounted by tff_fcl/privacy.py with Poisson sampling).
    clients_per_round: expected clients per round K, the fixed denominator.
    client_optimizer: a `tff.learning.optimizers` optimizer for local training.
    server_optimizer: defaults to SGD with learning rate 1.0 (the plain DP-FedAvg step).
    clip_norm: fixed clip norm, or None for adaptive clipping.
  """
  return tff.learning.algorithms.build_unweighted_fed_avg(
      model_fn,
      client_optimizer_fn=client_optimizer,
      server_optimizer_fn=server_optimizer or tff.learning.optimizers.build_sgdm(learning_rate=1.0),
      model_aggregator=dp_fedavg_aggregator(noise_multiplier=noise_multiplier,
                                            clients_per_round=clients_per_round,
                                            clip_norm=clip_norm))


def _check_positive(value, name):
  if not (isinstance(value, (int, float)) and value > 0):
    raise DPConfigError(f"{name} must be positive. Found {value}.")


def _check_nonnegative(value, name):
  if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
    raise DPConfigError(f"{name} must be a non-negative finite number. Found {value}.")
