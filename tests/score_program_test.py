"""programs.score on a fixture capture reproduces in-process scores, without the federated runtime."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tff_fcl import export
from tff_fcl import features
from tff_fcl import models
from tff_fcl import scoring
from tff_fcl import windowing
from tff_fcl.data import preprocessing
from tff_fcl.data import schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PCAPS = os.path.join(ROOT, "tests", "fixtures", "pcaps")
CAPTURE = os.path.join(PCAPS, "HueBridge_Setup-A-1-STA.pcap.gz")
REFERENCE = np.array([0.6, -0.2, 0.1, 0.3], np.float32)


def _mac(device):
  with open(os.path.join(PCAPS, f"{device}_iotdevice-mac.txt")) as f:
    return f.read().strip()


def _run(args, tmp_path):
  """Runs programs.score in a fresh Python; returns (exit code, stdout, stderr, TFF imported?)."""
  marker = tmp_path / "modules.txt"
  code = ("import atexit, runpy, sys\n"
          f"atexit.register(lambda: open({str(marker)!r}, 'w').write(str('tensorflow_federated' in sys.modules)))\n"
          f"sys.argv = ['score'] + {args!r}\n"
          "runpy.run_module('programs.score', run_name='__main__')\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env,
                        timeout=300)
  return done.returncode, done.stdout, done.stderr, marker.read_text() if marker.exists() else None


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  """An export whose client `hue` is calibrated on the first 1000 packets of the HueBridge capture."""
  tf.keras.utils.set_random_seed(2)
  network = models.build_embedding_network("mlp", 8, 4, (16,))
  module = export.DetectorModule(network, REFERENCE)
  raw = features.extract_features([CAPTURE], device_mac=features.parse_mac(_mac("HueBridge"))).features
  raw = raw.astype(np.float32)
  standardizer = preprocessing.Standardizer.fit(raw[:700])
  train_x, val_x = standardizer.apply(raw[:700]), standardizer.apply(raw[700:1000])
  z = export.encode_rows(module.encode, train_x, module.embedding_dim)
  moments = (z.mean(axis=0), z.var(axis=0))
  embed = lambda x: export.embed_rows(module.embed, x, moments, 4)
  settings = scoring.ScoringSettings(scorers=("knn", "mahalanobis", "global"), target_fpr=0.05,
                                     threshold_rule="mean_std", window_target_fpr=0.05)
  calibration = scoring.fit_calibration("hue", moments, embed(train_x), embed(val_x), reference_vector=REFERENCE,
                                        settings=settings,
                                        preprocessing=(standardizer.mean, standardizer.inv_std))
  run_dir = str(tmp_path_factory.mktemp("run"))
  export.export_run(run_dir, network, REFERENCE, {"hue": calibration})
  # In-process scores of every packet of the capture, as evaluation computes them.
  expected = calibration.scores(embed(standardizer.apply(raw)), "knn", REFERENCE)
  return run_dir, calibration, expected


def _read(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_score_capture_reproduces_in_process_scores(model, tmp_path):
  run_dir, calibration, expected = model
  output = str(tmp_path / "scores.csv")
  code, stdout, stderr, tff_loaded = _run(["--model", run_dir, "--client", "hue", "--pcap", CAPTURE,
                                           "--device_mac", _mac("HueBridge"), "--output", output], tmp_path)
  assert code == 0, stderr
  assert tff_loaded == "False", "programs.score must not import tensorflow_federated"
  rows = _read(output)
  assert list(rows[0]) == ["row", "timestamp", "score", "flag", "windowed_flag"]
  scores = np.array([float(r["score"]) for r in rows])
  np.testing.assert_array_equal(scores, expected)  # written with repr: exact
  threshold, window = calibration.thresholds["knn"], calibration.windows["knn"].window
  np.testing.assert_array_equal([int(r["flag"]) for r in rows], expected > threshold)
  _, windowed = windowing.windowed_decisions(expected, threshold, window, "majority")
  np.testing.assert_array_equal([int(r["windowed_flag"]) for r in rows], windowed)
  assert f"client hue: {len(expected)} rows scored with knn" in stdout
  assert f"flagged: {int((expected > threshold).sum())} per packet" in stdout


def test_score_csv_in_process_matches_capture(model, tmp_path):
  run_dir, _, expected = model
  feature_csv = str(tmp_path / "hue.csv.gz")
  features.write_nbaiot_csv([CAPTURE], feature_csv, device_mac=features.parse_mac(_mac("HueBridge")))
  output = str(tmp_path / "scores.csv")
  summary = export.score_file(run_dir, "hue", feature_csv, output, chunk_rows=300)  # several chunks
  rows = _read(output)
  assert list(rows[0]) == ["row", "score", "flag", "windowed_flag"]
  assert summary.rows == len(expected) == len(rows)
  # The CSV holds the features rounded to 9 digits (float32 round trip), so scores agree closely.
  np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5, atol=1e-6)


def test_bad_inputs_give_one_line_errors(model, tmp_path):
  run_dir, _, _ = model
  bad_csv = tmp_path / "bad.csv"
  names = list(schema.FEATURE_NAMES)
  names[3] = "MI_dir_L3_wieght"
  bad_csv.write_text(",".join(names) + "\n" + ",".join(["1"] * 115) + "\n")
  with pytest.raises(ValueError, match=r"bad.csv: missing columns: MI_dir_L3_weight; extra columns: "
                                       r"MI_dir_L3_wieght"):
    export.score_file(run_dir, "hue", str(bad_csv), str(tmp_path / "o.csv"))
  with pytest.raises(export.ExportError, match=r"Aria_Setup-A-1-STA.pcap.gz: no packets to or from "
                                               r"00:11:22:33:44:55 \(49 frames, 0 packets kept"):
    export.score_file(run_dir, "hue", os.path.join(PCAPS, "Aria_Setup-A-1-STA.pcap.gz"),
                      str(tmp_path / "o.csv"), device_mac="00:11:22:33:44:55")
  assert not os.path.exists(tmp_path / "o.csv") and not os.path.exists(tmp_path / "o.csv.partial")
  code, stdout, stderr, _ = _run(["--model", run_dir, "--client", "tv", "--csv", str(bad_csv),
                                  "--output", str(tmp_path / "o.csv")], tmp_path)
  assert code == 1 and not stdout
  assert stderr.strip().splitlines()[-1] == (
      f"error: {os.path.join(run_dir, 'export')}: unknown client 'tv'; known clients: hue "
      "(calibrate a new device with --calibrate_from)")
  assert len(stderr.strip().splitlines()) == 1, stderr


def test_calibrate_new_device_from_benign_capture(model, tmp_path):
  run_dir, _, _ = model
  import shutil  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / "run")
  shutil.copytree(run_dir, copy)
  cam = os.path.join(PCAPS, "D-LinkCam_Setup-A-1-STA.pcap.gz")
  summary = export.score_file(copy, "cam", cam, str(tmp_path / "o.csv"), device_mac=_mac("D-LinkCam"),
                              calibrate_from=cam)
  assert summary.calibration_written.endswith(os.path.join("calibration", "cam.npz"))
  assert export.ExportedDetector(copy).clients == ["cam", "hue"]
  with pytest.raises(export.ExportError, match="client 'cam' already has a calibration"):
    export.score_file(copy, "cam", cam, str(tmp_path / "o.csv"), device_mac=_mac("D-LinkCam"),
                      calibrate_from=cam)


def test_fast_csv_reader_matches_validating_reader(tmp_path):
  from tff_fcl.data import csv_reader, layouts  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.lognormal(0, 3, (300, 115)) * rng.choice([-1, 1], (300, 115))
  x[::7, 3], x[::5, 5], x[::3, 9] = 0.0, 1e-30, 123456789012345678.0
  path = tmp_path / "rows.csv"
  text = [",".join(schema.FEATURE_NAMES)] + [",".join(repr(v) for v in row) for row in x.tolist()]
  path.write_text("\r\n".join(text[:100]) + "\n\n" + "\n".join(text[100:]))  # CRLF, a blank line, no final EOL
  source = layouts.SourceFile(path=str(path), device="x", kind="benign")
  expected = np.concatenate(list(csv_reader.read_chunks(source)))
  fast = np.concatenate([rows for rows, _ in export.iter_rows(str(path), chunk_rows=64)])
  np.testing.assert_array_equal(fast, expected)
  text[150] = text[150].replace(repr(x[149, 0]), "nan", 1)
  path.write_text("\n".join(text) + "\n")
  with pytest.raises(ValueError, match=r"rows.csv: row 150 \(line 151\), column MI_dir_L5_weight: empty or NaN"):
    list(export.iter_rows(str(path), chunk_rows=64))
