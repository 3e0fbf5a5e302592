"""Non-federated references: per-device and pooled autoencoders, and supervised classifiers.

    local_ae    one N-BaIoT autoencoder per device, trained only on that device's benign training rows
                (the original N-BaIoT approach; no sharing at all)
    central_ae  one autoencoder on all devices' benign training rows pooled at a server (what
                federation gives up: raw traffic leaves the devices)
    mlp, cnn1d, gnn, gat   supervised classifiers trained centrally WITH labels on the pooled benign
                training rows (label 0) and, from every device, the attack rows that
                `split.HeldOutAttacks` sets aside for training (label 1); binary cross-entropy with
                balanced class weights (each class weighs half)
Every model trains with Adam for E = rounds x local_epochs epochs (the passes over its data that a
federated client makes in a run of the same length) at the client learning rate and batch size, and
is evaluated by `detection.evaluate_detector` like the federated methods (per-device thresholds on
benign validation rows). These results are references, never federated rows: `federated` is False
and bytes per client per round is NaN (the raw rows are what would be sent, once).
"""

import collections
import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from tff_fcl import detection
from tff_fcl import experiment
from tff_fcl.baselines import autoencoder
from tff_fcl.baselines import results
from tff_fcl.baselines import split
from tff_fcl.baselines import supervised_models

AUTOENCODERS = ("local_ae", "central_ae")
ALGORITHMS = AUTOENCODERS + supervised_models.MODELS
_BATCH = 8192


def _fit(model: tf.keras.Model, loss, x: np.ndarray, y: np.ndarray, *, epochs: int, learning_rate: float,
         batch_size: int, seed: int, class_weight=None) -> None:
  tf.keras.utils.set_random_seed(seed)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=loss)
  model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, class_weight=class_weight, verbose=0)


def _logits(model: tf.keras.Model, x: np.ndarray) -> np.ndarray:
  parts = [model(x[i:i + _BATCH], training=False).numpy()[:, 0] for i in range(0, len(x), _BATCH)]
  return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0,), np.float64)


def supervised_training_set(data: split.HeldOutAttacks):
  """(x [N, 115], y float32 [N]): all devices' benign training rows (0) and held-out attack rows (1)."""
  benign = np.concatenate([data.split_arrays(device, "train")[0] for device in data.devices])
  attacks = np.concatenate([data.attack_training_rows(device)[0] for device in data.devices])
  x = np.concatenate([benign, attacks]).astype(np.float32)
  return x, np.concatenate([np.zeros(len(benign)), np.ones(len(attacks))]).astype(np.float32)


def train_centralised(algorithm: str, run: experiment.RunConfig, data, *, local_epochs: int,
                      learning_rate: float, attack_fraction: float = 0.5, progress=print) -> dict:
  """Trains and evaluates one non-federated reference; writes eval.json/summary.md; returns the result.

  Supervised models need `data` to be a `split.HeldOutAttacks` view (it is wrapped with
  `attack_fraction` and the run's seed otherwise); the autoencoders use its benign rows only.
  """
  if algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}. Found {algorithm!r}.")
  start = time.time()
  os.makedirs(run.output_dir, exist_ok=True)
  epochs = run.rounds * local_epochs
  settings = experiment.check_or_write_config(run.output_dir, collections.OrderedDict(
      algorithm=algorithm, run=dataclasses.asdict(run), training=collections.OrderedDict(
          epochs=epochs, learning_rate=learning_rate,
          attack_fraction=attack_fraction if algorithm in supervised_models.MODELS else 0.0)))
  fit = dict(epochs=epochs, learning_rate=learning_rate, batch_size=run.batch_size, seed=run.seed)
  mse = autoencoder.MaskedMeanSquaredError()
  if algorithm == "local_ae":
    def fit_device_scorer(device, train_x):
      progress(f"{algorithm}: training the autoencoder of {device} ({len(train_x)} rows, {epochs} epochs)")
      model = autoencoder.build_autoencoder(run.seed)
      _fit(model, mse, train_x, train_x, **fit)
      return lambda x: autoencoder.reconstruction_errors(model, x)
    score = "reconstruction_error"
  elif algorithm == "central_ae":
    pooled = np.concatenate([data.split_arrays(device, "train")[0] for device in data.devices])
    progress(f"{algorithm}: training one autoencoder on {len(pooled)} pooled rows, {epochs} epochs")
    model = autoencoder.build_autoencoder(run.seed)
    _fit(model, mse, pooled, pooled, **fit)
    fit_device_scorer = lambda device, train_x: lambda x: autoencoder.reconstruction_errors(model, x)
    score = "reconstruction_error"
  else:
    if not isinstance(data, split.HeldOutAttacks):
      data = split.HeldOutAttacks(data, attack_fraction, run.seed)
    x, y = supervised_training_set(data)
    positives = max(float(y.sum()), 1.0)
    class_weight = {0: len(y) / (2.0 * max(len(y) - positives, 1.0)), 1: len(y) / (2.0 * positives)}
    progress(f"{algorithm}: supervised training on {len(y)} rows ({int(y.sum())} attack), {epochs} epochs")
    model = supervised_models.build_supervised_model(algorithm, run.seed)
    _fit(model, tf.keras.losses.BinaryCrossentropy(from_logits=True), x, y, class_weight=class_weight, **fit)
    fit_device_scorer = lambda device, train_x: lambda rows: _logits(model, rows)
    score = "attack_logit"
  evaluation = detection.evaluate_detector(fit_device_scorer, data, target_fpr=run.target_fpr,
                                           threshold_rule=run.threshold_rule,
                                           window_target_fpr=run.window_target_fpr)
  return results.finish(run.output_dir, algorithm=algorithm, rounds=0, score=score, target_fpr=run.target_fpr,
                        evaluation=evaluation, settings=settings, start_time=start, federated=False,
                        bytes_per_round=float("nan"), epochs=epochs)
