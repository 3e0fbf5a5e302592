"""Utility against privacy: FCL and DP-FedAvg trained at several noise multipliers (issue 6).

For every method in `methods` ("fcl": FCL with the DP consistency-weighted aggregator; "dp_fedavg_ae":
the N-BaIoT autoencoder with TFF's DP-FedAvg), every noise multiplier z and every seed, one DP run of
`baselines.run_algorithm` on the same data (devices sharded so that there are many clients), with
Poisson client sampling at q = clients_per_round / clients and a fixed clip norm. A run without DP
(epsilon = inf) is added per method and seed as the reference. Writes to `output_dir`:

  results.csv   method, noise_multiplier, epsilon (PLD), epsilon_rdp, delta, seed, auc, f1, recall, fpr,
                clients, clients_per_round, rounds, wall_time_s
  results.md    the same, mean over seeds, with the unit of privacy and the sampling assumption
  utility_vs_epsilon.png   AUC and F1 against epsilon (log scale), one line per method
  runs/<method>_z<z>_seed<s>/   each run's own files (rerunning skips finished runs)
"""

import collections
import csv
import dataclasses
import math
import os
from typing import Sequence

import numpy as np

from tff_fcl import experiment
from tff_fcl import privacy
from tff_fcl import report

METHODS = ("fcl", "dp_fedavg_ae")
_ALGORITHM = {"fcl": "fcl", "dp_fedavg_ae": "fedavg_ae"}
COLUMNS = ("method", "noise_multiplier", "epsilon", "epsilon_rdp", "delta", "seed", "auc", "f1", "recall",
           "fpr", "clients", "clients_per_round", "rounds", "wall_time_s")


@dataclasses.dataclass(frozen=True)
class SweepSettings:
  noise_multipliers: tuple = (0.5, 1.0, 2.0)
  methods: tuple = METHODS
  seeds: tuple = (0,)
  rounds: int = 30
  clients_per_round: int = 10
  clip_norm: float = 1.0
  delta: float = 1e-5

  def __post_init__(self):
    unknown = [m for m in self.methods if m not in METHODS]
    if unknown:
      raise ValueError(f"Unknown sweep method(s) {', '.join(unknown)}; expected some of {', '.join(METHODS)}.")
    if any(not z >= 0 for z in self.noise_multipliers):
      raise ValueError(f"noise multipliers must be non-negative. Found {list(self.noise_multipliers)}.")


def _run_one(method, z, seed, data, base_run, fcl_config, settings, output_dir, progress):
  from tff_fcl import baselines  # pylint: disable=g-import-not-at-top
  name = f"{method}_nodp_seed{seed}" if z is None else f"{method}_z{z:g}_seed{seed}"
  run_dir = os.path.join(output_dir, "runs", name)
  finished = report.finished_result(run_dir)
  if finished is not None:
    return finished
  dp = {} if z is None else dict(dp_noise_multiplier=z, dp_clip_norm=settings.clip_norm, dp_delta=settings.delta)
  run = dataclasses.replace(base_run, output_dir=run_dir, seed=seed, rounds=settings.rounds,
                            clients_per_round=settings.clients_per_round, **dp)
  progress(f"{name}: training")
  return baselines.run_algorithm(_ALGORITHM[method], run, data, fcl_config=fcl_config, progress=lambda _: None)


def run_privacy_sweep(data, base_run: experiment.RunConfig, fcl_config, settings: SweepSettings,
                      output_dir: str, *, progress=print) -> list:
  """Runs the sweep on `data` (a FederatedData with many clients); returns the results.csv rows."""
  os.makedirs(output_dir, exist_ok=True)
  num_clients = len(data.client_ids)
  rows = []
  for method in settings.methods:
    for seed in settings.seeds:
      for z in (None,) + tuple(settings.noise_multipliers):
        result = _run_one(method, z, seed, data, base_run, fcl_config, settings, output_dir, progress)
        pooled, private = result["pooled"], result.get("privacy")
        rows.append(collections.OrderedDict(
            method=method, noise_multiplier="none" if z is None else z,
            epsilon=private["epsilon"] if private else math.inf,
            epsilon_rdp=private["epsilon_rdp"] if private else math.inf, delta=settings.delta, seed=seed,
            auc=pooled["auc"], f1=pooled["f1"], recall=pooled["recall"], fpr=pooled["fpr"],
            clients=num_clients, clients_per_round=settings.clients_per_round, rounds=settings.rounds,
            wall_time_s=result["wall_time_s"]))
        progress(f"  {method} z={rows[-1]['noise_multiplier']}: epsilon {rows[-1]['epsilon']:.3g}, "
                 f"AUC {pooled['auc']:.4f}, F1 {pooled['f1']:.4f}")
  _write(rows, settings, output_dir)
  return rows


def _mean_rows(rows):
  grouped = collections.OrderedDict()
  for row in rows:
    grouped.setdefault((row["method"], str(row["noise_multiplier"])), []).append(row)
  return [(method, z, group[0]["epsilon"], *(float(np.mean([r[k] for r in group])) for k in ("auc", "f1", "recall", "fpr")))
          for (method, z), group in grouped.items()]


def _write(rows, settings: SweepSettings, output_dir: str) -> None:
  with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  lines = [
      f"# Utility against privacy: {rows[0]['clients']} clients, {settings.clients_per_round} expected per round, "
      f"{settings.rounds} rounds, clip norm {settings.clip_norm:g}, delta {settings.delta:g}",
      "",
      f"Unit of privacy: {privacy.UNIT_OF_PRIVACY}. Sampling: {privacy.SAMPLING_ASSUMPTION}. "
      "epsilon by the PLD accountant; inf = trained without DP. Metrics: mean over seeds.",
      "",
      "| method | noise multiplier | epsilon | AUC | F1 | recall | FPR |",
      "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for method, z, epsilon, auc, f1, recall, fpr in _mean_rows(rows):
    lines.append(f"| {method} | {z} | {epsilon:.3g} | {auc:.4f} | {f1:.4f} | {recall:.4f} | {fpr:.4f} |")
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _plot(rows, os.path.join(output_dir, "utility_vs_epsilon.png"))


def _plot(rows: Sequence[dict], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(1, 2, figsize=(10, 4))
  means = _mean_rows(rows)
  for metric_index, (axis, metric) in enumerate(zip(axes, ("AUC", "F1"))):
    for method in dict.fromkeys(m[0] for m in means):
      points = sorted((e, m[3 + metric_index]) for m in means if m[0] == method for e in [m[2]] if math.isfinite(e))
      reference = [m[3 + metric_index] for m in means if m[0] == method and not math.isfinite(m[2])]
      line = axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)[0]
      if reference:
        axis.axhline(reference[0], color=line.get_color(), linestyle="--", linewidth=1,
                     label=f"{method}, no DP")
    axis.set_xscale("log")
    axis.set_xlabel("epsilon (client-level, PLD)")
    axis.set_ylabel(metric)
    axis.grid(True, alpha=0.3)
  axes[0].legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
