"""`run_fcl_training`: train FCL on prepared client data, checkpoint every round, evaluate, write files.

Files written to `output_dir`:
  config.json               every setting of the run (a rerun must match it to resume)
  metrics.csv, tensorboard/ per-round metrics (tff.program CSV and TensorBoard release managers)
  program_state/            the learning state after each round (tff.program.FileProgramStateManager)
  eval.json, summary.md     detection metrics of the final global model (pooled, per client, per attack)
Rerunning the same command after an interruption resumes from the last saved round.
"""

import asyncio
import collections
import dataclasses
import json
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import evaluation
from tff_fcl import models
from tff_fcl import report
from tff_fcl import scoring
from tff_fcl.fcl import client_work as client_work_lib
from tff_fcl.fcl import process as process_lib
from tff_fcl.fcl.config import FCLConfig


class ConfigMismatchError(ValueError):
  """The output directory holds a run made with other settings."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Settings of one training run that are not FCL hyper-parameters."""
  data_dir: str
  output_dir: str
  rounds: int = 10
  clients_per_round: int = 0          # 0 = every client, every round
  batch_size: int = 128
  encoder: str = "mlp"
  embedding_dim: int = 32
  projection_dim: int = 16
  hidden_units: tuple = (64, 64)
  standardize: bool = True
  shards_per_device: int = 1
  score: str = "mahalanobis"
  target_fpr: float = 0.01
  threshold_rule: str = "quantile"
  seed: int = 0

  def __post_init__(self):
    if self.rounds < 0:
      raise ValueError(f"rounds must be non-negative. Found {self.rounds}.")
    if self.clients_per_round < 0:
      raise ValueError(f"clients_per_round must be non-negative. Found {self.clients_per_round}.")
    if self.batch_size < 2:
      raise ValueError(f"batch_size must be at least 2 (InfoNCE needs negatives). Found {self.batch_size}.")
    if self.shards_per_device < 1:
      raise ValueError(f"shards_per_device must be positive. Found {self.shards_per_device}.")


def sample_clients(num_clients: int, clients_per_round: int, seed: int, round_num: int) -> np.ndarray:
  """Indices of the round's clients: uniform without replacement, seeded by (seed, round), sorted."""
  if clients_per_round == 0 or clients_per_round >= num_clients:
    return np.arange(num_clients)
  rng = np.random.default_rng([seed, round_num])
  return np.sort(rng.choice(num_clients, clients_per_round, replace=False))


def _network_fn(run: RunConfig):
  return lambda: models.build_embedding_network(
      run.encoder, run.embedding_dim, run.projection_dim, run.hidden_units, run.standardize)


def _initial_weights(network_fn, seed: int):
  tf.keras.utils.set_random_seed(seed)
  weights = tff.learning.models.ModelWeights.from_model(network_fn())
  return tf.nest.map_structure(lambda v: v.numpy(), weights)


def _round_metrics(metrics, client_ids) -> collections.OrderedDict:
  """Flattens the process metrics; the per-client distance vector becomes one column per client."""
  work = dict(metrics["client_work"])
  distances, participated = work.pop("distance_per_client"), work.pop("participated")
  flat = collections.OrderedDict((f"client_work/{k}", float(v)) for k, v in work.items())
  flat["aggregator/weight_sum"] = float(metrics["aggregator"]["weight_sum"])
  flat["finalizer/update_non_finite"] = float(metrics["finalizer"]["update_non_finite"])
  for client_id, distance, took_part in zip(client_ids, distances, participated):
    flat[f"distance/{client_id}"] = float(distance) if took_part else float("nan")
  return flat


def _changed_settings(saved: dict, current: dict, prefix: str = "") -> list:
  """Dotted names of settings that differ; `run.rounds` may grow, so that a run can be extended."""
  changed = []
  for key in sorted(set(saved) | set(current)):
    name = f"{prefix}{key}"
    old, new = saved.get(key), current.get(key)
    if isinstance(old, dict) and isinstance(new, dict):
      changed += _changed_settings(old, new, name + ".")
    elif old != new and name != "run.rounds":
      changed.append(name)
  return changed


def _check_or_write_config(path: str, settings: dict) -> None:
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = _changed_settings(saved, settings)
    if changed:
      raise ConfigMismatchError(
          f"{os.path.dirname(path)} holds a run with other settings ({', '.join(changed)}); "
          "use a new --output_dir or the same flags to resume it.")
  with open(path, "w") as f:
    json.dump(settings, f, indent=2, sort_keys=True)


def run_fcl_training(run: RunConfig, fcl_config: FCLConfig, data, *, progress=print) -> dict:
  """Trains FCL on `data` (a `tff_fcl.data.FederatedData`) and writes the run's files.

  Returns the evaluation dictionary also written to eval.json.
  """
  start = time.time()
  os.makedirs(run.output_dir, exist_ok=True)
  settings = dict(algorithm="fcl", run=dataclasses.asdict(run), fcl=dataclasses.asdict(fcl_config))
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
  _check_or_write_config(os.path.join(run.output_dir, "config.json"), settings)

  client_ids = list(data.client_ids)
  network_fn = _network_fn(run)
  process = process_lib.build_fcl_process(
      network_fn, initial_weights=_initial_weights(network_fn, run.seed), num_clients=len(client_ids),
      config=fcl_config)
  state_manager = tff.program.FileProgramStateManager(os.path.join(run.output_dir, "program_state"),
                                                      keep_total=2, keep_first=False)
  release_managers = [
      tff.program.CSVFileReleaseManager(os.path.join(run.output_dir, "metrics.csv"),
                                        key_fieldname="round_num"),
      tff.program.TensorBoardReleaseManager(os.path.join(run.output_dir, "tensorboard")),
  ]
  state = process.initialize()
  loaded, done_rounds = asyncio.run(state_manager.load_latest(state))
  if loaded is not None:
    state = loaded
    progress(f"resuming from round {done_rounds} saved in {run.output_dir}/program_state")

  for round_num in range(done_rounds + 1, run.rounds + 1):
    round_start = time.time()
    chosen = sample_clients(len(client_ids), run.clients_per_round, run.seed, round_num)
    datasets = [
        client_work_lib.with_client_index(
            data.train_dataset(client_ids[i], batch_size=run.batch_size,
                               shuffle_seed=run.seed * 100003 + round_num), int(i))
        for i in chosen]
    output = process.next(state, datasets)
    state = output.state
    round_metrics = _round_metrics(output.metrics, client_ids)
    asyncio.run(state_manager.save(state, round_num))
    for manager in release_managers:
      asyncio.run(manager.release(round_metrics, key=round_num))
    elapsed = time.time() - start
    eta = (time.time() - round_start) * (run.rounds - round_num)
    progress(f"round {round_num}/{run.rounds}: loss {round_metrics['client_work/loss']:.4f} "
             f"(contrastive {round_metrics['client_work/contrastive_loss']:.4f}, "
             f"alignment {round_metrics['client_work/alignment_loss']:.4f}), "
             f"w mean {round_metrics['client_work/consistency_weight_mean']:.3f}, "
             f"{len(chosen)} clients, elapsed {elapsed:.1f}s, eta {eta:.0f}s")

  network = network_fn()
  process.get_model_weights(state).assign_weights_to(network)
  reference = np.asarray(state.client_work["reference"])
  scorers = [run.score] + [s for s in scoring.SCORERS if s != run.score]
  by_scorer = evaluation.evaluate_devices(network, reference, data, scorers=scorers,
                                          target_fpr=run.target_fpr, threshold_rule=run.threshold_rule,
                                          seed=run.seed)
  primary = by_scorer[run.score]
  result = collections.OrderedDict(
      algorithm="fcl", rounds=run.rounds, score=run.score, target_fpr=run.target_fpr,
      pooled=primary["pooled"], per_client=primary["per_client"], per_attack=primary["per_attack"],
      thresholds=primary["thresholds"],
      pooled_by_scorer=collections.OrderedDict((s, r["pooled"]) for s, r in by_scorer.items()),
      config=settings, wall_time_s=time.time() - start)
  report.write_results(run.output_dir, result)
  return result
