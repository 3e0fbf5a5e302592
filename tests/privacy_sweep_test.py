"""The privacy sweep (issue 6): FCL and DP-FedAvg at a noise multiplier plus their no-DP references.

Data: the synthetic stand-in of tests/experiment_test.py (random numbers, labelled synthetic).
"""
import csv
import math

import pytest

from tests.experiment_test import SyntheticFederatedData
from tff_fcl import experiment
from tff_fcl import privacy
from tff_fcl import privacy_sweep
from tff_fcl.fcl import FCLConfig


def test_sweep_writes_utility_against_epsilon(tmp_path):
  settings = privacy_sweep.SweepSettings(noise_multipliers=(1.0,), rounds=2, clients_per_round=1, clip_norm=0.5)
  base = experiment.RunConfig(data_dir="synthetic", output_dir=str(tmp_path), batch_size=32, embedding_dim=8,
                              projection_dim=4, hidden_units=(16,))
  rows = privacy_sweep.run_privacy_sweep(SyntheticFederatedData(), base, FCLConfig(local_epochs=1), settings,
                                         str(tmp_path), progress=lambda _: None)
  with open(tmp_path / "results.csv") as f:
    written = list(csv.DictReader(f))
  assert [(r["method"], r["noise_multiplier"]) for r in written] == [
      ("fcl", "none"), ("fcl", "1.0"), ("dp_fedavg_ae", "none"), ("dp_fedavg_ae", "1.0")]
  expected = privacy.compute_epsilon(1.0, 0.5, 2, 1e-5, "pld")
  for row in rows:
    if row["noise_multiplier"] == "none":
      assert math.isinf(row["epsilon"]), "the no-DP reference has no guarantee"
    else:
      assert row["epsilon"] == pytest.approx(expected), "epsilon of q = 1/2, z = 1, T = 2"
    assert 0 <= row["auc"] <= 1
  assert (tmp_path / "utility_vs_epsilon.png").stat().st_size > 0
  text = (tmp_path / "results.md").read_text()
  assert "Unit of privacy: the client" in text


def test_unknown_sweep_method_is_named():
  with pytest.raises(ValueError, match="Unknown sweep method"):
    privacy_sweep.SweepSettings(methods=("fcl", "dp_sgd"))
