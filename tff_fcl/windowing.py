"""Windowed decisions over a client's packets in arrival order, the window size, and detection delay.

One client's per-packet scores s_1 .. s_n [n] (in arrival order) and its threshold t give per-packet
flags f_i = [s_i > t]. A windowed decision at packet i looks at the last w packets
W_i = {max(1, i - w + 1) .. i} (fewer at the start of a stream):

* `majority`: F_i = [ mean_{j in W_i} f_j > 1/2 ]   (a strict majority of the window is flagged)
* `mean`:     F_i = [ mean_{j in W_i} s_j > t ]     (the window's mean score against the same threshold)

w = 1 gives the per-packet flags back. The window size is the smallest w in 1 .. max_window whose
windowed FPR on the client's benign validation rows (in order) is at most the target, as N-BaIoT chose
it on its optimisation set (Meidan et al., 2018); if no w meets the target, the one with the lowest
validation FPR (the smallest among equals) is used and `WindowChoice.met` is False.

Detection delay: an attack burst is a maximal run of consecutive attack rows of one kind in a client's
rows in order. Its delay is the number of the burst's packets that pass before the first flagged one
(0 when its first packet is flagged); a burst with no flagged packet is undetected.

Everything is plain numpy, one client at a time; `RollingWindow` carries the last w - 1 values across
chunks so that a stream scored chunk by chunk gets the same decisions as the whole array.
"""

import collections
import dataclasses
from typing import List, Optional, Sequence

import numpy as np

WINDOW_MODES = ("majority", "mean")


def _check_mode(mode: str) -> None:
  if mode not in WINDOW_MODES:
    raise ValueError(f"Unknown window mode {mode!r}; expected one of {', '.join(WINDOW_MODES)}.")


class RollingWindow:
  """Mean over the last `window` values of a stream that arrives in chunks."""

  def __init__(self, window: int):
    if window < 1:
      raise ValueError(f"window must be at least 1. Found {window}.")
    self.window = window
    self._tail = np.zeros(0)

  def update(self, values: np.ndarray) -> np.ndarray:
    """Window means [n] for the next n values of the stream."""
    values = np.asarray(values, dtype=np.float64)
    extended = np.concatenate([self._tail, values])
    sums = np.concatenate([[0.0], np.cumsum(extended)])
    end = np.arange(len(self._tail), len(extended)) + 1
    start = np.maximum(end - self.window, 0)
    if self.window > 1:
      self._tail = extended[-(self.window - 1):]
    return (sums[end] - sums[start]) / (end - start)


def window_statistic(scores: np.ndarray, threshold: float, window: int, mode: str,
                     stream: Optional[RollingWindow] = None) -> np.ndarray:
  """The windowed statistic [n]: the flagged share (`majority`) or the mean score (`mean`).

  Pass a `RollingWindow(window)` as `stream` to continue a stream across calls.
  """
  _check_mode(mode)
  stream = stream if stream is not None else RollingWindow(window)
  scores = np.asarray(scores, dtype=np.float64)
  return stream.update(scores > threshold if mode == "majority" else scores)


def windowed_flags(statistic: np.ndarray, threshold: float, mode: str) -> np.ndarray:
  """F [n] bool from `window_statistic`: share > 1/2 (`majority`) or mean > threshold (`mean`)."""
  _check_mode(mode)
  return np.asarray(statistic) > (0.5 if mode == "majority" else threshold)


def windowed_decisions(scores: np.ndarray, threshold: float, window: int, mode: str):
  """(statistic [n], flags [n] bool) for one client's scores in arrival order."""
  statistic = window_statistic(scores, threshold, window, mode)
  return statistic, windowed_flags(statistic, threshold, mode)


@dataclasses.dataclass(frozen=True)
class WindowChoice:
  window: int
  validation_fpr: float  # windowed FPR on the benign validation rows at this window
  met: bool  # validation_fpr <= target


def choose_window(validation_scores: np.ndarray, threshold: float, *, target_fpr: float, mode: str,
                  max_window: int = 100) -> WindowChoice:
  """The smallest w in 1 .. max_window whose windowed FPR on benign validation scores is <= target."""
  if not 0 < target_fpr < 1:
    raise ValueError(f"target_fpr must be in (0, 1). Found {target_fpr}.")
  if max_window < 1:
    raise ValueError(f"max_window must be at least 1. Found {max_window}.")
  scores = np.asarray(validation_scores, dtype=np.float64)
  if scores.size == 0:
    raise ValueError("Cannot choose a window from an empty validation set.")
  best = None
  for window in range(1, max_window + 1):
    fpr = float(np.mean(windowed_decisions(scores, threshold, window, mode)[1]))
    if fpr <= target_fpr:
      return WindowChoice(window, fpr, True)
    if best is None or fpr < best.validation_fpr:
      best = WindowChoice(window, fpr, False)
  return best


@dataclasses.dataclass(frozen=True)
class Burst:
  kind: int  # attack kind index
  start: int  # row of the burst's first packet
  length: int  # packets in the burst
  delay: Optional[int]  # packets before the first flagged one; None = undetected


def attack_bursts(labels: np.ndarray, kinds: np.ndarray, flags: np.ndarray) -> List[Burst]:
  """Maximal runs of consecutive attack rows (label 1) of one kind, with their detection delay."""
  labels, kinds, flags = np.asarray(labels), np.asarray(kinds), np.asarray(flags).astype(bool)
  if not labels.shape == kinds.shape == flags.shape or labels.ndim != 1:
    raise ValueError(f"labels, kinds and flags must be [n] of one shape. Found {labels.shape}, "
                     f"{kinds.shape}, {flags.shape}.")
  attack = labels == 1
  # A burst starts at an attack row whose predecessor is benign or of another kind.
  previous_same = np.concatenate([[False], attack[1:] & attack[:-1] & (kinds[1:] == kinds[:-1])])
  starts = np.flatnonzero(attack & ~previous_same)
  ends = np.append(starts[1:], len(labels))
  bursts = []
  for start, limit in zip(starts, ends):
    run = attack[start:limit] & (kinds[start:limit] == kinds[start])
    length = int(np.argmin(run)) if not run.all() else len(run)
    hits = np.flatnonzero(flags[start:start + length])
    bursts.append(Burst(int(kinds[start]), int(start), length, int(hits[0]) if hits.size else None))
  return bursts


def delay_summary(bursts: Sequence[Burst], kind_names: Sequence[str]) -> collections.OrderedDict:
  """Per attack kind name: bursts, detected, and mean / median / max delay (packets) of the detected
  ones (NaN when none was detected)."""
  by_kind = collections.OrderedDict()
  for kind in sorted({b.kind for b in bursts}):
    delays = [b.delay for b in bursts if b.kind == kind and b.delay is not None]
    total = sum(1 for b in bursts if b.kind == kind)
    by_kind[kind_names[kind]] = collections.OrderedDict(
        bursts=total, detected=len(delays),
        mean_delay=float(np.mean(delays)) if delays else float("nan"),
        median_delay=float(np.median(delays)) if delays else float("nan"),
        max_delay=float(np.max(delays)) if delays else float("nan"))
  return by_kind
