"""Training runs: a resumable federated round loop, and `run_fcl_training` built on it.

`train_rounds` runs any `tff.learning.templates.LearningProcess` for a number of rounds, with the
`tff.program` pieces of a federated program: the state after every round is saved with a
`FileProgramStateManager` (rerunning resumes after the last saved round, losing at most the round in
progress), and per-round metrics are released to CSV and TensorBoard release managers.

Files written to `output_dir` by `run_fcl_training`:
  config.json               every setting of the run (a rerun must match it to resume)
  metrics.csv, tensorboard/ per-round metrics, keyed by round_num
  program_state/            the learning state after each round (g included, in the model weights)
  eval.json, summary.md     detection metrics of the final global model (pooled, per client, per attack)
"""

import asyncio
import collections
import dataclasses
import json
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import evaluation
from tff_fcl import export
from tff_fcl import dp_aggregation
from tff_fcl import models
from tff_fcl import privacy
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
  rounds: int = 20
  clients_per_round: int = 0          # 0 = every client, every round
  batch_size: int = 128
  encoder: str = "mlp"
  embedding_dim: int = 32
  projection_dim: int = 16
  hidden_units: tuple = (64, 64)
  standardize: bool = True
  missing_mask: bool = False           # NaN = missing feature, given to the encoder as a mask
  shards_per_device: int = 1
  score: str = "knn"
  target_fpr: float = 0.01
  threshold_rule: str = "quantile"
  window_target_fpr: Optional[float] = None  # windowed decisions' validation FPR (None = target_fpr)
  seed: int = 0
  # Differential privacy (issue 6): on when dp_noise_multiplier is set (0 included).
  dp_noise_multiplier: Optional[float] = None
  dp_clip_norm: Optional[float] = None   # fixed clip norm C; None with dp_adaptive_clipping
  dp_adaptive_clipping: bool = False      # quantile-based C (TFF's geometric estimator)
  dp_delta: float = 1e-5
  # Settings applied around the model (data conditions, malicious clients, aggregator, workers),
  # recorded in config.json so that a results folder explains itself and a resume can check them.
  conditions: dict = dataclasses.field(default_factory=dict)

  @property
  def dp(self) -> bool:
    return self.dp_noise_multiplier is not None

  def __post_init__(self):
    if self.rounds < 0:
      raise ValueError(f"rounds must be non-negative. Found {self.rounds}.")
    if self.clients_per_round < 0:
      raise ValueError(f"clients_per_round must be non-negative. Found {self.clients_per_round}.")
    if self.batch_size < 2:
      raise ValueError(f"batch_size must be at least 2 (InfoNCE needs negatives). Found {self.batch_size}.")
    if self.shards_per_device < 1:
      raise ValueError(f"shards_per_device must be positive. Found {self.shards_per_device}.")
    if not 0 < self.target_fpr < 1:
      raise ValueError(f"target_fpr must be in (0, 1). Found {self.target_fpr}.")
    if self.score not in scoring.SCORERS:
      raise ValueError(f"score must be one of {', '.join(scoring.SCORERS)}. Found {self.score!r}.")
    if self.dp:
      if self.clients_per_round < 1:
        raise ValueError("DP training samples clients with q = clients_per_round / clients: "
                         "set --clients_per_round to the expected number of clients per round.")
      if self.dp_adaptive_clipping == (self.dp_clip_norm is not None):
        raise ValueError("DP training needs exactly one of --dp_clip_norm (fixed clipping) and "
                         "--dp_adaptive_clipping.")
    elif self.dp_clip_norm is not None or self.dp_adaptive_clipping:
      raise ValueError("--dp_clip_norm and --dp_adaptive_clipping need --dp_noise_multiplier.")


def sample_clients(num_clients: int, clients_per_round: int, seed: int, round_num: int) -> np.ndarray:
  """Indices of the round's clients: uniform without replacement, seeded by (seed, round), sorted."""
  if clients_per_round == 0 or clients_per_round >= num_clients:
    return np.arange(num_clients)
  rng = np.random.default_rng([seed, round_num])
  return np.sort(rng.choice(num_clients, clients_per_round, replace=False))


def flatten_metrics(metrics, prefix: str = "") -> collections.OrderedDict:
  """Nested process metrics -> OrderedDict('a/b/c' -> float); vectors get one column per entry."""
  flat = collections.OrderedDict()
  for key, value in metrics.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten_metrics(value, name + "/"))
    else:
      array = np.asarray(value, dtype=np.float64)
      if array.ndim == 0:
        flat[name] = float(array)
      else:
        for index, entry in enumerate(array.ravel()):
          flat[f"{name}/{index}"] = float(entry)
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


def check_or_write_config(output_dir: str, settings: dict) -> dict:
  """Writes config.json, or checks that a resumed run has the same settings; returns them as JSON."""
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
  path = os.path.join(output_dir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = _changed_settings(saved, settings)
    if changed:
      raise ConfigMismatchError(
          f"{output_dir} holds a run with other settings ({', '.join(changed)}); "
          "use a new --output_dir or the same flags to resume it.")
  with open(path, "w") as f:
    json.dump(settings, f, indent=2, sort_keys=True)
  return settings


_PROGRESS_METRICS = ("client_work/loss", "client_work/weight_mean", "privacy/epsilon_rdp")


def train_rounds(process: tff.learning.templates.LearningProcess, *, output_dir: str, rounds: int,
                 num_clients: int, clients_per_round: int, seed: int,
                 client_datasets_fn: Callable[[Sequence[int], int], list],
                 round_metrics_fn: Callable = flatten_metrics,
                 sampler: Optional[Callable[[int], np.ndarray]] = None,
                 extra_metrics_fn: Optional[Callable[[int], dict]] = None, progress=print):
  """Runs rounds 1..`rounds` of `process`, resuming after the last round saved in `output_dir`.

  Args:
    process: any learning process whose `next` takes a list of client datasets.
    output_dir: holds program_state/, metrics.csv and tensorboard/.
    rounds: the last round to run.
    num_clients, clients_per_round, seed: client sampling (`sample_clients`), unless `sampler`
      (round_num -> client indices, e.g. Poisson sampling for DP) is given.
    client_datasets_fn: (client indices, round_num) -> the datasets to pass to `process.next`.
    round_metrics_fn: process metrics -> flat OrderedDict(name -> float) to release.
    extra_metrics_fn: round_num -> more metrics to release with them (e.g. epsilon so far).
    progress: called with one line per round (elapsed time and ETA).

  Returns:
    The learning state after the last round.
  """
  start = time.time()
  state_manager = tff.program.FileProgramStateManager(os.path.join(output_dir, "program_state"),
                                                      keep_total=2, keep_first=False)
  release_managers = [
      tff.program.CSVFileReleaseManager(os.path.join(output_dir, "metrics.csv"), key_fieldname="round_num"),
      tff.program.TensorBoardReleaseManager(os.path.join(output_dir, "tensorboard")),
  ]
  state = process.initialize()
  loaded, done_rounds = asyncio.run(state_manager.load_latest(state))
  if loaded is not None:
    state = loaded
    progress(f"resuming after round {done_rounds} saved in {output_dir}/program_state")
  first_round = done_rounds + 1
  for round_num in range(first_round, rounds + 1):
    if sampler is None:
      chosen = sample_clients(num_clients, clients_per_round, seed, round_num)
    else:
      chosen = sampler(round_num)
    output = process.next(state, client_datasets_fn(chosen, round_num))
    state = output.state
    released = round_metrics_fn(output.metrics)
    if extra_metrics_fn is not None:
      released.update(extra_metrics_fn(round_num))
    asyncio.run(state_manager.save(state, round_num))
    for manager in release_managers:
      asyncio.run(manager.release(released, key=round_num))
    elapsed = time.time() - start
    eta = elapsed / (round_num - first_round + 1) * (rounds - round_num)
    shown = "".join(f"{name.split('/')[-1]} {released[name]:.4f}, " for name in _PROGRESS_METRICS
                    if name in released)
    progress(f"round {round_num}/{rounds}: {shown}{len(chosen)} clients, "
             f"elapsed {elapsed:.1f}s, eta {eta:.0f}s")
  return state


def _fcl_round_metrics(client_ids):
  """FCL metrics, flattened; the per-client distance vector becomes `distance/<client id>` columns."""
  def flatten(metrics):
    work = dict(metrics["client_work"])
    distances, participated = work.pop("distance_per_client"), work.pop("participated")
    flat = flatten_metrics(collections.OrderedDict(
        client_work=work, aggregator=metrics["aggregator"], finalizer=metrics["finalizer"]))
    for client_id, distance, took_part in zip(client_ids, distances, participated):
      flat[f"distance/{client_id}"] = float(distance) if took_part else float("nan")
    return flat
  return flatten


def network_fn_for(run: RunConfig):
  """A no-arg factory of the run's `EmbeddingNetwork`."""
  return lambda: models.build_embedding_network(
      run.encoder, run.embedding_dim, run.projection_dim, run.hidden_units, run.standardize,
      run.missing_mask)


def initial_weights(network_fn, seed: int) -> tff.learning.models.ModelWeights:
  """Round-0 global weights (numpy), seeded; g starts at 0."""
  tf.keras.utils.set_random_seed(seed)
  weights = tff.learning.models.ModelWeights.from_model(network_fn())
  return tf.nest.map_structure(lambda v: v.numpy(), weights)


# Released in DP runs: what is computed from the DP aggregate only (BUILD_NOTES.md, issue 6).
# Client-work metrics (losses, d_i, w_i, update norms) and the aggregator's clipped_count are
# computed from clients outside the mechanism and are not released.
_DP_RELEASED_PREFIXES = ("aggregator/clipping_norm", "aggregator/noise_stddev", "finalizer/")


class PrivateTraining:
  """The DP pieces of a run shared by FCL and DP-FedAvg: the Poisson sampler the accountant assumes,
  epsilon per round, which metrics may be released, and the `privacy` block of eval.json."""

  def __init__(self, run: RunConfig, num_clients: int):
    self.spec = privacy.PrivacySpec(noise_multiplier=run.dp_noise_multiplier,
                                    clients_per_round=run.clients_per_round, num_clients=num_clients,
                                    rounds=run.rounds, delta=run.dp_delta)
    self._num_clients, self._seed = num_clients, run.seed

  def sample(self, round_num: int) -> np.ndarray:
    return privacy.poisson_sample_clients(self._num_clients, self.spec.sampling_probability, self._seed,
                                          round_num)

  def epsilon_metrics(self, round_num: int) -> dict:
    return {"privacy/epsilon_rdp": privacy.compute_epsilon(
        self.spec.noise_multiplier, self.spec.sampling_probability, round_num, self.spec.delta, "rdp")}

  def released(self, flat: dict) -> collections.OrderedDict:
    return collections.OrderedDict((k, v) for k, v in flat.items() if k.startswith(_DP_RELEASED_PREFIXES))

  def summary(self) -> collections.OrderedDict:
    epsilons = {name: privacy.epsilon_of(self.spec, name) for name in privacy.ACCOUNTANTS}
    return collections.OrderedDict(
        epsilon=epsilons["pld"], epsilon_rdp=epsilons["rdp"], delta=self.spec.delta,
        noise_multiplier=self.spec.noise_multiplier, sampling_probability=self.spec.sampling_probability,
        rounds=self.spec.rounds, unit_of_privacy=privacy.UNIT_OF_PRIVACY,
        sampling_assumption=privacy.SAMPLING_ASSUMPTION)


def run_fcl_training(run: RunConfig, fcl_config: FCLConfig, data, *, aggregator=None,
                     client_work_wrapper=None, progress=print) -> dict:
  """Trains FCL on `data` (a `tff_fcl.data.FederatedData`), evaluates, and writes the run's files.

  With `run.dp`, the Eq. 6 aggregator is the DP one (`dp_aggregation.fcl_dp_aggregator`), clients
  are Poisson-sampled as the accountant assumes, only metrics computed from the DP aggregate are
  released, and eval.json gets a `privacy` block with epsilon. `aggregator` (another weighted
  factory, e.g. a robust one) and `client_work_wrapper` are passed to `build_fcl_process`.

  Returns the evaluation dictionary also written to eval.json.
  """
  start = time.time()
  os.makedirs(run.output_dir, exist_ok=True)
  settings = check_or_write_config(run.output_dir, collections.OrderedDict(
      algorithm="fcl", run=dataclasses.asdict(run), fcl=dataclasses.asdict(fcl_config)))
  client_ids = list(data.client_ids)
  private = None
  if run.dp:
    if aggregator is not None:
      raise ValueError("DP training uses its own aggregator; do not combine it with another one.")
    if fcl_config.weighting == "examples":
      raise ValueError("DP needs aggregation weights in [0, 1]: use --weighting=consistency or uniform.")
    private = PrivateTraining(run, len(client_ids))
    aggregator = dp_aggregation.fcl_dp_aggregator(
        noise_multiplier=run.dp_noise_multiplier, clients_per_round=run.clients_per_round,
        clip_norm=run.dp_clip_norm, noise_seed=run.seed)
  network_fn = network_fn_for(run)
  process = process_lib.build_fcl_process(
      network_fn, initial_weights=initial_weights(network_fn, run.seed), num_clients=len(client_ids),
      config=fcl_config, aggregator=aggregator, client_work_wrapper=client_work_wrapper)

  def client_datasets(chosen, round_num):
    return [client_work_lib.with_client_index(
        data.train_dataset(client_ids[i], batch_size=run.batch_size,
                           shuffle_seed=run.seed * 100003 + round_num), int(i)) for i in chosen]

  fcl_metrics = _fcl_round_metrics(client_ids)
  round_metrics = (lambda metrics: private.released(fcl_metrics(metrics))) if private else fcl_metrics
  state = train_rounds(process, output_dir=run.output_dir, rounds=run.rounds, num_clients=len(client_ids),
                       clients_per_round=run.clients_per_round, seed=run.seed,
                       client_datasets_fn=client_datasets, round_metrics_fn=round_metrics,
                       sampler=private.sample if private else None,
                       extra_metrics_fn=private.epsilon_metrics if private else None, progress=progress)
  network = network_fn()
  weights = process.get_model_weights(state)
  weights.assign_weights_to(network)
  reference = process_lib.reference_from_weights(weights, network)
  scorers = [run.score] + [s for s in scoring.SCORERS if s != run.score]
  by_scorer = evaluation.evaluate_devices(network, reference, data, scorers=scorers,
                                          target_fpr=run.target_fpr, threshold_rule=run.threshold_rule,
                                          window_target_fpr=run.window_target_fpr, seed=run.seed)
  primary = by_scorer[run.score]
  export.export_run(run.output_dir, network, reference, primary["calibrations"])
  result = collections.OrderedDict(
      algorithm="fcl", rounds=run.rounds, score=run.score, target_fpr=run.target_fpr,
      pooled=primary["pooled"], per_client=primary["per_client"], per_attack=primary["per_attack"],
      thresholds=primary["thresholds"],
      pooled_by_scorer=collections.OrderedDict((s, r["pooled"]) for s, r in by_scorer.items()),
      windows=primary["windows"], pooled_windowed=primary["pooled_windowed"],
      per_client_windowed=primary["per_client_windowed"], per_attack_windowed=primary["per_attack_windowed"],
      detection_delay=primary["detection_delay"], config=settings, wall_time_s=time.time() - start)
  if private is not None:
    result["privacy"] = private.summary()
  report.write_results(run.output_dir, result)
  return result
