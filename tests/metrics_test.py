"""Detection metrics against hand-computed confusion counts and a brute-force pairwise AUC."""
import math

import numpy as np
import pytest

from tff_fcl import metrics


def pairwise_auc(labels, scores):
  """P(attack score > benign score) + 0.5 P(tie), over all attack x benign pairs."""
  attack, benign = scores[labels == 1], scores[labels == 0]
  wins = (attack[:, None] > benign[None, :]).sum() + 0.5 * (attack[:, None] == benign[None, :]).sum()
  return wins / (len(attack) * len(benign))


@pytest.mark.parametrize("seed", range(5))
def test_auc_with_ties_matches_pairwise_reference(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 200)
  scores = rng.integers(0, 6, 200).astype(float)  # many ties, across and within classes
  assert metrics.roc_auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_auc_known_values():
  assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
  assert metrics.roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
  assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
  assert metrics.roc_auc([0, 0, 1], [1.0, -np.inf, np.inf]) == 1.0


def test_auc_undefined_without_both_classes_and_nan_scores_raise():
  assert math.isnan(metrics.roc_auc([0, 0], [0.1, 0.2]))
  assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.2]))
  with pytest.raises(ValueError, match=r"Cannot rank NaN scores \(1 of 3\)"):
    metrics.roc_auc([0, 1, 1], [0.1, np.nan, 0.3])


def test_detection_metrics_hand_example():
  labels = np.array([1, 1, 1, 0, 0, 0, 0])
  flags = np.array([1, 1, 0, 1, 0, 0, 0])
  scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.0])
  m = metrics.detection_metrics(labels, flags, scores)
  # TP 2, FN 1, FP 1, TN 3.
  assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 3)
  assert m["accuracy"] == pytest.approx(5 / 7)
  assert m["recall"] == pytest.approx(2 / 3)
  assert m["precision"] == pytest.approx(2 / 3)
  assert m["fpr"] == pytest.approx(1 / 4)
  assert m["f1"] == pytest.approx(2 / 3)
  assert m["auc"] == pytest.approx(pairwise_auc(labels, scores))
  assert tuple(m)[:6] == metrics.METRIC_NAMES


def test_undefined_ratios_are_nan():
  m = metrics.detection_metrics(np.array([0, 0]), np.array([0, 0]), np.array([0.0, 1.0]))
  assert m["fpr"] == 0.0 and m["accuracy"] == 1.0
  for name in ("recall", "precision", "f1", "auc"):
    assert math.isnan(m[name]), name


def test_shape_mismatch_raises():
  with pytest.raises(ValueError, match="must have one shape"):
    metrics.detection_metrics(np.zeros(3), np.zeros(2), np.zeros(3))
