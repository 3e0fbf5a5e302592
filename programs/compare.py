"""Compares FCL with its ablations, TFF's FedAvg/FedProx and non-federated references on one split.

    python -m programs.compare --output_dir=results/compare              # full: all methods, 3 seeds, 10 rounds
    python -m programs.compare --quick --output_dir=results/compare_quick

Writes results.csv (one row per method x seed), results.md (mean ± std; non-federated references
marked; the paper's Table 1 apart) and results.png to --output_dir, and each run's files under
runs/. Rerunning the same command resumes federated runs from their checkpoints.
Defaults fit the 30-minute budget on the bundled demo data on 2 cores (BUILD_NOTES.md).
"""

from absl import app
from absl import flags
# TensorFlow is imported before absl's app.run: first imported inside app.run's main, TF 2.14's Keras
# builds Sequential/functional models from graph tensors and fails ("'SymbolicTensor' object has no
# attribute 'node'"); BUILD_NOTES.md, "Known TF 2.14 pitfalls".
import tensorflow  # pylint: disable=unused-import,g-bad-import-order

from tff_fcl import runtime

FULL_SEEDS = ("0", "1", "2")
QUICK_SEEDS = ("0",)
QUICK_ROUNDS = 2

_METHODS = flags.DEFINE_list("methods", None, "Methods to compare (default: all of tff_fcl.baselines.ALGORITHMS).")
_SEEDS = flags.DEFINE_list("seeds", list(FULL_SEEDS), "Seeds; each method runs once per seed.")
_QUICK = flags.DEFINE_bool("quick", False, f"Smoke-size run: seed 0 only, {QUICK_ROUNDS} rounds "
                           "(overrides --seeds and --rounds).")
# Data and output.
_WORKERS = flags.DEFINE_list("workers", [], "HOST:PORT,... of `python -m programs.worker` processes; each "
                             "round's clients are split across them. Empty = in-process TFF.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/demo", "Prepared cache or raw N-BaIoT-layout folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "results/cache", "Where raw data folders are prepared.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for results.csv/.md/.png and runs/.")
_SHARDS = flags.DEFINE_integer("shards_per_device", 1, "Split each device's training rows into K clients.")
_ATTACK_FRACTION = flags.DEFINE_float("attack_fraction", 0.5, "Share of each device's test attack rows given "
                                      "to the supervised references for training (removed from every test set).")
_SPLIT_SEED = flags.DEFINE_integer("split_seed", 0, "Seed of that held-out choice (the same for every method).")
# Training, shared by all methods; unset = the library default (RunConfig, FCLConfig).
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Federated rounds (non-federated: rounds x local_epochs epochs).")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", None, "Clients per round; 0 = all.")
_LOCAL_EPOCHS = flags.DEFINE_integer("local_epochs", None, "Local passes over a client's data per round.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Batch size.")
_CLIENT_LR = flags.DEFINE_float("client_learning_rate", None, "Client (and centralised) Adam learning rate.")
_SERVER_LR = flags.DEFINE_float("server_learning_rate", None, "Server SGD learning rate.")
# FCL.
_TEMPERATURE = flags.DEFINE_float("temperature", None, "InfoNCE temperature tau (Eq. 3).")
_ALIGN_WEIGHT = flags.DEFINE_float("align_weight", None, "Weight of the alignment loss (Eq. 4).")
_ENCODER = flags.DEFINE_enum("encoder", None, ("mlp", "windows"), "FCL encoder architecture.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", None, "FCL encoder output size d.")
# Scoring.
_SCORE = flags.DEFINE_enum("score", None, ("global", "mahalanobis", "knn"), "FCL anomaly score.")
_TARGET_FPR = flags.DEFINE_float("target_fpr", None, "Per-device validation FPR of every threshold.")
flags.mark_flag_as_required("output_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  # Imported here so that --help and flag errors do not wait for TensorFlow.
  from tff_fcl import baselines  # pylint: disable=g-import-not-at-top
  from tff_fcl import comparison  # pylint: disable=g-import-not-at-top
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import remote  # pylint: disable=g-import-not-at-top
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  try:
    seeds = [int(s) for s in (QUICK_SEEDS if _QUICK.value else _SEEDS.value)]
  except ValueError:
    raise SystemExit(f"error: --seeds must be integers. Found {','.join(_SEEDS.value)}.") from None
  given = lambda **values: {name: value for name, value in values.items() if value is not None}
  try:
    run = experiment.RunConfig(
        data_dir=_DATA_DIR.value, output_dir=_OUTPUT_DIR.value,
        rounds=QUICK_ROUNDS if _QUICK.value else _ROUNDS.value, shards_per_device=_SHARDS.value,
        **given(clients_per_round=_CLIENTS_PER_ROUND.value, batch_size=_BATCH_SIZE.value,
                encoder=_ENCODER.value, embedding_dim=_EMBEDDING_DIM.value, score=_SCORE.value,
                target_fpr=_TARGET_FPR.value))
    fcl_config = FCLConfig(**given(
        temperature=_TEMPERATURE.value, align_weight=_ALIGN_WEIGHT.value, local_epochs=_LOCAL_EPOCHS.value,
        client_learning_rate=_CLIENT_LR.value, server_learning_rate=_SERVER_LR.value))
    data = data_lib.open_federated_data(run.data_dir, cache_root=_CACHE_DIR.value,
                                        shards_per_device=run.shards_per_device)
    with remote.remote_execution(_WORKERS.value):
      comparison.run_comparison(_METHODS.value or baselines.ALGORITHMS, seeds, run, fcl_config, data,
                                output_dir=_OUTPUT_DIR.value, attack_fraction=_ATTACK_FRACTION.value,
                                split_seed=_SPLIT_SEED.value)
  except (ValueError, remote.WorkerFailedError) as error:
    raise SystemExit(f"error: {error}") from None
  with open(f"{_OUTPUT_DIR.value}/results.md") as f:
    print(f.read())


def run():
  app.run(main)


if __name__ == "__main__":
  run()
