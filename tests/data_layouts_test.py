"""File discovery: UCI and Kaggle layouts, any `<family>_attacks` folder, gzip/zip/rar, unrecognised files."""
import logging
import os
import shutil
import zipfile

import pytest

from tests.fixtures.nbaiot import fixture_layouts
from tff_fcl.data import DataError
from tff_fcl.data import layouts


def kinds_of(sources):
  return [(s.device, s.kind, s.label) for s in sources]


def test_uci_layout(tmp_path):
  root = fixture_layouts.uci_layout(tmp_path)
  assert kinds_of(layouts.discover(root)) == [
      ("Ennio_Doorbell", "benign", 0), ("Ennio_Doorbell", "gafgyt/tcp", 1), ("Ennio_Doorbell", "gafgyt/udp", 1),
      ("HueBridge", "benign", 0)]


def test_kaggle_layout_uses_the_documented_device_order(tmp_path):
  root = fixture_layouts.kaggle_layout(tmp_path)
  assert kinds_of(layouts.discover(root)) == [
      ("Ennio_Doorbell", "benign", 0), ("Ennio_Doorbell", "gafgyt/tcp", 1), ("Ennio_Doorbell", "gafgyt/udp", 1)]
  assert layouts.KAGGLE_DEVICES[0] == "Danmini_Doorbell" and layouts.KAGGLE_DEVICES[8].endswith("1003_WHT_Security_Camera")
  os.rename(os.path.join(root, "3.benign.csv"), os.path.join(root, "1.benign.csv"))
  assert kinds_of(layouts.discover(root))[0] == ("Danmini_Doorbell", "benign", 0)


def test_any_family_folder_and_zip_versions(tmp_path):
  root = fixture_layouts.uci_layout(tmp_path, with_second_device=False)
  device = os.path.join(root, "Ennio_Doorbell")
  os.rename(os.path.join(device, "gafgyt_attacks"), os.path.join(device, "ddos_attacks"))
  os.rename(os.path.join(device, "ddos_attacks", "tcp.csv.gz"),
            os.path.join(device, "ddos_attacks", "amp.TCP.syn.optionallyACK.csv.gz"))
  with zipfile.ZipFile(os.path.join(device, "benign_traffic.zip"), "w") as archive:
    archive.writestr("benign_traffic.csv", "x")
  os.remove(os.path.join(device, "benign_traffic.csv.gz"))
  with zipfile.ZipFile(os.path.join(device, "mirai_attacks.zip"), "w") as archive:
    archive.writestr("mirai_attacks/ack.csv", "x")
    archive.writestr("mirai_attacks/syn.csv", "x")
  found = layouts.discover(root)
  assert kinds_of(found) == [("Ennio_Doorbell", "benign", 0), ("Ennio_Doorbell", "ddos/amp.TCP.syn.optionallyACK", 1),
                             ("Ennio_Doorbell", "ddos/udp", 1), ("Ennio_Doorbell", "mirai/ack", 1),
                             ("Ennio_Doorbell", "mirai/syn", 1)]
  assert found[0].member == "benign_traffic.csv" and found[3].member == "mirai_attacks/ack.csv"
  assert found[3].name == os.path.join(device, "mirai_attacks.zip") + ":mirai_attacks/ack.csv"


def test_rar_without_backend_says_how_to_extract(tmp_path, monkeypatch):
  import rarfile
  def no_backend():
    raise rarfile.RarCannotExec("no tool")
  monkeypatch.setattr(rarfile, "tool_setup", no_backend)
  root = fixture_layouts.uci_layout(tmp_path, with_second_device=False)
  rar = os.path.join(root, "Ennio_Doorbell", "mirai_attacks.rar")
  with open(rar, "wb") as f:
    f.write(b"Rar!\x1a\x07\x00")
  folder = os.path.join(root, "Ennio_Doorbell")
  with pytest.raises(DataError) as error:
    layouts.discover(root)
  assert str(error.value) == (
      f"{rar}: .rar archive needs an unrar backend (install one of unrar, unar, bsdtar or 7z), or extract it "
      f"first, e.g. `cd {folder} && unrar x mirai_attacks.rar` (or `7z x mirai_attacks.rar`), so that "
      f"{folder}/mirai_attacks/<kind>.csv exist")


def test_unrecognised_files_are_skipped_with_a_warning(tmp_path, caplog):
  root = fixture_layouts.uci_layout(tmp_path, with_second_device=False)
  for name in ("README.md", "99.benign.csv", os.path.join("Ennio_Doorbell", "notes.txt"),
               os.path.join("Ennio_Doorbell", "gafgyt_attacks", "capture.pcap")):
    with open(os.path.join(root, name), "w") as f:
      f.write("x")
  with caplog.at_level(logging.WARNING):
    found = layouts.discover(root)
  assert len(found) == 3
  skipped = sorted(r.getMessage() for r in caplog.records if "Skipping unrecognised file" in r.getMessage())
  assert len(skipped) == 4 and any("99.benign.csv" in m for m in skipped)


def test_no_recognised_files(tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(DataError) as error:
    layouts.discover(str(tmp_path))
  assert str(error.value).startswith(f"{tmp_path}: no recognised N-BaIoT files (expected <Device>/benign_traffic.csv")


def test_two_files_for_one_kind(tmp_path):
  root = fixture_layouts.uci_layout(tmp_path, with_second_device=False)
  attacks = os.path.join(root, "Ennio_Doorbell", "gafgyt_attacks")
  shutil.copy(os.path.join(attacks, "tcp.csv.gz"), os.path.join(attacks, "tcp.csv"))
  with pytest.raises(DataError) as error:
    layouts.discover(root)
  assert str(error.value) == (f"{attacks}/tcp.csv.gz: device Ennio_Doorbell has a second gafgyt/tcp file "
                              f"(also {attacks}/tcp.csv); keep one of them")


def test_corrupt_zip_and_zip_with_two_csvs(tmp_path):
  device = tmp_path / "Dev"
  device.mkdir()
  (device / "benign_traffic.zip").write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(DataError, match=r"benign_traffic.zip: corrupt or truncated zip \("):
    layouts.discover(str(tmp_path))
  with zipfile.ZipFile(device / "benign_traffic.zip", "w") as archive:
    archive.writestr("a.csv", "x")
    archive.writestr("b.csv", "x")
  with pytest.raises(DataError) as error:
    layouts.discover(str(tmp_path))
  assert str(error.value) == f"{device}/benign_traffic.zip: expected exactly one CSV inside the zip, found 2"


def test_pool_any_structure(tmp_path):
  pool = tmp_path / "pool"
  fixture_layouts.uci_layout(pool, with_second_device=False)
  found = layouts.discover_pool(str(pool))
  assert [s.kind for s in found] == ["pool/benign_traffic", "gafgyt/tcp", "gafgyt/udp"]
  assert {s.device for s in found} == {"pool"}


def test_a_checksum_list_beside_the_data_is_skipped_silently(tmp_path, caplog):
  fixture_layouts.uci_layout(tmp_path / "raw", with_second_device=False)
  (tmp_path / "raw" / "SHA256SUMS").write_text("0" * 64 + "  Ennio_Doorbell/benign_traffic.csv.gz\n")
  with caplog.at_level("WARNING"):
    found = layouts.discover(str(tmp_path / "raw"))
  assert {f.kind for f in found} == {"benign", "gafgyt/tcp", "gafgyt/udp"}
  assert not [r for r in caplog.records if "SHA256SUMS" in r.getMessage()]
