"""Evaluation of a trained global model: each device scores its own rows with its own calibration.

Rows are embedded with the traced functions of `export.DetectorModule`, the ones the exported
SavedModel holds, so that a reloaded export reproduces these scores exactly.

Per device (the unit that owns a test set; shards of a device share its calibration):
  1. z = f(x) on its benign training rows [N, 115] -> Eq. 2 moments (mean, var) [d] and the benign
     reference (`scoring.fit_calibration`);
  2. embeddings of validation rows (in order) -> per scorer a threshold at the target FPR and a
     decision window (`windowing.choose_window`);
  3. embeddings of test rows (in order) -> scores, per-packet flags (score > threshold), windowed
     flags, metrics, and the detection delay of every attack burst.
Pooled metrics use every device's flags and its calibrated scores (`scoring.calibrated_scores`; for
majority windows the flagged share minus 1/2); per-attack metrics take one attack kind's rows against
all benign test rows, pooled over devices. Windows run over a device's test rows in their stored order,
starting empty at its first test row.
"""

import collections
from typing import Optional, Sequence

import numpy as np

from tff_fcl import export
from tff_fcl import metrics as metrics_lib
from tff_fcl import scoring
from tff_fcl import windowing



def calibrate_device(module: export.DetectorModule, train_x: np.ndarray):
  """The device's Eq. 2 moments (mean [d], variance [d]) from its own benign training rows."""
  z = export.encode_rows(module.encode, train_x, module.embedding_dim)
  return z.mean(axis=0), z.var(axis=0)


def _preprocessing(data, device):
  """(mean [115], inv_std [115]) of the device's input preprocessing, when `data` exposes it."""
  if not hasattr(data, "device_standardizer"):
    return None
  standardizer = data.device_standardizer(device)
  return np.asarray(standardizer.mean, np.float32), np.asarray(standardizer.inv_std, np.float32)


def _pooled_and_per_attack(collected, kinds):
  pooled = {key: np.concatenate(values) for key, values in collected.items()}
  per_attack = collections.OrderedDict()
  benign_rows = pooled["labels"] == 0
  for kind_index in np.unique(pooled["kinds"][pooled["labels"] == 1]):
    rows = benign_rows | (pooled["kinds"] == kind_index)
    per_attack[kinds[int(kind_index)]] = metrics_lib.detection_metrics(
        pooled["labels"][rows], pooled["flags"][rows], pooled["scores"][rows])
  return metrics_lib.detection_metrics(pooled["labels"], pooled["flags"], pooled["scores"]), per_attack


def _delays(per_packet_bursts, windowed_bursts, kinds):
  per_packet = windowing.delay_summary(per_packet_bursts, kinds)
  windowed = windowing.delay_summary(windowed_bursts, kinds)
  return collections.OrderedDict(
      (kind, collections.OrderedDict(per_packet=per_packet[kind], windowed=windowed[kind]))
      for kind in per_packet)


def evaluate_devices(network, reference_vector: np.ndarray, data, *, scorers: Sequence[str],
                     target_fpr: float, threshold_rule: str, seed: int, window_mode: str = "majority",
                     window_target_fpr: Optional[float] = None,
                     max_window: int = 100) -> collections.OrderedDict:
  """Scores every device's test rows; returns OrderedDict(scorer -> results).

  Per scorer, results hold:
    pooled, per_client, per_attack, thresholds     per-packet decisions (score > threshold)
    windows                                        device -> chosen window w
    pooled_windowed, per_client_windowed,          the same metrics for windowed decisions; per client
    per_attack_windowed                            also `window` and its `validation_fpr`
    detection_delay                                attack kind -> {per_packet, windowed} -> {bursts,
                                                   detected, mean_delay, median_delay, max_delay}
    calibrations                                   device -> `scoring.ClientCalibration` (all scorers;
                                                   the same objects under every scorer), for
                                                   `tff_fcl.export.export_run`
  """
  settings = scoring.ScoringSettings(
      scorers=tuple(scorers), target_fpr=target_fpr, threshold_rule=threshold_rule,
      window_mode=window_mode, window_target_fpr=window_target_fpr, max_window=max_window, seed=seed)
  kinds = data.manifest["kinds"]
  calibrations = collections.OrderedDict()
  results = collections.OrderedDict(
      (s, collections.OrderedDict(per_client=collections.OrderedDict(), thresholds=collections.OrderedDict(),
                                  windows=collections.OrderedDict(),
                                  per_client_windowed=collections.OrderedDict()))
      for s in scorers)
  collected = {s: collections.defaultdict(list) for s in scorers}
  collected_windowed = {s: collections.defaultdict(list) for s in scorers}
  bursts = {s: ([], []) for s in scorers}
  module = export.DetectorModule(network, reference_vector)
  embed = lambda x, moments: export.embed_rows(module.embed, x, moments, len(reference_vector))
  for device in data.devices:
    train_x, _, _ = data.split_arrays(device, "train")
    val_x, _, _ = data.split_arrays(device, "val")
    test_x, test_labels, test_kinds = data.split_arrays(device, "test")
    moments = calibrate_device(module, train_x)
    val_embeddings, test_embeddings = embed(val_x, moments), embed(test_x, moments)
    calibration = scoring.fit_calibration(
        device, moments, embed(train_x, moments), val_embeddings,
        reference_vector=reference_vector, settings=settings, preprocessing=_preprocessing(data, device))
    calibrations[device] = calibration
    for scorer in scorers:
      val_scores = calibration.scores(val_embeddings, scorer, reference_vector)
      test_scores = calibration.scores(test_embeddings, scorer, reference_vector)
      threshold, choice = calibration.thresholds[scorer], calibration.windows[scorer]
      flags = test_scores > threshold
      statistic, windowed = windowing.windowed_decisions(test_scores, threshold, choice.window, window_mode)
      result = results[scorer]
      result["thresholds"][device] = threshold
      result["windows"][device] = choice.window
      result["per_client"][device] = metrics_lib.detection_metrics(test_labels, flags, test_scores)
      result["per_client"][device]["validation_fpr"] = float(np.mean(val_scores > threshold))
      result["per_client_windowed"][device] = metrics_lib.detection_metrics(test_labels, windowed, statistic)
      result["per_client_windowed"][device]["window"] = choice.window
      result["per_client_windowed"][device]["validation_fpr"] = choice.validation_fpr
      calibrated = scoring.calibrated_scores(test_scores, threshold, val_scores)
      for bucket, row_flags, row_scores in (
          (collected[scorer], flags, calibrated),
          (collected_windowed[scorer], windowed,
           statistic - 0.5 if window_mode == "majority"
           else scoring.calibrated_scores(statistic, threshold, val_scores))):
        bucket["labels"].append(test_labels)
        bucket["flags"].append(row_flags)
        bucket["kinds"].append(test_kinds)
        bucket["scores"].append(row_scores)
      bursts[scorer][0].extend(windowing.attack_bursts(test_labels, test_kinds, flags))
      bursts[scorer][1].extend(windowing.attack_bursts(test_labels, test_kinds, windowed))
  for scorer in scorers:
    result = results[scorer]
    result["pooled"], result["per_attack"] = _pooled_and_per_attack(collected[scorer], kinds)
    result["pooled_windowed"], result["per_attack_windowed"] = _pooled_and_per_attack(
        collected_windowed[scorer], kinds)
    result["detection_delay"] = _delays(*bursts[scorer], kinds)
    result["calibrations"] = calibrations
  return results
