"""Evaluation of a trained global model: each device scores its own rows with its own calibration.

Rows are embedded with the traced functions of `export.DetectorModule`, the ones the exported
SavedModel holds, so that a reloaded export reproduces these scores exactly.

Per device (the unit that owns a test set; shards of a device share its calibration):
  1. z = f(x) on its benign training rows [N, 115] -> Eq. 2 moments (mean, var) [d] and the benign
     reference (`scoring.fit_calibration`);
  2. embeddings of validation rows (in order) -> per scorer a threshold at the target FPR and a
     decision window (`windowing.choose_window`);
  3. embeddings of test rows (in order) -> scores, recorded with `detection.DeviceDecisions`, which
     derives per-packet and windowed flags, metrics and detection delays as for every other method.
"""

import collections
from typing import Optional, Sequence

import numpy as np

from tff_fcl import detection
from tff_fcl import export
from tff_fcl import scoring


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
  calibrations = collections.OrderedDict()
  decisions = {s: detection.DeviceDecisions(data.manifest["kinds"], window_mode) for s in scorers}
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
      decisions[scorer].add(
          device, val_scores=calibration.scores(val_embeddings, scorer, reference_vector),
          test_scores=calibration.scores(test_embeddings, scorer, reference_vector), test_labels=test_labels,
          test_kinds=test_kinds, threshold=calibration.thresholds[scorer], window=calibration.windows[scorer])
  results = collections.OrderedDict()
  for scorer in scorers:
    results[scorer] = decisions[scorer].results()
    results[scorer]["calibrations"] = calibrations
  return results
