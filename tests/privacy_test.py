"""Tests of tff_fcl/privacy.py (accounting, calibration, Poisson sampling) and programs/privacy_budget."""

import math
import os
import subprocess
import sys

import dp_accounting
import numpy as np
import pytest

from tff_fcl import privacy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hand_built_epsilon(accountant, z, q, rounds, delta):
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
  return accountant.compose(event).get_epsilon(delta)


@pytest.mark.parametrize("z", [0.7, 1.0, 2.0])
def test_epsilon_equals_dp_accounting_for_the_hand_built_event(z):
  rdp = _hand_built_epsilon(dp_accounting.rdp.RdpAccountant(), z, 0.1, 50, 1e-5)
  pld = _hand_built_epsilon(dp_accounting.pld.PLDAccountant(), z, 0.1, 50, 1e-5)
  assert privacy.compute_epsilon(z, 0.1, 50, 1e-5, "rdp") == rdp
  assert privacy.compute_epsilon(z, 0.1, 50, 1e-5, "pld") == pld
  # PLD accounting is tighter than RDP for the same mechanism.
  assert pld < rdp


def test_epsilon_of_spec_uses_q_equal_clients_per_round_over_num_clients():
  spec = privacy.PrivacySpec(noise_multiplier=1.0, clients_per_round=10, num_clients=100, rounds=50,
                             delta=1e-5)
  assert spec.sampling_probability == 0.1
  assert privacy.epsilon_of(spec, "rdp") == privacy.compute_epsilon(1.0, 0.1, 50, 1e-5, "rdp")


def test_epsilon_known_values_and_edge_cases():
  # Table in BUILD_NOTES (z=1, q=0.1, T=50, delta=1e-5).
  assert privacy.compute_epsilon(1.0, 0.1, 50, 1e-5, "rdp") == pytest.approx(5.881, abs=1e-3)
  assert privacy.compute_epsilon(1.0, 0.1, 0, 1e-5) == 0.0
  assert privacy.compute_epsilon(0.0, 0.1, 5, 1e-5) == math.inf
  assert privacy.compute_epsilon(2.0, 0.1, 50, 1e-5, "rdp") < privacy.compute_epsilon(1.0, 0.1, 50, 1e-5, "rdp")


def test_calibrated_noise_multiplier_is_the_smallest_meeting_the_target():
  z = privacy.calibrate_noise_multiplier(4.0, 0.1, 50, 1e-5, "rdp")
  assert privacy.compute_epsilon(z, 0.1, 50, 1e-5, "rdp") <= 4.0
  assert privacy.compute_epsilon(z - 2 * privacy.CALIBRATION_TOLERANCE, 0.1, 50, 1e-5, "rdp") > 4.0


@pytest.mark.parametrize("call, message", [
    (lambda: privacy.compute_epsilon(-1.0, 0.1, 5, 1e-5),
     "noise_multiplier must be a non-negative finite number. Found -1.0."),
    (lambda: privacy.compute_epsilon(1.0, 1.5, 5, 1e-5),
     "sampling probability q must be in [0, 1]. Found 1.5."),
    (lambda: privacy.compute_epsilon(1.0, 0.1, 5, 0.0), "delta must be in (0, 1). Found 0.0."),
    (lambda: privacy.compute_epsilon(1.0, 0.1, 5, 1e-5, "moments"),
     "accountant must be one of rdp, pld. Found 'moments'."),
    (lambda: privacy.PrivacySpec(1.0, 20, 10, 5, 1e-5),
     "clients_per_round must be in (0, num_clients=10]. Found 20."),
    (lambda: privacy.calibrate_noise_multiplier(0.0, 0.1, 5, 1e-5),
     "target_epsilon must be a positive finite number. Found 0.0."),
])
def test_bad_parameters_raise_one_line_errors(call, message):
  with pytest.raises(privacy.PrivacyParameterError) as error:
    call()
  assert str(error.value) == message


def test_poisson_sampler_is_seeded_per_round_and_has_rate_q():
  first = privacy.poisson_sample_clients(1000, 0.1, seed=7, round_num=3)
  np.testing.assert_array_equal(first, privacy.poisson_sample_clients(1000, 0.1, seed=7, round_num=3))
  assert not np.array_equal(first, privacy.poisson_sample_clients(1000, 0.1, seed=7, round_num=4))
  assert first.dtype == np.int64 and np.all(np.diff(first) > 0)
  assert first.min() >= 0 and first.max() < 1000
  # Over 200 rounds of 1000 clients the count is Binomial(200000, 0.1): mean 20000, std 134.
  # A 6-sigma band fails with probability ~2e-9.
  total = sum(len(privacy.poisson_sample_clients(1000, 0.1, seed=1, round_num=r)) for r in range(200))
  assert abs(total - 20000) < 6 * math.sqrt(200000 * 0.1 * 0.9)
  # Client 0 alone is included at rate q too (std 0.021 over 200 rounds; 0.1 is 4.7 sigma, flake < 1e-5).
  rate = np.mean([0 in privacy.poisson_sample_clients(10, 0.1, seed=2, round_num=r) for r in range(200)])
  assert abs(rate - 0.1) < 0.1


def test_poisson_sampler_edge_rates():
  assert privacy.poisson_sample_clients(5, 0.0, seed=0, round_num=0).size == 0
  np.testing.assert_array_equal(privacy.poisson_sample_clients(5, 1.0, seed=0, round_num=0), np.arange(5))
  with pytest.raises(privacy.PrivacyParameterError, match="num_clients must be a positive integer"):
    privacy.poisson_sample_clients(0, 0.5, seed=0, round_num=0)


def _run_cli(*args):
  return subprocess.run([sys.executable, "-m", "programs.privacy_budget", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=False)


_COMMON = ["--clients_per_round=10", "--num_clients=100", "--rounds=50", "--delta=1e-5"]


def test_cli_epsilon_prints_both_accountants_unit_and_sampling():
  result = _run_cli("--mode=epsilon", "--noise_multiplier=2", *_COMMON)
  assert result.returncode == 0, result.stderr
  rdp = privacy.compute_epsilon(2.0, 0.1, 50, 1e-5, "rdp")
  pld = privacy.compute_epsilon(2.0, 0.1, 50, 1e-5, "pld")
  lines = result.stdout.splitlines()
  assert lines[0] == f"epsilon = {pld:.4f} (pld accountant)"
  assert f"epsilon (rdp) = {rdp:.4f}" in lines
  assert f"unit of privacy: {privacy.UNIT_OF_PRIVACY}" in lines
  assert f"sampling assumption: {privacy.SAMPLING_ASSUMPTION}" in lines


def test_cli_calibrate_prints_the_noise_multiplier():
  result = _run_cli("--mode=calibrate", "--target_epsilon=4", "--accountant=rdp", *_COMMON)
  assert result.returncode == 0, result.stderr
  z = privacy.calibrate_noise_multiplier(4.0, 0.1, 50, 1e-5, "rdp")
  assert result.stdout.splitlines()[0] == f"noise_multiplier = {z:.4f} (target epsilon 4, rdp accountant)"


@pytest.mark.parametrize("args, message", [
    (["--mode=epsilon", "--noise_multiplier=-1", *_COMMON],
     "error: noise_multiplier must be a non-negative finite number. Found -1.0."),
    (["--mode=epsilon", *_COMMON], "error: --mode=epsilon needs --noise_multiplier"),
    (["--mode=calibrate", "--target_epsilon=4", "--clients_per_round=200", "--num_clients=100",
      "--rounds=5"], "error: clients_per_round must be in (0, num_clients=100]. Found 200."),
    (["--mode=sweep"], "error: --mode=sweep needs --output_dir"),
    (["--noise_multiplier=abc"],
     "error: flag --noise_multiplier=abc: could not convert string to float: 'abc'"),
    (["--nosuchflag=1"], "error: Unknown command line flag 'nosuchflag'"),
])
def test_cli_bad_flags_give_one_line_error(args, message):
  result = _run_cli(*args)
  assert result.returncode != 0
  assert result.stderr.strip() == message


def test_budget_modes_do_not_import_tensorflow():
  code = ("import sys; import tff_fcl.privacy, programs.privacy_budget; "
          "print('tensorflow' in sys.modules, 'tensorflow_federated' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True)
  assert result.stdout.strip() == "False False"
