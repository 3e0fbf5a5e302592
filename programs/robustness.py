"""Robustness grid: data condition x strength x method x seed, on the same data, splits and thresholds.

    python -m programs.robustness --output_dir=results/robustness --quick     # a few minutes
    python -m programs.robustness --output_dir=results/robustness             # the full grid

Conditions (strength = 0 is the clean run, shared by every curve):
  missing_rate     fraction of feature entries set missing (NaN), every client, train and test
  missing_family   fraction of devices without the HpHp statistic family
  noise            Gaussian noise scale (std units) on --noise_fraction of the devices
  quantity         Dirichlet alpha of the training-set sizes (smaller = more skewed)
  unseen           fraction of devices that never train (evaluated with their own calibration)
  scaled, gaussian, sign_flip   fraction f of malicious clients per round (update attacks)
  attack_data      fraction of clients training on their device's attack traffic
Methods: fcl (consistency weights, Eq. 6), fcl_uniform (w_i = 1), fcl_bounded (median-norm bounding
before Eq. 6), fcl_median / fcl_trimmed (coordinate-wise), and the FedAvg autoencoder (`fedavg_ae`)
with the plain weighted mean, `tff.learning.robust_aggregator(zeroing, clipping)`, median, trimmed mean.
Every FCL model reads NaN with a presence mask (missing_mask=True), also on clean data, so that the
curves compare one architecture. Each cell is one run directory under --output_dir/runs/ (a rerun
skips finished cells and resumes unfinished ones); the grid writes results.csv, results.md and one
PNG per condition (AUC and F1 against strength, mean and std over seeds).
"""

import collections
import csv
import dataclasses
import math
import os
import time

# TensorFlow is imported before absl's app.run: first imported inside app.run's main, TF 2.14's Keras
# builds Sequential/functional models from graph tensors and fails ("'SymbolicTensor' object has no
# attribute 'node'"); BUILD_NOTES.md, "Known TF 2.14 pitfalls".
import tensorflow  # pylint: disable=unused-import,g-bad-import-order
from absl import app
from absl import flags

from tff_fcl import runtime

CONDITIONS = ("missing_rate", "missing_family", "noise", "quantity", "unseen",
              "scaled", "gaussian", "sign_flip", "attack_data")
UPDATE_ATTACKS = ("scaled", "gaussian", "sign_flip")
METHODS = ("fcl", "fcl_uniform", "fcl_bounded", "fcl_median", "fcl_trimmed",
           "fedavg", "fedavg_robust", "fedavg_median", "fedavg_trimmed")
FULL_STRENGTHS = collections.OrderedDict(
    missing_rate=(0.2, 0.5), missing_family=(0.5,), noise=(1.0, 3.0), quantity=(0.3,), unseen=(0.2,),
    scaled=(0.1, 0.3), gaussian=(0.1, 0.3), sign_flip=(0.1, 0.3), attack_data=(0.1, 0.3))
QUICK_CONDITIONS = collections.OrderedDict(missing_rate=(0.5,), scaled=(0.3,))
QUICK_METHODS = ("fcl", "fcl_bounded", "fedavg")
CSV_COLUMNS = ("condition", "strength", "method", "seed", "auc", "f1", "recall", "precision", "fpr", "accuracy",
               "unseen_auc", "unseen_f1", "malicious_updates", "wall_time_s", "run_dir")

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the grid's runs, CSV, table and plots.")
_WORKERS = flags.DEFINE_list("workers", [], "HOST:PORT,... of `python -m programs.worker` processes; each "
                             "round's clients are split across them. Empty = in-process TFF.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/demo", "Prepared cache or raw N-BaIoT-layout folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "results/cache", "Where raw data folders are prepared.")
_QUICK = flags.DEFINE_bool("quick", False, f"Small grid: {dict(QUICK_CONDITIONS)} x {QUICK_METHODS}, 1 seed, "
                           "2 rounds.")
# The default grid is the one that fits 30 minutes on the 2-core demo set-up (44 runs, ~20 min);
# every other condition and method is one flag away.
DEFAULT_CONDITIONS = ("missing_rate", "scaled", "gaussian", "sign_flip", "attack_data")
DEFAULT_METHODS = ("fcl", "fcl_bounded", "fedavg", "fedavg_robust")
_CONDITIONS = flags.DEFINE_list("conditions", list(DEFAULT_CONDITIONS), f"Conditions, of {', '.join(CONDITIONS)}.")
_METHODS = flags.DEFINE_list("methods", list(DEFAULT_METHODS), f"Methods, of {', '.join(METHODS)}.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Seeds 0..N-1 per cell (model, sampling, conditions, attackers).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Federated rounds per run.")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", 0, "Clients per round; 0 = all.")
_SHARDS = flags.DEFINE_integer("shards_per_device", 1, "Split each device's training rows into K clients.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Local batch size.")
_CLIENT_LR = flags.DEFINE_float("client_learning_rate", 1e-3, "Client learning rate.")
_ATTACK_SCALE = flags.DEFINE_float("attack_scale", 10.0, "s of the scaled-update attack.")
_NOISE_FRACTION = flags.DEFINE_float("noise_fraction", 0.3, "Fraction of devices with noisy features.")
_TRIM = flags.DEFINE_float("trim_fraction", 0.2, "Trimmed mean: fraction cut at each end.")
_BOUND_MULTIPLIER = flags.DEFINE_float("bound_multiplier", 1.0, "fcl_bounded: bound = this x median norm.")
flags.mark_flag_as_required("output_dir")


@dataclasses.dataclass(frozen=True)
class Cell:
  condition: str   # "clean" or one of CONDITIONS
  strength: float
  method: str
  seed: int

  @property
  def name(self) -> str:
    return f"{self.condition}-{self.strength:g}-{self.method}-seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class GridSettings:
  """What every run of the grid shares."""
  data_dir: str
  rounds: int = 5
  clients_per_round: int = 0
  shards_per_device: int = 1
  batch_size: int = 128
  client_learning_rate: float = 1e-3
  attack_scale: float = 10.0
  noise_fraction: float = 0.3
  trim_fraction: float = 0.2
  bound_multiplier: float = 1.0


def grid_cells(strengths: dict, methods, seeds: int) -> list:
  """The clean cell plus every (condition, strength), for every method and seed."""
  for condition in strengths:
    if condition not in CONDITIONS:
      raise ValueError(f"Unknown condition {condition!r}; expected some of {', '.join(CONDITIONS)}.")
  for method in methods:
    if method not in METHODS:
      raise ValueError(f"Unknown method {method!r}; expected some of {', '.join(METHODS)}.")
  if seeds < 1:
    raise ValueError(f"seeds must be positive. Found {seeds}.")
  settings = [("clean", 0.0)] + [(c, float(s)) for c, values in strengths.items() for s in values]
  return [Cell(c, s, m, seed) for seed in range(seeds) for c, s in settings for m in methods]


def cell_data(cell: Cell, data, settings: GridSettings):
  """The data of a cell: conditions and poisoning applied (seeded by the cell's seed)."""
  from tff_fcl import conditions  # pylint: disable=g-import-not-at-top
  from tff_fcl import malicious  # pylint: disable=g-import-not-at-top
  c, s = cell.condition, cell.strength
  if c == "attack_data":
    return malicious.AttackTrafficAsBenign(data, s, seed=cell.seed)
  import numpy as np  # pylint: disable=g-import-not-at-top
  kwargs = dict(
      missing_rate=dict(missing_rate=s),
      missing_family=dict(missing_families=("HpHp",), missing_family_fraction=s),
      noise=dict(noise_scale=s, noise_fraction=settings.noise_fraction),
      quantity=dict(quantity_alpha=s),
      unseen=dict(unseen_devices=conditions.seeded_subset(list(data.devices), s,
                                                           np.random.default_rng([cell.seed, 6]))),
  ).get(c, {})
  return conditions.apply_conditions(data, conditions.DataConditions(seed=cell.seed, **kwargs))


_METHOD_AGGREGATORS = {"median": "median", "trimmed": "trimmed", "bounded": "median_norm_bound",
                       "robust": "tff_robust"}


def cell_aggregator(method: str, settings: GridSettings):
  """The weighted aggregation factory of a method (None = the method's own default)."""
  from tff_fcl import robust_aggregation  # pylint: disable=g-import-not-at-top
  rule = method.split("_", 1)[1] if "_" in method else ""
  return robust_aggregation.build_aggregator(_METHOD_AGGREGATORS.get(rule, "default"),
                                             trim_fraction=settings.trim_fraction,
                                             bound_multiplier=settings.bound_multiplier)


def _train(cell: Cell, run, data, settings: GridSettings, progress):
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl import malicious  # pylint: disable=g-import-not-at-top
  from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
  wrapper = None
  if cell.condition in UPDATE_ATTACKS:
    wrapper = malicious.malicious_client_work(cell.condition, cell.strength, scale=settings.attack_scale,
                                              seed=cell.seed)
  fcl_config = FCLConfig(client_learning_rate=settings.client_learning_rate,
                         weighting="uniform" if cell.method == "fcl_uniform" else "consistency")
  aggregator = cell_aggregator(cell.method, settings)
  if cell.method.startswith("fedavg"):
    from tff_fcl import baselines  # pylint: disable=g-import-not-at-top
    return baselines.run_algorithm("fedavg_ae", run, data, fcl_config=fcl_config, aggregator=aggregator,
                                   client_work_wrapper=wrapper, progress=progress)
  return experiment.run_fcl_training(run, fcl_config, data, aggregator=aggregator,
                                     client_work_wrapper=wrapper, progress=progress)


def _malicious_updates(run_dir: str) -> float:
  """Sum over rounds of the client_work/malicious_clients metric (NaN if the run has none)."""
  path = os.path.join(run_dir, "metrics.csv")
  if not os.path.exists(path):
    return math.nan
  with open(path) as f:
    values = [row.get("client_work/malicious_clients") for row in csv.DictReader(f)]
  return float(sum(float(v) for v in values)) if values and None not in values else math.nan


def _mean_over(per_client: dict, devices, metric: str) -> float:
  values = [per_client[d][metric] for d in devices if d in per_client and per_client[d][metric] is not None]
  return float(sum(values) / len(values)) if values else math.nan


def run_cell(cell: Cell, data, settings: GridSettings, output_dir: str, progress=print) -> dict:
  """Trains and evaluates one cell (or reads its finished eval.json); returns its CSV row."""
  from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
  from tff_fcl import report  # pylint: disable=g-import-not-at-top
  run_dir = os.path.join(output_dir, "runs", cell.name)
  cell_input = cell_data(cell, data, settings)
  start = time.time()
  result = report.finished_result(run_dir)
  if result is None:
    run = experiment.RunConfig(
        data_dir=settings.data_dir, output_dir=run_dir, rounds=settings.rounds,
        clients_per_round=settings.clients_per_round, batch_size=settings.batch_size,
        shards_per_device=settings.shards_per_device, missing_mask=True, seed=cell.seed)
    result = _train(cell, run, cell_input, settings, progress=lambda line: progress(f"  {cell.name}: {line}"))
  pooled = {k: (math.nan if v is None else float(v)) for k, v in result["pooled"].items()
            if k in ("auc", "f1", "recall", "precision", "fpr", "accuracy")}
  unseen = getattr(cell_input, "unseen_devices", ())
  return collections.OrderedDict(
      condition=cell.condition, strength=cell.strength, method=cell.method, seed=cell.seed, **pooled,
      unseen_auc=_mean_over(result["per_client"], unseen, "auc"),
      unseen_f1=_mean_over(result["per_client"], unseen, "f1"),
      malicious_updates=_malicious_updates(run_dir),
      wall_time_s=float(result.get("wall_time_s", time.time() - start)), run_dir=run_dir)


def _mean_std(values):
  values = [v for v in values if not math.isnan(v)]
  if not values:
    return math.nan, math.nan
  mean = sum(values) / len(values)
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def summarize(rows: list) -> collections.OrderedDict:
  """(condition, strength) -> method -> metric -> (mean, std) over seeds, for auc and f1."""
  grouped = collections.defaultdict(list)
  for row in rows:
    grouped[(row["condition"], row["strength"], row["method"])].append(row)
  table = collections.OrderedDict()
  for (condition, strength, method), group in grouped.items():
    table.setdefault((condition, strength), collections.OrderedDict())[method] = {
        metric: _mean_std([r[metric] for r in group]) for metric in ("auc", "f1")}
  return table


def results_markdown(rows: list, methods) -> str:
  table = summarize(rows)
  lines = ["# Robustness grid: pooled AUC / F1 (mean ± std over seeds)", "",
           "| condition | strength | " + " | ".join(methods) + " |", "|---|---:|" + "---|" * len(methods)]
  for (condition, strength), by_method in table.items():
    cells = []
    for method in methods:
      if method not in by_method:
        cells.append("")
        continue
      (auc, auc_std), (f1, f1_std) = by_method[method]["auc"], by_method[method]["f1"]
      cells.append(f"{auc:.3f}±{auc_std:.3f} / {f1:.3f}±{f1_std:.3f}")
    lines.append(f"| {condition} | {strength:g} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_conditions(rows: list, output_dir: str) -> list:
  """One PNG per condition: AUC and F1 against strength (0 = clean), one line per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  table = summarize(rows)
  paths = []
  for condition in [c for c in CONDITIONS if any(k[0] == c for k in table)]:
    strengths = sorted({0.0} | {s for c, s in table if c == condition})
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    methods = sorted({m for (c, _), by in table.items() if c in (condition, "clean") for m in by})
    for metric, axis in zip(("auc", "f1"), axes):
      for method in methods:
        points = [(s, table.get((condition if s else "clean", s), {}).get(method, {}).get(metric))
                  for s in strengths]
        points = [(s, p) for s, p in points if p is not None]
        if points:
          axis.errorbar([s for s, _ in points], [mean for _, (mean, _) in points],
                        yerr=[std for _, (_, std) in points], marker="o", capsize=3, label=method)
      axis.set_xlabel(f"{condition} strength (0 = clean)")
      axis.set_ylabel(f"pooled {metric.upper()}")
      axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Robustness: {condition}")
    figure.tight_layout()
    path = os.path.join(output_dir, f"{condition}.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    paths.append(path)
  return paths


def run_grid(data, cells: list, settings: GridSettings, output_dir: str, progress=print) -> list:
  """Runs every cell on `data` (a FederatedData); writes results.csv, results.md and the PNGs."""
  os.makedirs(output_dir, exist_ok=True)
  rows, start = [], time.time()
  for index, cell in enumerate(cells):
    rows.append(run_cell(cell, data, settings, output_dir, progress))
    elapsed = time.time() - start
    progress(f"cell {index + 1}/{len(cells)} {cell.name}: AUC {rows[-1]['auc']:.4f}, F1 {rows[-1]['f1']:.4f}; "
             f"elapsed {elapsed:.0f}s, eta {elapsed / (index + 1) * (len(cells) - index - 1):.0f}s")
  with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(results_markdown(rows, methods))
  plot_conditions(rows, output_dir)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_worker_cleanup()
  from tff_fcl import data as data_lib  # pylint: disable=g-import-not-at-top
  from tff_fcl import remote  # pylint: disable=g-import-not-at-top
  try:
    if _QUICK.value:
      strengths, methods, seeds, rounds = QUICK_CONDITIONS, QUICK_METHODS, 1, 2
    else:
      unknown = [c for c in _CONDITIONS.value if c not in FULL_STRENGTHS]
      if unknown:
        raise ValueError(f"--conditions: unknown {', '.join(unknown)}; expected some of {', '.join(CONDITIONS)}.")
      strengths = collections.OrderedDict((c, FULL_STRENGTHS[c]) for c in _CONDITIONS.value)
      methods, seeds, rounds = _METHODS.value, _SEEDS.value, _ROUNDS.value
    cells = grid_cells(strengths, methods, seeds)
    settings = GridSettings(
        data_dir=_DATA_DIR.value, rounds=rounds, clients_per_round=_CLIENTS_PER_ROUND.value,
        shards_per_device=_SHARDS.value, batch_size=_BATCH_SIZE.value, client_learning_rate=_CLIENT_LR.value,
        attack_scale=_ATTACK_SCALE.value, noise_fraction=_NOISE_FRACTION.value, trim_fraction=_TRIM.value,
        bound_multiplier=_BOUND_MULTIPLIER.value)
    data = data_lib.open_federated_data(settings.data_dir, cache_root=_CACHE_DIR.value,
                                        shards_per_device=settings.shards_per_device)
    with remote.remote_execution(_WORKERS.value):
      run_grid(data, cells, settings, _OUTPUT_DIR.value)
  except (ValueError, remote.WorkerFailedError) as error:
    raise SystemExit(f"error: {error}") from None
  print(f"robustness grid: {len(cells)} runs; results.csv, results.md and plots in {_OUTPUT_DIR.value}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
