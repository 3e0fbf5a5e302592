"""Comparisons on one data split: methods x seeds (results.csv/.md/.png) and one-parameter sweeps.

`run_comparison` trains every method with every seed on the same clients and the same
`baselines.HeldOutAttacks` view of the data (one test set for all methods: the attack rows the
supervised references train on are removed from every method's test split) and writes

  results.csv   one row per method x seed: the pooled metrics, rounds, wall time, bytes per client per round
  results.md    per method the mean ± sample std (ddof = 1) over seeds; non-federated references are
                marked; the paper's Table 1 follows in a separate block, never mixed with measured rows
  results.png   bar chart of the pooled metrics (mean, error bar = std over seeds)
  runs/<method>_seed<k>/   each run's own files (config.json, metrics.csv, eval.json, summary.md, ...)

`run_sweep` trains one method (FCL by default) over the values of one hyper-parameter and seeds and
writes sweep.csv and sweep.png (metric against value; mean line, the seeds' min-max band and points),
the paper's Fig. 2 (AUC against client learning rate) and Fig. 3 (F1 against temperature).
"""

import collections
import csv
import dataclasses
import math
import os
from typing import Sequence

import matplotlib
import numpy as np

from tff_fcl import baselines
from tff_fcl import metrics as metrics_lib

matplotlib.use("Agg")  # files only, no display
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

METRICS = metrics_lib.METRIC_NAMES
# Windowed decisions (tff_fcl/windowing.py), reported side by side with the per-packet ones.
WINDOWED = ("f1", "recall", "fpr")
WINDOWED_COLUMNS = tuple(f"{name}_windowed" for name in WINDOWED)
CSV_COLUMNS = (("method", "seed", "federated") + METRICS + WINDOWED_COLUMNS
               + ("rounds", "wall_time_s", "bytes_per_client_per_round"))
SUPERVISED = ("mlp", "cnn1d", "gnn", "gat")
# Table 1 of the paper (Acc, AUC, F1, Recall), as printed there; not measured by this code.
PAPER_TABLE_1 = collections.OrderedDict([
    ("MLP", (0.872, 0.901, 0.864, 0.852)),
    ("1DCNN", (0.889, 0.924, 0.881, 0.866)),
    ("GNN", (0.903, 0.938, 0.897, 0.884)),
    ("GAT", (0.917, 0.951, 0.911, 0.902)),
    ("Ours (FCL)", (0.948, 0.972, 0.944, 0.936)),
])


class ResultsFileError(ValueError):
  """A results.csv that cannot be read back."""


def method_kind(method: str) -> str:
  if method in SUPERVISED:
    return "non-federated reference (centralised, supervised, uses labels)"
  if method in baselines.NON_FEDERATED:
    return "non-federated reference"
  return "federated"


def result_row(method: str, seed: int, result: dict) -> collections.OrderedDict:
  """One results.csv row from a `baselines.run_algorithm` result."""
  row = collections.OrderedDict(method=method, seed=seed, federated=bool(result["federated"]))
  row.update((name, float(result["pooled"][name])) for name in METRICS)
  row.update((f"{name}_windowed", float(result["pooled_windowed"][name])) for name in WINDOWED)
  row.update(rounds=int(result["rounds"]), wall_time_s=float(result["wall_time_s"]),
             bytes_per_client_per_round=float(result["bytes_per_client_per_round"]))
  return row


def write_csv(path: str, rows: Sequence[dict], columns: Sequence[str] = CSV_COLUMNS) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: str) -> list:
  """Rows of a results.csv with numbers parsed; ResultsFileError names the file and the problem."""
  try:
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
      if missing:
        raise ResultsFileError(f"{path}: missing columns {', '.join(missing)}")
      rows = []
      for line, raw in enumerate(reader, start=2):
        try:
          row = collections.OrderedDict(method=raw["method"], seed=int(raw["seed"]),
                                        federated=raw["federated"] == "True")
          row.update((name, float(raw[name])) for name in CSV_COLUMNS[3:])
        except (TypeError, ValueError) as error:
          raise ResultsFileError(f"{path}: line {line}: {error}") from None
        rows.append(row)
  except OSError as error:
    raise ResultsFileError(f"{path}: {error.strerror}") from None
  if not rows:
    raise ResultsFileError(f"{path}: no result rows")
  return rows


def summarise(rows: Sequence[dict]) -> collections.OrderedDict:
  """method -> OrderedDict(column -> (mean, sample std or NaN for one seed)), in first-seen order."""
  by_method = collections.OrderedDict()
  for row in rows:
    by_method.setdefault(row["method"], []).append(row)
  summary = collections.OrderedDict()
  for method, method_rows in by_method.items():
    stats = collections.OrderedDict(seeds=len(method_rows), federated=method_rows[0]["federated"])
    for column in CSV_COLUMNS[3:]:
      values = np.array([r[column] for r in method_rows], np.float64)
      std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
      stats[column] = (float(np.mean(values)), std)
    summary[method] = stats
  return summary


def _mean_std(value, digits: int = 4) -> str:
  mean, std = value
  if math.isnan(mean):
    return "n/a"
  return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_markdown(rows: Sequence[dict], title: str = "Comparison") -> str:
  """results.md: measured table (mean ± std over seeds), then the paper's reported values apart."""
  summary = summarise(rows)
  header = ("| method | kind | seeds | " + " | ".join(METRICS)
            + " | rounds | wall time (s) | bytes/client/round |")
  lines = [f"# {title}", "",
           "Measured here: pooled over all clients, thresholds at each device's benign validation target FPR; "
           "mean ± sample std over seeds (one seed: the value).", "",
           header, "|---|---|---:|" + "---:|" * (len(METRICS) + 3)]
  for method, stats in summary.items():
    rounds = _mean_std(stats["rounds"], 0) if stats["federated"] else "n/a"
    kind = method_kind(method)
    name = method if stats["federated"] else f"{method} †"
    bytes_cell = (f"{stats['bytes_per_client_per_round'][0]:,.0f}" if stats["federated"] else "n/a")
    lines.append(f"| {name} | {kind} | {stats['seeds']} | "
                 + " | ".join(_mean_std(stats[m]) for m in METRICS)
                 + f" | {rounds} | {_mean_std(stats['wall_time_s'], 1)} | {bytes_cell} |")
  lines += ["", "## Per packet and windowed decisions", "",
            "Windowed: each device decides over its last w packets (majority vote), w the smallest window "
            "meeting the target FPR on its validation rows (with the default quantile thresholds, w = 1).", "",
            "| method | " + " | ".join(f"{n} | {n} windowed" for n in WINDOWED) + " |",
            "|---|" + "---:|" * (2 * len(WINDOWED))]
  for method, stats in summary.items():
    lines.append(f"| {method if stats['federated'] else method + ' †'} | "
                 + " | ".join(f"{_mean_std(stats[n])} | {_mean_std(stats[n + '_windowed'])}" for n in WINDOWED)
                 + " |")
  lines += ["",
            "† Non-federated reference: trained on data pooled at one place (raw traffic leaves the devices); "
            "mlp, cnn1d, gnn and gat are supervised and use attack labels. Not comparable as federated methods.",
            "bytes/client/round = 4 x (broadcast weights + uploaded delta, extra vector, weight) in float32 "
            "(tff_fcl/baselines/results.py).",
            "",
            "## Reported in the paper (not measured here)",
            "",
            "Table 1 of the paper as printed; its data, splits and thresholds are unknown, so these numbers "
            "are not comparable with the measured table above.",
            "",
            "| method (paper) | accuracy | auc | f1 | recall |",
            "|---|---:|---:|---:|---:|"]
  for method, values in PAPER_TABLE_1.items():
    lines.append(f"| {method} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
  return "\n".join(lines) + "\n"


def plot_results(rows: Sequence[dict], path: str, metrics: Sequence[str] = ("auc", "f1", "recall", "precision")) -> None:
  """Grouped bars: one group per method, one bar per metric, error bar = std over seeds."""
  summary = summarise(rows)
  methods = list(summary)
  width = 0.8 / len(metrics)
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.5))
  positions = np.arange(len(methods))
  for index, metric in enumerate(metrics):
    means = [summary[m][metric][0] for m in methods]
    stds = [0.0 if math.isnan(summary[m][metric][1]) else summary[m][metric][1] for m in methods]
    ax.bar(positions + (index - (len(metrics) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=metric)
  ax.set_xticks(positions)
  ax.set_xticklabels([m if summary[m]["federated"] else f"{m} †" for m in methods], rotation=45, ha="right")
  ax.set_ylim(0.0, 1.05)
  ax.set_ylabel("pooled metric (mean over seeds)")
  ax.set_title("Measured on one split; † = non-federated reference")
  ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(output_dir: str, rows: Sequence[dict], title: str = "Comparison") -> None:
  """results.csv, results.md and results.png in output_dir."""
  write_csv(os.path.join(output_dir, "results.csv"), rows)
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(results_markdown(rows, title))
  plot_results(rows, os.path.join(output_dir, "results.png"))


def run_comparison(methods: Sequence[str], seeds: Sequence[int], run, fcl_config, data, *, output_dir: str,
                   attack_fraction: float = 0.5, split_seed: int = 0, progress=print) -> list:
  """Trains methods x seeds on one `HeldOutAttacks` view of `data`; writes the report; returns the rows.

  `run` (an `experiment.RunConfig`) gives the shared settings; its output_dir and seed are replaced
  per run. results.csv is rewritten after every run, and a rerun resumes the federated runs from
  their checkpoints.
  """
  unknown = [m for m in methods if m not in baselines.ALGORITHMS]
  if unknown:
    raise ValueError(f"Unknown methods {', '.join(unknown)}; expected some of {', '.join(baselines.ALGORITHMS)}.")
  if not methods or not seeds:
    raise ValueError("A comparison needs at least one method and one seed.")
  os.makedirs(output_dir, exist_ok=True)
  view = baselines.HeldOutAttacks(data, attack_fraction, split_seed)
  rows = []
  for method in methods:
    for seed in seeds:
      progress(f"== {method}, seed {seed}")
      method_run = dataclasses.replace(run, seed=seed,
                                       output_dir=os.path.join(output_dir, "runs", f"{method}_seed{seed}"))
      result = baselines.run_algorithm(method, method_run, view, fcl_config=fcl_config, progress=progress)
      rows.append(result_row(method, seed, result))
      write_csv(os.path.join(output_dir, "results.csv"), rows)
  write_report(output_dir, rows)
  return rows


# Sweepable hyper-parameters: the FCLConfig or RunConfig field each one sets.
SWEEP_PARAMETERS = collections.OrderedDict([
    ("client_learning_rate", "fcl"), ("server_learning_rate", "fcl"), ("temperature", "fcl"),
    ("align_weight", "fcl"), ("reference_momentum", "fcl"), ("mask_rate", "fcl"), ("jitter_std", "fcl"),
    ("local_epochs", "fcl"), ("embedding_dim", "run"), ("batch_size", "run"),
])
SWEEP_COLUMNS = ("parameter", "value", "seed") + METRICS + ("wall_time_s",)
_INTEGER_PARAMETERS = ("local_epochs", "embedding_dim", "batch_size")


def run_sweep(parameter: str, values: Sequence[float], seeds: Sequence[int], run, fcl_config, data, *,
              output_dir: str, method: str = "fcl", metric: str = None, progress=print) -> list:
  """Trains `method` for each value of `parameter` and seed; writes sweep.csv and sweep.png; returns rows.

  `metric` is the one plotted (default: auc, f1 for temperature, as in the paper's Fig. 2 and 3).
  """
  if parameter not in SWEEP_PARAMETERS:
    raise ValueError(f"Unknown sweep parameter {parameter!r}; expected one of {', '.join(SWEEP_PARAMETERS)}.")
  metric = metric or ("f1" if parameter == "temperature" else "auc")
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {', '.join(METRICS)}. Found {metric!r}.")
  if not values or not seeds:
    raise ValueError("A sweep needs at least one value and one seed.")
  os.makedirs(output_dir, exist_ok=True)
  rows = []
  for value in values:
    value = int(value) if parameter in _INTEGER_PARAMETERS else float(value)
    for seed in seeds:
      progress(f"== {parameter} = {value}, seed {seed}")
      value_run = dataclasses.replace(run, seed=seed,
                                      output_dir=os.path.join(output_dir, "runs", f"{parameter}={value}_seed{seed}"))
      value_config = fcl_config
      if SWEEP_PARAMETERS[parameter] == "fcl":
        value_config = dataclasses.replace(fcl_config, **{parameter: value})
      else:
        value_run = dataclasses.replace(value_run, **{parameter: value})
      result = baselines.run_algorithm(method, value_run, data, fcl_config=value_config, progress=progress)
      row = collections.OrderedDict(parameter=parameter, value=value, seed=seed)
      row.update((name, float(result["pooled"][name])) for name in METRICS)
      row["wall_time_s"] = float(result["wall_time_s"])
      rows.append(row)
      write_csv(os.path.join(output_dir, "sweep.csv"), rows, SWEEP_COLUMNS)
  plot_sweep(rows, os.path.join(output_dir, "sweep.png"), metric=metric, method=method)
  return rows



def plot_sweep(rows: Sequence[dict], path: str, *, metric: str, method: str = "fcl") -> None:
  """metric against the parameter's value: mean over seeds (line), min-max band, each seed (points)."""
  parameter = rows[0]["parameter"]
  values = sorted({r["value"] for r in rows})
  per_value = [[r[metric] for r in rows if r["value"] == v] for v in values]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.fill_between(values, [min(s) for s in per_value], [max(s) for s in per_value], alpha=0.25,
                  label="min-max over seeds")
  ax.plot(values, [float(np.mean(s)) for s in per_value], marker="o", label="mean over seeds")
  ax.scatter([r["value"] for r in rows], [r[metric] for r in rows], s=12, color="black", label="one seed")
  positive = all(v > 0 for v in values)
  if positive and len(values) > 1 and max(values) / min(values) >= 100:
    ax.set_xscale("log")
  ax.set_xlabel(parameter)
  ax.set_ylabel(f"pooled {metric}")
  ax.set_title(f"{method}: {metric} against {parameter} ({len({r['seed'] for r in rows})} seeds)")
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
