"""Export: the reloaded SavedModel and calibration files reproduce in-process scores exactly."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tff_fcl import export
from tff_fcl import models
from tff_fcl import scoring
from tff_fcl.data import preprocessing

REFERENCE = np.array([0.6, -0.2, 0.1, 0.3], np.float32)


def _raw_rows(rng, n, shift=0.0):
  """Synthetic raw feature rows [n, 115] (non-negative, heavy-tailed like weights and variances)."""
  return rng.lognormal(shift, 1.0, (n, 115)).astype(np.float32)


def _calibration(module, client, raw, settings):
  standardizer = preprocessing.Standardizer.fit(raw[:150])
  train_x, val_x = standardizer.apply(raw[:150]), standardizer.apply(raw[150:])
  z = export.encode_rows(module.encode, train_x, module.embedding_dim)
  moments = (z.mean(axis=0), z.var(axis=0))
  embed = lambda x: export.embed_rows(module.embed, x, moments, 4)
  return scoring.fit_calibration(client, moments, embed(train_x), embed(val_x), reference_vector=REFERENCE,
                                 settings=settings, preprocessing=(standardizer.mean, standardizer.inv_std))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  tf.keras.utils.set_random_seed(1)
  network = models.build_embedding_network("mlp", 8, 4, (16,))
  module = export.DetectorModule(network, REFERENCE)
  rng = np.random.default_rng(0)
  settings = scoring.ScoringSettings(scorers=("mahalanobis", "knn", "global"), target_fpr=0.05,
                                     threshold_rule="mean_std", window_target_fpr=0.02, max_window=20)
  raws = {"cam/1": _raw_rows(rng, 200), "plug": _raw_rows(rng, 200, shift=1.0)}
  calibrations = {c: _calibration(module, c, raw, settings) for c, raw in raws.items()}
  run_dir = str(tmp_path_factory.mktemp("run"))
  export.export_run(run_dir, network, REFERENCE, calibrations)
  return module, calibrations, run_dir, rng


def test_layout_and_manifest(exported):
  _, _, run_dir, _ = exported
  directory = os.path.join(run_dir, "export")
  assert sorted(os.listdir(os.path.join(directory, "calibration"))) == ["cam%2F1.npz", "plug.npz"]
  with open(os.path.join(directory, "manifest.json")) as f:
    manifest = json.load(f)
  assert (manifest["format"], manifest["format_version"]) == ("tff-fcl-detector", 1)
  assert (manifest["embedding_dim"], manifest["projection_dim"], manifest["clients"]) == (8, 4, ["cam/1", "plug"])
  assert not [n for n in os.listdir(run_dir) if n.startswith(".export-")], "no staging folder left"


def test_reload_gives_identical_scores(exported):
  module, calibrations, run_dir, rng = exported
  detector = export.ExportedDetector(run_dir)
  assert detector.clients == ["cam/1", "plug"]
  np.testing.assert_array_equal(detector.reference_vector, REFERENCE)
  raw = np.concatenate([_raw_rows(rng, 50), _raw_rows(rng, 20, shift=3.0)])
  for client, original in calibrations.items():
    loaded = detector.calibration(client)
    assert loaded.thresholds == original.thresholds
    assert loaded.windows == original.windows
    assert loaded.settings == original.settings
    x = preprocessing.Standardizer(*original.preprocessing).apply(raw)
    embeddings = export.embed_rows(module.embed, x, original.moments, 4)
    for scorer in original.settings.scorers:
      in_process = original.scores(embeddings, scorer, REFERENCE)
      np.testing.assert_array_equal(detector.scores(raw, loaded, scorer), in_process, err_msg=scorer)


def test_one_clients_file_is_enough(exported, tmp_path):
  _, calibrations, run_dir, rng = exported
  import shutil  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / "copy")
  shutil.copytree(os.path.join(run_dir, "export"), copy)
  os.remove(os.path.join(copy, "calibration", "plug.npz"))
  raw = _raw_rows(rng, 10)
  full, alone = export.ExportedDetector(run_dir), export.ExportedDetector(copy)
  np.testing.assert_array_equal(alone.scores(raw, alone.calibration("cam/1"), "knn"),
                                full.scores(raw, full.calibration("cam/1"), "knn"))


def test_unknown_client_lists_known_ones(exported):
  detector = export.ExportedDetector(exported[2])
  with pytest.raises(export.ExportError, match=r"unknown client 'tv'; known clients: cam/1, plug "
                                               r"\(calibrate a new device with --calibrate_from\)"):
    detector.calibration("tv")


def test_incompatible_or_missing_export(exported, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "old"
  shutil.copytree(os.path.join(exported[2], "export"), copy)
  manifest = json.loads((copy / "manifest.json").read_text())
  manifest["format_version"] = 99
  (copy / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(export.ExportError, match=r"incompatible model export \('tff-fcl-detector' version 99\); "
                                               r"this tff-fcl reads 'tff-fcl-detector' version 1"):
    export.ExportedDetector(str(copy))
  with pytest.raises(export.ExportError, match=r"no exported model \(export/manifest.json not found\)"):
    export.ExportedDetector(str(tmp_path))


def test_calibrate_new_client_from_benign_rows(exported, tmp_path):
  _, _, run_dir, rng = exported
  detector = export.ExportedDetector(run_dir)
  benign = _raw_rows(rng, 400, shift=0.5)
  calibration = detector.calibrate("new", benign)
  # Thresholds come from the last quarter of the rows (validation), preprocessing from the first 3/4.
  standardizer = preprocessing.Standardizer.fit(benign[:300])
  np.testing.assert_array_equal(calibration.preprocessing[0], standardizer.mean)
  val_scores = detector.scores(benign[300:], calibration, "mahalanobis")
  assert calibration.thresholds["mahalanobis"] == scoring.fit_threshold(val_scores, rule="mean_std")
  assert calibration.settings == detector.settings
  with pytest.raises(export.ExportError, match="3 benign rows are too few to calibrate a client"):
    detector.calibrate("new", benign[:3])


