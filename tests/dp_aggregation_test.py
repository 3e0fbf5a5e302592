"""Tests of tff_fcl/dp_aggregation.py: FCL's DP weighted sum (Eq. 6 with DP) and DP-FedAvg."""

import collections
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import aggregation
from tff_fcl import dp_aggregation

# The FCL update structure: a model delta of two tensors and the embedding mean m_i.
VALUE_TYPE = tff.to_type(collections.OrderedDict(
    model_delta=[(np.float32, [3]), (np.float32, [2])], embedding_mean=(np.float32, [2])))
WEIGHT_TYPE = tff.TensorType(np.float32)
CLIP = 2.0


def _value(kernel, bias, mean):
  return collections.OrderedDict(model_delta=[np.asarray(kernel, np.float32), np.asarray(bias, np.float32)],
                                 embedding_mean=np.asarray(mean, np.float32))


def _flat(structure):
  return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in tf.nest.flatten(structure)])


@pytest.fixture(scope="module")
def fixed_no_noise():
  """C = 2, z = 0, D = 1: the result is the clipped, clamped weighted sum itself."""
  return dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(0.0, CLIP, 1.0).create(
      VALUE_TYPE, WEIGHT_TYPE)


@pytest.fixture(scope="module")
def fixed_noised():
  """C = 2, z = 0.75, D = 3, seeded."""
  return dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(
      0.75, CLIP, 3.0, noise_seed=11).create(VALUE_TYPE, WEIGHT_TYPE)


def test_type_signature():
  process = dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(1.0, CLIP, 4.0).create(
      VALUE_TYPE, WEIGHT_TYPE)
  state_type = tff.FederatedType(collections.OrderedDict(
      clipping_norm=(), noise_seed=tff.TensorType(np.int64, [2])), tff.SERVER)
  expected = tff.FunctionType(
      parameter=collections.OrderedDict(state=state_type,
                                        value=tff.FederatedType(VALUE_TYPE, tff.CLIENTS),
                                        weight=tff.FederatedType(WEIGHT_TYPE, tff.CLIENTS)),
      result=tff.templates.MeasuredProcessOutput(
          state=state_type, result=tff.FederatedType(VALUE_TYPE, tff.SERVER),
          measurements=tff.FederatedType(collections.OrderedDict(
              clipping_norm=np.float32, clipped_count=np.int32, noise_stddev=np.float32), tff.SERVER)))
  assert process.next.type_signature.is_equivalent_to(expected)


def _numpy_weighted_sum(values, weights, clip):
  """Reference: sum_i clamp(w_i) * v_i * min(1, C / ||v_i||), zero for non-finite v_i or w_i."""
  total = 0.0
  for value, weight in zip(values, weights):
    flat = _flat(value)
    if not np.all(np.isfinite(flat)) or not np.isfinite(weight):
      continue
    scale = np.max(np.abs(flat))  # float64 would not overflow; scaled anyway, as the library does.
    norm = np.linalg.norm(flat / scale) * scale if scale > 0 else 0.0
    total = total + min(max(weight, 0.0), 1.0) * flat * min(1.0, clip / norm)
  return total


# Adversarial clients: huge values (their squares overflow float32), tiny and maximal weights,
# one part of the structure dominating the other, out-of-range and non-finite inputs.
ADVERSARIAL = [
    (_value([1e30, -1e30, 3e29], [2e30, 0], [0, 1e29]), 1.0),
    (_value([0, 0, 0], [0, 0], [3e20, -4e20]), 0.999),
    (_value([3, 4, 0], [0, 0], [0, 0]), 1e-6),
    (_value([0.1, 0.2, 0.3], [0.4, 0.5], [0.6, 0.7]), 1.0),    # norm 1.18 < C: not clipped
    (_value([5, 0, 0], [0, 12], [0, 0]), 7.5),                 # weight out of range: clamped to 1
    (_value([np.inf, 0, 0], [0, 0], [0, 0]), 1.0),             # non-finite: contributes zero
    (_value([1, 1, 1], [1, 1], [1, 1]), float("nan")),         # non-finite weight: zero
    (_value([1, np.nan, 1], [1, 1], [1, 1]), 0.5),             # NaN in the update: zero
]
OTHERS = [(_value([1, -2, 0.5], [0.25, 1], [0.5, -0.5]), 0.5),
          (_value([-0.1, 0, 0.3], [0, 0.2], [1, 1]), 0.875)]


@pytest.mark.parametrize("client", range(len(ADVERSARIAL)))
def test_one_client_changes_the_weighted_sum_by_at_most_c(fixed_no_noise, client):
  value, weight = ADVERSARIAL[client]
  without = fixed_no_noise.next(fixed_no_noise.initialize(), [v for v, _ in OTHERS], [w for _, w in OTHERS])
  with_client = fixed_no_noise.next(fixed_no_noise.initialize(), [v for v, _ in OTHERS] + [value],
                                    [w for _, w in OTHERS] + [weight])
  influence = np.linalg.norm(_flat(with_client.result) - _flat(without.result))
  assert influence <= CLIP * (1 + 1e-6)
  # Joint clipping across model_delta and embedding_mean, as numpy computes it.
  expected = _numpy_weighted_sum([v for v, _ in OTHERS] + [value], [w for _, w in OTHERS] + [weight], CLIP)
  np.testing.assert_allclose(_flat(with_client.result), expected, rtol=1e-5, atol=1e-6)


def test_clipped_count_and_clip_norm_measurements(fixed_no_noise):
  values = [v for v, _ in ADVERSARIAL]
  weights = [w for _, w in ADVERSARIAL]
  output = fixed_no_noise.next(fixed_no_noise.initialize(), values, weights)
  # Clipped: every client but the one of norm 1.18 < C (the inf and NaN ones count as clipped,
  # and the NaN-weight one has norm sqrt(7) > C).
  assert output.measurements["clipped_count"] == 7
  assert output.measurements["clipping_norm"] == CLIP
  assert output.measurements["noise_stddev"] == 0.0


def test_noised_influence_is_still_at_most_c_over_d(fixed_noised):
  """With the same noise seed the noise cancels: the difference is one client's clipped share / D."""
  value, weight = ADVERSARIAL[0]
  state = fixed_noised.initialize()
  without = fixed_noised.next(state, [v for v, _ in OTHERS], [w for _, w in OTHERS])
  with_client = fixed_noised.next(state, [v for v, _ in OTHERS] + [value], [w for _, w in OTHERS] + [weight])
  influence = np.linalg.norm(_flat(with_client.result) - _flat(without.result))
  assert influence == pytest.approx(CLIP / 3.0, rel=1e-5)


def test_noise_std_matches_z_c_over_d(fixed_noised):
  # The measurement and the seed chain on the FCL structure; the statistics on a larger one below.
  state = fixed_noised.initialize()
  first = fixed_noised.next(state, [_value([0] * 3, [0] * 2, [0] * 2)] * 2, [1.0, 1.0])
  again = fixed_noised.next(state, [_value([0] * 3, [0] * 2, [0] * 2)] * 2, [1.0, 1.0])
  np.testing.assert_array_equal(_flat(first.result), _flat(again.result))  # Seeded: reproducible.
  second = fixed_noised.next(first.state, [_value([0] * 3, [0] * 2, [0] * 2)] * 2, [1.0, 1.0])
  assert not np.array_equal(_flat(first.result), _flat(second.result))   # New noise each round.
  assert first.measurements["noise_stddev"] == pytest.approx(0.75 * CLIP)

  big_type = tff.to_type(collections.OrderedDict(model_delta=[(np.float32, [500])],
                                                 embedding_mean=(np.float32, [16])))
  z, clip, denominator = 0.75, CLIP, 3.0
  process = dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(
      z, clip, denominator, noise_seed=5).create(big_type, WEIGHT_TYPE)
  zero = collections.OrderedDict(model_delta=[np.zeros(500, np.float32)],
                                 embedding_mean=np.zeros(16, np.float32))
  state = process.initialize()
  draws = []
  for _ in range(10):
    output = process.next(state, [zero, zero], [1.0, 0.5])
    state = output.state
    draws.append(_flat(output.result))
  draws = np.concatenate(draws)
  # 5160 draws: the sample std's relative standard error is 1/sqrt(2 * 5160) = 0.0098, so rtol 0.05
  # is 5 standard errors (flake probability below 1e-6); like TFF's differential_privacy_test.
  np.testing.assert_allclose(np.std(draws), z * clip / denominator, rtol=0.05)
  assert abs(np.mean(draws)) < 5 * (z * clip / denominator) / math.sqrt(draws.size)


def test_noise_zero_and_no_clipping_equals_the_non_dp_weighted_mean():
  # Weights are dyadic, so sum(w) = 1.75 is exact in float32 and the fixed D equals it bit for bit.
  weights = [0.5, 0.25, 1.0]
  values = [_value([1e3, -2, 0.5], [0.25, 1], [0.5, -0.5]), _value([3, 4, 5], [6, 7], [8, 9]),
            _value([-0.1, 0.33, 0.3], [0, 0.2], [1e-3, 1])]
  dp = dp_aggregation.DPConsistencyWeightedSumFactory(
      value_noise_multiplier=0.0, clip_norm=math.inf, denominator=sum(weights)).create(VALUE_TYPE, WEIGHT_TYPE)
  non_dp = aggregation.ConsistencyWeightedMeanFactory().create(VALUE_TYPE, WEIGHT_TYPE)
  dp_output = dp.next(dp.initialize(), values, weights)
  dp_result = dp_output.result
  non_dp_result = non_dp.next(non_dp.initialize(), values, weights).result
  assert dp_output.measurements["noise_stddev"] == 0.0
  assert dp_output.measurements["clipped_count"] == 0
  for got, expected in zip(tf.nest.flatten(dp_result), tf.nest.flatten(non_dp_result)):
    np.testing.assert_array_equal(got, expected)


def test_empty_round_releases_noise_only(fixed_noised):
  """Poisson sampling may pick no client: the round still runs and its result is noise / D."""
  state = fixed_noised.initialize()
  empty = fixed_noised.next(state, [], [])
  zeros = fixed_noised.next(state, [_value([0] * 3, [0] * 2, [0] * 2)], [1.0])
  np.testing.assert_array_equal(_flat(empty.result), _flat(zeros.result))
  assert np.all(_flat(empty.result) != 0)


def test_adaptive_clip_norm_follows_the_geometric_quantile_update():
  factory = dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_adaptive(
      0.0, 2.0, initial_clip_norm=1.0, target_unclipped_quantile=0.5, learning_rate=0.2)
  process = factory.create(VALUE_TYPE, WEIGHT_TYPE)
  big = _value([30, 40, 0], [0, 0], [0, 0])
  state = process.initialize()
  norms = []
  for _ in range(3):
    output = process.next(state, [big, big], [1.0, 1.0])
    state = output.state
    norms.append(output.measurements["clipping_norm"])
    assert output.measurements["clipped_count"] == 2
  # No client is below the estimate: C <- C * exp(lr * target) each round.
  np.testing.assert_allclose(norms, [1.0, math.exp(0.1), math.exp(0.2)], rtol=1e-6)
  # The result is the clipped weighted sum: each client contributes C along its direction.
  np.testing.assert_allclose(output.result["model_delta"][0],
                             [2 * 0.6 * norms[-1] / 2.0, 2 * 0.8 * norms[-1] / 2.0, 0.0], rtol=1e-5)


def test_adaptive_noise_split_keeps_the_total_noise_multiplier():
  factory = dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_adaptive(2.0, 5.0)
  assert factory.noise_multiplier == 2.0
  s = dp_aggregation.clipped_count_stddev_for(2.0, 5.0)
  assert factory.value_noise_multiplier == pytest.approx(2.2)
  assert factory.value_noise_multiplier**-2 + (2 * s)**-2 == pytest.approx(2.0**-2)
  # Where TFF's default 0.05 K is accepted with at most 10% extra value noise, it is kept.
  assert dp_aggregation.clipped_count_stddev_for(0.5, 100.0) == 5.0
  assert dp_aggregation.clipped_count_stddev_for(0.0, 5.0) == 0.0


def test_tff_default_adaptive_dp_refuses_large_noise_and_ours_runs():
  # TFF's check (differential_privacy.adaptive_clip_noise_params): z >= 2 * 0.05 * K raises.
  with pytest.raises(ValueError, match="clipped_count_stddev"):
    tff.learning.dp_aggregator(2.0, 5.0)
  factory = dp_aggregation.dp_fedavg_aggregator(noise_multiplier=2.0, clients_per_round=5.0)
  process = factory.create(tff.TensorType(np.float32, [3]))
  output = process.next(process.initialize(), [np.array([3, 4, 0], np.float32)] * 3)
  assert np.all(np.isfinite(output.result)) and output.result.shape == (3,)


def test_build_dp_fedavg_builds_with_fixed_clipping():
  def model_fn():
    keras_model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    return tff.learning.models.from_keras_model(
        keras_model, loss=tf.keras.losses.MeanSquaredError(),
        input_spec=(tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)))
  process = dp_aggregation.build_dp_fedavg(
      model_fn, noise_multiplier=1.0, clients_per_round=10.0, clip_norm=0.5,
      client_optimizer=tff.learning.optimizers.build_sgdm(learning_rate=0.1))
  assert isinstance(process, tff.learning.templates.LearningProcess)


@pytest.mark.parametrize("call, message", [
    (lambda: dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(-1.0, 1.0, 5.0),
     "noise_multiplier must be a non-negative finite number. Found -1.0."),
    (lambda: dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(1.0, 0.0, 5.0),
     "clip_norm must be positive. Found 0.0."),
    (lambda: dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(1.0, 1.0, 0.0),
     "denominator must be positive. Found 0.0."),
    (lambda: dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(1.0, math.inf, 5.0),
     "clip_norm=inf (no clipping) has unbounded sensitivity; it needs noise 0. "
     "Found value_noise_multiplier=1.0."),
])
def test_bad_parameters_raise_one_line_errors(call, message):
  with pytest.raises(dp_aggregation.DPConfigError) as error:
    call()
  assert str(error.value) == message


def test_weight_type_must_be_float32_scalar():
  factory = dp_aggregation.DPConsistencyWeightedSumFactory.gaussian_fixed(1.0, 1.0, 5.0)
  with pytest.raises(TypeError, match="needs float32 scalar weights"):
    factory.create(VALUE_TYPE, tff.TensorType(np.int32))
