"""Federated contrastive learning (FCL): losses, local training, client work, finalizer and the process."""
from tff_fcl.fcl.client_work import ELEMENT_SPEC
from tff_fcl.fcl.client_work import build_fcl_client_work
from tff_fcl.fcl.client_work import client_update_type
from tff_fcl.fcl.client_work import with_client_index
from tff_fcl.fcl.config import FCLConfig
from tff_fcl.fcl.config import WEIGHTINGS
from tff_fcl.fcl.finalizer import build_fcl_finalizer
from tff_fcl.fcl.process import build_fcl_process
from tff_fcl.fcl.process import model_weights_type
from tff_fcl.fcl.process import reference_from_weights
