"""Anomaly scores in the learned embedding space, per-client thresholds and evaluation.

Everything here is one client's local computation on its own rows; nothing is pooled across clients
except the final metrics. Embeddings come in pairs (z~ [N, d], u [N, p]) from `EmbeddingNetwork`,
with the Eq. 2 moments fixed to the client's own benign training moments. `global` uses the unit
vectors u; `mahalanobis` and `knn` use z~, which keeps the magnitude that the unit sphere discards
(an attack row far outside the client's benign moments has a large z~ but may project anywhere):

* `global`:      s(x) = 1 - cos(u(x), g)
* `mahalanobis`: s(x) = (z~ - mu)^T S^-1 (z~ - mu), mu and S the mean and covariance of the client's
                 benign training z~, S shrunk toward its diagonal:
                 S = (1 - a) Cov + a diag(Cov) + 1e-6 I, a = `shrinkage`
* `knn`:         mean Euclidean distance to the k nearest benign training embeddings (a seeded
                 subsample of at most `knn_reference_rows` rows).

Thresholds come from the client's benign validation scores: `quantile` takes the (1 - target_fpr)
quantile (the validation FPR is then at most target_fpr), `mean_std` is N-BaIoT's rule mean + std.
A row is flagged when score > threshold. Each scorer also gets its decision window
(`tff_fcl.windowing.choose_window`) on the same validation scores.

`ClientCalibration` is everything one client needs to score its own rows, and nothing of another
client: its preprocessing statistics, its Eq. 2 moments, its benign reference, and per scorer its
threshold and window. `fit_calibration` builds it from the client's own embeddings; it is exported as
one small file per client (`tff_fcl.export`).
"""

import dataclasses
from typing import Dict, Optional, Tuple

import numba
import numpy as np

from tff_fcl import windowing

SCORERS = ("global", "mahalanobis", "knn")
THRESHOLD_RULES = ("quantile", "mean_std")


@dataclasses.dataclass
class BenignReference:
  """What a client keeps of its own benign training embeddings to score new rows."""
  mean: np.ndarray          # [p]
  precision: np.ndarray     # [p, p], inverse of the shrunk covariance
  knn_rows: np.ndarray      # [R, p]


def fit_reference(train_embeddings: np.ndarray, *, shrinkage: float = 0.1, knn_reference_rows: int = 2000,
                  seed: int = 0) -> BenignReference:
  if train_embeddings.ndim != 2 or train_embeddings.shape[0] < 2:
    raise ValueError(f"Need at least 2 benign training embeddings [N, p]. Found {train_embeddings.shape}.")
  embeddings = train_embeddings.astype(np.float64)
  mean = embeddings.mean(axis=0)
  covariance = np.cov(embeddings, rowvar=False)
  shrunk = (1 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
  shrunk += 1e-6 * np.eye(len(mean))
  rng = np.random.default_rng(seed)
  if len(embeddings) > knn_reference_rows:
    embeddings = embeddings[np.sort(rng.choice(len(embeddings), knn_reference_rows, replace=False))]
  return BenignReference(mean=mean, precision=np.linalg.inv(shrunk), knn_rows=embeddings)


def anomaly_scores(embeddings, scorer: str, *, reference_vector: np.ndarray,
                   benign: Optional[BenignReference] = None, k: int = 5, chunk_rows: int = 4096) -> np.ndarray:
  """Scores [N] for embeddings (z~ [N, d], u [N, p]) (higher = more anomalous).

  `benign` must come from `fit_reference` on the client's benign training z~.
  """
  if scorer not in SCORERS:
    raise ValueError(f"Unknown scorer {scorer!r}; expected one of {', '.join(SCORERS)}.")
  z_tilde, u = embeddings
  if scorer == "global":
    u = np.asarray(u, dtype=np.float64)
    g = np.asarray(reference_vector, dtype=np.float64)
    norms = np.linalg.norm(u, axis=1) * max(np.linalg.norm(g), 1e-12)
    return 1.0 - (u @ g) / np.maximum(norms, 1e-12)
  embeddings = np.asarray(z_tilde, dtype=np.float64)
  if benign is None:
    raise ValueError(f"The {scorer!r} scorer needs the client's benign reference (fit_reference).")
  if scorer == "mahalanobis":
    centred = embeddings - benign.mean
    return np.einsum("ij,jk,ik->i", centred, benign.precision, centred)
  scores = np.empty(len(embeddings))
  k = min(k, len(benign.knn_rows))
  reference_norms = np.sum(benign.knn_rows ** 2, axis=1)
  for start in range(0, len(embeddings), chunk_rows):
    block = embeddings[start:start + chunk_rows]
    scores[start:start + chunk_rows] = _mean_k_smallest_distances(
        np.sum(block ** 2, axis=1), reference_norms, block @ benign.knn_rows.T, k)
  return scores


@numba.njit(cache=True)
def _mean_k_smallest_distances(row_norms, reference_norms, dots, k):
  """Per row i: mean of the k smallest sqrt(max(|x_i|^2 + |r_j|^2 - 2 x_i.r_j, 0)) over j, [n]."""
  result = np.empty(len(row_norms))
  best = np.empty(k)
  for i in range(len(row_norms)):
    count = 0
    for j in range(len(reference_norms)):
      squared = max(row_norms[i] + reference_norms[j] - 2.0 * dots[i, j], 0.0)
      if count < k or squared < best[count - 1]:
        position = count if count < k else k - 1
        while position > 0 and best[position - 1] > squared:  # insertion into the sorted k best
          best[position] = best[position - 1]
          position -= 1
        best[position] = squared
        count = min(count + 1, k)
    total = 0.0
    for m in range(k):
      total += np.sqrt(best[m])
    result[i] = total / k
  return result


def fit_threshold(validation_scores: np.ndarray, *, target_fpr: float = 0.01, rule: str = "quantile") -> float:
  """Threshold on a client's benign validation scores; a row is flagged when score > threshold."""
  if rule not in THRESHOLD_RULES:
    raise ValueError(f"Unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}.")
  if not 0 < target_fpr < 1:
    raise ValueError(f"target_fpr must be in (0, 1). Found {target_fpr}.")
  scores = np.asarray(validation_scores, dtype=np.float64)
  if scores.size == 0:
    raise ValueError("Cannot set a threshold from an empty validation set.")
  if not np.isfinite(scores).all():
    raise ValueError(f"Cannot set a threshold from non-finite validation scores "
                     f"({int(np.sum(~np.isfinite(scores)))} of {scores.size}).")
  if rule == "mean_std":
    return float(scores.mean() + scores.std())
  # The smallest threshold t with #(scores > t) <= floor(target_fpr * n): the k-th largest score.
  allowed = int(np.floor(target_fpr * scores.size))
  ordered = np.sort(scores)[::-1]
  return float(ordered[min(allowed, scores.size - 1)])


def calibrated_scores(scores: np.ndarray, threshold: float, validation_scores: np.ndarray) -> np.ndarray:
  """Scores made comparable across clients: (s - t) / spread of the client's validation scores.

  Used only for the pooled AUC; flags always use each client's own threshold (s > t <=> calibrated > 0).
  """
  spread = np.std(validation_scores)
  return (np.asarray(scores, dtype=np.float64) - threshold) / (spread if spread > 0 else 1.0)



@dataclasses.dataclass(frozen=True)
class ScoringSettings:
  """How a client's thresholds and windows are set; `scorers[0]` is the primary scorer."""
  scorers: Tuple[str, ...] = SCORERS
  target_fpr: float = 0.01
  threshold_rule: str = "quantile"
  window_mode: str = "majority"
  window_target_fpr: Optional[float] = None  # None = target_fpr
  max_window: int = 100
  shrinkage: float = 0.1
  k: int = 5
  knn_reference_rows: int = 2000
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, "scorers", tuple(self.scorers))
    unknown = [s for s in self.scorers if s not in SCORERS]
    if unknown or not self.scorers:
      raise ValueError(f"scorers must be a non-empty subset of {', '.join(SCORERS)}. Found {self.scorers}.")
    if self.threshold_rule not in THRESHOLD_RULES:
      raise ValueError(f"threshold_rule must be one of {', '.join(THRESHOLD_RULES)}. "
                       f"Found {self.threshold_rule!r}.")
    if self.window_mode not in windowing.WINDOW_MODES:
      raise ValueError(f"window_mode must be one of {', '.join(windowing.WINDOW_MODES)}. "
                       f"Found {self.window_mode!r}.")
    for name in ("target_fpr", "window_target_fpr"):
      value = getattr(self, name)
      if value is not None and not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1). Found {value}.")
    if self.max_window < 1 or self.k < 1 or self.knn_reference_rows < 1:
      raise ValueError(f"max_window, k and knn_reference_rows must be positive. Found "
                       f"{self.max_window}, {self.k}, {self.knn_reference_rows}.")

  @property
  def window_fpr(self) -> float:
    return self.window_target_fpr if self.window_target_fpr is not None else self.target_fpr


@dataclasses.dataclass
class ClientCalibration:
  """One client's scoring state, fitted on its own benign rows only.

  `preprocessing` is (mean [115], inv_std [115]) of the client's log-transformed training rows
  (`tff_fcl.data.preprocessing.Standardizer`), None when the rows were given already preprocessed.
  """
  client: str
  moments: Tuple[np.ndarray, np.ndarray]  # Eq. 2 (mean [d], variance [d]) of f(x) on training rows
  benign: BenignReference
  thresholds: Dict[str, float]
  windows: Dict[str, windowing.WindowChoice]
  settings: ScoringSettings
  preprocessing: Optional[Tuple[np.ndarray, np.ndarray]] = None

  def scores(self, embeddings, scorer: str, reference_vector: np.ndarray) -> np.ndarray:
    """Anomaly scores [N] of this client's embeddings (z~ [N, d], u [N, p])."""
    if scorer not in self.thresholds:
      raise ValueError(f"Client {self.client!r} is not calibrated for scorer {scorer!r}; "
                       f"it has {', '.join(self.thresholds)}.")
    return anomaly_scores(embeddings, scorer, reference_vector=reference_vector, benign=self.benign,
                          k=self.settings.k)


def fit_calibration(client: str, moments, train_embeddings, validation_embeddings, *,
                    reference_vector: np.ndarray, settings: ScoringSettings,
                    preprocessing=None) -> ClientCalibration:
  """Benign reference from training z~, then per scorer a threshold and a window from validation.

  Args:
    client: the client's id.
    moments: the Eq. 2 (mean [d], variance [d]) the embeddings were computed with.
    train_embeddings, validation_embeddings: (z~ [N, d], u [N, p]) of the client's benign training and
      validation rows (validation in arrival order: the window is chosen on it).
    reference_vector: g [p].
    settings: `ScoringSettings`.
    preprocessing: (mean [115], inv_std [115]) of the client's input preprocessing, or None.
  """
  benign = fit_reference(train_embeddings[0], shrinkage=settings.shrinkage,
                         knn_reference_rows=settings.knn_reference_rows, seed=settings.seed)
  calibration = ClientCalibration(
      client=client, moments=tuple(np.asarray(m, np.float32) for m in moments), benign=benign,
      thresholds={}, windows={}, settings=settings, preprocessing=preprocessing)
  for scorer in settings.scorers:
    validation = anomaly_scores(validation_embeddings, scorer, reference_vector=reference_vector,
                                benign=benign, k=settings.k)
    threshold = fit_threshold(validation, target_fpr=settings.target_fpr, rule=settings.threshold_rule)
    calibration.thresholds[scorer] = threshold
    calibration.windows[scorer] = windowing.choose_window(
        validation, threshold, target_fpr=settings.window_fpr, mode=settings.window_mode,
        max_window=settings.max_window)
  return calibration
