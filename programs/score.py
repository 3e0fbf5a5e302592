"""Scores new traffic of one client with an exported model: per-row score, flag and windowed flag.

    python -m programs.score --model results/demo_fcl --client D-LinkCam \
        --csv data/demo/D-LinkCam/benign_traffic.csv.gz --output scores.csv
    python -m programs.score --model results/demo_fcl --client D-LinkCam \
        --pcap capture.pcap.gz --device_mac b0:c5:54:25:5b:0e --output scores.csv
    python -m programs.score --model results/demo_fcl --client NewCam --calibrate_from benign.pcap \
        --device_mac 00:11:22:33:44:55 --pcap today.pcap --output scores.csv

--model is a training run's --output_dir (or its export/ folder). Only TensorFlow and the SavedModel are
loaded, not the federated runtime; input is streamed in chunks. A client without calibration is
calibrated from benign traffic with --calibrate_from, and its calibration file is added to the export.
"""

from absl import app
from absl import flags

from tff_fcl import runtime

_MODEL = flags.DEFINE_string("model", None, "Run directory (or its export/ folder) of a trained model.")
_CLIENT = flags.DEFINE_string("client", None, "Client (device) id whose calibration scores the rows.")
_PCAP = flags.DEFINE_string("pcap", None, "Capture to score (.pcap / .pcapng, optionally .gz).")
_CSV = flags.DEFINE_string("csv", None, "N-BaIoT feature CSV to score (.csv / .csv.gz).")
_DEVICE_MAC = flags.DEFINE_string("device_mac", None, "Keep only the capture's packets to / from this MAC.")
_OUTPUT = flags.DEFINE_string("output", None, "Output CSV: row, [timestamp,] score, flag, windowed_flag.")
_CALIBRATE_FROM = flags.DEFINE_string("calibrate_from", None,
                                      "Benign CSV or capture that calibrates a new client first.")
_SCORE = flags.DEFINE_enum("score", None, ("global", "mahalanobis", "knn"),
                           "Anomaly score; default: the run's primary score.")
flags.mark_flags_as_required(["model", "client", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  if (_PCAP.value is None) == (_CSV.value is None):
    raise SystemExit("error: give exactly one of --pcap and --csv")
  if _DEVICE_MAC.value is not None and _PCAP.value is None and _CALIBRATE_FROM.value is None:
    raise SystemExit("error: --device_mac applies to --pcap captures only")
  # Imported here so that --help and flag errors do not wait for TensorFlow.
  from tff_fcl import export  # pylint: disable=g-import-not-at-top
  try:
    summary = export.score_file(_MODEL.value, _CLIENT.value, _PCAP.value or _CSV.value, _OUTPUT.value,
                                device_mac=_DEVICE_MAC.value, scorer=_SCORE.value,
                                calibrate_from=_CALIBRATE_FROM.value)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  print("\n".join(summary.lines() + [f"written: {_OUTPUT.value}"]))


if __name__ == "__main__":
  app.run(main)
