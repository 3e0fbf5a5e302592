"""Builds the bundled demo data set: real captures -> N-BaIoT layout, attacks replayed per device.

    python -m data_prep.build_demo_data --pcap_root ../shared/data/pcaps --output_dir data/demo

See `tff_fcl.features.demo_data` for the layout and the replay of attack captures.
"""

from absl import app
from absl import flags

from tff_fcl import runtime
from tff_fcl.features import capture
from tff_fcl.features import demo_data

_PCAP_ROOT = flags.DEFINE_string(
    "pcap_root", None, "Folder with benign/<source>/<Device>/ and attack/<family>/ captures.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "data/demo", "Where the data set is written.")
_DEVICES = flags.DEFINE_list("devices", [], "Device folder names; default: the --num_devices "
                             "devices with the most benign packets.")
_NUM_DEVICES = flags.DEFINE_integer("num_devices", demo_data.DemoConfig.num_devices,
                                    "How many devices when --devices is not given (0 = all).")
_MAX_BENIGN = flags.DEFINE_integer(
    "max_benign_packets", demo_data.DemoConfig.max_benign_packets,
    "Per device, whole benign captures (earliest first) up to this many packets; 0 = all.")
_MAX_ATTACK = flags.DEFINE_integer(
    "max_attack_packets", demo_data.DemoConfig.max_attack_packets,
    "Packets per attack capture and device; 0 = about as many attack rows as benign test rows.")
_ATTACK_VIEW = flags.DEFINE_enum(
    "attack_view", demo_data.DemoConfig.attack_view, demo_data.ATTACK_VIEWS,
    "device: attacks replayed as the device's own outgoing traffic; victim: unmodified captures.")
_TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", demo_data.DemoConfig.test_fraction,
    "The last fraction of each device's benign packets in which attack bursts are placed.")
_SEED = flags.DEFINE_integer("seed", demo_data.DemoConfig.seed, "Seed of the burst placement.")
flags.mark_flag_as_required("pcap_root")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  try:
    config = demo_data.DemoConfig(
        devices=tuple(_DEVICES.value), num_devices=_NUM_DEVICES.value,
        max_benign_packets=_MAX_BENIGN.value, max_attack_packets=_MAX_ATTACK.value,
        attack_view=_ATTACK_VIEW.value, test_fraction=_TEST_FRACTION.value, seed=_SEED.value)
    summaries = demo_data.build_demo_data(_PCAP_ROOT.value, _OUTPUT_DIR.value, config)
  except (demo_data.DemoDataError, capture.CaptureError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"{'device':<24}{'benign rows':>12}{'attack rows':>12}")
  for s in summaries:
    print(f"{s.device:<24}{s.benign_rows:>12}{s.attack_rows:>12}")
  print(f"wrote {_OUTPUT_DIR.value}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
