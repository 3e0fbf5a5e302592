"""Detection metrics from labels (1 = attack) and scores or binary flags, in numpy.

accuracy = (TP + TN) / N; recall (TPR) = TP / (TP + FN); precision = TP / (TP + FP);
FPR = FP / (FP + TN); F1 = 2 P R / (P + R); AUC = P(score_attack > score_benign) + 0.5 P(tie)
(Mann-Whitney U on mid-ranks). Undefined ratios (a zero denominator) are reported as NaN, and so is
the AUC of a set with no attack or no benign row. NaN scores raise (they cannot be ranked).
"""

import collections

import numpy as np
from scipy import stats

METRIC_NAMES = ("accuracy", "auc", "f1", "recall", "precision", "fpr")


def _ratio(numerator: float, denominator: float) -> float:
  return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  labels = np.asarray(labels).astype(bool)
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if positives == 0 or negatives == 0:
    return float("nan")
  scores = np.asarray(scores, dtype=np.float64)
  if np.isnan(scores).any():
    raise ValueError(f"Cannot rank NaN scores ({int(np.isnan(scores).sum())} of {scores.size}).")
  ranks = stats.rankdata(scores)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def detection_metrics(labels: np.ndarray, flags: np.ndarray, scores: np.ndarray) -> collections.OrderedDict:
  """All of METRIC_NAMES, plus the confusion counts; labels/flags/scores: [N]."""
  labels = np.asarray(labels).astype(bool)
  flags = np.asarray(flags).astype(bool)
  if labels.shape != flags.shape or labels.shape != np.shape(scores):
    raise ValueError(f"labels, flags and scores must have one shape. Found {labels.shape}, "
                     f"{flags.shape}, {np.shape(scores)}.")
  tp = int(np.sum(flags & labels))
  fp = int(np.sum(flags & ~labels))
  tn = int(np.sum(~flags & ~labels))
  fn = int(np.sum(~flags & labels))
  precision = _ratio(tp, tp + fp)
  recall = _ratio(tp, tp + fn)
  f1 = _ratio(2 * tp, 2 * tp + fp + fn)
  return collections.OrderedDict(
      accuracy=_ratio(tp + tn, labels.size), auc=roc_auc(labels, scores), f1=f1, recall=recall,
      precision=precision, fpr=_ratio(fp, fp + tn), tp=tp, fp=fp, tn=tn, fn=fn)
