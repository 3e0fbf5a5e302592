"""Evaluation of any anomaly detector, one device at a time, with the device's own calibration.

A detector is given as `fit_device_scorer(device, train_x) -> score_fn`, where train_x are the
device's benign training rows [N, 115] (preprocessed) and score_fn maps rows [M, 115] to anomaly
scores [M] (higher = more anomalous). Per device:

  1. score_fn = fit_device_scorer(device, train rows)             (only that device's rows)
  2. threshold from its benign validation scores at the target FPR (`scoring.fit_threshold`)
  3. its test rows: scores, flags = score > threshold, metrics

Pooled metrics use every device's own flags, and scores calibrated per device
(`scoring.calibrated_scores`) for the pooled AUC; per-attack metrics take one attack kind's rows
against all benign test rows, pooled over devices. The same function evaluates FCL's embedding
scores, the autoencoders' reconstruction errors and the supervised references, so every method in a
comparison shares thresholds, splits and metrics.
"""

import collections
from typing import Callable

import numpy as np

from tff_fcl import metrics as metrics_lib
from tff_fcl import scoring

ScoreFn = Callable[[np.ndarray], np.ndarray]


def evaluate_detector(fit_device_scorer: Callable[[str, np.ndarray], ScoreFn], data, *, target_fpr: float,
                      threshold_rule: str = "quantile") -> collections.OrderedDict:
  """Returns OrderedDict(pooled, per_client, per_attack, thresholds) for the detector on `data`.

  Args:
    fit_device_scorer: (device name, benign train rows float32 [N, 115]) -> score_fn.
    data: a `tff_fcl.data.FederatedData` (`devices`, `manifest["kinds"]`, `split_arrays`).
    target_fpr: the benign validation FPR each device's threshold is set to.
    threshold_rule: "quantile" (target FPR) or "mean_std" (N-BaIoT's rule).
  """
  kinds = data.manifest["kinds"]
  collected = collections.defaultdict(list)
  per_client, thresholds = collections.OrderedDict(), collections.OrderedDict()
  for device in data.devices:
    train_x, _, _ = data.split_arrays(device, "train")
    val_x, _, _ = data.split_arrays(device, "val")
    test_x, test_labels, test_kinds = data.split_arrays(device, "test")
    score_fn = fit_device_scorer(device, train_x)
    val_scores, test_scores = np.asarray(score_fn(val_x)), np.asarray(score_fn(test_x))
    threshold = scoring.fit_threshold(val_scores, target_fpr=target_fpr, rule=threshold_rule)
    flags = test_scores > threshold
    thresholds[device] = threshold
    per_client[device] = metrics_lib.detection_metrics(test_labels, flags, test_scores)
    per_client[device]["validation_fpr"] = float(np.mean(val_scores > threshold))
    collected["labels"].append(test_labels)
    collected["flags"].append(flags)
    collected["kinds"].append(test_kinds)
    collected["scores"].append(scoring.calibrated_scores(test_scores, threshold, val_scores))
  pooled = {key: np.concatenate(values) for key, values in collected.items()}
  per_attack = collections.OrderedDict()
  benign_rows = pooled["labels"] == 0
  for kind_index in np.unique(pooled["kinds"][pooled["labels"] == 1]):
    rows = benign_rows | (pooled["kinds"] == kind_index)
    per_attack[kinds[int(kind_index)]] = metrics_lib.detection_metrics(
        pooled["labels"][rows], pooled["flags"][rows], pooled["scores"][rows])
  return collections.OrderedDict(
      pooled=metrics_lib.detection_metrics(pooled["labels"], pooled["flags"], pooled["scores"]),
      per_client=per_client, per_attack=per_attack, thresholds=thresholds)
