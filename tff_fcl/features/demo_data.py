"""Builds an N-BaIoT-layout data set from real captures, with attacks replayed as device traffic.

Input layout (`pcap_root`):

    benign/<source>/<Device>/*.pcap[ng][.gz]    + _iotdevice-mac.txt (the device's MAC)
    attack/<family>/<capture>.pcap[ng][.gz]

Output layout (N-BaIoT's UCI layout, gzip CSV, columns `schema.FEATURE_NAMES`, one row per packet):

    <Device>/benign_traffic.csv.gz                   the device's own packets (to or from its MAC),
                                                     whole captures in time order, one stream state
    <Device>/<family>_attacks/<capture>.csv.gz       one attack capture, see below
    SHA256SUMS                                       sha256 of every file above

Attack rows, `attack_view="device"` (default): the first `max_attack_packets` parsed packets of the
capture are replayed as the device's own outgoing traffic (`replay.replay_as_device`: source MAC and
IP set to the device's, destinations, ports, sizes and gaps kept). The burst starts right after a
benign packet j drawn uniformly (seeded per device and capture) from the device's test period, the
last `test_fraction` of its benign packets: at t_j + u * min(t_{j+1} - t_j, 1 s), u ~ U[0, 1). Its
features are computed from a copy of the device's stream state after benign packets 0..j, so the
burst sees the device's own warmed streams; benign rows never see attack packets.
`attack_view="victim"`: the same packets unmodified, from a fresh stream state (the victim's view).

Deterministic: same inputs and options give byte-identical files (gzip mtime 0, no file name,
fixed float format, seeds derived from the device and capture names).
"""

import dataclasses
import hashlib
import math
import os
import shutil
import typing
import zlib

import numpy as np

from tff_fcl.data import schema
from tff_fcl.features import afterimage
from tff_fcl.features import extract
from tff_fcl.features import packets as packets_lib
from tff_fcl.features import replay

MAC_FILE = "_iotdevice-mac.txt"
ATTACK_VIEWS = ("device", "victim")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")
CHECKSUM_FILE = "SHA256SUMS"


class DemoDataError(ValueError):
  """The capture folder or the options cannot give a data set; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  """Options of `build_demo_data`.

  devices: device folder names to use; empty = the `num_devices` with the most benign packets.
  max_benign_packets: whole captures (earliest first) are taken while the total stays at most this
    (the first capture is always taken); 0 = no cap.
  max_attack_packets: packets per attack capture and device; 0 = about as many attack rows as benign
    test rows, i.e. ceil(test_fraction * benign packets / number of attack captures).
  """
  devices: typing.Tuple[str, ...] = ()
  num_devices: int = 10
  max_benign_packets: int = 4500
  max_attack_packets: int = 0
  attack_view: str = "device"
  test_fraction: float = 0.2
  seed: int = 0

  def __post_init__(self):
    if self.attack_view not in ATTACK_VIEWS:
      raise DemoDataError(f"attack_view must be one of {ATTACK_VIEWS}. Found {self.attack_view!r}.")
    if not 0.0 < self.test_fraction < 1.0:
      raise DemoDataError(f"test_fraction must be in (0, 1). Found {self.test_fraction}.")
    for name in ("num_devices", "max_benign_packets", "max_attack_packets"):
      if getattr(self, name) < 0:
        raise DemoDataError(f"{name} must be non-negative. Found {getattr(self, name)}.")


class Device(typing.NamedTuple):
  name: str
  mac: bytes
  captures: typing.Tuple[str, ...]  # paths


class AttackCapture(typing.NamedTuple):
  family: str
  name: str  # file name without .pcap / .pcapng / .gz
  path: str


def capture_name(file_name: str) -> typing.Optional[str]:
  """'x.pcapng.gz' -> 'x'; None when the file is not a capture."""
  for suffix in sorted(CAPTURE_SUFFIXES, key=len, reverse=True):
    if file_name.endswith(suffix):
      return file_name[:-len(suffix)]
  return None


def find_devices(pcap_root: str) -> typing.Dict[str, Device]:
  """Device folders under `pcap_root/benign/<source>/` that hold a MAC file and captures."""
  benign = os.path.join(pcap_root, "benign")
  if not os.path.isdir(benign):
    raise DemoDataError(f"{pcap_root}: no benign/ folder (expected benign/<source>/<Device>/).")
  devices = {}
  for source in sorted(os.listdir(benign)):
    source_dir = os.path.join(benign, source)
    if not os.path.isdir(source_dir):
      continue
    for name in sorted(os.listdir(source_dir)):
      folder = os.path.join(source_dir, name)
      mac_path = os.path.join(folder, MAC_FILE)
      if not os.path.isfile(mac_path):
        continue
      with open(mac_path) as f:
        text = f.read()
      try:
        mac = packets_lib.parse_mac(text)
      except ValueError as e:
        raise DemoDataError(f"{mac_path}: {e}") from None
      captures = tuple(os.path.join(folder, f) for f in sorted(os.listdir(folder))
                       if capture_name(f) is not None)
      if name in devices:
        raise DemoDataError(f"{folder}: device {name} also found in {devices[name].captures[0]}.")
      if captures:
        devices[name] = Device(name, mac, captures)
  if not devices:
    raise DemoDataError(f"{benign}: no device folder with {MAC_FILE} and captures.")
  return devices


def find_attacks(pcap_root: str) -> typing.List[AttackCapture]:
  """Attack captures under `pcap_root/attack/<family>/`, sorted by family and name."""
  attack = os.path.join(pcap_root, "attack")
  if not os.path.isdir(attack):
    raise DemoDataError(f"{pcap_root}: no attack/ folder (expected attack/<family>/*.pcap[.gz]).")
  found = []
  for family in sorted(os.listdir(attack)):
    folder = os.path.join(attack, family)
    if not os.path.isdir(folder):
      continue
    for f in sorted(os.listdir(folder)):
      name = capture_name(f)
      if name is not None:
        found.append(AttackCapture(family, name, os.path.join(folder, f)))
  if not found:
    raise DemoDataError(f"{attack}: no attack captures (expected attack/<family>/*.pcap[.gz]).")
  return found


def benign_packets(device: Device, max_packets: int) -> list:
  """The device's own packets, whole captures in time order, up to `max_packets` (0 = all)."""
  kept = []
  for path in extract.order_by_time(device.captures):
    report = extract.ParseReport()
    packets = list(extract.read_packets([path], report, device_mac=device.mac))
    if max_packets and kept and len(kept) + len(packets) > max_packets:
      break
    kept.extend(packets)
  return kept


def _rng(seed: int, device: str, capture_name_: str) -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(device.encode()), zlib.crc32(capture_name_.encode())])


class _Burst(typing.NamedTuple):
  attack: AttackCapture
  after: int  # index of the benign packet the burst follows
  start: float


def _attack_packets(attack: AttackCapture, limit: int) -> list:
  report = extract.ParseReport()
  packets = []
  for packet in extract.read_packets([attack.path], report):
    packets.append(packet)
    if len(packets) == limit:
      break
  if not packets:
    raise DemoDataError(f"{attack.path}: no parseable packets ({report.summary()}).")
  return packets


def device_rows(device: Device, attacks: typing.Sequence[AttackCapture], config: DemoConfig,
                attack_cache: typing.Dict[str, list]) -> typing.Tuple[np.ndarray, dict]:
  """Benign features [n, 115] and {attack: features [m, 115]} of one device."""
  benign = benign_packets(device, config.max_benign_packets)
  if len(benign) < 2:
    raise DemoDataError(f"device {device.name}: fewer than 2 benign packets to or from "
                        f"{packets_lib.format_mac(device.mac)}.")
  test_start = min(int(math.ceil((1.0 - config.test_fraction) * len(benign))), len(benign) - 1)
  limit = config.max_attack_packets or int(math.ceil(
      config.test_fraction * len(benign) / len(attacks)))
  bursts = []
  for attack in attacks:
    rng = _rng(config.seed, device.name, attack.name)
    after = int(rng.integers(test_start, len(benign)))
    gap = benign[after + 1].timestamp - benign[after].timestamp if after + 1 < len(benign) else 1.0
    start = benign[after].timestamp + float(rng.random()) * min(max(gap, 0.0), 1.0)
    bursts.append(_Burst(attack, after, start))

  state = afterimage.AfterImage()
  blocks, attack_rows, done = [], {}, 0
  for burst in sorted(bursts, key=lambda b: (b.after, b.attack)):
    blocks.append(state.update(benign[done:burst.after + 1]))
    done = burst.after + 1
    key = burst.attack.path
    if key not in attack_cache or len(attack_cache[key]) < limit:
      attack_cache[key] = _attack_packets(burst.attack, limit)
    packets = attack_cache[key][:limit]
    if config.attack_view == "victim":
      attack_rows[burst.attack] = afterimage.AfterImage().update(packets)
      continue
    ipv4 = replay.device_address_at(benign, device.mac, packets_lib.NETWORK_IPV4, burst.after)
    if ipv4 is None:
      raise DemoDataError(f"device {device.name}: sends no IPv4 packet, cannot replay attacks.")
    ipv6 = replay.device_address_at(benign, device.mac, packets_lib.NETWORK_IPV6, burst.after)
    replayed = replay.replay_as_device(packets, device.mac, ipv4, ipv6, burst.start)
    attack_rows[burst.attack] = state.copy().update(replayed)
  blocks.append(state.update(benign[done:]))
  return np.concatenate(blocks), attack_rows


def select_devices(devices: typing.Dict[str, Device], config: DemoConfig) -> typing.List[Device]:
  """The requested devices, or the `num_devices` with the most benign packets (ties by name)."""
  if config.devices:
    unknown = sorted(set(config.devices) - set(devices))
    if unknown:
      raise DemoDataError(f"unknown device(s) {', '.join(unknown)}; found: {', '.join(devices)}.")
    return [devices[name] for name in config.devices]
  counts = {}
  for name, device in devices.items():
    report = extract.ParseReport()
    counts[name] = sum(1 for _ in extract.read_packets(device.captures, report, device.mac))
  ranked = sorted(devices, key=lambda name: (-counts[name], name))
  return [devices[name] for name in ranked[:config.num_devices or len(ranked)]]


class DeviceSummary(typing.NamedTuple):
  device: str
  benign_rows: int
  attack_rows: int


def _write(path: str, features: np.ndarray):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with extract.CsvGzWriter(path, schema.FEATURE_NAMES) as writer:
    writer.write_features(features)


def _write_checksums(output_dir: str):
  lines = []
  for folder, _, files in os.walk(output_dir):
    for f in files:
      path = os.path.join(folder, f)
      relative = os.path.relpath(path, output_dir).replace(os.sep, "/")
      with open(path, "rb") as stream:
        lines.append(f"{hashlib.sha256(stream.read()).hexdigest()}  {relative}\n")
  with open(os.path.join(output_dir, CHECKSUM_FILE), "w") as f:
    f.writelines(sorted(lines, key=lambda line: line.split("  ", 1)[1]))


def build_demo_data(pcap_root: str, output_dir: str,
                    config: DemoConfig = DemoConfig()) -> typing.List[DeviceSummary]:
  """Writes the data set to `output_dir` (replaced atomically); returns rows per device.

  Raises:
    DemoDataError: bad layout or options; `capture.CaptureError`: an unreadable capture.
  """
  devices = select_devices(find_devices(pcap_root), config)
  attacks = find_attacks(pcap_root)
  output_dir = os.path.normpath(output_dir)
  if (os.path.isdir(output_dir) and os.listdir(output_dir)
      and not os.path.isfile(os.path.join(output_dir, CHECKSUM_FILE))):
    raise DemoDataError(f"{output_dir}: exists and is not a demo data set (no {CHECKSUM_FILE}); "
                        "refusing to replace it.")
  staging = output_dir + ".partial"
  shutil.rmtree(staging, ignore_errors=True)
  summaries, attack_cache = [], {}
  try:
    for device in devices:
      benign, attack_rows = device_rows(device, attacks, config, attack_cache)
      _write(os.path.join(staging, device.name, "benign_traffic.csv.gz"), benign)
      for attack, features in attack_rows.items():
        _write(os.path.join(staging, device.name, f"{attack.family}_attacks",
                            f"{attack.name}.csv.gz"), features)
      summaries.append(DeviceSummary(device.name, len(benign),
                                     sum(len(f) for f in attack_rows.values())))
    _write_checksums(staging)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  shutil.rmtree(output_dir, ignore_errors=True)
  os.replace(staging, output_dir)
  return summaries

