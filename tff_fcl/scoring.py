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
"""

import collections
import dataclasses
from typing import Optional

import numpy as np

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
  for start in range(0, len(embeddings), chunk_rows):
    block = embeddings[start:start + chunk_rows]
    squared = (np.sum(block ** 2, axis=1)[:, None] - 2 * block @ benign.knn_rows.T
               + np.sum(benign.knn_rows ** 2, axis=1)[None, :])
    nearest = np.partition(np.maximum(squared, 0), k - 1, axis=1)[:, :k]
    scores[start:start + chunk_rows] = np.sqrt(nearest).mean(axis=1)
  return scores


def fit_threshold(validation_scores: np.ndarray, *, target_fpr: float = 0.01, rule: str = "quantile") -> float:
  """Threshold on a client's benign validation scores; a row is flagged when score > threshold."""
  if rule not in THRESHOLD_RULES:
    raise ValueError(f"Unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}.")
  if not 0 < target_fpr < 1:
    raise ValueError(f"target_fpr must be in (0, 1). Found {target_fpr}.")
  scores = np.asarray(validation_scores, dtype=np.float64)
  if scores.size == 0:
    raise ValueError("Cannot set a threshold from an empty validation set.")
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

