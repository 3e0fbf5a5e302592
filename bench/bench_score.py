"""Scoring speed of the exported detector, end to end (file -> features -> scores -> output CSV).

    python -m bench.bench_score [--csv_rows 200000] [--pcap_packets 100000] [--scorer knn]

Everything here is SYNTHETIC and labelled so: the model is an `EmbeddingNetwork` with random weights
(seeded), exported with a calibration fitted on synthetic lognormal rows; the CSV holds synthetic
lognormal rows in the N-BaIoT layout (written like the demo data, 9 significant digits, gzip or not);
the capture holds synthetic Ethernet/IPv4/UDP frames among a pool of hosts and ports. The numbers
measure throughput only, not detection quality.

Rows of the table (rows/s = input rows / wall time of `export.score_file`, one process):
  csv        plain CSV -> parse -> preprocessing -> SavedModel -> score -> windowed flag -> output CSV
  csv.gz     the same from a gzip CSV
  pcap       capture -> parse -> AfterImage features -> ... (feature extraction dominates)
Target (issue 9): at least 50k rows/s from CSV.
"""

import gzip
import os
import struct
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from tff_fcl import runtime

_CSV_ROWS = flags.DEFINE_integer("csv_rows", 200_000, "Synthetic CSV rows.")
_PCAP_PACKETS = flags.DEFINE_integer("pcap_packets", 100_000, "Synthetic capture packets.")
_SCORER = flags.DEFINE_enum("scorer", "knn", ("global", "mahalanobis", "knn"), "Score to compute.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Best of this many timings.")


def _synthetic_model(run_dir: str, rng) -> None:
  """SYNTHETIC: random-weight encoder, calibration of client `synthetic` on synthetic rows."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tff_fcl import export, models, scoring  # pylint: disable=g-import-not-at-top
  from tff_fcl.data import preprocessing  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(0)
  network = models.build_embedding_network("mlp", 32, 16, (64, 64))
  reference = rng.normal(size=16).astype(np.float32)
  reference /= np.linalg.norm(reference)
  module = export.DetectorModule(network, reference)
  raw = rng.lognormal(0.0, 1.0, (5000, 115)).astype(np.float32)
  standardizer = preprocessing.Standardizer.fit(raw[:4000])
  train_x, val_x = standardizer.apply(raw[:4000]), standardizer.apply(raw[4000:])
  z = export.encode_rows(module.encode, train_x, 32)
  moments = (z.mean(axis=0), z.var(axis=0))
  calibration = scoring.fit_calibration(
      "synthetic", moments, export.embed_rows(module.embed, train_x, moments, 16),
      export.embed_rows(module.embed, val_x, moments, 16), reference_vector=reference,
      settings=scoring.ScoringSettings(scorers=(_SCORER.value,)),
      preprocessing=(standardizer.mean, standardizer.inv_std))
  export.export_run(run_dir, network, reference, {"synthetic": calibration})


def _synthetic_csv(path: str, rows: int, rng) -> None:
  """SYNTHETIC lognormal rows under the 115 N-BaIoT column names."""
  from tff_fcl.data import schema  # pylint: disable=g-import-not-at-top
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wt") as f:
    f.write(",".join(schema.FEATURE_NAMES) + "\n")
    line = ",".join(["%.9g"] * 115) + "\n"
    for start in range(0, rows, 20000):
      block = rng.lognormal(0.0, 1.0, (min(20000, rows - start), 115))
      f.writelines(line % tuple(row) for row in block.tolist())


def _synthetic_pcap(path: str, packets: int, rng) -> None:
  """SYNTHETIC Ethernet/IPv4/UDP frames: 50 hosts, 20 ports, 1 ms apart (libpcap, microseconds)."""
  hosts = [bytes([10, 0, 0, i + 1]) for i in range(50)]
  macs = [bytes([2, 0, 0, 0, 0, i + 1]) for i in range(50)]
  with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(packets):
      a, b = rng.integers(0, 50, 2)
      sport, dport = 1000 + int(rng.integers(0, 20)), 2000 + int(rng.integers(0, 20))
      payload = bytes(int(rng.integers(10, 200)))
      udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
      ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, hosts[a], hosts[b])
      frame = macs[b] + macs[a] + b"\x08\x00" + ip + udp
      t = 1_600_000_000 + i * 0.001
      f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)


def _time(fn, repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def main(argv):
  del argv
  runtime.install_worker_cleanup()
  runtime.quiet_tensorflow_logs()
  from tff_fcl import export  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as work:
    run_dir = os.path.join(work, "run")
    _synthetic_model(run_dir, rng)
    inputs = []
    for name in ("csv", "csv.gz"):
      path = os.path.join(work, f"rows.{name}")
      _synthetic_csv(path, _CSV_ROWS.value, rng)
      inputs.append((name, path, _CSV_ROWS.value, None))
    pcap = os.path.join(work, "traffic.pcap")
    _synthetic_pcap(pcap, _PCAP_PACKETS.value, rng)
    inputs.append(("pcap", pcap, _PCAP_PACKETS.value, None))
    output = os.path.join(work, "scores.csv")
    export.score_file(run_dir, "synthetic", inputs[0][1], output, scorer=_SCORER.value)  # warm-up
    print(f"SYNTHETIC data and random-weight model; scorer {_SCORER.value}; best of {_REPEATS.value}")
    print("| input | rows | seconds | rows/s |")
    print("|---|---:|---:|---:|")
    for name, path, rows, mac in inputs:
      seconds = _time(lambda: export.score_file(run_dir, "synthetic", path, output, device_mac=mac,
                                                scorer=_SCORER.value), _REPEATS.value)
      print(f"| {name} | {rows} | {seconds:.2f} | {rows / seconds:,.0f} |")
    print("Target: >= 50,000 rows/s from CSV.")


if __name__ == "__main__":
  app.run(main)
