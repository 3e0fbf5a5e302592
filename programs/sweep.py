"""Sweeps one FCL hyper-parameter over values and seeds: sweep.csv and sweep.png in --output_dir.

    python -m programs.sweep --param=client_learning_rate --values=1e-4,3e-4,1e-3,3e-3,1e-2 \
        --output_dir=results/sweep_lr          # the paper's Fig. 2 (AUC against learning rate)
    python -m programs.sweep --param=temperature --values=0.05,0.1,0.2,0.5,1.0 \
        --output_dir=results/sweep_tau         # the paper's Fig. 3 (F1 against temperature)
"""

from absl import app
from absl import flags
# TensorFlow is imported before absl's app.run: first imported inside app.run's main, TF 2.14's Keras
# builds Sequential/functional models from graph tensors and fails ("'SymbolicTensor' object has no
# attribute 'node'"); BUILD_NOTES.md, "Known TF 2.14 pitfalls".
import tensorflow  # pylint: disable=unused-import,g-bad-import-order

from tff_fcl import runtime

_PARAM = flags.DEFINE_enum("param", "client_learning_rate", (
    "client_learning_rate", "server_learning_rate", "temperature", "align_weight", "reference_momentum",
    "mask_rate", "jitter_std", "local_epochs", "embedding_dim", "batch_size"), "Hyper-parameter to sweep.")
_VALUES = flags.DEFINE_list("values", None, "Values of --param.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds per value.")
_METHOD = flags.DEFINE_enum("method", "fcl", ("fcl", "fcl_no_align", "fcl_no_standardize", "fcl_uniform",
                                              "fedavg_ctr"), "The FCL variant to sweep.")
_METRIC = flags.DEFINE_enum("metric", None, ("accuracy", "auc", "f1", "recall", "precision", "fpr"),
                            "Metric plotted (default: f1 for temperature, auc otherwise).")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/demo", "Prepared cache or raw N-BaIoT-layout folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "results/cache", "Where raw data folders are prepared.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for sweep.csv, sweep.png and runs/.")
_SHARDS = flags.DEFINE_integer("shards_per_device", 1, "Split each device's training rows into K clients.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Federated rounds per run.")
# Unset = the library default (RunConfig, FCLConfig).
_CLIENT_LR = flags.DEFINE_float("client_learning_rate", None, "Client Adam learning rate (when not swept).")
_TEMPERATURE = flags.DEFINE_float("temperature", None, "InfoNCE temperature (when not swept).")
_ALIGN_WEIGHT = flags.DEFINE_float("align_weight", None, "Alignment loss weight (when not swept).")
_TARGET_FPR = flags.DEFINE_float("target_fpr", None, "Per-device validation FPR of the threshold.")
flags.mark_flag_as_required("output_dir")
flags.mark_flag_as_required("values")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  from tff_fcl import comparison  # pylint: disable=g-import-not-at-top
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  try:
    values = [float(v) for v in _VALUES.value]
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    raise SystemExit("error: --values must be numbers and --seeds integers.") from None
  given = lambda **values: {name: value for name, value in values.items() if value is not None}
  try:
    run = experiment.RunConfig(data_dir=_DATA_DIR.value, output_dir=_OUTPUT_DIR.value, rounds=_ROUNDS.value,
                               shards_per_device=_SHARDS.value, **given(target_fpr=_TARGET_FPR.value))
    fcl_config = FCLConfig(**given(client_learning_rate=_CLIENT_LR.value, temperature=_TEMPERATURE.value,
                                   align_weight=_ALIGN_WEIGHT.value))
    data = data_lib.open_federated_data(run.data_dir, cache_root=_CACHE_DIR.value,
                                        shards_per_device=run.shards_per_device)
    rows = comparison.run_sweep(_PARAM.value, values, seeds, run, fcl_config, data, output_dir=_OUTPUT_DIR.value,
                                method=_METHOD.value, metric=_METRIC.value)
  except (ValueError, data_lib.DataError) as error:
    raise SystemExit(f"error: {error}") from None
  for row in rows:
    print(f"{row['parameter']}={row['value']} seed {row['seed']}: AUC {row['auc']:.4f}, F1 {row['f1']:.4f}")
  print(f"files in {_OUTPUT_DIR.value}: sweep.csv, sweep.png")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
