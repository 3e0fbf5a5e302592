"""Trains a federated anomaly detector and writes metrics, checkpoints and evaluation to --output_dir.

    python -m programs.train --output_dir=results/demo_fcl            # FCL on the bundled demo data
    python -m programs.train --data_dir=/data/N-BaIoT --output_dir=results/nbaiot_fcl --rounds=30
    python -m programs.train --algorithm=fedavg_ae --output_dir=results/demo_fedavg_ae

--data_dir is a prepared cache (it holds manifest.json) or raw data in the N-BaIoT layout, which is
prepared once into --cache_dir. Rerunning the same command resumes after the last finished round.
Data conditions, malicious clients, the aggregator, DP and remote workers are one flag group each.
"""

import collections

# TensorFlow is imported before absl's app.run: first imported inside app.run's main, TF 2.14's Keras
# builds Sequential/functional models from graph tensors and fails ("'SymbolicTensor' object has no
# attribute 'node'"); BUILD_NOTES.md, "Known TF 2.14 pitfalls".
import tensorflow  # pylint: disable=unused-import,g-bad-import-order
from absl import app
from absl import flags
from absl import logging

from tff_fcl import runtime

# Which algorithms exist is known without importing TensorFlow (kept equal to tff_fcl.baselines by a test).
ALGORITHMS = ("fcl", "fcl_no_align", "fcl_no_standardize", "fcl_uniform", "fedavg_ctr", "fedavg_ae",
              "fedprox_ae", "local_ae", "central_ae", "mlp", "cnn1d", "gnn", "gat")
MALICIOUS_KINDS = ("none", "scaled", "gaussian", "sign_flip", "attack_data")
AGGREGATORS = ("default", "median", "trimmed", "median_norm_bound", "tff_robust")

# Data and output.
_ALGORITHM = flags.DEFINE_enum("algorithm", "fcl", ALGORITHMS, "Method to train (baselines: see README).")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/demo", "Prepared cache or raw N-BaIoT-layout folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "results/cache", "Where raw data folders are prepared.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for this run's files.")
_SHARDS = flags.DEFINE_integer("shards_per_device", 1, "Split each device's training rows into K clients.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds model initialisation, sampling, shuffling, augmentation.")
# Federated training.
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Federated rounds.")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", 0, "Clients per round; 0 = all.")
_LOCAL_EPOCHS = flags.DEFINE_integer("local_epochs", 2, "Local passes over a client's data per round.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Local batch size (InfoNCE negatives = 2B - 2).")
_CLIENT_LR = flags.DEFINE_float("client_learning_rate", 3e-3, "Client Adam learning rate.")
_SERVER_LR = flags.DEFINE_float("server_learning_rate", 1.0, "Server SGD learning rate.")
_CLIP_NORM = flags.DEFINE_float("clip_norm", None,
                                "Per-client joint L2 clip of model delta and m_i (off if unset).")
_WORKERS = flags.DEFINE_list("workers", [], "HOST:PORT,... of running `python -m programs.worker` processes; "
                             "each round's clients are split across them. Empty = in-process TFF.")
# FCL method.
_TEMPERATURE = flags.DEFINE_float("temperature", 0.1, "InfoNCE temperature tau (Eq. 3).")
_ALIGN_WEIGHT = flags.DEFINE_float("align_weight", 0.1, "Weight of the alignment loss (Eq. 4).")
_MOMENTUM = flags.DEFINE_float("reference_momentum", 0.5, "Momentum of the global reference g.")
_MASK_RATE = flags.DEFINE_float("mask_rate", 0.1, "Feature masking probability (augmentation).")
_JITTER = flags.DEFINE_float("jitter_std", 0.05, "Gaussian jitter std (augmentation).")
_WEIGHTING = flags.DEFINE_enum("weighting", "consistency", ("consistency", "uniform", "examples"),
                               "Aggregation weight: Eq. 5 consistency, uniform (ablation) or examples (FedAvg).")
_STANDARDIZE = flags.DEFINE_bool("standardize", True, "Per-client embedding standardisation (Eq. 2).")
# Model.
_ENCODER = flags.DEFINE_enum("encoder", "mlp", ("mlp", "windows"), "Local encoder architecture.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 32, "Encoder output size d.")
_PROJECTION_DIM = flags.DEFINE_integer("projection_dim", 16, "Normalised embedding size p.")
_HIDDEN = flags.DEFINE_list("hidden_units", ["64", "64"], "Encoder hidden layer sizes.")
_MISSING_MASK = flags.DEFINE_bool("missing_mask", False, "Encoder reads NaN as missing, with a mask channel "
                                  "(set automatically when a data condition removes features).")
# Scoring.
_SCORE = flags.DEFINE_enum("score", "knn", ("global", "mahalanobis", "knn"), "Anomaly score.")
_TARGET_FPR = flags.DEFINE_float("target_fpr", 0.01, "Per-client validation FPR of the threshold.")
_THRESHOLD_RULE = flags.DEFINE_enum("threshold_rule", "quantile", ("quantile", "mean_std"),
                                    "quantile: target FPR on validation rows; mean_std: N-BaIoT's rule.")
_WINDOW_TARGET_FPR = flags.DEFINE_float("window_target_fpr", None, "Validation FPR the windowed decision must "
                                        "meet (smallest window that does; default --target_fpr).")
# Differential privacy (client-level; the unit of privacy is the client).
_DP_NOISE = flags.DEFINE_float("dp_noise_multiplier", None,
                               "Gaussian noise multiplier z; turns DP on (Poisson client sampling, "
                               "noise z*C on the weighted sum, epsilon per round).")
_DP_CLIP = flags.DEFINE_float("dp_clip_norm", None, "Fixed joint L2 clip norm C of each client's update.")
_DP_ADAPTIVE = flags.DEFINE_bool("dp_adaptive_clipping", False, "Quantile-based (adaptive) clip norm.")
_DP_DELTA = flags.DEFINE_float("dp_delta", 1e-5, "delta of the reported (epsilon, delta).")
# Data conditions (applied at the clients, seeded).
_MISSING_RATE = flags.DEFINE_float("missing_rate", 0.0, "Share of feature values missing at random per client.")
_MISSING_FAMILIES = flags.DEFINE_list("missing_families", [], "Stream families (e.g. HpHp) missing entirely on a share of the devices.")
_MISSING_FAMILY_FRACTION = flags.DEFINE_float("missing_family_fraction", 0.0, "Share of devices without --missing_families.")
_NOISE_SCALE = flags.DEFINE_float("noise_scale", 0.0, "Gaussian noise std added to the features of noisy devices.")
_NOISE_FRACTION = flags.DEFINE_float("noise_fraction", 0.0, "Share of devices that are noisy.")
_QUANTITY_ALPHA = flags.DEFINE_float("quantity_alpha", 0.0, "Dirichlet quantity skew of training rows (0 = off).")
_UNSEEN = flags.DEFINE_list("unseen_devices", [], "Devices left out of training, still evaluated.")
# Malicious clients and robust aggregation.
_MALICIOUS_KIND = flags.DEFINE_enum("malicious_kind", "none", MALICIOUS_KINDS, "What malicious clients send.")
_MALICIOUS_FRACTION = flags.DEFINE_float("malicious_fraction", 0.0, "Share of sampled clients that are malicious.")
_ATTACK_SCALE = flags.DEFINE_float("attack_scale", 10.0, "Scale s of --malicious_kind=scaled updates.")
_AGGREGATOR = flags.DEFINE_enum("aggregator", "default", AGGREGATORS, "Server aggregation rule.")
_TRIM = flags.DEFINE_float("trim_fraction", 0.2, "Trimmed mean: share cut at each end.")
_BOUND = flags.DEFINE_float("bound_multiplier", 1.0, "median_norm_bound: bound = this x the median norm.")
flags.mark_flag_as_required("output_dir")


def _conditions():
  from tff_fcl import conditions  # pylint: disable=g-import-not-at-top
  return conditions.DataConditions(
      missing_rate=_MISSING_RATE.value, missing_families=tuple(_MISSING_FAMILIES.value),
      missing_family_fraction=_MISSING_FAMILY_FRACTION.value, noise_scale=_NOISE_SCALE.value,
      noise_fraction=_NOISE_FRACTION.value, quantity_alpha=_QUANTITY_ALPHA.value,
      unseen_devices=tuple(_UNSEEN.value), seed=_SEED.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  # Imported here so that --help and flag errors do not wait for TensorFlow.
  import dataclasses  # pylint: disable=g-import-not-at-top
  from tff_fcl import baselines  # pylint: disable=g-import-not-at-top
  from tff_fcl import conditions as conditions_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl import malicious  # pylint: disable=g-import-not-at-top
  from tff_fcl import remote  # pylint: disable=g-import-not-at-top
  from tff_fcl import robust_aggregation  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  try:
    conditions = _conditions()
    missing_mask = _MISSING_MASK.value or conditions.has_missing
    recorded = collections.OrderedDict(
        data=dataclasses.asdict(conditions), malicious_kind=_MALICIOUS_KIND.value,
        malicious_fraction=_MALICIOUS_FRACTION.value, attack_scale=_ATTACK_SCALE.value,
        aggregator=_AGGREGATOR.value, trim_fraction=_TRIM.value, bound_multiplier=_BOUND.value)
    run = experiment.RunConfig(
        data_dir=_DATA_DIR.value, output_dir=_OUTPUT_DIR.value, rounds=_ROUNDS.value,
        clients_per_round=_CLIENTS_PER_ROUND.value, batch_size=_BATCH_SIZE.value,
        encoder=_ENCODER.value, embedding_dim=_EMBEDDING_DIM.value, projection_dim=_PROJECTION_DIM.value,
        hidden_units=tuple(int(units) for units in _HIDDEN.value), standardize=_STANDARDIZE.value,
        missing_mask=missing_mask, shards_per_device=_SHARDS.value, score=_SCORE.value,
        target_fpr=_TARGET_FPR.value, threshold_rule=_THRESHOLD_RULE.value,
        window_target_fpr=_WINDOW_TARGET_FPR.value, seed=_SEED.value,
        dp_noise_multiplier=_DP_NOISE.value, dp_clip_norm=_DP_CLIP.value,
        dp_adaptive_clipping=_DP_ADAPTIVE.value, dp_delta=_DP_DELTA.value, conditions=recorded)
    fcl_config = FCLConfig(
        temperature=_TEMPERATURE.value, align_weight=_ALIGN_WEIGHT.value,
        local_epochs=_LOCAL_EPOCHS.value, client_learning_rate=_CLIENT_LR.value,
        server_learning_rate=_SERVER_LR.value, reference_momentum=_MOMENTUM.value,
        mask_rate=_MASK_RATE.value, jitter_std=_JITTER.value, clip_norm=_CLIP_NORM.value,
        weighting=_WEIGHTING.value)
    data = data_lib.open_federated_data(run.data_dir, cache_root=_CACHE_DIR.value,
                                        shards_per_device=run.shards_per_device)
    data = conditions_lib.apply_conditions(data, conditions)
    wrapper = None
    if _MALICIOUS_KIND.value == "attack_data":
      data = malicious.AttackTrafficAsBenign(data, _MALICIOUS_FRACTION.value, seed=run.seed)
    elif _MALICIOUS_KIND.value != "none":
      wrapper = malicious.malicious_client_work(_MALICIOUS_KIND.value, _MALICIOUS_FRACTION.value,
                                                scale=_ATTACK_SCALE.value, seed=run.seed)
    aggregator = robust_aggregation.build_aggregator(_AGGREGATOR.value, trim_fraction=_TRIM.value,
                                                     bound_multiplier=_BOUND.value)
    with remote.remote_execution(_WORKERS.value):
      result = baselines.run_algorithm(_ALGORITHM.value, run, data, fcl_config=fcl_config,
                                       aggregator=aggregator, client_work_wrapper=wrapper)
  except (ValueError, remote.WorkerFailedError) as error:
    raise SystemExit(f"error: {error}") from None
  pooled = result["pooled"]
  print(f"{_ALGORITHM.value}: pooled AUC {pooled['auc']:.4f}, F1 {pooled['f1']:.4f}, "
        f"recall {pooled['recall']:.4f}, FPR {pooled['fpr']:.4f}; files in {run.output_dir}")
  if "privacy" in result:
    print(f"client-level DP: epsilon {result['privacy']['epsilon']:.3f} at delta {result['privacy']['delta']:g} "
          f"(unit of privacy: {result['privacy']['unit_of_privacy']})")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
