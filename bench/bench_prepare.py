"""Data preparation speed and memory: `prepare_nbaiot` on a generated full-size SYNTHETIC data set.

    python -m bench.bench_prepare [--quick] [--work_dir /tmp] [--keep]

Generates a SYNTHETIC data set (random numbers, not traffic) with N-BaIoT's shape in the UCI layout:
9 devices, 89 plain CSV files (benign + 5 gafgyt kinds per device, + 5 mirai kinds for all devices
but the 3rd and 7th, as in N-BaIoT), 7,062,606 rows in all (`--quick`: 10%), with the real 115-column
header and a value mix (mostly short integers, some 7-digit floats) that gives roughly N-BaIoT's
bytes per row. Then runs `python -m data_prep.prepare_nbaiot` on it in a subprocess and prints rows,
wall seconds, rows/s, CPU seconds (load-independent on a shared machine) and the subprocess's peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss`).
Targets (issue 2): >= 100k rows/s and < 2 GB peak RSS.
"""

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from tff_fcl.data import schema

_QUICK = flags.DEFINE_bool("quick", False, "10% of the full size (706k rows).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where to generate the data (default: a temp dir).")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the generated data and cache.")

FULL_ROWS = 7_062_606
DEVICES = 9
NO_MIRAI = (2, 6)  # 0-based: N-BaIoT's devices 3 and 7 have no mirai files
GAFGYT = ("combo", "junk", "scan", "tcp", "udp")
MIRAI = ("ack", "scan", "syn", "udp", "udpplain")
POOL_LINES = 20000


def _line_pool(rng: np.random.Generator) -> np.ndarray:
  """POOL_LINES distinct formatted CSV lines (bytes) of synthetic values."""
  ints = rng.integers(0, 100, size=(POOL_LINES, schema.NUM_FEATURES)).astype(str)
  floats = np.char.mod("%.7g", rng.lognormal(3.0, 2.0, size=(POOL_LINES, schema.NUM_FEATURES)))
  cells = np.where(rng.random((POOL_LINES, schema.NUM_FEATURES)) < 0.8, ints, floats)
  return np.array([(",".join(row) + "\n").encode() for row in cells], dtype=object)


def generate(root: str, total_rows: int, seed: int = 0) -> int:
  """Writes the synthetic UCI-layout data set; returns its size in bytes."""
  rng = np.random.default_rng(seed)
  pool = _line_pool(rng)
  files = []
  for d in range(DEVICES):
    device = os.path.join(root, f"Synthetic_Device_{d + 1}")
    files.append(os.path.join(device, "benign_traffic.csv"))
    files += [os.path.join(device, "gafgyt_attacks", f"{k}.csv") for k in GAFGYT]
    if d not in NO_MIRAI:
      files += [os.path.join(device, "mirai_attacks", f"{k}.csv") for k in MIRAI]
  assert len(files) == 89
  counts = np.full(len(files), total_rows // len(files))
  counts[: total_rows - counts.sum()] += 1
  header = (",".join(schema.FEATURE_NAMES) + "\n").encode()
  size = 0
  for path, count in zip(files, counts):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(header)
      for start in range(0, count, 50000):
        f.write(b"".join(pool[rng.integers(0, POOL_LINES, size=min(50000, count - start))]))
    size += os.path.getsize(path)
  return size


def main(argv):
  del argv
  total = FULL_ROWS // 10 if _QUICK.value else FULL_ROWS
  work = tempfile.mkdtemp(prefix="bench_prepare_synthetic_", dir=_WORK_DIR.value)
  raw, out = os.path.join(work, "synthetic_nbaiot"), os.path.join(work, "cache")
  try:
    start = time.time()
    size = generate(raw, total)
    generate_s = time.time() - start
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "data_prep.prepare_nbaiot", "--input_dir", raw,
                             "--output_dir", out], capture_output=True, text=True, check=False)
    seconds = time.time() - start
    if result.returncode:
      raise SystemExit(f"prepare_nbaiot failed: {result.stderr.strip().splitlines()[-1]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(f"SYNTHETIC data set ({'quick, 10%' if _QUICK.value else 'full size'}): 9 devices, 89 CSV files, "
          f"{size / 1e9:.2f} GB, generated in {generate_s:.0f} s")
    print("| data | rows | CSV GB | wall s | rows/s (wall) | CPU s | rows/CPU-s | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| synthetic{' (quick)' if _QUICK.value else ''} | {total:,} | {size / 1e9:.2f} | {seconds:.1f} | "
          f"{total / seconds:,.0f} | {cpu_s:.1f} | {total / cpu_s:,.0f} | {peak_mb:,.0f} |")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  finally:
    if not _KEEP.value:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
