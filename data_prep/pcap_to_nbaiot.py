"""Packet captures -> N-BaIoT's 115 features per packet, as a gzip CSV.

    python -m data_prep.pcap_to_nbaiot --pcap a.pcap.gz [--pcap b.pcapng ...] --output out.csv.gz \
        [--side_file side.csv.gz] [--device_mac 20:f8:5e:ca:91:52 | --device_ip 192.168.0.10]

Captures are processed in the order of their first timestamp with one stream state; see
`tff_fcl.features.afterimage` for the definitions and `tff_fcl.features.extract` for the output.
"""

from absl import app
from absl import flags

from tff_fcl import runtime
from tff_fcl.features import capture
from tff_fcl.features import extract
from tff_fcl.features import packets

_PCAP = flags.DEFINE_multi_string("pcap", None, "A pcap / pcapng capture, plain or gzip; repeatable.")
_OUTPUT = flags.DEFINE_string("output", None, "Output gzip CSV: one row per packet, 115 columns.")
_SIDE_FILE = flags.DEFINE_string(
    "side_file", None, "Optional gzip CSV with timestamp, addresses, ports and protocol per row.")
_DEVICE_MAC = flags.DEFINE_string("device_mac", None, "Keep only packets to or from this MAC.")
_DEVICE_IP = flags.DEFINE_string("device_ip", None, "Keep only packets to or from this IP.")
flags.mark_flags_as_required(["pcap", "output"])
flags.mark_flags_as_mutual_exclusive(["device_mac", "device_ip"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  try:
    device_mac = packets.parse_mac(_DEVICE_MAC.value) if _DEVICE_MAC.value else None
    device_ip = packets.parse_ip(_DEVICE_IP.value) if _DEVICE_IP.value else None
    report = extract.write_nbaiot_csv(_PCAP.value, _OUTPUT.value, _SIDE_FILE.value,
                                      device_mac=device_mac, device_ip=device_ip)
  except (capture.CaptureError, ValueError, OSError) as e:
    raise SystemExit(f"error: {e}") from None
  skipped = sum(report.unparseable.values())
  print(f"packets read: {report.frames}, parsed: {report.frames - skipped}, skipped (unparseable): "
        f"{skipped}, filtered out: {report.filtered}, rows written: {report.packets}")
  for reason, count in sorted(report.unparseable.items()):
    print(f"  unparseable, {reason}: {count}")
  print(f"wrote {_OUTPUT.value}" + (f" and {_SIDE_FILE.value}" if _SIDE_FILE.value else ""))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
