"""Every method of a comparison behind one call: `run_algorithm(name, run, data, fcl_config=...)`.

Federated: fcl and its ablations (fcl_no_align, fcl_no_standardize, fcl_uniform), fedavg_ctr,
fedavg_ae and fedprox_ae. Non-federated references: local_ae, central_ae and the supervised,
centralised, label-using mlp, cnn1d, gnn and gat. All are evaluated by `tff_fcl.detection`'s
per-device thresholds and metrics and return the same result keys (`results` module).
"""

from tff_fcl.baselines import centralised
from tff_fcl.baselines import fcl_variants
from tff_fcl.baselines import federated_ae
from tff_fcl.baselines.autoencoder import build_autoencoder
from tff_fcl.baselines.autoencoder import reconstruction_errors
from tff_fcl.baselines.split import HeldOutAttacks
from tff_fcl.baselines.supervised_models import build_supervised_model

FEDERATED = fcl_variants.ALGORITHMS + federated_ae.ALGORITHMS
NON_FEDERATED = centralised.ALGORITHMS
ALGORITHMS = FEDERATED + NON_FEDERATED


def run_algorithm(algorithm: str, run, data, *, fcl_config, aggregator=None, client_work_wrapper=None,
                  progress=print) -> dict:
  """Trains and evaluates `algorithm`; writes its files to run.output_dir and returns its result.

  Args:
    algorithm: one of ALGORITHMS.
    run: an `experiment.RunConfig`.
    data: a `tff_fcl.data.FederatedData` (or a `HeldOutAttacks` view of one).
    fcl_config: an `FCLConfig`; its local_epochs, client and server learning rates also drive the
      baselines (the non-federated ones train rounds x local_epochs epochs at the client rate).
    aggregator, client_work_wrapper: for federated methods, a weighted aggregation factory and a
      ClientWorkProcess wrapper (issue 7); refused for non-federated ones.
  """
  if algorithm not in ALGORITHMS:
    raise ValueError(f"Unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}.")
  if algorithm in fcl_variants.ALGORITHMS:
    return fcl_variants.train_fcl_variant(algorithm, run, fcl_config, data, aggregator=aggregator,
                                          client_work_wrapper=client_work_wrapper, progress=progress)
  if algorithm in federated_ae.ALGORITHMS:
    return federated_ae.train_federated_autoencoder(
        algorithm, run, data, local_epochs=fcl_config.local_epochs,
        client_learning_rate=fcl_config.client_learning_rate,
        server_learning_rate=fcl_config.server_learning_rate, aggregator=aggregator,
        client_work_wrapper=client_work_wrapper, progress=progress)
  if aggregator is not None or client_work_wrapper is not None:
    raise ValueError(f"{algorithm} is not federated: it takes no aggregator or client-work wrapper.")
  return centralised.train_centralised(algorithm, run, data, local_epochs=fcl_config.local_epochs,
                                       learning_rate=fcl_config.client_learning_rate, progress=progress)
