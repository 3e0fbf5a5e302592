"""Packet captures -> the 115 N-BaIoT features (Kitsune's AfterImage statistics)."""

from tff_fcl.features.afterimage import AfterImage
from tff_fcl.features.afterimage import AfterImageConfig
from tff_fcl.features.capture import CaptureError
from tff_fcl.features.capture import read_records
from tff_fcl.features.capture import Record
from tff_fcl.features.demo_data import build_demo_data
from tff_fcl.features.demo_data import DemoConfig
from tff_fcl.features.demo_data import DemoDataError
from tff_fcl.features.extract import CsvGzWriter
from tff_fcl.features.extract import extract_features
from tff_fcl.features.extract import Extraction
from tff_fcl.features.extract import iter_feature_chunks
from tff_fcl.features.extract import order_by_time
from tff_fcl.features.extract import ParseReport
from tff_fcl.features.extract import read_packets
from tff_fcl.features.extract import SIDE_COLUMNS
from tff_fcl.features.extract import side_rows
from tff_fcl.features.extract import write_nbaiot_csv
from tff_fcl.features.packets import FragmentPorts
from tff_fcl.features.packets import Packet
from tff_fcl.features.packets import parse_frame
from tff_fcl.features.packets import parse_ip
from tff_fcl.features.packets import parse_mac
from tff_fcl.features.replay import device_address_at
from tff_fcl.features.replay import replay_as_device
