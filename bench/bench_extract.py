"""Feature-extraction speed: fast path (numba AfterImage) vs the float64 reference; peak memory.

    python -m bench.bench_extract [--pcap_root ../shared/data/pcaps] [--synthetic_packets 500000]

Rows of the table:
  * parse: reading + parsing frames (capture.read_records + packets.parse_frame), packets/s;
  * fast: feature computation only (`AfterImage.update` on parsed packets), packets/s;
  * end-to-end: parse + fast;
  * reference: `tests/reference_afterimage.py` (pure Python), measured on the first
    `--reference_packets` packets; ratio = fast / reference.
Timings are CPU time of this process (time.process_time, best of --repeats), one core.
`synthetic`: a generated packet sequence (clearly not real traffic) over a pool of hosts and ports.
The peak-memory row runs `extract.write_nbaiot_csv` on the largest capture in a fresh subprocess and
reports its peak RSS (VmHWM) and the largest stream table, plus a synthetic spoofed flood with
--flood_sources distinct sources to show that the tables stay bounded.
"""

import glob
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from tests import reference_afterimage
from tff_fcl import runtime
from tff_fcl.features import afterimage
from tff_fcl.features import capture
from tff_fcl.features import extract
from tff_fcl.features import packets as packets_lib

_PCAP_ROOT = flags.DEFINE_string("pcap_root", "../shared/data/pcaps", "Real captures (optional).")
_SYNTHETIC = flags.DEFINE_integer("synthetic_packets", 500_000, "Synthetic sequence length.")
_REFERENCE_PACKETS = flags.DEFINE_integer("reference_packets", 5000, "Packets for the reference.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Best of this many timings.")
_FLOOD_SOURCES = flags.DEFINE_integer("flood_sources", 1_000_000,
                                      "Distinct spoofed sources of the synthetic flood (0 = skip).")
_MEMORY_CHILD = flags.DEFINE_string("memory_child", None, "Internal: measure one run, print RSS.")


def _best(fn, repeats):
  best = float("inf")
  for _ in range(repeats):
    start = time.process_time()
    fn()
    best = min(best, time.process_time() - start)
  return best


def synthetic_packets(n: int, seed: int = 0) -> list:
  """SYNTHETIC traffic: 200 hosts, 50 ports, exponential gaps, uniform frame sizes (not real)."""
  rng = np.random.default_rng(seed)
  hosts = rng.integers(0, 200, size=(n, 2))
  ports = rng.integers(0, 50, size=(n, 2))
  times = 1e9 + np.cumsum(rng.exponential(1e-3, size=n))
  lengths = rng.integers(60, 1515, size=n)
  macs = [bytes([2, 0, 0, 0, 0, h]) for h in range(200)]
  ips = [bytes([10, 0, 0, h]) for h in range(200)]
  return [packets_lib.Packet(t, int(length), macs[a], macs[b], packets_lib.NETWORK_IPV4, ips[a],
                             ips[b], 6, 1000 + pa, 80 + pb)
          for t, length, (a, b), (pa, pb) in zip(times.tolist(), lengths, hosts.tolist(),
                                                 ports.tolist())]


def spoofed_flood(first: int, n: int) -> list:
  """SYNTHETIC SYN flood, packets first..first+n-1, each from its own source IP, 100k pkt/s."""
  victim_mac, victim_ip = bytes([2, 0, 0, 0, 0, 1]), bytes([10, 0, 0, 1])
  router = bytes([2, 0, 0, 0, 0, 2])
  return [packets_lib.Packet(1e9 + i * 1e-5, 60, router, victim_mac, packets_lib.NETWORK_IPV4,
                             (0x0B000000 + i).to_bytes(4, "big"), victim_ip, 6, 1024 + i % 60000,
                             25565) for i in range(first, first + n)]


def _parse(path) -> int:
  fragments, count = packets_lib.FragmentPorts(), 0
  for record in capture.read_records(path):
    packet, _ = packets_lib.parse_frame(record.timestamp, record.length, record.data, fragments)
    count += packet is not None
  return count


def _rows(name, packets, parse_seconds, repeats, reference_packets):
  afterimage.AfterImage().update(packets[:10])  # compile / load the numba cache outside timings
  fast = _best(lambda: afterimage.AfterImage().update(packets), repeats)
  sample = packets[:reference_packets]
  reference = _best(lambda: [reference_afterimage.ReferenceAfterImage().features(p)
                             for p in sample], 1)
  n = len(packets)
  fast_rate, reference_rate = n / fast, len(sample) / reference
  parse_rate = n / parse_seconds if parse_seconds else float("nan")
  end_to_end = n / (parse_seconds + fast) if parse_seconds else float("nan")
  print(f"{name:<44}{n:>9}{parse_rate:>12,.0f}{fast_rate:>12,.0f}{end_to_end:>12,.0f}"
        f"{reference_rate:>12,.0f}{fast_rate / reference_rate:>8.0f}x")


def _memory_child(spec: str):
  if spec.startswith("flood:"):
    state, total = afterimage.AfterImage(), int(spec.split(":")[1])
    for start in range(0, total, 65536):
      state.update(spoofed_flood(start, min(65536, total - start)))
    streams = max(state.num_streams().values())
  else:
    with tempfile.TemporaryDirectory() as folder:
      extract.write_nbaiot_csv([spec], os.path.join(folder, "out.csv.gz"))
    streams = -1
  with open("/proc/self/status") as f:  # VmHWM: peak RSS of this process (not inherited)
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
  print(peak // 1024, streams)


def _memory(spec: str) -> tuple:
  result = subprocess.run([sys.executable, "-m", "bench.bench_extract", f"--memory_child={spec}"],
                          capture_output=True, text=True, check=True)
  rss, streams = result.stdout.split()
  return int(rss), int(streams)


def main(argv):
  del argv
  runtime.install_worker_cleanup()
  if _MEMORY_CHILD.value:
    _memory_child(_MEMORY_CHILD.value)
    return
  repeats, reference_packets = _REPEATS.value, _REFERENCE_PACKETS.value
  print("CPU-time packets/s on one core (best of %d); reference on the first %d packets"
        % (repeats, reference_packets))
  print(f"{'input':<44}{'packets':>9}{'parse':>12}{'fast':>12}{'end-to-end':>12}"
        f"{'reference':>12}{'ratio':>9}")
  _rows("synthetic (200 hosts, 50 ports; not real)", synthetic_packets(_SYNTHETIC.value), 0.0,
        repeats, reference_packets)
  root = _PCAP_ROOT.value
  largest = None
  if os.path.isdir(root):
    benign = sorted(glob.glob(os.path.join(root, "benign", "*", "HueBridge", "*.pcap*")))
    attacks = sorted(glob.glob(os.path.join(root, "attack", "*", "*.pcap*")))
    inputs = [("real: HueBridge benign, 20 captures", benign)]
    inputs += [(f"real: {os.path.basename(path)}", [path]) for path in attacks]
    for name, paths in inputs:
      packets = extract.extract_features(paths).packets
      parse = _best(lambda paths=paths: [_parse(p) for p in paths], repeats)
      _rows(name[:43], packets, parse, repeats, reference_packets)
    largest = max(attacks, key=os.path.getsize) if attacks else None
  print()
  print(f"{'peak memory (fresh subprocess)':<60}{'peak RSS MB':>12}{'streams':>10}")
  baseline, _ = _memory("flood:1")
  print(f"{'baseline: import + 1 packet':<60}{baseline:>12}{'':>10}")
  if largest:
    rss, _ = _memory(largest)
    print(f"{'real: ' + os.path.basename(largest) + ' (pcap_to_nbaiot)':<60}{rss:>12}{'':>10}")
  if _FLOOD_SOURCES.value:
    rss, streams = _memory(f"flood:{_FLOOD_SOURCES.value}")
    print(f"{f'synthetic flood, {_FLOOD_SOURCES.value:,} spoofed sources':<60}{rss:>12}"
          f"{streams:>10}")


if __name__ == "__main__":
  app.run(main)
