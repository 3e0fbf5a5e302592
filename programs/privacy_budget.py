"""Client-level privacy budget of DP training: epsilon for a noise multiplier, or the reverse.

    python -m programs.privacy_budget --mode=epsilon --noise_multiplier=1.0
        --clients_per_round=10 --num_clients=100 --rounds=50 --delta=1e-5
    python -m programs.privacy_budget --mode=calibrate --target_epsilon=8
        --clients_per_round=10 --num_clients=100 --rounds=50 --delta=1e-5
    python -m programs.privacy_budget --mode=sweep --output_dir=results/privacy_sweep
        [--data_dir=data/demo --shards_per_device=10 --noise_multipliers=0.5,1,2 --rounds=30]
(each command on one line)

Unit of privacy: the client (a device, or a device shard). Assumes Poisson sampling of clients with
q = clients_per_round / num_clients each round, as `programs.train` samples them under DP.
`--mode=epsilon` prints the RDP and PLD values; `--accountant` picks the headline one and the one
`--mode=calibrate` solves with. These modes import no TensorFlow, so they answer in about a second.
`--mode=sweep` trains FCL and DP-FedAvg at each noise multiplier on devices split into shards (so that
there are many clients) and writes utility against epsilon (`tff_fcl.privacy_sweep`).
"""

import sys

from absl import app
from absl import flags

from tff_fcl import runtime

_MODE = flags.DEFINE_enum("mode", "epsilon", ("epsilon", "calibrate", "sweep"),
                          "epsilon: epsilon of a noise multiplier; calibrate: noise multiplier of a "
                          "target epsilon; sweep: train FCL and DP-FedAvg, utility against epsilon.")
_NOISE_MULTIPLIER = flags.DEFINE_float("noise_multiplier", None,
                                       "z: Gaussian noise std / clip norm (--mode=epsilon).")
_TARGET_EPSILON = flags.DEFINE_float("target_epsilon", None, "Target epsilon (--mode=calibrate).")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", None, "Expected clients per round K.")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", None, "Client population N (devices x shards).")
_ROUNDS = flags.DEFINE_integer("rounds", None, "Training rounds T.")
_DELTA = flags.DEFINE_float("delta", 1e-5, "Target delta.")
_ACCOUNTANT = flags.DEFINE_enum("accountant", "pld", ("rdp", "pld"),
                                "Accountant of the headline epsilon and of calibration.")
# --mode=sweep
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Sweep: folder for results.csv/.md and the plot.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/demo", "Sweep: prepared cache or raw N-BaIoT-layout folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "results/cache", "Sweep: where raw data folders are prepared.")
_SHARDS = flags.DEFINE_integer("shards_per_device", 10, "Sweep: clients per device (>= 100 clients on the demo).")
_NOISE_MULTIPLIERS = flags.DEFINE_list("noise_multipliers", ["0.5", "1", "2"], "Sweep: noise multipliers z.")
_SWEEP_METHODS = flags.DEFINE_list("sweep_methods", ["fcl", "dp_fedavg_ae"], "Sweep: methods.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Sweep: seeds.")
_CLIP_NORM = flags.DEFINE_float("clip_norm", 1.0, "Sweep: fixed joint L2 clip norm C.")
_WORKERS = flags.DEFINE_list("workers", [], "Sweep: HOST:PORT,... of `python -m programs.worker` processes.")


def _require(flag, mode: str):
  if flag.value is None:
    raise SystemExit(f"error: --mode={mode} needs --{flag.name}")
  return flag.value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  from tff_fcl import privacy  # pylint: disable=g-import-not-at-top
  mode = _MODE.value
  if mode == "sweep":
    _sweep()
    return
  try:
    if mode == "epsilon":
      spec = privacy.PrivacySpec(
          noise_multiplier=_require(_NOISE_MULTIPLIER, mode),
          clients_per_round=_require(_CLIENTS_PER_ROUND, mode),
          num_clients=_require(_NUM_CLIENTS, mode), rounds=_require(_ROUNDS, mode),
          delta=_DELTA.value)
      epsilons = {name: privacy.epsilon_of(spec, name) for name in privacy.ACCOUNTANTS}
      print(f"epsilon = {epsilons[_ACCOUNTANT.value]:.4f} ({_ACCOUNTANT.value} accountant)")
      print(privacy.describe(spec, epsilons))
    else:
      target = _require(_TARGET_EPSILON, mode)
      probe = privacy.PrivacySpec(
          noise_multiplier=0.0, clients_per_round=_require(_CLIENTS_PER_ROUND, mode),
          num_clients=_require(_NUM_CLIENTS, mode), rounds=_require(_ROUNDS, mode),
          delta=_DELTA.value)
      z = privacy.calibrate_noise_multiplier(target, probe.sampling_probability, probe.rounds,
                                             probe.delta, _ACCOUNTANT.value)
      spec = privacy.PrivacySpec(z, probe.clients_per_round, probe.num_clients, probe.rounds,
                                 probe.delta)
      print(f"noise_multiplier = {z:.4f} (target epsilon {target:g}, {_ACCOUNTANT.value} accountant)")
      print(privacy.describe(spec, {_ACCOUNTANT.value: privacy.epsilon_of(spec, _ACCOUNTANT.value)}))
  except privacy.PrivacyParameterError as e:
    raise SystemExit(f"error: {e}") from None


def _sweep():
  """Trains FCL and DP-FedAvg at each noise multiplier (imports TensorFlow and TFF)."""
  output_dir = _require(_OUTPUT_DIR, "sweep")
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl import privacy_sweep  # pylint: disable=g-import-not-at-top
  from tff_fcl import remote  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  try:
    defaults = privacy_sweep.SweepSettings()
    settings = privacy_sweep.SweepSettings(
        noise_multipliers=tuple(float(z) for z in _NOISE_MULTIPLIERS.value),
        methods=tuple(_SWEEP_METHODS.value), seeds=tuple(int(s) for s in _SEEDS.value),
        rounds=_ROUNDS.value or defaults.rounds, clients_per_round=_CLIENTS_PER_ROUND.value or defaults.clients_per_round,
        clip_norm=_CLIP_NORM.value, delta=_DELTA.value)
    data = data_lib.open_federated_data(_DATA_DIR.value, cache_root=_CACHE_DIR.value,
                                        shards_per_device=_SHARDS.value)
    base = experiment.RunConfig(data_dir=_DATA_DIR.value, output_dir=output_dir,
                                shards_per_device=_SHARDS.value)
    with remote.remote_execution(_WORKERS.value):
      privacy_sweep.run_privacy_sweep(data, base, FCLConfig(), settings, output_dir)
  except (ValueError, remote.WorkerFailedError) as e:
    raise SystemExit(f"error: {e}") from None
  with open(f"{output_dir}/results.md") as f:
    print(f.read())


def _parse_flags(argv):
  """absl's parser, but a bad or unknown flag is one line ("error: ...") instead of two."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"error: {e}") from None


def _sweep_requested(argv) -> bool:
  return any(arg == "--mode=sweep" or (arg == "--mode" and argv[i + 1:i + 2] == ["sweep"])
             for i, arg in enumerate(argv))


def run():
  """Console entry point."""
  if _sweep_requested(sys.argv):
    # The sweep trains Keras models: TensorFlow must be imported before app.run (see programs/train.py);
    # the epsilon and calibrate modes never import it, so that they answer in about a second. Flags
    # are checked first, so that bad input stays one line without TensorFlow's start-up messages.
    _parse_flags(sys.argv)
    _require(_OUTPUT_DIR, "sweep")
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
