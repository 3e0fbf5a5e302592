"""prepare_nbaiot: chronological splits, attack caps, the attack pool, manifest, errors and the CLI."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures.nbaiot import fixture_layouts
from tff_fcl.data import cache
from tff_fcl.data import DataError
from tff_fcl.data import deal_pool
from tff_fcl.data import prepare_nbaiot
from tff_fcl.data import PrepareOptions
from tff_fcl.data import split_sizes

ENNIO = "Ennio_Doorbell"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arrays(cache_dir, device, split):
  return tuple(np.array(cache.load_array(str(cache_dir), device, split, what)) for what in ("x", "labels", "kinds"))


@pytest.fixture(scope="module")
def reference():
  benign = fixture_layouts.read_rows(f"{fixture_layouts.STANDIN}/D-LinkCam_benign_traffic.csv.gz")
  tcp = fixture_layouts.read_rows(f"{fixture_layouts.ATTACKS}/tcp.csv.gz")
  udp = fixture_layouts.read_rows(f"{fixture_layouts.ATTACKS}/udp.csv.gz")
  return benign, tcp, udp


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp("prep")
  raw = fixture_layouts.uci_layout(root / "raw")
  return raw, prepare_nbaiot(raw, str(root / "cache")), str(root / "cache")


def test_split_sizes_boundaries():
  assert split_sizes(300, 0.2, 0.2) == (180, 60, 60)
  assert split_sizes(10, 0.2, 0.2) == (6, 2, 2)
  assert split_sizes(7, 0.2, 0.2) == (5, 1, 1)
  assert split_sizes(9, 0.0, 0.5) == (5, 0, 4)


def test_uci_splits_are_chronological_and_attacks_go_to_test(prepared, reference):
  _, manifest, cache_dir = prepared
  benign, tcp, udp = reference
  assert manifest["devices"] == [ENNIO, "HueBridge"]
  assert manifest["kinds"] == ["benign", "gafgyt/tcp", "gafgyt/udp"]
  assert manifest["splits"][ENNIO] == dict(benign_rows=300, train=180, val=60, test_benign=60,
                                           attack_rows={"gafgyt/tcp": 200, "gafgyt/udp": 200}, test=460)
  x, labels, kinds = arrays(cache_dir, ENNIO, "train")
  np.testing.assert_array_equal(x, benign[:180])
  assert not labels.any() and not kinds.any()
  np.testing.assert_array_equal(arrays(cache_dir, ENNIO, "val")[0], benign[180:240])
  x, labels, kinds = arrays(cache_dir, ENNIO, "test")
  np.testing.assert_array_equal(x, np.concatenate([benign[240:], tcp, udp]))
  np.testing.assert_array_equal(labels, np.repeat([0, 1], [60, 400]))
  np.testing.assert_array_equal(kinds, np.repeat([0, 1, 2], [60, 200, 200]))
  assert manifest["splits"]["HueBridge"]["test"] == 60


def test_manifest_records_sources_and_options(prepared):
  raw, manifest, _ = prepared
  by_path = {s["path"]: s for s in manifest["sources"]}
  tcp = by_path[os.path.join(ENNIO, "gafgyt_attacks", "tcp.csv.gz")]
  with open(os.path.join(raw, ENNIO, "gafgyt_attacks", "tcp.csv.gz"), "rb") as f:
    assert tcp["sha256"] == hashlib.sha256(f.read()).hexdigest()
  assert (tcp["rows"], tcp["dropped_rows"], tcp["label"], tcp["kind"], tcp["device"]) == (200, 0, 1, "gafgyt/tcp", ENNIO)
  assert manifest["options"]["val_fraction"] == 0.2 and manifest["options"]["seed"] == 0
  assert manifest["format_version"] == cache.FORMAT_VERSION and len(manifest["feature_names"]) == 115
  assert manifest["total_rows"] == 1000


def test_kaggle_layout_gives_the_same_cache(prepared, tmp_path):
  _, _, uci_cache = prepared
  manifest = prepare_nbaiot(fixture_layouts.kaggle_layout(tmp_path / "raw"), str(tmp_path / "cache"))
  assert manifest["devices"] == [ENNIO]
  for split in cache.SPLITS:
    for a, b in zip(arrays(tmp_path / "cache", ENNIO, split), arrays(uci_cache, ENNIO, split)):
      np.testing.assert_array_equal(a, b)


def test_attack_cap_is_a_seeded_sample_in_file_order(tmp_path, reference):
  _, tcp, udp = reference
  raw = fixture_layouts.uci_layout(tmp_path / "raw", with_second_device=False)
  tests = {}
  for name, seed in (("a", 1), ("b", 1), ("c", 2)):
    manifest = prepare_nbaiot(raw, str(tmp_path / name), PrepareOptions(max_attack_rows_per_kind=50, seed=seed))
    assert manifest["splits"][ENNIO]["attack_rows"] == {"gafgyt/tcp": 50, "gafgyt/udp": 50}
    tests[name] = arrays(tmp_path / name, ENNIO, "test")
  np.testing.assert_array_equal(tests["a"][0], tests["b"][0])
  assert not np.array_equal(tests["a"][0], tests["c"][0])
  kept_tcp = tests["a"][0][60:110]
  positions = [int(np.flatnonzero((tcp == row).all(axis=1))[0]) for row in kept_tcp]
  assert positions == sorted(positions), "sampled rows keep file order"
  np.testing.assert_array_equal(tests["a"][2], np.repeat([0, 1, 2], [60, 50, 50]))


def test_deal_pool_is_disjoint_seeded_and_scales_down():
  dealt = deal_pool(100, [10, 20, 5], seed=3)
  assert [len(d) for d in dealt] == [10, 20, 5]
  joined = np.concatenate(dealt)
  assert len(np.unique(joined)) == 35 and joined.max() < 100
  assert all(np.array_equal(a, b) for a, b in zip(dealt, deal_pool(100, [10, 20, 5], seed=3)))
  assert not np.array_equal(dealt[0], deal_pool(100, [10, 20, 5], seed=4)[0])
  assert [len(d) for d in deal_pool(30, [40, 20], seed=0)] == [20, 10]


def test_attack_pool_rows_are_dealt_to_test_sets(tmp_path):
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  shutil.rmtree(os.path.join(raw, ENNIO, "gafgyt_attacks"))
  # Crafted pool rows (not traffic): row i holds 1000 * i + column, so each row names itself.
  pool_rows = 1000.0 * np.arange(400)[:, None] + np.arange(115)[None, :]
  fixture_layouts.write_csv(tmp_path / "pool" / "any" / "depth" / "a.csv", pool_rows[:200])
  fixture_layouts.write_csv(tmp_path / "pool" / "scan_attacks" / "b.csv", pool_rows[200:])
  options = PrepareOptions(attack_pool_dir=str(tmp_path / "pool"), seed=5)
  manifest = prepare_nbaiot(raw, str(tmp_path / "a"), options)
  assert manifest["kinds"] == ["benign", "pool/a", "scan/b"]
  assert [manifest["splits"][d]["pool_rows"] for d in (ENNIO, "HueBridge")] == [60, 60]
  dealt = {}
  for device in (ENNIO, "HueBridge"):
    x, labels, kinds = arrays(tmp_path / "a", device, "test")
    np.testing.assert_array_equal(labels, np.repeat([0, 1], [60, 60]))
    ids = (x[60:, 0] / 1000).astype(int)
    np.testing.assert_array_equal(x[60:], pool_rows[ids])
    np.testing.assert_array_equal(kinds[60:], np.where(ids < 200, 1, 2))
    assert list(ids) == sorted(ids)
    dealt[device] = set(ids)
  assert len(dealt[ENNIO]) == 60 and not dealt[ENNIO] & dealt["HueBridge"], "dealt slices are disjoint"
  prepare_nbaiot(raw, str(tmp_path / "b"), options)
  np.testing.assert_array_equal(arrays(tmp_path / "a", ENNIO, "test")[0], arrays(tmp_path / "b", ENNIO, "test")[0])
  other = prepare_nbaiot(raw, str(tmp_path / "c"), PrepareOptions(attack_pool_dir=str(tmp_path / "pool"), seed=6,
                                                                  attack_pool_rows_per_device=7))
  assert other["splits"][ENNIO]["pool_rows"] == 7
  assert not np.array_equal(arrays(tmp_path / "a", ENNIO, "test")[0][60:67], arrays(tmp_path / "c", ENNIO, "test")[0][60:])


def test_device_with_attacks_but_no_benign_traffic(tmp_path):
  raw = fixture_layouts.uci_layout(tmp_path / "raw", with_second_device=False)
  os.remove(os.path.join(raw, ENNIO, "benign_traffic.csv.gz"))
  with pytest.raises(DataError) as error:
    prepare_nbaiot(raw, str(tmp_path / "out"))
  assert str(error.value) == (
      f"{raw}/{ENNIO}: device {ENNIO} has attack files ({raw}/{ENNIO}/gafgyt_attacks/tcp.csv.gz, ...) but no "
      "benign traffic (no benign_traffic.csv); add its benign file or remove the device")
  assert not os.path.exists(tmp_path / "out")


def test_failed_run_leaves_no_cache_and_drop_mode_counts(tmp_path):
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  bad = os.path.join(raw, "HueBridge", "benign_traffic.csv.gz")
  with gzip.open(bad, "rt") as f:
    lines = f.read().splitlines()
  lines[5] = "nan" + lines[5][lines[5].index(","):]
  with gzip.open(bad, "wt") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(DataError) as error:
    prepare_nbaiot(raw, str(tmp_path / "out"))
  assert str(error.value) == f"{bad}: row 5 (line 6), column MI_dir_L5_weight: empty or NaN value"
  assert sorted(os.listdir(tmp_path)) == ["raw"], "no cache and no temporary folder left behind"
  manifest = prepare_nbaiot(raw, str(tmp_path / "out"), PrepareOptions(on_bad_rows="drop"))
  hue = [s for s in manifest["sources"] if s["device"] == "HueBridge"][0]
  assert (hue["rows"], hue["dropped_rows"]) == (299, 1)
  assert manifest["splits"]["HueBridge"]["benign_rows"] == 299


def test_bad_options_and_existing_output(tmp_path):
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  with pytest.raises(DataError, match=r"^val_fraction \+ test_fraction must be below 1"):
    prepare_nbaiot(raw, str(tmp_path / "o"), PrepareOptions(val_fraction=0.5, test_fraction=0.5))
  (tmp_path / "o").mkdir()
  (tmp_path / "o" / "file").write_text("x")
  with pytest.raises(DataError) as error:
    prepare_nbaiot(raw, str(tmp_path / "o"))
  assert str(error.value) == f"{tmp_path}/o: output folder exists and is not empty; choose a new folder"


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "data_prep.prepare_nbaiot", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_cli_success_and_one_line_error(tmp_path):
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  ok = run_cli("--input_dir", raw, "--output_dir", str(tmp_path / "out"), "--max_attack_rows_per_kind", "10")
  assert ok.returncode == 0, ok.stderr
  assert f"prepared 2 devices, 1000 rows (0 dropped) from 4 files" in ok.stdout
  assert cache.read_manifest(str(tmp_path / "out"))["splits"][ENNIO]["test"] == 80
  os.remove(os.path.join(raw, ENNIO, "benign_traffic.csv.gz"))
  failed = run_cli("--input_dir", raw, "--output_dir", str(tmp_path / "out2"))
  assert failed.returncode == 1
  last = failed.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "no benign traffic" in last and ENNIO in last
  assert "Traceback" not in failed.stderr
