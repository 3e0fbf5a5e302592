"""Writes a run's evaluation as eval.json and summary.md (tables generated from the same numbers)."""

import json
import math
import os

from tff_fcl import metrics as metrics_lib


def _cell(value) -> str:
  if isinstance(value, float):
    return "n/a" if math.isnan(value) else f"{value:.4f}"
  return str(value)


def metrics_table(rows: dict, first_column: str) -> str:
  """A Markdown table: one row per key of `rows` (each a metrics dict), METRIC_NAMES as columns."""
  header = f"| {first_column} | " + " | ".join(metrics_lib.METRIC_NAMES) + " |"
  rule = "|---|" + "---:|" * len(metrics_lib.METRIC_NAMES)
  lines = [header, rule]
  for name, values in rows.items():
    lines.append(f"| {name} | " + " | ".join(_cell(values[m]) for m in metrics_lib.METRIC_NAMES) + " |")
  return "\n".join(lines)


def summary_markdown(result: dict) -> str:
  parts = [
      f"# {result['algorithm']}: {result['rounds']} rounds, score `{result['score']}`, "
      f"thresholds at {result['target_fpr']:.2%} validation FPR",
      "",
      f"Wall time {result['wall_time_s']:.1f} s.",
      "",
      "## Pooled over all clients",
      "",
      metrics_table({"pooled": result["pooled"]}, "set"),
      "",
      "## Pooled, by anomaly score",
      "",
      metrics_table(result["pooled_by_scorer"], "score"),
      "",
      "`global` (1 - cos(u, g)) is reported for the paper's sake; InfoNCE spreads benign embeddings over "
      "the sphere, so it separates little (BUILD_NOTES.md, Scoring).",
      "",
      "## Per client",
      "",
      metrics_table(result["per_client"], "client"),
      "",
      "## Per attack kind (that kind's rows against all benign test rows)",
      "",
      metrics_table(result["per_attack"], "attack"),
      "",
  ]
  if "pooled_windowed" in result:
    parts += [
        "## Per packet and windowed decisions (window per client chosen on its validation rows)",
        "",
        metrics_table({"per packet": result["pooled"], "windowed": result["pooled_windowed"]}, "decision"),
        "",
        "The windowed AUC ranks rows by the window statistic (the share of flagged packets in the window for "
        "majority windows), so with w = 1 it is the AUC of the 0/1 flags, not of the scores.",
        "",
        "Windows: " + ", ".join(f"{client} {w}" for client, w in result["windows"].items()),
        "",
    ]
  if "privacy" in result:
    privacy = result["privacy"]
    parts += ["## Privacy", "",
              f"Client-level (epsilon, delta) = ({privacy['epsilon']:.3f}, {privacy['delta']:g}); "
              f"unit of privacy: {privacy['unit_of_privacy']}; {privacy['sampling_assumption']}.", ""]
  return "\n".join(parts)


def _json_safe(value):
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, float) and math.isnan(value):
    return None
  if hasattr(value, "item"):
    return _json_safe(value.item())
  return value


def finished_result(output_dir: str):
  """The eval.json of a run that finished in `output_dir` (parsed), or None; lets grids skip done runs."""
  path = os.path.join(output_dir, "eval.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_results(output_dir: str, result: dict) -> None:
  with open(os.path.join(output_dir, "eval.json"), "w") as f:
    json.dump(_json_safe(result), f, indent=2)
  with open(os.path.join(output_dir, "summary.md"), "w") as f:
    f.write(summary_markdown(result))
