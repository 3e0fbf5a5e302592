"""Streaming reader for pcap and pcapng captures, plain or gzip-compressed.

`read_records(path)` yields one `Record(timestamp, length, data)` per captured frame, in file order:
`timestamp` in seconds (float64), `length` the frame's original length on the wire (the value the
AfterImage statistics use), `data` the captured bytes (at most the snap length). Only link type 1
(Ethernet) is accepted. Any malformed input raises `CaptureError` (a ValueError) whose message is a
single line naming the file and the problem, e.g. `capture.pcap: truncated packet record at byte 1234`.

Formats: libpcap (microsecond and nanosecond magics, either byte order) and pcapng (Section Header,
Interface Description with `if_tsresol` / `if_tsoffset`, Enhanced, Simple and obsolete Packet
blocks; other blocks are skipped). gzip is detected from the content, not the file name.
"""

import gzip
import os
import struct
import typing
import zlib

ETHERNET_LINKTYPE = 1
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (EOFError, OSError, zlib.error)


class CaptureError(ValueError):
  """A capture file cannot be read; the message names the file and the problem."""


class Record(typing.NamedTuple):
  timestamp: float  # seconds since the epoch
  length: int  # original frame length on the wire, in bytes
  data: bytes  # captured bytes, len(data) <= length


class _Source:
  """A binary stream that tracks the byte offset (in the uncompressed content) for error messages."""

  def __init__(self, path: str, stream):
    self.name = os.path.basename(path)
    self._stream = stream
    self.offset = 0

  def read(self, size: int, what: str, allow_eof: bool = False) -> bytes:
    start = self.offset
    try:
      data = self._stream.read(size)
    except _READ_ERRORS as e:
      raise CaptureError(f"{self.name}: corrupt compressed data near byte {start} ({e})") from None
    self.offset += len(data)
    if len(data) < size and not (allow_eof and not data):
      raise CaptureError(f"{self.name}: truncated {what} at byte {start}")
    return data

  def error(self, problem: str, at: int) -> CaptureError:
    return CaptureError(f"{self.name}: {problem} at byte {at}")


def _open(path: str):
  try:
    raw = open(path, "rb")
  except OSError as e:
    raise CaptureError(f"{os.path.basename(path)}: cannot open ({e.strerror})") from None
  if raw.read(2) == _GZIP_MAGIC:
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb"), raw
  raw.seek(0)
  return raw, raw


def read_records(path: str) -> typing.Iterator[Record]:
  """Yields the frames of one capture file in file order (streaming; constant memory).

  Args:
    path: a `.pcap`, `.pcapng` or either gzip-compressed.

  Raises:
    CaptureError: unreadable file, unknown format, non-Ethernet link type or a truncated record.
  """
  stream, raw = _open(path)
  try:
    source = _Source(path, stream)
    magic = source.read(4, "file header", allow_eof=True)
    if not magic:
      raise CaptureError(f"{source.name}: empty file, not a pcap or pcapng capture")
    if magic in _PCAP_MAGICS:
      yield from _read_pcap(source, *_PCAP_MAGICS[magic])
    elif magic == _PCAPNG_SHB:
      yield from _read_pcapng(source)
    else:
      raise CaptureError(f"{source.name}: not a pcap or pcapng capture (magic 0x{magic.hex()})")
  finally:
    stream.close()
    raw.close()


def _check_linktype(source: _Source, linktype: int, at: int):
  if linktype != ETHERNET_LINKTYPE:
    raise source.error(f"link type {linktype} is not Ethernet ({ETHERNET_LINKTYPE})", at)


def _read_pcap(source: _Source, order: str, resolution: float) -> typing.Iterator[Record]:
  header = source.read(20, "file header")
  linktype = struct.unpack(order + "HHiIII", header)[5] & 0x0FFFFFFF
  _check_linktype(source, linktype, 20)
  record_header = struct.Struct(order + "IIII")
  while True:
    at = source.offset
    head = source.read(16, "packet record header", allow_eof=True)
    if not head:
      return
    seconds, fraction, captured, original = record_header.unpack(head)
    if captured > 0x4000000:
      raise source.error(f"implausible captured length {captured}", at)
    data = source.read(captured, "packet record")
    if len(data) < captured:
      raise source.error("truncated packet record", at)
    yield Record(seconds + fraction * resolution, max(original, captured), data)


def _read_pcapng(source: _Source) -> typing.Iterator[Record]:
  order = "<"
  interfaces = []  # per interface: (resolution in seconds, offset in seconds, snap length)
  at = 0
  block_type_bytes = _PCAPNG_SHB
  while block_type_bytes:
    if block_type_bytes == _PCAPNG_SHB:
      head = source.read(8, "section header block")
      order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(head[4:])
      if order is None:
        raise source.error("bad pcapng byte-order magic", at)
      (block_length,) = struct.unpack(order + "I", head[:4])
      if block_length < 28 or block_length % 4:
        raise source.error(f"bad pcapng block length {block_length}", at)
      source.read(block_length - 12, "section header block")
      interfaces = []
    else:
      (block_type,) = struct.unpack(order + "I", block_type_bytes)
      (block_length,) = struct.unpack(order + "I", source.read(4, "block header"))
      if block_length < 12 or block_length % 4:
        raise source.error(f"bad pcapng block length {block_length}", at)
      body = source.read(block_length - 12, "packet record" if block_type in (2, 3, 6) else "block")
      source.read(4, "block trailer")
      if block_type == 1:
        interfaces.append(_interface(source, order, body, at))
      elif block_type in (2, 3, 6):
        yield _packet_block(source, order, block_type, body, interfaces, at)
    at = source.offset
    block_type_bytes = source.read(4, "block header", allow_eof=True)


def _interface(source: _Source, order: str, body: bytes, at: int) -> tuple:
  if len(body) < 8:
    raise source.error("truncated interface description block", at)
  linktype, _, snaplen = struct.unpack(order + "HHI", body[:8])
  _check_linktype(source, linktype, at)
  resolution, offset = 1e-6, 0.0
  position = 8
  while position + 4 <= len(body):
    code, size = struct.unpack(order + "HH", body[position:position + 4])
    value = body[position + 4:position + 4 + size]
    if code == 0:
      break
    if code == 9 and size >= 1:
      exponent = value[0]
      resolution = 2.0 ** -(exponent & 0x7F) if exponent & 0x80 else 10.0 ** -exponent
    elif code == 14 and size >= 8:
      (offset,) = struct.unpack(order + "q", value[:8])
    position += 4 + (size + 3) // 4 * 4
  return resolution, float(offset), snaplen


def _packet_block(source, order, block_type, body, interfaces, at) -> Record:
  if block_type == 3:  # Simple Packet Block: interface 0, no timestamp.
    if len(body) < 4 or not interfaces:
      raise source.error("truncated simple packet block", at)
    (original,) = struct.unpack(order + "I", body[:4])
    snaplen = interfaces[0][2] or original
    captured = min(original, snaplen)
    data = body[4:4 + captured]
    return Record(interfaces[0][1], original, data)
  if block_type == 6:
    if len(body) < 20:
      raise source.error("truncated enhanced packet block", at)
    interface, high, low, captured, original = struct.unpack(order + "IIIII", body[:20])
    data_start = 20
  else:  # Obsolete Packet Block (type 2).
    if len(body) < 20:
      raise source.error("truncated packet block", at)
    interface, _, high, low, captured, original = struct.unpack(order + "HHIIII", body[:20])
    data_start = 20
  if interface >= len(interfaces):
    raise source.error(f"packet on undeclared interface {interface}", at)
  data = body[data_start:data_start + captured]
  if len(data) < captured:
    raise source.error("truncated packet record", at)
  resolution, offset, _ = interfaces[interface]
  return Record(((high << 32) | low) * resolution + offset, max(original, captured), data)
