"""The comparison report: exact tables from a fixed results.csv, and a small real comparison run."""
import csv
import math
import os

import pytest

from experiment_test import SyntheticFederatedData  # pylint: disable=g-bad-import-order
from tff_fcl import comparison
from tff_fcl import experiment
from tff_fcl.fcl import FCLConfig

HEADER = ("method,seed,federated,accuracy,auc,f1,recall,precision,fpr,f1_windowed,recall_windowed,fpr_windowed,"
          "rounds,wall_time_s,bytes_per_client_per_round\n")
FIXED_CSV = HEADER + (
    "fcl,0,True,0.95,0.90,0.80,0.70,0.90,0.01,0.90,0.85,0.00,10,100.0,2000.0\n"
    "fcl,1,True,0.97,0.80,0.90,0.90,0.92,0.03,0.94,0.95,0.02,10,120.0,2000.0\n"
    "gat,0,False,0.99,0.99,0.98,0.97,0.99,0.005,0.98,0.97,0.005,0,30.0,nan\n")


def write_fixed_csv(tmp_path, text=FIXED_CSV):
  path = tmp_path / "results.csv"
  path.write_text(text)
  return str(path)


def test_report_from_a_fixed_results_csv_has_mean_and_sample_std_per_method(tmp_path):
  rows = comparison.read_csv(write_fixed_csv(tmp_path))
  markdown = comparison.results_markdown(rows, title="Fixed")
  lines = markdown.splitlines()
  assert lines[0] == "# Fixed"
  # Sample std (ddof = 1) of (0.90, 0.80) is 0.0707; of (0.01, 0.03) is 0.0141; wall time 110 ± 14.1.
  assert ("| fcl | federated | 2 | 0.9600 ± 0.0141 | 0.8500 ± 0.0707 | 0.8500 ± 0.0707 | 0.8000 ± 0.1414 "
          "| 0.9100 ± 0.0141 | 0.0200 ± 0.0141 | 10 ± 0 | 110.0 ± 14.1 | 2,000 |") in lines, markdown
  assert ("| gat † | non-federated reference (centralised, supervised, uses labels) | 1 | 0.9900 | 0.9900 "
          "| 0.9800 | 0.9700 | 0.9900 | 0.0050 | n/a | 30.0 | n/a |") in lines, markdown
  # Windowed side by side: f1 (0.80, 0.90) vs windowed (0.90, 0.94); fpr (0.01, 0.03) vs (0.00, 0.02).
  assert ("| fcl | 0.8500 ± 0.0707 | 0.9200 ± 0.0283 | 0.8000 ± 0.1414 | 0.9000 ± 0.0707 "
          "| 0.0200 ± 0.0141 | 0.0100 ± 0.0141 |") in lines, markdown
  paper = lines.index("## Reported in the paper (not measured here)")
  measured = [i for i, line in enumerate(lines) if line.startswith(("| fcl |", "| gat †"))]
  assert max(measured) < paper, "measured rows come before, and apart from, the paper's values"
  assert "| Ours (FCL) | 0.948 | 0.972 | 0.944 | 0.936 |" in lines[paper:]
  assert "| MLP | 0.872 | 0.901 | 0.864 | 0.852 |" in lines[paper:]


def test_write_report_writes_the_csv_back_unchanged_and_the_chart(tmp_path):
  rows = comparison.read_csv(write_fixed_csv(tmp_path))
  out = tmp_path / "out"
  out.mkdir()
  comparison.write_report(str(out), rows)
  back = comparison.read_csv(str(out / "results.csv"))
  assert [(r["method"], r["seed"], r["federated"], r["auc"]) for r in back] == [
      ("fcl", 0, True, 0.90), ("fcl", 1, True, 0.80), ("gat", 0, False, 0.99)]
  assert math.isnan(back[2]["bytes_per_client_per_round"]), "non-federated: no bytes per round"
  assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert (out / "results.md").read_text().startswith("# Comparison")


def test_unreadable_results_csv_gives_one_line_naming_the_file(tmp_path):
  path = write_fixed_csv(tmp_path, "method,seed\nfcl,0\n")
  with pytest.raises(comparison.ResultsFileError, match=r"results.csv: missing columns federated, accuracy, "):
    comparison.read_csv(path)
  path = write_fixed_csv(tmp_path, HEADER + "fcl,zero,True,1,1,1,1,1,0,1,1,0,1,1,1\n")
  with pytest.raises(comparison.ResultsFileError, match=r"results.csv: line 2: invalid literal for int"):
    comparison.read_csv(path)
  path = write_fixed_csv(tmp_path, HEADER)
  with pytest.raises(comparison.ResultsFileError, match=r"results.csv: no result rows"):
    comparison.read_csv(path)


def test_comparison_runs_methods_times_seeds_on_one_test_set(tmp_path):
  run = experiment.RunConfig(data_dir="synthetic", output_dir="unused", rounds=1, batch_size=32)
  rows = comparison.run_comparison(["central_ae", "mlp"], [0, 1], run, FCLConfig(client_learning_rate=1e-2),
                                   SyntheticFederatedData(), output_dir=str(tmp_path), progress=lambda _: None)
  assert [(r["method"], r["seed"]) for r in rows] == [("central_ae", 0), ("central_ae", 1), ("mlp", 0), ("mlp", 1)]
  with open(tmp_path / "results.csv") as f:
    written = list(csv.DictReader(f))
  assert [w["method"] for w in written] == ["central_ae", "central_ae", "mlp", "mlp"]
  for name in ("results.md", "results.png", os.path.join("runs", "mlp_seed1", "eval.json")):
    assert (tmp_path / name).exists(), f"{name} is written"
  assert "| central_ae † | non-federated reference | 2 |" in (tmp_path / "results.md").read_text()
  with pytest.raises(ValueError, match="Unknown methods fedsgd; expected some of fcl,"):
    comparison.run_comparison(["fedsgd"], [0], run, FCLConfig(), SyntheticFederatedData(), output_dir=str(tmp_path))
