"""Client-level privacy budget of DP training: epsilon for a noise multiplier, or the reverse.

    python -m programs.privacy_budget --mode=epsilon --noise_multiplier=1.0
        --clients_per_round=10 --num_clients=100 --rounds=50 --delta=1e-5
    python -m programs.privacy_budget --mode=calibrate --target_epsilon=8
        --clients_per_round=10 --num_clients=100 --rounds=50 --delta=1e-5
(each command on one line)

Unit of privacy: the client (a device, or a device shard). Assumes Poisson sampling of clients with
q = clients_per_round / num_clients each round, as `programs.train` samples them under DP.
`--mode=epsilon` prints the RDP and PLD values; `--accountant` picks the headline one and the one
`--mode=calibrate` solves with. These modes import no TensorFlow, so they answer in about a second.
"""

from absl import app
from absl import flags

from tff_fcl import runtime

_MODE = flags.DEFINE_enum("mode", "epsilon", ("epsilon", "calibrate", "sweep"),
                          "epsilon: epsilon of a noise multiplier; calibrate: noise multiplier of a "
                          "target epsilon; sweep: utility against epsilon (not yet available).")
_NOISE_MULTIPLIER = flags.DEFINE_float("noise_multiplier", None,
                                       "z: Gaussian noise std / clip norm (--mode=epsilon).")
_TARGET_EPSILON = flags.DEFINE_float("target_epsilon", None, "Target epsilon (--mode=calibrate).")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", None, "Expected clients per round K.")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", None, "Client population N (devices x shards).")
_ROUNDS = flags.DEFINE_integer("rounds", None, "Training rounds T.")
_DELTA = flags.DEFINE_float("delta", 1e-5, "Target delta.")
_ACCOUNTANT = flags.DEFINE_enum("accountant", "pld", ("rdp", "pld"),
                                "Accountant of the headline epsilon and of calibration.")


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
    raise SystemExit("error: --mode=sweep is not yet available; use --mode=epsilon or --mode=calibrate")
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


def _parse_flags(argv):
  """absl's parser, but a bad or unknown flag is one line ("error: ...") instead of two."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"error: {e}") from None


def run():
  """Console entry point."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
