"""The Eq. 6 aggregator: type signature, weights, normalisation and clipping against numpy."""
import collections

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_fcl import aggregation

VALUE_TYPE = tff.types.to_type([tff.TensorType(np.float32, [2]), tff.TensorType(np.float32)])
CLIENT_VALUES = [
    [np.array([1.0, 2.0], np.float32), np.float32(3.0)],
    [np.array([4.0, 0.0], np.float32), np.float32(-1.0)],
    [np.array([0.0, 6.0], np.float32), np.float32(2.0)],
]
CLIENT_WEIGHTS = [np.float32(1.0), np.float32(0.5), np.float32(0.25)]  # w = 1/(1+d), d = 0, 1, 3


def _numpy_weighted_mean(values, weights):
  flat = [np.concatenate([np.ravel(v) for v in client]) for client in values]
  return np.sum([w * f for w, f in zip(weights, flat)], axis=0) / np.sum(weights)


def test_type_signature():
  process = aggregation.ConsistencyWeightedMeanFactory().create(VALUE_TYPE, tff.TensorType(np.float32))
  expected = tff.FunctionType(
      parameter=collections.OrderedDict(
          state=tff.FederatedType((), tff.SERVER),
          value=tff.FederatedType(VALUE_TYPE, tff.CLIENTS),
          weight=tff.FederatedType(np.float32, tff.CLIENTS)),
      result=tff.templates.MeasuredProcessOutput(
          state=tff.FederatedType((), tff.SERVER),
          result=tff.FederatedType(VALUE_TYPE, tff.SERVER),
          measurements=tff.FederatedType(
              collections.OrderedDict(numerator=(), weight_sum=np.float32), tff.SERVER)))
  assert process.next.type_signature.is_equivalent_to(expected), process.next.type_signature


def test_weighted_mean_matches_numpy():
  process = aggregation.build_consistency_aggregator().create(VALUE_TYPE, tff.TensorType(np.float32))
  output = process.next(process.initialize(), CLIENT_VALUES, CLIENT_WEIGHTS)
  got = np.concatenate([np.ravel(v) for v in output.result])
  # (1*[1,2,3] + 0.5*[4,0,-1] + 0.25*[0,6,2]) / 1.75 = [3, 3.5, 3] / 1.75
  np.testing.assert_allclose(got, [3 / 1.75, 3.5 / 1.75, 3 / 1.75], rtol=1e-6)
  np.testing.assert_allclose(got, _numpy_weighted_mean(CLIENT_VALUES, CLIENT_WEIGHTS), rtol=1e-6)
  assert output.measurements["weight_sum"] == pytest.approx(1.75)


def test_normalised_not_summed():
  """Doubling every weight leaves the result unchanged (the paper's unnormalised sum would double)."""
  process = aggregation.build_consistency_aggregator().create(VALUE_TYPE, tff.TensorType(np.float32))
  once = process.next(process.initialize(), CLIENT_VALUES, CLIENT_WEIGHTS).result
  twice = process.next(process.initialize(), CLIENT_VALUES, [np.float32(2 * w) for w in CLIENT_WEIGHTS]).result
  for a, b in zip(once, twice):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_zero_weights_give_zero_update():
  process = aggregation.build_consistency_aggregator().create(VALUE_TYPE, tff.TensorType(np.float32))
  output = process.next(process.initialize(), CLIENT_VALUES, [np.float32(0)] * 3)
  for part in output.result:
    np.testing.assert_array_equal(part, np.zeros_like(part))


def test_clipping_before_weighting_matches_numpy():
  clip = 2.0
  process = aggregation.build_consistency_aggregator(clip_norm=clip).create(
      VALUE_TYPE, tff.TensorType(np.float32))
  output = process.next(process.initialize(), CLIENT_VALUES, CLIENT_WEIGHTS)
  clipped = []
  for client in CLIENT_VALUES:
    flat = np.concatenate([np.ravel(v) for v in client])
    clipped.append([flat * min(1.0, clip / np.linalg.norm(flat))])
  got = np.concatenate([np.ravel(v) for v in output.result])
  np.testing.assert_allclose(got, _numpy_weighted_mean(clipped, CLIENT_WEIGHTS), rtol=1e-5)
  assert output.measurements["clipped_count"] == 3  # norms sqrt(14), sqrt(17), sqrt(40) all exceed 2


def test_rejects_bad_clip_norm():
  with pytest.raises(ValueError, match="clip_norm must be positive. Found -1.0."):
    aggregation.build_consistency_aggregator(clip_norm=-1.0)
