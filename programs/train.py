"""Trains a federated anomaly detector and writes metrics, checkpoints and evaluation to --output_dir.

    python -m programs.train --output_dir=results/demo_fcl            # FCL on the bundled demo data
    python -m programs.train --data_dir=/data/N-BaIoT --output_dir=results/nbaiot_fcl --rounds=30

--data_dir is a prepared cache (it holds manifest.json) or raw data in the N-BaIoT layout, which is
prepared once into --cache_dir. Rerunning the same command resumes from the last finished round.
"""

from absl import app
from absl import flags

from tff_fcl import runtime

ALGORITHMS = ("fcl",)

# Data and output.
_ALGORITHM = flags.DEFINE_enum("algorithm", "fcl", ALGORITHMS, "Training algorithm.")
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
# FCL method.
_TEMPERATURE = flags.DEFINE_float("temperature", 0.1, "InfoNCE temperature tau (Eq. 3).")
_ALIGN_WEIGHT = flags.DEFINE_float("align_weight", 0.1, "Weight of the alignment loss (Eq. 4).")
_MOMENTUM = flags.DEFINE_float("reference_momentum", 0.5, "Momentum of the global reference g.")
_MASK_RATE = flags.DEFINE_float("mask_rate", 0.1, "Feature masking probability (augmentation).")
_JITTER = flags.DEFINE_float("jitter_std", 0.05, "Gaussian jitter std (augmentation).")
_WEIGHTING = flags.DEFINE_enum("weighting", "consistency", ("consistency", "uniform", "examples"),
                               "Aggregation weight: Eq. 5 consistency, uniform (ablation) or examples (FedAvg).")
_STANDARDIZE = flags.DEFINE_bool("standardize", True, "Per-client embedding standardisation (Eq. 2).")
# Differential privacy (client-level; the unit of privacy is the client).
_DP_NOISE = flags.DEFINE_float("dp_noise_multiplier", None,
                               "Gaussian noise multiplier z; turns DP on (Poisson client sampling, "
                               "noise z*C on the weighted sum, epsilon per round).")
_DP_CLIP = flags.DEFINE_float("dp_clip_norm", None, "Fixed joint L2 clip norm C of each client's update.")
_DP_ADAPTIVE = flags.DEFINE_bool("dp_adaptive_clipping", False, "Quantile-based (adaptive) clip norm.")
_DP_DELTA = flags.DEFINE_float("dp_delta", 1e-5, "delta of the reported (epsilon, delta).")
# Model.
_ENCODER = flags.DEFINE_enum("encoder", "mlp", ("mlp", "windows"), "Local encoder architecture.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 32, "Encoder output size d.")
_PROJECTION_DIM = flags.DEFINE_integer("projection_dim", 16, "Normalised embedding size p.")
_HIDDEN = flags.DEFINE_list("hidden_units", ["64", "64"], "Encoder hidden layer sizes.")
# Scoring.
_SCORE = flags.DEFINE_enum("score", "knn", ("global", "mahalanobis", "knn"), "Anomaly score.")
_TARGET_FPR = flags.DEFINE_float("target_fpr", 0.01, "Per-client validation FPR of the threshold.")
_THRESHOLD_RULE = flags.DEFINE_enum("threshold_rule", "quantile", ("quantile", "mean_std"),
                                    "quantile: target FPR on validation rows; mean_std: N-BaIoT's rule.")
flags.mark_flag_as_required("output_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  # Imported here so that --help and flag errors do not wait for TensorFlow.
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  try:
    run = experiment.RunConfig(
        data_dir=_DATA_DIR.value, output_dir=_OUTPUT_DIR.value, rounds=_ROUNDS.value,
        clients_per_round=_CLIENTS_PER_ROUND.value, batch_size=_BATCH_SIZE.value,
        encoder=_ENCODER.value, embedding_dim=_EMBEDDING_DIM.value, projection_dim=_PROJECTION_DIM.value,
        hidden_units=tuple(int(units) for units in _HIDDEN.value), standardize=_STANDARDIZE.value,
        shards_per_device=_SHARDS.value, score=_SCORE.value, target_fpr=_TARGET_FPR.value,
        threshold_rule=_THRESHOLD_RULE.value, seed=_SEED.value, dp_noise_multiplier=_DP_NOISE.value,
        dp_clip_norm=_DP_CLIP.value, dp_adaptive_clipping=_DP_ADAPTIVE.value, dp_delta=_DP_DELTA.value)
    fcl_config = FCLConfig(
        temperature=_TEMPERATURE.value, align_weight=_ALIGN_WEIGHT.value,
        local_epochs=_LOCAL_EPOCHS.value, client_learning_rate=_CLIENT_LR.value,
        server_learning_rate=_SERVER_LR.value, reference_momentum=_MOMENTUM.value,
        mask_rate=_MASK_RATE.value, jitter_std=_JITTER.value, clip_norm=_CLIP_NORM.value,
        weighting=_WEIGHTING.value)
    data = data_lib.open_federated_data(run.data_dir, cache_root=_CACHE_DIR.value,
                                        shards_per_device=run.shards_per_device)
    result = experiment.run_fcl_training(run, fcl_config, data)
  except (ValueError, data_lib.DataError) as error:
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
