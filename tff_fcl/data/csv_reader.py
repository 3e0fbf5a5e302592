"""Streams validated float32 chunks [rows, 115] out of one N-BaIoT CSV (plain, gzip, zip or rar member).

The header must be exactly `schema.FEATURE_NAMES` in order; every cell must parse as a finite number.
A problem raises `DataError` with one line naming the file and the problem: missing / extra /
reordered columns (named), an empty file, a truncated or corrupt archive, a malformed line, or a
non-numeric / NaN / inf cell (row number counted from 1 after the header, its line number, the
column). With `on_bad_rows="drop"` rows with non-numeric or non-finite cells are dropped instead and
counted in `ReadStats.dropped_rows`.

Memory is bounded by one 16 MB block of text plus one chunk (`chunk_rows` x 115 float32).
"""

import contextlib
import dataclasses
import gzip
import io
import typing
import zipfile
import zlib

import numpy as np
import pandas as pd

from tff_fcl.data import schema
from tff_fcl.data.errors import DataError
from tff_fcl.data.layouts import SourceFile

ON_BAD_ROWS = ("fail", "drop")
_NAMES_SHOWN = 6
_BLOCK_BYTES = 16 << 20
_STREAM_ERRORS = (EOFError, OSError, zlib.error, zipfile.BadZipFile)


@dataclasses.dataclass
class ReadStats:
  rows: int = 0  # rows kept
  dropped_rows: int = 0


@contextlib.contextmanager
def open_binary(source: SourceFile):
  """A binary stream of the CSV text of `source`, decompressing gzip / zip / rar members."""
  try:
    if source.member is not None and source.path.lower().endswith(".rar"):
      import rarfile  # pylint: disable=g-import-not-at-top
      with rarfile.RarFile(source.path) as archive, archive.open(source.member) as stream:
        yield stream
    elif source.member is not None:
      with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as stream:
        yield stream
    elif source.path.lower().endswith(".gz"):
      with gzip.open(source.path, "rb") as stream:
        yield stream
    else:
      with open(source.path, "rb") as stream:
        yield stream
  except FileNotFoundError:
    raise DataError(f"{source.name}: file not found") from None


def _names(names: typing.Sequence[str]) -> str:
  shown = ", ".join(names[:_NAMES_SHOWN])
  return shown + (f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else "")


def check_header(name: str, columns: typing.Sequence[str]) -> None:
  """Raises DataError unless `columns` are the 115 N-BaIoT feature names in canonical order."""
  expected = schema.FEATURE_NAMES
  if tuple(columns) == expected:
    return
  known = set(expected)
  missing = [c for c in expected if c not in set(columns)]
  extra = [c for c in columns if c not in known]
  problems = []
  if missing:
    problems.append(f"missing columns: {_names(missing)}")
  if extra:
    problems.append(f"extra columns: {_names(extra)}")
  if not problems:
    duplicated = sorted({c for c in columns if list(columns).count(c) > 1})
    if duplicated:
      problems.append(f"duplicated columns: {_names(duplicated)}")
    else:
      position = next(i for i, (a, b) in enumerate(zip(columns, expected)) if a != b)
      problems.append(f"columns out of order: column {position + 1} is {columns[position]}, "
                      f"expected {expected[position]}")
  raise DataError(f"{name}: {'; '.join(problems)} (expected the 115 N-BaIoT columns "
                  f"{expected[0]} ... {expected[-1]})")


def _first_bad_cell(name: str, frame: pd.DataFrame, values: np.ndarray, first_row: int,
                    lines: np.ndarray) -> str:
  bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
  row = int(bad_rows[0])
  column = int(np.flatnonzero(~np.isfinite(values[row]))[0])
  raw = frame.iat[row, column]
  number = first_row + row
  where = f"{name}: row {number} (line {lines[row]}), column {schema.FEATURE_NAMES[column]}"
  if isinstance(raw, str) and not _parses_as_float(raw):
    return f"{where}: non-numeric value {raw!r}"
  if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip().lower() in ("", "nan"):
    return f"{where}: empty or NaN value"
  return f"{where}: infinite value {raw!r}"


def _parses_as_float(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def _parse(text: bytes, dtype) -> pd.DataFrame:
  return pd.read_csv(io.BytesIO(text), header=None, names=list(schema.FEATURE_NAMES), index_col=False,
                     engine="c", dtype=dtype)


def _to_float(frame: pd.DataFrame) -> np.ndarray:
  """float32 [rows, 115]; non-numeric cells become NaN."""
  if all(dtype.kind in "fiub" for dtype in frame.dtypes):
    return frame.to_numpy(np.float32)
  return frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)


def _line_bounds(block: bytes) -> typing.Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(starts, ends, fields, line index in the block) of the non-blank lines of `block` (ends with \\n)."""
  data = np.frombuffer(block, np.uint8)
  ends = np.flatnonzero(data == 10)
  starts = np.concatenate([[0], ends[:-1] + 1])
  content_ends = ends - (data[np.maximum(ends - 1, 0)] == 13)  # without a trailing \r
  nonblank = content_ends > starts
  fields = np.add.reduceat(data == 44, starts, dtype=np.int64) + 1  # commas per line + 1
  return starts[nonblank], ends[nonblank], fields[nonblank], np.flatnonzero(nonblank)


def _lines(stream, block_bytes: int) -> typing.Iterator[bytes]:
  """Blocks of whole lines (each ending with a newline) read from `stream`."""
  rest = b""
  while True:
    data = stream.read(block_bytes)
    if not data:
      if rest.strip():
        yield rest + b"\n"
      return
    data = rest + data
    cut = data.rfind(b"\n") + 1
    rest = data[cut:]
    if cut:
      yield data[:cut]


def read_chunks(source: SourceFile, *, chunk_rows: int = 65536, on_bad_rows: str = "fail",
                stats: typing.Optional[ReadStats] = None) -> typing.Iterator[np.ndarray]:
  """Yields float32 arrays [<= chunk_rows, 115] of `source`'s rows in file order.

  Field counts are checked per line with numpy before parsing (pandas' chunked reader silently
  truncates over-long lines at chunk boundaries); fields must not contain quoted commas.
  """
  if on_bad_rows not in ON_BAD_ROWS:
    raise ValueError(f"on_bad_rows must be one of {ON_BAD_ROWS}. Found {on_bad_rows!r}.")
  stats = stats if stats is not None else ReadStats()
  name = source.name
  with open_binary(source) as stream:
    try:
      header = stream.readline()
      if not header.strip():
        raise DataError(f"{name}: empty file (no header, no rows)")
      columns = [c.strip().strip('"') for c in header.decode("utf-8-sig").strip().split(",")]
      check_header(name, columns)
      first_row, first_line = 1, 2
      for block in _lines(stream, _BLOCK_BYTES):
        starts, ends, fields, line_index = _line_bounds(block)
        lines = first_line + line_index
        first_line += block.count(b"\n")
        for begin in range(0, len(starts), chunk_rows):
          stop = min(begin + chunk_rows, len(starts))
          wrong = np.flatnonzero(fields[begin:stop] != schema.NUM_FEATURES)
          if len(wrong):
            raise DataError(f"{name}: row {first_row + wrong[0]} (line {lines[begin + wrong[0]]}): "
                            f"{fields[begin + wrong[0]]} fields, "
                            f"expected {schema.NUM_FEATURES}")
          text = block[starts[begin]:ends[stop - 1] + 1]
          try:  # fast path: every cell a number
            frame = _parse(text, np.float32)
          except ValueError:  # a non-numeric cell: parse again to find it
            frame = _parse(text, None)
          values = _to_float(frame)
          finite = np.isfinite(values).all(axis=1)
          if not finite.all():
            if on_bad_rows == "fail":
              raise DataError(_first_bad_cell(name, frame, values, first_row, lines[begin:stop]))
            stats.dropped_rows += int((~finite).sum())
            values = values[finite]
          first_row += len(frame)
          stats.rows += len(values)
          if len(values):
            yield values
    except DataError:
      raise
    except pd.errors.ParserError as error:
      raise DataError(f"{name}: malformed CSV ({str(error).strip().splitlines()[-1]})") from None
    except UnicodeDecodeError:
      raise DataError(f"{name}: not a text CSV file (cannot decode the header)") from None
    except _STREAM_ERRORS as error:
      raise DataError(f"{name}: truncated or corrupt compressed file ({error})") from None
  if stats.rows == 0 and stats.dropped_rows == 0:
    raise DataError(f"{name}: empty file (a header but no rows)")
