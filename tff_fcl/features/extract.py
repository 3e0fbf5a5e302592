"""Captures -> N-BaIoT features: reading, device filtering, extraction and CSV output.

    packets = read_packets(paths, report)                  # Packet per parsed frame, time-ordered files
    features = AfterImage().update(list(packets))          # [n, 115] float64, schema.FEATURE_NAMES
    extraction = extract_features(paths, device_mac=...)   # the same in one call, with side info
    report = write_nbaiot_csv(paths, "out.csv.gz")          # streamed to gzip CSV (bounded memory)

Files are processed in the order of their first timestamp, with one continuous stream state. Frames
that cannot be parsed are skipped and counted by reason in `ParseReport`; they produce no row.
"""

import collections
import dataclasses
import gzip
import io
import os
import typing

import numpy as np

from tff_fcl.data import schema
from tff_fcl.features import afterimage
from tff_fcl.features import capture
from tff_fcl.features import packets as packets_lib

FLOAT_FORMAT = "%.9g"  # float32 round trip
SIDE_COLUMNS = ("timestamp", "src_mac", "dst_mac", "network", "src_ip", "dst_ip", "protocol",
                "src_port", "dst_port", "length")


@dataclasses.dataclass
class ParseReport:
  """Counts over the frames read: parsed into packets, malformed (by reason), filtered out."""
  frames: int = 0
  packets: int = 0
  filtered: int = 0
  unparseable: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def summary(self) -> str:
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.unparseable.items()))
    return (f"{self.frames} frames, {self.packets} packets kept, {self.filtered} filtered out, "
            f"{sum(self.unparseable.values())} unparseable" + (f" ({reasons})" if reasons else ""))


class Extraction(typing.NamedTuple):
  features: np.ndarray  # [n, 115] float64, columns schema.FEATURE_NAMES
  packets: list  # n packets_lib.Packet, row-aligned with features
  report: ParseReport


def _first_timestamp(path: str) -> float:
  for record in capture.read_records(path):
    return record.timestamp
  return float("inf")


def order_by_time(paths: typing.Sequence[str]) -> list:
  """The capture paths sorted by their first frame's timestamp (ties by path)."""
  return sorted(paths, key=lambda path: (_first_timestamp(path), path))


def involves(packet: packets_lib.Packet, device_mac: typing.Optional[bytes],
             device_ip: typing.Optional[bytes]) -> bool:
  """True if the packet is to or from the device (MAC and IP both checked when both given)."""
  if device_mac is not None and device_mac not in (packet.src_mac, packet.dst_mac):
    return False
  if device_ip is not None and device_ip not in (packet.src_ip, packet.dst_ip):
    return False
  return True


def read_packets(paths: typing.Sequence[str], report: ParseReport,
                 device_mac: typing.Optional[bytes] = None,
                 device_ip: typing.Optional[bytes] = None) -> typing.Iterator[packets_lib.Packet]:
  """Parsed packets of the captures in time order of the files; `report` is updated in place."""
  for path in order_by_time(paths):
    fragments = packets_lib.FragmentPorts()
    for record in capture.read_records(path):
      report.frames += 1
      packet, reason = packets_lib.parse_frame(record.timestamp, record.length, record.data,
                                               fragments)
      if packet is None:
        report.unparseable[reason] += 1
      elif involves(packet, device_mac, device_ip):
        report.packets += 1
        yield packet
      else:
        report.filtered += 1


def iter_feature_chunks(paths: typing.Sequence[str], report: ParseReport,
                        device_mac: typing.Optional[bytes] = None,
                        device_ip: typing.Optional[bytes] = None,
                        config: afterimage.AfterImageConfig = afterimage.AfterImageConfig(),
                        ) -> typing.Iterator[typing.Tuple[list, np.ndarray]]:
  """Streams (packets, features [len(packets), 115]) chunks; memory bounded by the config."""
  state = afterimage.AfterImage(config)
  chunk = []
  for packet in read_packets(paths, report, device_mac, device_ip):
    chunk.append(packet)
    if len(chunk) == config.chunk_size:
      yield chunk, state.update(chunk)
      chunk = []
  if chunk:
    yield chunk, state.update(chunk)


def extract_features(paths: typing.Sequence[str], device_mac: typing.Optional[bytes] = None,
                     device_ip: typing.Optional[bytes] = None,
                     config: afterimage.AfterImageConfig = afterimage.AfterImageConfig(),
                     ) -> Extraction:
  """All packets of the captures (optionally only those to / from one device) and their features."""
  report = ParseReport()
  packets, blocks = [], []
  for chunk, features in iter_feature_chunks(paths, report, device_mac, device_ip, config):
    packets.extend(chunk)
    blocks.append(features)
  features = np.concatenate(blocks) if blocks else np.zeros((0, schema.NUM_FEATURES))
  return Extraction(features, packets, report)


def side_rows(packets: typing.Iterable[packets_lib.Packet]) -> typing.Iterator[tuple]:
  """Per packet: SIDE_COLUMNS values as printable strings."""
  for p in packets:
    yield (repr(p.timestamp), packets_lib.format_mac(p.src_mac), packets_lib.format_mac(p.dst_mac),
           p.network, packets_lib.format_address(p.src_ip), packets_lib.format_address(p.dst_ip),
           str(p.protocol), str(p.src_port), str(p.dst_port), str(p.length))


class CsvGzWriter:
  """Deterministic gzip CSV (level 9, mtime 0, no file name in the header), written row-block-wise."""

  def __init__(self, path: str, header: typing.Sequence[str]):
    self._raw = open(path, "wb")
    self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=9, mtime=0)
    self._text = io.TextIOWrapper(self._gzip, encoding="ascii", newline="\n")
    self._text.write(",".join(header) + "\n")
    self.rows = 0

  def write_features(self, features: np.ndarray):
    """Rows of floats in FLOAT_FORMAT (-0 written as 0)."""
    if features.ndim != 2 or features.shape[1] != schema.NUM_FEATURES:
      raise ValueError(f"features must be [n, {schema.NUM_FEATURES}]. Found {features.shape}.")
    line = ",".join([FLOAT_FORMAT] * features.shape[1]) + "\n"
    self._text.writelines(line % tuple(row) for row in (features + 0.0).tolist())
    self.rows += len(features)

  def write_rows(self, rows: typing.Iterable[tuple]):
    for row in rows:
      self._text.write(",".join(row) + "\n")
      self.rows += 1

  def close(self):
    self._text.close()
    self._raw.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_nbaiot_csv(paths: typing.Sequence[str], output: str, side_file: typing.Optional[str] = None,
                     device_mac: typing.Optional[bytes] = None,
                     device_ip: typing.Optional[bytes] = None,
                     config: afterimage.AfterImageConfig = afterimage.AfterImageConfig(),
                     ) -> ParseReport:
  """Streams the captures' features to `output` (gzip CSV, header schema.FEATURE_NAMES).

  `side_file` (optional) gets SIDE_COLUMNS per row, row-aligned. Files are written under a temporary
  name and renamed at the end, so a failed run leaves nothing behind.

  Raises:
    capture.CaptureError: an unreadable capture, or no packet left to write.
  """
  outputs = [output] + ([side_file] if side_file else [])
  partial = [path + ".partial" for path in outputs]
  report = ParseReport()
  try:
    with CsvGzWriter(partial[0], schema.FEATURE_NAMES) as writer:
      side = CsvGzWriter(partial[1], SIDE_COLUMNS) if side_file else None
      try:
        for chunk, features in iter_feature_chunks(paths, report, device_mac, device_ip, config):
          writer.write_features(features)
          if side is not None:
            side.write_rows(side_rows(chunk))
      finally:
        if side is not None:
          side.close()
    if not report.packets:
      names = ", ".join(os.path.basename(path) for path in paths)
      raise capture.CaptureError(f"{names}: no packets to write ({report.summary()})")
  except BaseException:
    for path in partial:
      if os.path.exists(path):
        os.remove(path)
    raise
  for source, target in zip(partial, outputs):
    os.replace(source, target)
  return report
