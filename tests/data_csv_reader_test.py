"""Validated CSV streaming: real rows read exactly; every bad-input case gives its one-line message."""
import gzip
import zipfile

import numpy as np
import pytest

from tests.fixtures.nbaiot import fixture_layouts
from tff_fcl.data import DataError
from tff_fcl.data import schema
from tff_fcl.data.csv_reader import read_chunks
from tff_fcl.data.csv_reader import ReadStats
from tff_fcl.data.layouts import SourceFile

NAMES = list(schema.FEATURE_NAMES)
EXPECTED = "(expected the 115 N-BaIoT columns MI_dir_L5_weight ... HpHp_L0.01_pcc)"


def read_all(path, member=None, **kwargs):
  chunks = list(read_chunks(SourceFile(str(path), "dev", "benign", member), **kwargs))
  return np.concatenate(chunks) if chunks else np.zeros((0, 115), np.float32)


def error_of(path, **kwargs):
  with pytest.raises(DataError) as error:
    read_all(path, **kwargs)
  return str(error.value)


def rows(n=3):
  return [[float(i * 115 + j) for j in range(115)] for i in range(n)]


def test_real_rows_match_a_numpy_reader_in_any_chunking():
  path = f"{fixture_layouts.ATTACKS}/udp.csv.gz"
  expected = fixture_layouts.read_rows(path)
  assert expected.shape == (200, 115)
  np.testing.assert_array_equal(read_all(path), expected)
  chunks = list(read_chunks(SourceFile(path, "d", "gafgyt/udp"), chunk_rows=7))
  assert [len(c) for c in chunks] == [7] * 28 + [4] and chunks[0].dtype == np.float32
  np.testing.assert_array_equal(np.concatenate(chunks), expected)


def test_zip_member(tmp_path):
  csv = fixture_layouts.write_csv(tmp_path / "a.csv", rows())
  with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
    archive.write(csv, "inner/a.csv")
  np.testing.assert_array_equal(read_all(tmp_path / "a.zip", member="inner/a.csv"), np.array(rows(), np.float32))


@pytest.mark.parametrize("header,message", [
    (NAMES[:-1], "missing columns: HpHp_L0.01_pcc"),
    (NAMES + ["label"], "extra columns: label"),
    (NAMES[:3] + ["MI_dir_L3_wieght"] + NAMES[4:], "missing columns: MI_dir_L3_weight; extra columns: MI_dir_L3_wieght"),
    (NAMES[:10] + NAMES[16:], "missing columns: MI_dir_L0.1_mean, MI_dir_L0.1_variance, MI_dir_L0.01_weight, "
     "MI_dir_L0.01_mean, MI_dir_L0.01_variance, H_L5_weight"),
    (NAMES[:1] + NAMES[2:], "missing columns: MI_dir_L5_mean"),
    ([NAMES[1], NAMES[0]] + NAMES[2:], "columns out of order: column 1 is MI_dir_L5_mean, expected MI_dir_L5_weight"),
])
def test_column_problems_are_named(tmp_path, header, message):
  path = fixture_layouts.write_csv(tmp_path / "bad.csv", [], header=header)
  assert error_of(path) == f"{path}: {message} {EXPECTED}"


def test_many_missing_columns_are_summarised(tmp_path):
  path = fixture_layouts.write_csv(tmp_path / "bad.csv", [], header=NAMES[:100])
  assert NAMES[100:106] == ["HpHp_L1_pcc", "HpHp_L0.1_weight", "HpHp_L0.1_mean", "HpHp_L0.1_std",
                            "HpHp_L0.1_magnitude", "HpHp_L0.1_radius"]
  assert error_of(path) == f"{path}: missing columns: {', '.join(NAMES[100:106])}, ... (15 in all) {EXPECTED}"


@pytest.mark.parametrize("cell,problem", [
    ("abc", "non-numeric value 'abc'"), ("1.5e", "non-numeric value '1.5e'"), ("", "empty or NaN value"),
    ("nan", "empty or NaN value"), ("inf", "infinite value inf"), ("-inf", "infinite value -inf")])
def test_bad_cells_name_row_line_and_column(tmp_path, cell, problem):
  data = rows(4)
  data[2][7] = cell
  path = fixture_layouts.write_csv(tmp_path / "bad.csv", data)
  assert error_of(path) == f"{path}: row 3 (line 4), column MI_dir_L1_mean: {problem}"
  # The same row found in the second chunk keeps its file row number.
  assert error_of(path, chunk_rows=2) == f"{path}: row 3 (line 4), column MI_dir_L1_mean: {problem}"


def test_drop_mode_drops_and_counts(tmp_path):
  data = rows(5)
  data[1][0] = "abc"
  data[3][114] = "nan"
  path = fixture_layouts.write_csv(tmp_path / "bad.csv", data)
  stats = ReadStats()
  kept = np.concatenate(list(read_chunks(SourceFile(path, "d", "benign"), on_bad_rows="drop", stats=stats,
                                         chunk_rows=2)))
  np.testing.assert_array_equal(kept, np.array([data[0], data[2], data[4]], np.float32))
  assert (stats.rows, stats.dropped_rows) == (3, 2)


def test_short_and_long_rows(tmp_path):
  path = tmp_path / "bad.csv"
  path.write_text(",".join(NAMES) + "\n" + ",".join(["1"] * 115) + "\n" + ",".join(["1"] * 114) + "\n")
  assert error_of(path) == f"{path}: row 2 (line 3): 114 fields, expected 115"
  path.write_text(",".join(NAMES) + "\n" + ",".join(["1"] * 115) + "\n" + ",".join(["1"] * 116) + "\n")
  assert error_of(path) == f"{path}: row 2 (line 3): 116 fields, expected 115"
  assert error_of(path, chunk_rows=1) == f"{path}: row 2 (line 3): 116 fields, expected 115"
  path.write_text(",".join(NAMES) + "\n" + ",".join(["1"] * 116) + "\n")
  assert error_of(path) == f"{path}: row 1 (line 2): 116 fields, expected 115"
  path.write_text(",".join(NAMES) + "\n" + ",".join(["1"] * 115) + "\r\n\n\n" + ",".join(["2"] * 115) + "\n\n")
  np.testing.assert_array_equal(read_all(path), np.repeat([[1], [2]], 115, axis=1).astype(np.float32))
  path.write_text(",".join(NAMES) + "\n\n" + ",".join(["1"] * 115) + "\n\n" + ",".join(["x"] * 115) + "\n")
  assert error_of(path) == f"{path}: row 2 (line 5), column MI_dir_L5_weight: non-numeric value 'x'"


def test_empty_files(tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text("")
  assert error_of(empty) == f"{empty}: empty file (no header, no rows)"
  header_only = fixture_layouts.write_csv(tmp_path / "header.csv", [])
  assert error_of(header_only) == f"{header_only}: empty file (a header but no rows)"
  gz = tmp_path / "empty.csv.gz"
  with gzip.open(gz, "wb"):
    pass
  assert error_of(gz) == f"{gz}: empty file (no header, no rows)"


def test_truncated_and_corrupt_gzip(tmp_path):
  data = gzip.compress((",".join(NAMES) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows(2000))).encode())
  truncated = tmp_path / "truncated.csv.gz"
  truncated.write_bytes(data[: len(data) // 2])
  assert error_of(truncated) == (f"{truncated}: truncated or corrupt compressed file (Compressed file ended "
                                 "before the end-of-stream marker was reached)")
  corrupt = tmp_path / "corrupt.csv.gz"
  corrupt.write_bytes(b"not gzip at all")
  assert error_of(corrupt) == f"{corrupt}: truncated or corrupt compressed file (Not a gzipped file (b'no'))"


def test_not_text(tmp_path):
  path = tmp_path / "binary.csv"
  path.write_bytes(b"\xff\xfe\x00\x81garbage\n1,2\n")
  assert error_of(path) == f"{path}: not a text CSV file (cannot decode the header)"
