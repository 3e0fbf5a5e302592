"""FCL, its ablations, and contrastive FedAvg: the same process with one part of the method removed.

    fcl                 the method (Eq. 1-6): InfoNCE + alignment, Eq. 2 standardisation, w_i = 1/(1+d_i)
    fcl_no_align        lambda_align = 0                      (Eq. 4 removed)
    fcl_no_standardize  no per-client standardisation         (Eq. 2 removed)
    fcl_uniform         w_i = 1                               (Eq. 5 consistency weights removed)
    fedavg_ctr          lambda_align = 0 and w_i = n_i: the FCL encoder and InfoNCE loss under plain
                        example-weighted FedAvg (what the paper's alignment and weighting add). The
                        finalizer still tracks g = normalize(mean m_i) as a statistic; it enters neither
                        the loss nor the weights, and only the `global` score reads it.
Each variant is `experiment.run_fcl_training` with `dataclasses.replace`d settings, so everything
else (data, sampling, evaluation, files) is shared with FCL.
"""

import dataclasses

from tff_fcl import experiment
from tff_fcl import report
from tff_fcl.baselines import results
from tff_fcl.fcl.config import FCLConfig

_SETTINGS = {
    "fcl": lambda run, config: (run, config),
    "fcl_no_align": lambda run, config: (run, dataclasses.replace(config, align_weight=0.0)),
    "fcl_no_standardize": lambda run, config: (dataclasses.replace(run, standardize=False), config),
    "fcl_uniform": lambda run, config: (run, dataclasses.replace(config, weighting="uniform")),
    "fedavg_ctr": lambda run, config: (run, dataclasses.replace(config, align_weight=0.0, weighting="examples")),
}
ALGORITHMS = tuple(_SETTINGS)


def variant_settings(algorithm: str, run: experiment.RunConfig, fcl_config: FCLConfig):
  """(RunConfig, FCLConfig) of `algorithm`, derived from the given FCL settings."""
  if algorithm not in _SETTINGS:
    raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}. Found {algorithm!r}.")
  return _SETTINGS[algorithm](run, fcl_config)


def train_fcl_variant(algorithm: str, run: experiment.RunConfig, fcl_config: FCLConfig, data, *,
                      aggregator=None, client_work_wrapper=None, progress=print) -> dict:
  """Trains and evaluates one variant with `experiment.run_fcl_training`; returns the result."""
  run, fcl_config = variant_settings(algorithm, run, fcl_config)
  result = experiment.run_fcl_training(run, fcl_config, data, aggregator=aggregator,
                                       client_work_wrapper=client_work_wrapper, progress=progress)
  network = experiment.network_fn_for(run)()
  result["algorithm"] = algorithm
  result["federated"] = True
  result["bytes_per_client_per_round"] = float(results.bytes_per_client_per_round(
      results.parameter_count(network.trainable_variables),
      results.parameter_count(network.non_trainable_variables), extra_upload=run.projection_dim))
  report.write_results(run.output_dir, result)
  return result
