"""Capture reading (pcap / pcapng, gzip, errors) and frame parsing (VLAN, IPv6, ARP, fragments)."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tff_fcl.data import schema
from tff_fcl.features import capture
from tff_fcl.features import extract
from tff_fcl.features import packets as packets_lib

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pcaps")
MAC_A, MAC_B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
IP_A, IP_B = bytes([192, 168, 1, 10]), bytes([8, 8, 4, 4])
IP6_A, IP6_B = bytes.fromhex("fe80" + "00" * 13 + "0a"), bytes.fromhex("2001" + "00" * 13 + "0b")


def _ethernet(ethertype, payload, vlan_ids=()):
  tags = b"".join(struct.pack("!HH", 0x8100, vid) for vid in vlan_ids)
  return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + payload


def _ipv4(protocol, payload, identification=1, flags_offset=0):
  header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), identification, flags_offset,
                       64, protocol, 0, IP_A, IP_B)
  return header + payload


def _ports(src, dst, size=8):
  return struct.pack("!HH", src, dst) + bytes(size - 4)


def _ipv6(next_header, payload, extension=b""):
  return (struct.pack("!IHBB", 0x60000000, len(extension) + len(payload), next_header, 64)
          + IP6_A + IP6_B + extension + payload)


def _arp():
  return struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MAC_A + IP_A + bytes(6) + IP_B


FRAMES = [  # (frame, expected network, src_ip, dst_ip, protocol, src_port, dst_port)
    (_ethernet(0x0800, _ipv4(6, _ports(40000, 443, 20))), "ipv4", IP_A, IP_B, 6, 40000, 443),
    (_ethernet(0x0800, _ipv4(17, _ports(5353, 53)), vlan_ids=(5, 7)), "ipv4", IP_A, IP_B, 17,
     5353, 53),
    (_ethernet(0x0800, _ipv4(1, bytes(8))), "ipv4", IP_A, IP_B, 1, -1, -1),
    (_ethernet(0x86DD, _ipv6(17, _ports(546, 547))), "ipv6", IP6_A, IP6_B, 17, 546, 547),
    # IPv6 hop-by-hop (8 bytes) then a first fragment (more fragments, id 9), then TCP.
    (_ethernet(0x86DD, _ipv6(0, _ports(1, 2, 20), bytes([44, 0]) + bytes(6)
                             + struct.pack("!BBHI", 6, 0, 1, 9))), "ipv6", IP6_A, IP6_B, 6, 1, 2),
    (_ethernet(0x0806, _arp()), "arp", IP_A, IP_B, -1, -1, -1),
    # IPv4 fragments of datagram 7: the first carries the UDP ports, the second inherits them.
    (_ethernet(0x0800, _ipv4(17, _ports(53, 5000, 16), 7, 0x2000)), "ipv4", IP_A, IP_B, 17, 53, 5000),
    (_ethernet(0x0800, _ipv4(17, bytes(16), 7, 2)), "ipv4", IP_A, IP_B, 17, 53, 5000),
    # A later fragment whose first fragment was not seen is port-less.
    (_ethernet(0x0800, _ipv4(17, bytes(16), 8, 2)), "ipv4", IP_A, IP_B, 17, -1, -1),
    (_ethernet(0x888E, bytes(20)), "other", MAC_A, MAC_B, -1, -1, -1),  # EAPOL: keyed by MAC
]
BAD_FRAMES = [  # (frame, reason)
    (bytes(10), "short Ethernet header"),
    (_ethernet(0x0800, _ipv4(6, b"")[:12]), "truncated or invalid IPv4 header"),
    (_ethernet(0x0800, _ipv4(6, b"\x01")), "truncated transport header"),
    (_ethernet(0x8100, b"\x00"), "truncated VLAN tag"),
    (_ethernet(0x86DD, bytes(30)), "truncated or invalid IPv6 header"),
    (_ethernet(0x0806, _arp()[:20]), "truncated ARP body"),
]


def _pcap(frames, big_endian=False, nanoseconds=False, linktype=1):
  order = ">" if big_endian else "<"
  magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
  out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
  for i, frame in enumerate(frames):
    fraction = (i % 4) * (250_000_000 if nanoseconds else 250_000)
    out += struct.pack(order + "IIII", 1000 + i // 4, fraction, len(frame), len(frame) + 4)
    out += frame
  return out


def _pcapng(frames):
  def block(block_type, body):
    body += bytes(-len(body) % 4)
    return struct.pack("<II", block_type, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
  out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
  tsresol = struct.pack("<HH", 9, 1) + bytes([9]) + bytes(3) + struct.pack("<HH", 0, 0)
  out += block(1, struct.pack("<HHI", 1, 0, 0) + tsresol)
  out += block(5, b"statistics, skipped")
  for i, frame in enumerate(frames):
    ticks = 1000 * 10 ** 9 + 250_000_000 * i
    out += block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                                len(frame) + 4) + frame)
  return out


def _write(tmp_path, name, content, compress=False):
  path = tmp_path / name
  path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
  return str(path)


@pytest.mark.parametrize("maker,compress", [
    (lambda f: _pcap(f), False), (lambda f: _pcap(f, big_endian=True, nanoseconds=True), True),
    (_pcapng, False), (_pcapng, True)],
    ids=["pcap", "pcap-ns-big-endian-gz", "pcapng", "pcapng-gz"])
def test_reads_pcap_and_pcapng_plain_and_gzip(tmp_path, maker, compress):
  frames = [frame for frame, *_ in FRAMES]
  records = list(capture.read_records(_write(tmp_path, "x.cap", maker(frames), compress)))
  assert [r.data for r in records] == frames
  assert [r.length for r in records] == [len(f) + 4 for f in frames]  # original length on the wire
  np.testing.assert_allclose([r.timestamp for r in records], 1000 + 0.25 * np.arange(len(frames)))


def test_parses_every_supported_layer():
  fragments = packets_lib.FragmentPorts()
  for frame, network, src_ip, dst_ip, protocol, src_port, dst_port in FRAMES:
    packet, reason = packets_lib.parse_frame(1.0, 99, frame, fragments)
    assert reason == ""
    assert (packet.network, packet.src_ip, packet.dst_ip, packet.protocol, packet.src_port,
            packet.dst_port) == (network, src_ip, dst_ip, protocol, src_port, dst_port)
    assert (packet.src_mac, packet.dst_mac, packet.length) == (MAC_A, MAC_B, 99)


def test_unparseable_frames_are_counted_not_fatal(tmp_path):
  frames = [FRAMES[0][0]] + [frame for frame, _ in BAD_FRAMES] + [FRAMES[3][0]]
  for frame, reason in BAD_FRAMES:
    assert packets_lib.parse_frame(0.0, 60, frame, packets_lib.FragmentPorts()) == (None, reason)
  extraction = extract.extract_features([_write(tmp_path, "bad.pcap", _pcap(frames))])
  assert extraction.features.shape == (2, schema.NUM_FEATURES)
  report = extraction.report
  assert (report.frames, report.packets) == (len(frames), 2)
  assert dict(report.unparseable) == {reason: 1 for _, reason in BAD_FRAMES}


@pytest.mark.parametrize("content,compress,message", [
    (b"", False, "x.pcap: empty file, not a pcap or pcapng capture"),
    (b"hello world!", False, "x.pcap: not a pcap or pcapng capture (magic 0x68656c6c)"),
    (_pcap([bytes(60)])[:-10], False, "x.pcap: truncated packet record at byte 40"),
    (_pcap([bytes(60)])[:20], False, "x.pcap: truncated file header at byte 4"),
    (_pcap([bytes(60)])[:30], False, "x.pcap: truncated packet record header at byte 24"),
    (_pcap([bytes(60)], linktype=101), False, "x.pcap: link type 101 is not Ethernet (1) at byte 20"),
    (_pcapng([bytes(60)])[:-8], False, "x.pcap: truncated packet record at byte"),
], ids=["empty", "bad-magic", "truncated-record", "truncated-header", "truncated-record-header",
        "not-ethernet", "truncated-pcapng"])
def test_bad_captures_give_one_line_naming_the_file(tmp_path, content, compress, message):
  path = _write(tmp_path, "x.pcap", content, compress)
  with pytest.raises(capture.CaptureError) as error:
    list(capture.read_records(path))
  assert str(error.value).startswith(message)
  assert "\n" not in str(error.value)


def test_truncated_and_corrupt_gzip(tmp_path):
  compressed = gzip.compress(_pcap([bytes(60)] * 50), mtime=0)
  path = _write(tmp_path, "t.pcap.gz", compressed[:len(compressed) // 2])
  with pytest.raises(capture.CaptureError, match=r"^t.pcap.gz: corrupt compressed data near byte"):
    list(capture.read_records(path))
  corrupt = compressed[:20] + bytes(len(compressed) - 20)
  with pytest.raises(capture.CaptureError, match=r"^c.pcap.gz: corrupt compressed data"):
    list(capture.read_records(_write(tmp_path, "c.pcap.gz", corrupt)))


def test_device_filter_and_fixture_counts():
  aria = os.path.join(FIXTURES, "Aria_Setup-A-1-STA.pcap.gz")
  cam = os.path.join(FIXTURES, "D-LinkCam_Setup-A-1-STA.pcap.gz")
  with open(os.path.join(FIXTURES, "Aria_iotdevice-mac.txt")) as f:
    mac = packets_lib.parse_mac(f.read())
  extraction = extract.extract_features([cam, aria], device_mac=mac)
  assert (extraction.report.frames, extraction.report.packets) == (49 + 624, 49)
  assert all(mac in (p.src_mac, p.dst_mac) for p in extraction.packets)
  times = [p.timestamp for p in extraction.packets]
  assert times == sorted(times)


def test_cli_writes_rows_side_file_and_reports_counts(tmp_path):
  aria = os.path.join(FIXTURES, "Aria_Setup-A-1-STA.pcap.gz")
  output, side = str(tmp_path / "out.csv.gz"), str(tmp_path / "side.csv.gz")
  root = os.path.dirname(os.path.dirname(__file__))
  result = subprocess.run(
      [sys.executable, "-m", "data_prep.pcap_to_nbaiot", f"--pcap={aria}", f"--output={output}",
       f"--side_file={side}", "--device_mac=20:f8:5e:ca:91:52"],
      cwd=root, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert "packets read: 49, parsed: 49, skipped (unparseable): 0, filtered out: 0" in result.stdout
  with gzip.open(output, "rt") as f:
    lines = f.read().splitlines()
  assert lines[0].split(",") == list(schema.FEATURE_NAMES)
  expected = extract.extract_features([aria]).features
  np.testing.assert_allclose(np.loadtxt(lines[1:], delimiter=","), expected, rtol=1e-8)
  with gzip.open(side, "rt") as f:
    side_lines = f.read().splitlines()
  assert side_lines[0] == ",".join(extract.SIDE_COLUMNS) and len(side_lines) == 50
  empty = _write(tmp_path, "empty.pcap", b"")
  result = subprocess.run(
      [sys.executable, "-m", "data_prep.pcap_to_nbaiot", f"--pcap={empty}",
       f"--output={tmp_path / 'x.csv.gz'}"], cwd=root, capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 1
  assert result.stderr.strip() == "error: empty.pcap: empty file, not a pcap or pcapng capture"
  assert not os.path.exists(tmp_path / "x.csv.gz") and not os.path.exists(
      tmp_path / "x.csv.gz.partial")
