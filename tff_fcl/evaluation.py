"""Evaluation of a trained global model: each device scores its own rows with its own calibration.

Per device (the unit that owns a test set; shards of a device share its calibration):
  1. z = f(x) on its benign training rows -> Eq. 2 moments (mean, var) and the benign reference;
  2. embeddings of validation rows -> threshold at the target FPR;
  3. embeddings of test rows -> scores, flags (score > threshold), metrics.
Pooled metrics use every device's flags and its calibrated scores (`scoring.calibrated_scores`);
per-attack metrics take one attack kind's rows against all benign test rows, pooled over devices.
"""

import collections
from typing import Sequence

import numpy as np
import tensorflow as tf

from tff_fcl import metrics as metrics_lib
from tff_fcl import scoring

_BATCH = 8192


def _in_batches(fn, x: np.ndarray) -> np.ndarray:
  parts = [fn(tf.constant(x[i:i + _BATCH])).numpy() for i in range(0, len(x), _BATCH)]
  return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def embed(network, x: np.ndarray, moments):
  """(z~ [N, d], u [N, p]) for rows x [N, 115] with the client's fixed Eq. 2 moments."""
  z_tilde = _in_batches(lambda batch: network.standardize_embedding(network.encode(batch), moments), x)
  return z_tilde, _in_batches(network.project, z_tilde)


def calibrate_device(network, train_x: np.ndarray):
  """The device's Eq. 2 moments (from its own benign training rows)."""
  z = _in_batches(network.encode, train_x)
  return tf.constant(z.mean(axis=0)), tf.constant(z.var(axis=0))


def evaluate_devices(network, reference_vector: np.ndarray, data, *, scorers: Sequence[str],
                     target_fpr: float, threshold_rule: str, seed: int) -> collections.OrderedDict:
  """Scores every device's test rows; returns OrderedDict(scorer -> results) with, per scorer,
  `pooled`, `per_client` and `per_attack` metrics and `thresholds`."""
  kinds = data.manifest["kinds"]
  collected = {s: collections.defaultdict(list) for s in scorers}
  per_client = {s: collections.OrderedDict() for s in scorers}
  thresholds = {s: collections.OrderedDict() for s in scorers}
  for device in data.devices:
    train_x, _, _ = data.split_arrays(device, "train")
    val_x, _, _ = data.split_arrays(device, "val")
    test_x, test_labels, test_kinds = data.split_arrays(device, "test")
    moments = calibrate_device(network, train_x)
    train_embeddings = embed(network, train_x, moments)
    benign = scoring.fit_reference(train_embeddings[0], seed=seed)
    val_embeddings, test_embeddings = embed(network, val_x, moments), embed(network, test_x, moments)
    for scorer in scorers:
      score = lambda e: scoring.anomaly_scores(e, scorer, reference_vector=reference_vector, benign=benign)
      val_scores, test_scores = score(val_embeddings), score(test_embeddings)
      threshold = scoring.fit_threshold(val_scores, target_fpr=target_fpr, rule=threshold_rule)
      flags = test_scores > threshold
      thresholds[scorer][device] = threshold
      per_client[scorer][device] = metrics_lib.detection_metrics(test_labels, flags, test_scores)
      per_client[scorer][device]["validation_fpr"] = float(np.mean(val_scores > threshold))
      bucket = collected[scorer]
      bucket["labels"].append(test_labels)
      bucket["flags"].append(flags)
      bucket["kinds"].append(test_kinds)
      bucket["scores"].append(scoring.calibrated_scores(test_scores, threshold, val_scores))
  results = collections.OrderedDict()
  for scorer in scorers:
    pooled = {key: np.concatenate(values) for key, values in collected[scorer].items()}
    per_attack = collections.OrderedDict()
    benign_rows = pooled["labels"] == 0
    for kind_index in np.unique(pooled["kinds"][pooled["labels"] == 1]):
      rows = benign_rows | (pooled["kinds"] == kind_index)
      per_attack[kinds[int(kind_index)]] = metrics_lib.detection_metrics(
          pooled["labels"][rows], pooled["flags"][rows], pooled["scores"][rows])
    results[scorer] = collections.OrderedDict(
        pooled=metrics_lib.detection_metrics(pooled["labels"], pooled["flags"], pooled["scores"]),
        per_client=per_client[scorer], per_attack=per_attack, thresholds=thresholds[scorer])
  return results
