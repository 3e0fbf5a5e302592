"""N-BaIoT data: schema, layouts, validated CSV streaming, the prepared cache and federated client data.

The TensorFlow-dependent names (`FederatedData`, `open_federated_data`, `prepared_cache_dir`,
`Standardizer`, `log_transform`) are imported on first use, so that data preparation and the schema
load without TensorFlow.
"""

import importlib

from tff_fcl.data import schema
from tff_fcl.data.cache import FORMAT_VERSION
from tff_fcl.data.cache import read_manifest
from tff_fcl.data.csv_reader import read_chunks
from tff_fcl.data.errors import DataError
from tff_fcl.data.layouts import discover
from tff_fcl.data.layouts import discover_pool
from tff_fcl.data.layouts import KAGGLE_DEVICES
from tff_fcl.data.layouts import SourceFile
from tff_fcl.data.prepare import deal_pool
from tff_fcl.data.prepare import prepare_nbaiot
from tff_fcl.data.prepare import PrepareOptions
from tff_fcl.data.prepare import split_sizes

_LAZY = {
    "FederatedData": "tff_fcl.data.client_data",
    "open_federated_data": "tff_fcl.data.client_data",
    "prepared_cache_dir": "tff_fcl.data.client_data",
    "Standardizer": "tff_fcl.data.preprocessing",
    "log_transform": "tff_fcl.data.preprocessing",
}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
