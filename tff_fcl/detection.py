"""Detection results of any anomaly detector, one device at a time, with the device's own calibration.

`DeviceDecisions` turns per-device scores into the metrics every method reports. A device's
  * per-packet flags are score > its threshold (set on its benign validation rows);
  * windowed flags decide over its last w packets (`tff_fcl.windowing`, w chosen on validation rows);
  * per-client metrics use its own rows; pooled metrics use every device's flags, and scores
    calibrated per device (`scoring.calibrated_scores`; for majority windows, the flagged share
    minus 1/2) for the pooled AUC;
  * per-attack metrics take one attack kind's rows against all benign test rows, pooled over devices;
  * detection delay counts the packets of each attack burst before its first flag.
Windows run over a device's test rows in their stored order, starting empty at its first test row.

`evaluate_detector` evaluates a detector given as `fit_device_scorer(device, train_x) -> score_fn`,
where train_x are the device's benign training rows [N, 115] (preprocessed) and score_fn maps rows
[M, 115] to anomaly scores [M] (higher = more anomalous). FCL's embedding scores
(`tff_fcl.evaluation`), the autoencoders' reconstruction errors and the supervised references all go
through `DeviceDecisions`, so every method in a comparison shares thresholds, splits and metrics.
"""

import collections
from typing import Callable, Optional

import numpy as np

from tff_fcl import metrics as metrics_lib
from tff_fcl import scoring
from tff_fcl import windowing

ScoreFn = Callable[[np.ndarray], np.ndarray]


def _pooled_and_per_attack(collected, kinds):
  pooled = {key: np.concatenate(values) for key, values in collected.items()}
  per_attack = collections.OrderedDict()
  benign_rows = pooled["labels"] == 0
  for kind_index in np.unique(pooled["kinds"][pooled["labels"] == 1]):
    rows = benign_rows | (pooled["kinds"] == kind_index)
    per_attack[kinds[int(kind_index)]] = metrics_lib.detection_metrics(
        pooled["labels"][rows], pooled["flags"][rows], pooled["scores"][rows])
  return metrics_lib.detection_metrics(pooled["labels"], pooled["flags"], pooled["scores"]), per_attack


class DeviceDecisions:
  """Collects devices' per-packet and windowed decisions; `results()` gives every metric."""

  def __init__(self, kinds, window_mode: str = "majority"):
    self._kinds, self._mode = kinds, window_mode
    self._per_client = collections.OrderedDict()
    self._per_client_windowed = collections.OrderedDict()
    self._thresholds, self._windows = collections.OrderedDict(), collections.OrderedDict()
    self._collected = collections.defaultdict(list)
    self._collected_windowed = collections.defaultdict(list)
    self._bursts, self._bursts_windowed = [], []

  def add(self, device: str, *, val_scores: np.ndarray, test_scores: np.ndarray, test_labels: np.ndarray,
          test_kinds: np.ndarray, threshold: float, window: windowing.WindowChoice) -> None:
    """Records one device: its validation and test scores [N], test labels/kinds [N], calibration."""
    flags = test_scores > threshold
    statistic, windowed = windowing.windowed_decisions(test_scores, threshold, window.window, self._mode)
    self._thresholds[device], self._windows[device] = threshold, window.window
    self._per_client[device] = metrics_lib.detection_metrics(test_labels, flags, test_scores)
    self._per_client[device]["validation_fpr"] = float(np.mean(val_scores > threshold))
    self._per_client_windowed[device] = metrics_lib.detection_metrics(test_labels, windowed, statistic)
    self._per_client_windowed[device]["window"] = window.window
    self._per_client_windowed[device]["validation_fpr"] = window.validation_fpr
    windowed_scores = (statistic - 0.5 if self._mode == "majority"
                       else scoring.calibrated_scores(statistic, threshold, val_scores))
    for bucket, row_flags, row_scores in (
        (self._collected, flags, scoring.calibrated_scores(test_scores, threshold, val_scores)),
        (self._collected_windowed, windowed, windowed_scores)):
      bucket["labels"].append(test_labels)
      bucket["flags"].append(row_flags)
      bucket["kinds"].append(test_kinds)
      bucket["scores"].append(row_scores)
    self._bursts.extend(windowing.attack_bursts(test_labels, test_kinds, flags))
    self._bursts_windowed.extend(windowing.attack_bursts(test_labels, test_kinds, windowed))

  def results(self) -> collections.OrderedDict:
    """pooled, per_client, per_attack, thresholds, windows, and the windowed counterparts
    (pooled_windowed, per_client_windowed, per_attack_windowed), and detection_delay:
    attack kind -> {per_packet, windowed} -> {bursts, detected, mean/median/max delay}."""
    pooled, per_attack = _pooled_and_per_attack(self._collected, self._kinds)
    pooled_windowed, per_attack_windowed = _pooled_and_per_attack(self._collected_windowed, self._kinds)
    per_packet_delay = windowing.delay_summary(self._bursts, self._kinds)
    windowed_delay = windowing.delay_summary(self._bursts_windowed, self._kinds)
    return collections.OrderedDict(
        pooled=pooled, per_client=self._per_client, per_attack=per_attack, thresholds=self._thresholds,
        windows=self._windows, pooled_windowed=pooled_windowed, per_client_windowed=self._per_client_windowed,
        per_attack_windowed=per_attack_windowed,
        detection_delay=collections.OrderedDict(
            (kind, collections.OrderedDict(per_packet=per_packet_delay[kind], windowed=windowed_delay[kind]))
            for kind in per_packet_delay))


def evaluate_detector(fit_device_scorer: Callable[[str, np.ndarray], ScoreFn], data, *, target_fpr: float,
                      threshold_rule: str = "quantile", window_mode: str = "majority",
                      window_target_fpr: Optional[float] = None,
                      max_window: int = 100) -> collections.OrderedDict:
  """Returns `DeviceDecisions.results()` for the detector on `data`.

  Args:
    fit_device_scorer: (device name, benign train rows float32 [N, 115]) -> score_fn.
    data: a `tff_fcl.data.FederatedData` (`devices`, `manifest["kinds"]`, `split_arrays`).
    target_fpr: the benign validation FPR each device's threshold is set to.
    threshold_rule: "quantile" (target FPR) or "mean_std" (N-BaIoT's rule).
    window_mode, window_target_fpr, max_window: windowed decisions (`windowing.choose_window`);
      window_target_fpr defaults to target_fpr.
  """
  decisions = DeviceDecisions(data.manifest["kinds"], window_mode)
  for device in data.devices:
    train_x, _, _ = data.split_arrays(device, "train")
    val_x, _, _ = data.split_arrays(device, "val")
    test_x, test_labels, test_kinds = data.split_arrays(device, "test")
    score_fn = fit_device_scorer(device, train_x)
    val_scores, test_scores = np.asarray(score_fn(val_x)), np.asarray(score_fn(test_x))
    threshold = scoring.fit_threshold(val_scores, target_fpr=target_fpr, rule=threshold_rule)
    window = windowing.choose_window(val_scores, threshold, target_fpr=window_target_fpr or target_fpr,
                                     mode=window_mode, max_window=max_window)
    decisions.add(device, val_scores=val_scores, test_scores=test_scores, test_labels=test_labels,
                  test_kinds=test_kinds, threshold=threshold, window=window)
  return decisions.results()
