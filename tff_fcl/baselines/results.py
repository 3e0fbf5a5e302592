"""The result of one method's run, in the shape `experiment.run_fcl_training` returns, and its cost.

Every method's result has the keys of an FCL result (algorithm, rounds, score, target_fpr, pooled,
per_client, per_attack, thresholds, pooled_by_scorer, config, wall_time_s) plus

  federated                   True when raw traffic never leaves a client
  bytes_per_client_per_round  float32 bytes one participating client receives and sends in a round:
                                4 * (|theta| + |theta_nt|)          broadcast: all global model weights
                              + 4 * (|theta| + |extra| + 1)         upload: the model delta, any extra
                                                                    vector, and the aggregation weight
                              with |theta| trainable and |theta_nt| non-trainable parameters (FCL: g
                              is non-trainable and extra = m_i, p floats). Measurements (a few
                              scalars of loss statistics) are left out. NaN for non-federated methods.
"""

import collections
import time

import numpy as np

from tff_fcl import report

_FLOAT32_BYTES = 4


def parameter_count(variables) -> int:
  return int(sum(np.prod(v.shape) for v in variables))


def bytes_per_client_per_round(trainable: int, non_trainable: int, extra_upload: int = 0) -> int:
  """The formula of the module docstring, from parameter counts."""
  return _FLOAT32_BYTES * ((trainable + non_trainable) + (trainable + extra_upload + 1))


def finish(output_dir: str, *, algorithm: str, rounds: int, score: str, target_fpr: float, evaluation: dict,
           settings: dict, start_time: float, federated: bool, bytes_per_round: float,
           **extra) -> collections.OrderedDict:
  """Builds the result from a `detection.evaluate_detector` output, writes eval.json/summary.md."""
  result = collections.OrderedDict(
      algorithm=algorithm, rounds=rounds, score=score, target_fpr=target_fpr,
      pooled=evaluation["pooled"], per_client=evaluation["per_client"], per_attack=evaluation["per_attack"],
      thresholds=evaluation["thresholds"],
      pooled_by_scorer=collections.OrderedDict([(score, evaluation["pooled"])]))
  # The rest of the evaluation (windowed decisions, detection delay), as FCL's result has it.
  result.update((key, value) for key, value in evaluation.items() if key not in result)
  result.update(config=settings, wall_time_s=time.time() - start_time, federated=federated,
                bytes_per_client_per_round=float(bytes_per_round))
  result.update(extra)
  report.write_results(output_dir, result)
  return result
