"""Demo data set: layout, byte-identical rebuilds, replayed attacks from a warmed device state."""

import gzip
import os
import shutil

import numpy as np
import pytest

from tff_fcl.data import schema
from tff_fcl.features import demo_data
from tff_fcl.features import packets as packets_lib
from tff_fcl.features import replay

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pcaps")
DEVICES = {"Aria": 49, "D-LinkCam": 624, "HueBridge": 1513}  # packets to / from each device's MAC
ATTACK = "amp.TCP.syn.optionallyACK.optionallysamePort"


@pytest.fixture(scope="module")
def pcap_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("pcaps")
  for device in DEVICES:
    folder = root / "benign" / "iot_sentinel" / device
    folder.mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, f"{device}_Setup-A-1-STA.pcap.gz"),
                folder / "Setup-A-1-STA.pcap.gz")
    shutil.copy(os.path.join(FIXTURES, f"{device}_iotdevice-mac.txt"), folder / demo_data.MAC_FILE)
  (root / "attack" / "ddos").mkdir(parents=True)
  shutil.copy(os.path.join(FIXTURES, f"{ATTACK}.pcapng.gz"), root / "attack" / "ddos")
  return str(root)


def _files(folder):
  found = {}
  for directory, _, files in os.walk(folder):
    for f in files:
      path = os.path.join(directory, f)
      with open(path, "rb") as stream:
        found[os.path.relpath(path, folder)] = stream.read()
  return found


def _read(path):
  with gzip.open(path, "rt") as f:
    header = f.readline().strip().split(",")
    return header, np.loadtxt(f, delimiter=",", ndmin=2)


def test_rebuild_is_byte_identical_with_the_expected_layout(pcap_root, tmp_path):
  config = demo_data.DemoConfig(num_devices=0)
  first = demo_data.build_demo_data(pcap_root, str(tmp_path / "a"), config)
  demo_data.build_demo_data(pcap_root, str(tmp_path / "b"), config)
  files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
  expected = {demo_data.CHECKSUM_FILE}
  for device in DEVICES:
    expected |= {f"{device}/benign_traffic.csv.gz", f"{device}/ddos_attacks/{ATTACK}.csv.gz"}
  assert set(files_a) == expected
  assert files_a == files_b, "a rebuild must be byte-identical"
  # Devices ranked by benign packets; attack rows about 20% of the benign rows.
  assert [(s.device, s.benign_rows, s.attack_rows) for s in first] == [
      ("HueBridge", 1513, 303), ("D-LinkCam", 624, 125), ("Aria", 49, 10)]
  header, rows = _read(tmp_path / "a" / "Aria" / "benign_traffic.csv.gz")
  assert header == list(schema.FEATURE_NAMES) and rows.shape == (49, schema.NUM_FEATURES)
  sums = files_a[demo_data.CHECKSUM_FILE].decode().splitlines()
  assert len(sums) == 6 and sums[0].endswith("  Aria/benign_traffic.csv.gz")


def test_attack_rows_come_from_the_warmed_device_state(pcap_root, tmp_path):
  device_view = str(tmp_path / "device")
  victim_view = str(tmp_path / "victim")
  demo_data.build_demo_data(pcap_root, device_view, demo_data.DemoConfig(devices=("D-LinkCam",)))
  demo_data.build_demo_data(pcap_root, victim_view,
                            demo_data.DemoConfig(devices=("D-LinkCam",), attack_view="victim"))
  attack = os.path.join("D-LinkCam", "ddos_attacks", f"{ATTACK}.csv.gz")
  _, replayed = _read(os.path.join(device_view, attack))
  _, victim = _read(os.path.join(victim_view, attack))
  assert replayed.shape == victim.shape == (125, schema.NUM_FEATURES)
  h_weight = schema.FEATURE_INDEX["H_L0.01_weight"]
  # Replayed: the burst's first packet already sees the device's own source-IP stream.
  assert replayed[0, h_weight] > 5.0
  assert victim[0, h_weight] == 1.0
  # Frame sizes are kept: the HpHp mean of each first packet equals the captured frame length.
  mean = schema.FEATURE_INDEX["HpHp_L5_mean"]
  assert replayed[0, mean] == victim[0, mean]
  _, benign = _read(os.path.join(device_view, "D-LinkCam", "benign_traffic.csv.gz"))
  _, benign_victim_build = _read(os.path.join(victim_view, "D-LinkCam", "benign_traffic.csv.gz"))
  np.testing.assert_array_equal(benign, benign_victim_build)  # benign rows never see attacks


def test_replay_rewrites_sources_and_keeps_timing():
  mac, ipv4 = bytes.fromhex("02aabbccddee"), bytes([192, 168, 0, 7])
  burst = [
      packets_lib.Packet(50.0, 60, bytes(6), b"\x01" * 6, "ipv4", bytes([9, 9, 9, 9]),
                         bytes([1, 2, 3, 4]), 6, 4444, 25565),
      packets_lib.Packet(50.25, 1514, bytes(6), b"\x01" * 6, "ipv6", bytes(16), bytes(15) + b"\x01",
                         17, 53, 53),
      packets_lib.Packet(50.5, 42, bytes(6), b"\x01" * 6, "arp", bytes([9, 9, 9, 9]),
                         bytes([1, 2, 3, 4]), -1, -1, -1)]
  replayed = replay.replay_as_device(burst, mac, ipv4, None, start_time=10.0)
  assert [p.timestamp for p in replayed] == [10.0, 10.5]  # the IPv6 packet is dropped (no IPv6)
  assert all(p.src_mac == mac and p.src_ip == ipv4 for p in replayed)
  assert [(p.dst_ip, p.src_port, p.dst_port, p.length) for p in replayed] == [
      (bytes([1, 2, 3, 4]), 4444, 25565, 60), (bytes([1, 2, 3, 4]), -1, -1, 42)]
  ipv6 = bytes(15) + b"\x07"
  assert replay.replay_as_device(burst, mac, ipv4, ipv6, 0.0)[1].src_ip == ipv6


def test_bad_layouts_and_options(pcap_root, tmp_path):
  with pytest.raises(demo_data.DemoDataError, match=r"no benign/ folder"):
    demo_data.build_demo_data(str(tmp_path), str(tmp_path / "out"))
  with pytest.raises(demo_data.DemoDataError, match=r"unknown device\(s\) Toaster"):
    demo_data.build_demo_data(pcap_root, str(tmp_path / "out"),
                              demo_data.DemoConfig(devices=("Toaster",)))
  with pytest.raises(demo_data.DemoDataError, match=r"attack_view must be one of"):
    demo_data.DemoConfig(attack_view="both")
  (tmp_path / "keep").mkdir()
  (tmp_path / "keep" / "notes.txt").write_text("mine")
  with pytest.raises(demo_data.DemoDataError, match=r"is not a demo data set"):
    demo_data.build_demo_data(pcap_root, str(tmp_path / "keep"))
  assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"
