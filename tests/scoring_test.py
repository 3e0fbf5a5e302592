"""Anomaly scores against numpy references, thresholds at the target FPR, and device evaluation."""

import numpy as np
import pytest

from tff_fcl import evaluation
from tff_fcl import models
from tff_fcl import scoring
from tff_fcl import windowing


def _embeddings(rng, n, d=4, p=3, shift=0.0):
  z = rng.normal(shift, 1.0, (n, d))
  u = rng.normal(size=(n, p))
  return z, u / np.linalg.norm(u, axis=1, keepdims=True)


def test_global_score_is_one_minus_cosine():
  rng = np.random.default_rng(0)
  z, u = _embeddings(rng, 20)
  g = np.array([3.0, -1.0, 2.0])
  expected = [1 - row @ g / (np.linalg.norm(row) * np.linalg.norm(g)) for row in u]
  np.testing.assert_allclose(scoring.anomaly_scores((z, u), "global", reference_vector=g), expected,
                             rtol=1e-12)


def test_mahalanobis_matches_numpy_reference():
  rng = np.random.default_rng(1)
  train, _ = _embeddings(rng, 200)
  train[:, 1] = 2 * train[:, 0] + 0.01 * train[:, 1]  # nearly collinear: shrinkage matters
  test = _embeddings(rng, 30, shift=0.5)
  benign = scoring.fit_reference(train, shrinkage=0.2)
  mean = train.mean(axis=0)
  cov = np.cov(train.T)
  shrunk = 0.8 * cov + 0.2 * np.diag(np.diag(cov)) + 1e-6 * np.eye(4)
  expected = [(row - mean) @ np.linalg.solve(shrunk, row - mean) for row in test[0]]
  scores = scoring.anomaly_scores(test, "mahalanobis", reference_vector=np.ones(3), benign=benign)
  np.testing.assert_allclose(scores, expected, rtol=1e-8)


def test_knn_matches_brute_force_and_subsamples_seeded():
  rng = np.random.default_rng(2)
  train, _ = _embeddings(rng, 300)
  test = _embeddings(rng, 25, shift=1.0)
  benign = scoring.fit_reference(train, knn_reference_rows=100, seed=3)
  assert benign.knn_rows.shape == (100, 4)
  # The reference rows are distinct training rows, in order, and the same for the same seed.
  index = [int(np.flatnonzero((train == row).all(axis=1))[0]) for row in benign.knn_rows]
  assert index == sorted(set(index))
  np.testing.assert_array_equal(scoring.fit_reference(train, knn_reference_rows=100, seed=3).knn_rows,
                                benign.knn_rows)
  distances = np.linalg.norm(test[0][:, None, :] - benign.knn_rows[None, :, :], axis=2)
  expected = np.sort(distances, axis=1)[:, :5].mean(axis=1)
  scores = scoring.anomaly_scores(test, "knn", reference_vector=np.ones(3), benign=benign, k=5, chunk_rows=7)
  np.testing.assert_allclose(scores, expected, rtol=1e-9)


@pytest.mark.parametrize("n,target", [(100, 0.01), (1000, 0.01), (999, 0.05), (37, 0.1), (10, 0.01)])
def test_quantile_threshold_hits_target_fpr(n, target):
  rng = np.random.default_rng(n)
  scores = np.round(rng.normal(size=n), 1)  # ties
  threshold = scoring.fit_threshold(scores, target_fpr=target)
  assert np.mean(scores > threshold) <= target
  # Smallest such threshold among the scores: the next lower score exceeds the target.
  lower = scores[scores < threshold]
  if lower.size:
    assert np.mean(scores > lower.max()) > target
  if len(np.unique(scores)) == n:  # no ties: exactly floor(target * n) rows above
    assert np.sum(scores > threshold) == int(np.floor(target * n))


def test_mean_std_threshold_and_calibrated_scores():
  scores = np.array([1.0, 2.0, 3.0, 4.0])
  threshold = scoring.fit_threshold(scores, rule="mean_std")
  assert threshold == pytest.approx(2.5 + np.sqrt(1.25))
  np.testing.assert_allclose(scoring.calibrated_scores([2.5, 5.0], 2.5, scores),
                             [0.0, 2.5 / np.sqrt(1.25)])


def test_threshold_errors():
  with pytest.raises(ValueError, match="empty validation set"):
    scoring.fit_threshold(np.zeros(0))
  with pytest.raises(ValueError, match=r"non-finite validation scores \(1 of 2\)"):
    scoring.fit_threshold(np.array([0.0, np.nan]))
  with pytest.raises(ValueError, match=r"target_fpr must be in \(0, 1\). Found 1.5"):
    scoring.fit_threshold(np.zeros(3), target_fpr=1.5)
  with pytest.raises(ValueError, match="Unknown threshold rule 'median'"):
    scoring.fit_threshold(np.zeros(3), rule="median")
  with pytest.raises(ValueError, match="needs the client's benign reference"):
    scoring.anomaly_scores((np.zeros((1, 2)), np.zeros((1, 2))), "knn", reference_vector=np.ones(2))
  with pytest.raises(ValueError, match="window_mode must be one of majority, mean. Found 'x'"):
    scoring.ScoringSettings(window_mode="x")


class FakeFederatedData:
  """Two devices with benign rows around their own mean and two attack kinds, in fixed order."""

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    self.devices = ["d0", "d1"]
    self.manifest = {"kinds": ["benign", "gafgyt/udp", "mirai/syn"]}
    self._splits = {}
    for offset, device in enumerate(self.devices):
      benign = rng.normal(offset, 1.0, (400, 8)).astype(np.float32)
      benign = np.tile(benign, (1, 15))[:, :115]
      attack = benign[:60] + 2.5
      zeros = lambda n: np.zeros(n, np.int32)
      kinds = np.concatenate([zeros(50), np.ones(15, np.int32), np.full(30, 2, np.int32),
                              zeros(50), np.ones(15, np.int32)])
      test_x = np.concatenate([benign[300:350], attack[:45], benign[350:400], attack[45:60]])
      self._splits[device] = {
          "train": (benign[:200], zeros(200), zeros(200)),
          "val": (benign[200:300], zeros(100), zeros(100)),
          "test": (test_x, (kinds > 0).astype(np.int32), kinds),
      }

  def split_arrays(self, device, split):
    return self._splits[device][split]


@pytest.fixture(scope="module")
def evaluated():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(0)
  network = models.build_embedding_network("mlp", 8, 4, (16,))
  reference = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
  data = FakeFederatedData()
  results = evaluation.evaluate_devices(network, reference, data, scorers=["knn", "global", "mahalanobis"],
                                        target_fpr=0.05, threshold_rule="quantile", seed=0,
                                        window_target_fpr=0.02)
  return network, reference, data, results


def _validation_scores(network, reference, data, calibration, scorer):
  from tff_fcl import export  # pylint: disable=g-import-not-at-top
  module = export.DetectorModule(network, reference)
  val_x = data.split_arrays(calibration.client, "val")[0]
  embeddings = export.embed_rows(module.embed, val_x, calibration.moments, 4)
  return calibration.scores(embeddings, scorer, reference)


def test_evaluation_thresholds_hit_target_fpr_on_validation_rows(evaluated):
  network, reference, data, results = evaluated
  for scorer, result in results.items():
    for device in data.devices:
      calibration = result["calibrations"][device]
      val_scores = _validation_scores(network, reference, data, calibration, scorer)
      assert np.mean(val_scores > result["thresholds"][device]) <= 0.05, (scorer, device)
      assert result["per_client"][device]["validation_fpr"] == np.mean(val_scores > result["thresholds"][device])
      assert result["thresholds"][device] == scoring.fit_threshold(val_scores, target_fpr=0.05)


def test_chosen_window_meets_target_fpr_on_validation_rows(evaluated):
  network, reference, data, results = evaluated
  for scorer, result in results.items():
    for device in data.devices:
      calibration = result["calibrations"][device]
      val_scores = _validation_scores(network, reference, data, calibration, scorer)
      threshold, window = result["thresholds"][device], result["windows"][device]
      fprs = [np.mean(windowing.windowed_decisions(val_scores, threshold, w, "majority")[1])
              for w in range(1, window + 1)]
      if calibration.windows[scorer].met:
        assert fprs[-1] <= 0.02 and all(f > 0.02 for f in fprs[:-1]), (scorer, device, fprs)
      assert result["per_client_windowed"][device]["window"] == window
      assert result["per_client_windowed"][device]["validation_fpr"] == fprs[-1]


def test_evaluation_metrics_are_consistent(evaluated):
  _, _, data, results = evaluated
  for result in results.values():
    for name in ("pooled", "pooled_windowed"):
      per_client = result["per_client" if name == "pooled" else "per_client_windowed"]
      for count in ("tp", "fp", "tn", "fn"):
        assert result[name][count] == sum(m[count] for m in per_client.values()), (name, count)
    assert list(result["per_attack"]) == ["gafgyt/udp", "mirai/syn"]
    # Each device has 2 gafgyt bursts and 1 mirai burst in its test rows.
    delay = result["detection_delay"]
    assert [delay[k]["per_packet"]["bursts"] for k in delay] == [4, 2]
    assert set(delay["gafgyt/udp"]) == {"per_packet", "windowed"}
    attack_rows = 2 * 60
    assert result["pooled"]["tp"] + result["pooled"]["fn"] == attack_rows
  # One calibration per device, shared by all scorers, with its own thresholds and windows.
  calibrations = results["knn"]["calibrations"]
  assert calibrations is results["global"]["calibrations"]
  assert set(calibrations["d0"].thresholds) == {"knn", "global", "mahalanobis"}
  assert calibrations["d0"].preprocessing is None  # the fake data exposes no preprocessing


def test_fit_calibration_uses_only_the_clients_rows():
  rng = np.random.default_rng(5)
  train, val = _embeddings(rng, 100), _embeddings(rng, 50)
  settings = scoring.ScoringSettings(scorers=("mahalanobis",), target_fpr=0.1, window_mode="mean")
  calibration = scoring.fit_calibration("c", (np.zeros(4), np.ones(4)), train, val,
                                        reference_vector=np.ones(3), settings=settings)
  expected = scoring.fit_threshold(
      scoring.anomaly_scores(val, "mahalanobis", reference_vector=np.ones(3),
                             benign=scoring.fit_reference(train[0])), target_fpr=0.1)
  assert calibration.thresholds == {"mahalanobis": expected}
  assert calibration.windows["mahalanobis"].window == 1  # the quantile threshold already meets 0.1
  with pytest.raises(ValueError, match="not calibrated for scorer 'knn'"):
    calibration.scores(val, "knn", np.ones(3))
