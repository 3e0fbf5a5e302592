"""Raw N-BaIoT-layout CSV files -> the prepared per-device cache (`tff_fcl.data.cache`).

    python -m data_prep.prepare_nbaiot --input_dir DIR --output_dir CACHE \
        [--val_fraction 0.2 --test_fraction 0.2 --max_attack_rows_per_kind 0 \
         --attack_pool_dir POOL --attack_pool_rows_per_device 0 --on_bad_rows fail --seed 0]

Reads the UCI layout (`<Device>/benign_traffic.csv`, `<Device>/<family>_attacks/<kind>.csv`) and the
Kaggle layout (`1.benign.csv`, `1.gafgyt.combo.csv`, ...), plain, `.gz` or `.zip`; splits each device's
benign rows chronologically into train / val / test and puts every attack row into test. See
`tff_fcl.data.prepare` for the exact rules. Bad input stops with one line naming the file.
"""

import logging
import time

from absl import app
from absl import flags

from tff_fcl.data import csv_reader
from tff_fcl.data import prepare
from tff_fcl.data.errors import DataError

_DEFAULTS = prepare.PrepareOptions()
_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Folder in the UCI or Kaggle N-BaIoT layout.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "New (or empty) folder for the prepared cache.")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", _DEFAULTS.val_fraction,
                                   "Share of each device's benign rows (after train) for validation.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", _DEFAULTS.test_fraction,
                                    "Share of each device's benign rows (the latest) for test.")
_MAX_ATTACK = flags.DEFINE_integer("max_attack_rows_per_kind", _DEFAULTS.max_attack_rows_per_kind,
                                   "Keep a seeded sample of at most this many rows per device and attack "
                                   "kind; 0 keeps all.")
_POOL_DIR = flags.DEFINE_string("attack_pool_dir", None,
                                "Optional folder of attack CSVs (any structure) dealt out to the devices' "
                                "test sets, disjoint and seeded.")
_POOL_ROWS = flags.DEFINE_integer("attack_pool_rows_per_device", _DEFAULTS.attack_pool_rows_per_device,
                                  "Pool rows per device; 0: as many as the device's benign test rows.")
_ON_BAD_ROWS = flags.DEFINE_enum("on_bad_rows", _DEFAULTS.on_bad_rows, csv_reader.ON_BAD_ROWS,
                                 "fail: stop at the first non-numeric/NaN/inf cell; drop: drop and count.")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the attack sampling and pool dealing.")
flags.mark_flags_as_required(["input_dir", "output_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  options = prepare.PrepareOptions(
      val_fraction=_VAL_FRACTION.value, test_fraction=_TEST_FRACTION.value,
      max_attack_rows_per_kind=_MAX_ATTACK.value, attack_pool_dir=_POOL_DIR.value,
      attack_pool_rows_per_device=_POOL_ROWS.value, on_bad_rows=_ON_BAD_ROWS.value, seed=_SEED.value)
  start = time.time()
  try:
    manifest = prepare.prepare_nbaiot(_INPUT_DIR.value, _OUTPUT_DIR.value, options)
  except (DataError, OSError) as e:
    raise SystemExit(f"error: {e}") from None
  seconds = time.time() - start
  dropped = sum(s["dropped_rows"] for s in manifest["sources"] + manifest["pool_sources"])
  print(f"prepared {len(manifest['devices'])} devices, {manifest['total_rows']} rows "
        f"({dropped} dropped) from {len(manifest['sources'])} files in {seconds:.1f} s "
        f"({manifest['total_rows'] / max(seconds, 1e-9):.0f} rows/s) into {_OUTPUT_DIR.value}")
  for device in manifest["devices"]:
    split = manifest["splits"][device]
    print(f"  {device}: train {split['train']}, val {split['val']}, test {split['test']} "
          f"({split['test_benign']} benign)")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
