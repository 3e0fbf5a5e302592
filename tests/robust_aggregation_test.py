"""Median, trimmed mean and median-norm bounding against numpy on hand-made clients."""
import collections

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_fcl import aggregation
from tff_fcl import robust_aggregation

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    a=tff.TensorType(np.float32, [2]), b=tff.TensorType(np.float32, [])))
CLIENTS = [collections.OrderedDict(a=np.array(a, np.float32), b=np.float32(b))
           for a, b in (([1.0, -2.0], 3.0), ([4.0, 0.5], -1.0), ([100.0, 7.0], 2.0), ([-3.0, 1.0], 0.0),
                        ([2.0, 2.0], 50.0))]


def _stack(key):
  return np.stack([c[key] for c in CLIENTS])


def test_median_matches_numpy_for_odd_and_even_client_counts():
  process = robust_aggregation.CoordinateMedianFactory().create(VALUE_TYPE)
  for clients in (CLIENTS, CLIENTS[:4]):
    output = process.next(process.initialize(), clients)
    for key in ("a", "b"):
      expected = np.median(np.stack([c[key] for c in clients]), axis=0)
      np.testing.assert_allclose(output.result[key], expected, rtol=1e-6)
    assert output.measurements["num_clients"] == len(clients)
  np.testing.assert_allclose(process.next(process.initialize(), CLIENTS).result["a"], [2.0, 1.0])


def test_trimmed_mean_matches_numpy():
  process = robust_aggregation.TrimmedMeanFactory(0.2).create(VALUE_TYPE)
  output = process.next(process.initialize(), CLIENTS)
  for key in ("a", "b"):  # n = 5, k = floor(0.2 * 5) = 1 per side
    expected = np.sort(_stack(key), axis=0)[1:4].mean(axis=0)
    np.testing.assert_allclose(output.result[key], expected, rtol=1e-6)
  np.testing.assert_allclose(output.result["a"], [(1 + 2 + 4) / 3, (0.5 + 1 + 2) / 3], rtol=1e-6)


def test_trim_fraction_is_validated():
  with pytest.raises(ValueError, match=r"trim_fraction must be in \[0, 0.5\). Found 0.5."):
    robust_aggregation.TrimmedMeanFactory(0.5)


def test_median_norm_bounding_scales_large_updates_to_the_median_norm():
  value_type = tff.TensorType(np.float32, [2])
  factory = robust_aggregation.MedianNormBoundingFactory(aggregation.ConsistencyWeightedMeanFactory())
  process = factory.create(value_type, tff.TensorType(np.float32))
  values = [np.array(v, np.float32) for v in ([3.0, 4.0], [0.0, 1.0], [60.0, 80.0])]  # norms 5, 1, 100
  weights = [1.0, 0.5, 0.5]
  output = process.next(process.initialize(), values, weights)
  bounded = [values[0], values[1], values[2] * 5.0 / 100.0]  # median norm 5
  expected = sum(w * v for w, v in zip(weights, bounded)) / sum(weights)
  np.testing.assert_allclose(output.result, expected, rtol=1e-6)
  assert output.measurements["norm_bound"] == pytest.approx(5.0)
  assert output.measurements["bounded_clients"] == 1
  assert output.measurements["inner"]["weight_sum"] == pytest.approx(2.0)


def test_consistency_weights_alone_do_not_bound_a_scaled_update():
  """The finding of issue 7 item 5: w in (0, 1] leaves s * delta's influence growing with s."""
  process = aggregation.ConsistencyWeightedMeanFactory().create(tff.TensorType(np.float32, [1]),
                                                                tff.TensorType(np.float32))
  honest = [np.array([1.0], np.float32)] * 4
  for scale in (10.0, 1000.0):
    result = process.next(process.initialize(), honest + [np.array([-scale], np.float32)], [1.0] * 4 + [0.1]).result
    np.testing.assert_allclose(result, (4.0 - 0.1 * scale) / 4.1, rtol=1e-6)
