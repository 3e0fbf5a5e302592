"""The sweep: one run per value x seed, the parameter reaching the config, the CSV and the plot."""
import csv
import json

import pytest

from experiment_test import SyntheticFederatedData  # pylint: disable=g-bad-import-order
from tff_fcl import comparison
from tff_fcl import experiment
from tff_fcl.fcl import FCLConfig


def test_sweep_writes_csv_and_plot_and_sets_the_swept_value(tmp_path):
  run = experiment.RunConfig(data_dir="synthetic", output_dir="unused", rounds=1, batch_size=32,
                             embedding_dim=8, projection_dim=4, hidden_units=(16,))
  rows = comparison.run_sweep("temperature", [0.2, 1.0], [0], run, FCLConfig(client_learning_rate=1e-2),
                              SyntheticFederatedData(), output_dir=str(tmp_path), progress=lambda _: None)
  assert [(r["value"], r["seed"]) for r in rows] == [(0.2, 0), (1.0, 0)]
  with open(tmp_path / "sweep.csv") as f:
    written = list(csv.DictReader(f))
  assert list(written[0]) == list(comparison.SWEEP_COLUMNS)
  assert [w["value"] for w in written] == ["0.2", "1.0"]
  assert all(0.0 <= float(w["f1"]) <= 1.0 for w in written)
  with open(tmp_path / "runs" / "temperature=1.0_seed0" / "config.json") as f:
    assert json.load(f)["fcl"]["temperature"] == 1.0, "the swept value reaches the run"
  assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_parameter_is_refused():
  run = experiment.RunConfig(data_dir="synthetic", output_dir="unused")
  with pytest.raises(ValueError, match=r"Unknown sweep parameter 'momentum'; expected one of client_learning_rate,"):
    comparison.run_sweep("momentum", [0.1], [0], run, FCLConfig(), SyntheticFederatedData(), output_dir="unused")
