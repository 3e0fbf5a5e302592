"""The 115 N-BaIoT feature names: order, grouping, window-major reshape and log masks."""
import gzip

import numpy as np

from tests.fixtures.nbaiot import fixture_layouts
from tff_fcl.data import schema


def test_names_count_and_ends():
  assert len(schema.FEATURE_NAMES) == 115 == schema.NUM_FEATURES
  assert schema.FEATURE_NAMES[:4] == ("MI_dir_L5_weight", "MI_dir_L5_mean", "MI_dir_L5_variance",
                                      "MI_dir_L3_weight")
  assert schema.FEATURE_NAMES[-1] == "HpHp_L0.01_pcc"
  assert schema.STATS_PER_WINDOW == 23 and schema.NUM_WINDOWS == 5


def test_real_nbaiot_header_is_the_canonical_order():
  with gzip.open(f"{fixture_layouts.ATTACKS}/tcp.csv.gz", "rt") as f:
    header = f.readline().strip().split(",")
  assert tuple(header) == schema.FEATURE_NAMES


def test_window_major_reshape_puts_each_window_in_one_row():
  names = np.array(schema.FEATURE_NAMES)[list(schema.WINDOW_MAJOR_INDEX)].reshape(5, 23)
  for w, window in enumerate(schema.WINDOWS):
    for s, (family, stat) in enumerate(schema.STREAMS):
      assert names[w, s] == f"{family}_{window}_{stat}"
  assert sorted(schema.WINDOW_MAJOR_INDEX) == list(range(115))


def test_family_columns_and_log_masks():
  assert len(schema.family_columns("HpHp")) == 35 and len(schema.family_columns("H")) == 15
  assert schema.FEATURE_NAMES[schema.family_columns("HH_jit")[0]] == "HH_jit_L5_weight"
  log = {n for n, m in zip(schema.FEATURE_NAMES, schema.LOG_FEATURE_MASK) if m}
  signed = {n for n, m in zip(schema.FEATURE_NAMES, schema.SIGNED_LOG_FEATURE_MASK) if m}
  assert "HH_L1_radius" in log and "MI_dir_L1_mean" in log and "HpHp_L1_pcc" not in log
  assert "HH_jit_L0.01_mean" in log, "mean inter-arrival times are heavy-tailed too"
  assert signed == {f"{f}_{w}_covariance" for f in ("HH", "HpHp") for w in schema.WINDOWS}
