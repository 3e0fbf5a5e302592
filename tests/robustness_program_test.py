"""programs.robustness: a one-round grid on synthetic data writes the CSV, table and plots it promises."""
import csv
import math

import pytest

from programs import robustness
from tests.experiment_test import SyntheticFederatedData


def test_quick_grid_writes_csv_table_and_plots(tmp_path):
  settings = robustness.GridSettings(data_dir="synthetic", rounds=1, batch_size=32, client_learning_rate=1e-2,
                                     attack_scale=100.0)
  cells = robustness.grid_cells({"missing_rate": (0.5,), "scaled": (1.0,)}, ["fcl", "fcl_bounded"], seeds=1)
  assert [c.name for c in cells] == [
      "clean-0-fcl-seed0", "clean-0-fcl_bounded-seed0", "missing_rate-0.5-fcl-seed0",
      "missing_rate-0.5-fcl_bounded-seed0", "scaled-1-fcl-seed0", "scaled-1-fcl_bounded-seed0"]
  lines = []
  rows = robustness.run_grid(SyntheticFederatedData(), cells, settings, str(tmp_path), progress=lines.append)
  with open(tmp_path / "results.csv") as f:
    saved = list(csv.DictReader(f))
  assert len(saved) == 6, "one CSV row per cell"
  assert tuple(saved[0]) == robustness.CSV_COLUMNS
  for row in rows:
    assert 0 <= row["auc"] <= 1 and 0 <= row["f1"] <= 1, f"finite metrics for {row['run_dir']}"
  by_name = {(r["condition"], r["method"]): r for r in rows}
  assert by_name[("scaled", "fcl")]["malicious_updates"] == 2, "f = 1: both clients attack in the round"
  assert math.isnan(by_name[("clean", "fcl")]["malicious_updates"]), "no wrapper, no malicious metric"
  for name in ("missing_rate.png", "scaled.png", "results.md"):
    assert (tmp_path / name).stat().st_size > 0, f"{name} is written"
  table = (tmp_path / "results.md").read_text()
  assert "| scaled | 1 |" in table and "| clean | 0 |" in table
  # A rerun reads the finished cells instead of training again.
  again = robustness.run_grid(SyntheticFederatedData(), cells[:1], settings, str(tmp_path), progress=lines.append)
  assert again[0]["auc"] == pytest.approx(rows[0]["auc"])


def test_unknown_condition_and_method_are_refused():
  with pytest.raises(ValueError, match="Unknown condition 'rain'"):
    robustness.grid_cells({"rain": (1.0,)}, ["fcl"], 1)
  with pytest.raises(ValueError, match="Unknown method 'krum'"):
    robustness.grid_cells({}, ["krum"], 1)
