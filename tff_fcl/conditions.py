"""Data conditions applied at the client: missing features, noise, quantity skew, unseen clients.

`ConditionedData(data, conditions)` wraps any `tff_fcl.data.FederatedData` and implements the same
contract, so every algorithm (FCL, the baselines, the references) trains and is scored on the same
conditioned rows. All draws are seeded by (conditions.seed, condition, device/client, split).
Features are the preprocessed float32 [N, 115] rows; the conditions act after preprocessing:

  missing_rate r          every entry of every row (train, val, test) is NaN with probability r,
                          independently per client and row (a per-client, per-row random pattern)
  missing_families F, f   a seeded fraction f of the devices lacks the whole statistic families F
                          (e.g. HpHp: its 35 columns are NaN in all of its rows, every split)
  noise_scale s, fraction a seeded fraction of the devices measures x + s * N(0, 1) (every split;
                          fresh draws per row; the features are standardised, so s is in std units)
  quantity_alpha a        quantity skew: p ~ Dirichlet(a * 1_K) over the K training clients and client
                          i keeps a seeded subsample of ceil(p_i / max_j p_j * n_i) of its n_i training
                          rows (at least 2); validation and test rows are untouched
  unseen_devices          devices whose clients never train: `client_ids` (the training clients)
                          leaves them out, `devices` (the evaluated devices) keeps them; their own
                          benign training rows still calibrate Eq. 2 and the benign reference, and their
                          own benign validation rows set their threshold, as for every device

The chronological split of the data (train on earlier traffic, test on later) is the default
distribution shift and needs no condition. NaN marks a missing value: a model must read it with a
presence mask (`RunConfig.missing_mask=True`, `models.encoders.split_missing`); `require_missing_mask`
refuses the combination that would silently turn every update into NaN.
Conditioned training rows are materialised once per client (memory: the client's training rows).
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tff_fcl.data import schema

_MISSING, _FAMILY, _NOISE, _QUANTITY = 1, 2, 3, 4
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "client_train": 3}
_MIN_ROWS = 2  # InfoNCE needs at least one negative


class ConditionError(ValueError):
  """A data condition is invalid, or does not fit the data or the model."""


@dataclasses.dataclass(frozen=True)
class DataConditions:
  """The data conditions of one run (all off by default)."""
  missing_rate: float = 0.0
  missing_families: tuple = ()
  missing_family_fraction: float = 0.0
  noise_scale: float = 0.0
  noise_fraction: float = 0.0
  quantity_alpha: float = 0.0
  unseen_devices: tuple = ()
  seed: int = 0

  def __post_init__(self):
    checks = (
        ("missing_rate", 0 <= self.missing_rate < 1, "must be in [0, 1)"),
        ("missing_family_fraction", 0 <= self.missing_family_fraction <= 1, "must be in [0, 1]"),
        ("noise_scale", self.noise_scale >= 0, "must be non-negative"),
        ("noise_fraction", 0 <= self.noise_fraction <= 1, "must be in [0, 1]"),
        ("quantity_alpha", self.quantity_alpha >= 0, "must be non-negative (0 = no quantity skew)"),
    )
    for name, ok, requirement in checks:
      if not ok:
        raise ConditionError(f"DataConditions.{name} {requirement}. Found {getattr(self, name)!r}.")
    for family in self.missing_families:
      if family not in schema.FAMILIES:
        raise ConditionError(f"DataConditions.missing_families: unknown family {family!r}; expected some of "
                             f"{', '.join(schema.FAMILIES)}.")

  @property
  def has_missing(self) -> bool:
    """Whether some features become NaN (the model then needs the missing mask)."""
    return self.missing_rate > 0 or (bool(self.missing_families) and self.missing_family_fraction > 0)

  def require_missing_mask(self, missing_mask: bool) -> None:
    """Raises ConditionError if features go missing but the model would read NaN as a value."""
    if self.has_missing and not missing_mask:
      raise ConditionError(
          f"data conditions set features to NaN (missing_rate={self.missing_rate}, missing_families="
          f"{','.join(self.missing_families) or 'none'}); the model needs missing_mask=True (--missing_mask).")


def seeded_subset(names: Sequence[str], fraction: float, rng: np.random.Generator) -> tuple:
  """round(fraction * len(names)) of `names`, chosen by `rng`, in their original order."""
  count = int(round(fraction * len(names)))
  chosen = set(rng.choice(len(names), size=count, replace=False).tolist()) if count else set()
  return tuple(name for i, name in enumerate(names) if i in chosen)


class ConditionedData:
  """A `FederatedData` whose rows carry `conditions`; see the module docstring."""

  def __init__(self, data, conditions: DataConditions):
    self._data = data
    self.conditions = conditions
    self.devices = list(data.devices)
    self.manifest = data.manifest
    unknown = [d for d in conditions.unseen_devices if d not in self.devices]
    if unknown:
      raise ConditionError(f"unseen_devices: {', '.join(unknown)} not among the devices "
                           f"({', '.join(self.devices)}).")
    self.unseen_devices = tuple(conditions.unseen_devices)
    self.client_ids = [c for c in data.client_ids if data.device_of(c) not in self.unseen_devices]
    if not self.client_ids:
      raise ConditionError("unseen_devices leaves no client to train.")
    seed = conditions.seed
    self.noisy_devices = seeded_subset(self.devices, conditions.noise_fraction if conditions.noise_scale else 0.0,
                                        np.random.default_rng([seed, _NOISE]))
    self.family_missing_devices = seeded_subset(
        self.devices, conditions.missing_family_fraction if conditions.missing_families else 0.0,
        np.random.default_rng([seed, _FAMILY]))
    self._family_columns = np.array(
        sorted(c for f in conditions.missing_families for c in schema.family_columns(f)), np.int64)
    self._keep_fraction = self._quantity_fractions()
    self._train_rows = {}

  def _quantity_fractions(self) -> dict:
    if not self.conditions.quantity_alpha:
      return {}
    rng = np.random.default_rng([self.conditions.seed, _QUANTITY])
    shares = rng.dirichlet(np.full(len(self.client_ids), self.conditions.quantity_alpha))
    return dict(zip(self.client_ids, shares / shares.max()))

  @property
  def changes_training_rows(self) -> bool:
    c = self.conditions
    return bool(c.has_missing or self.noisy_devices or self._keep_fraction)

  def device_of(self, client_id):
    return self._data.device_of(client_id)

  def _condition_rows(self, x: np.ndarray, device: str, rng_key: tuple) -> np.ndarray:
    """Noise, missing families and random missing entries on rows x [N, 115] of `device`."""
    seed, device_index = self.conditions.seed, self.devices.index(device)
    x = np.array(x, dtype=np.float32, copy=True)
    if device in self.noisy_devices:
      rng = np.random.default_rng([seed, _NOISE, device_index, *rng_key])
      x += (self.conditions.noise_scale * rng.standard_normal(x.shape)).astype(np.float32)
    if device in self.family_missing_devices:
      x[:, self._family_columns] = np.nan
    if self.conditions.missing_rate:
      rng = np.random.default_rng([seed, _MISSING, device_index, *rng_key])
      x[rng.random(x.shape) < self.conditions.missing_rate] = np.nan
    return x

  def split_arrays(self, device, split):
    x, labels, kinds = self._data.split_arrays(device, split)
    if not (self.conditions.has_missing or device in self.noisy_devices):
      return x, labels, kinds
    return self._condition_rows(x, device, (_SPLIT_CODES[split],)), labels, kinds

  def client_train_rows(self, client_id) -> np.ndarray:
    """The client's conditioned training rows float32 [n, 115] (materialised once)."""
    if client_id not in self._train_rows:
      batches = list(self._data.train_dataset(client_id, batch_size=8192, shuffle_seed=0).as_numpy_iterator())
      x = np.concatenate(batches) if batches else np.zeros((0, schema.NUM_FEATURES), np.float32)
      client_index = self.client_ids.index(client_id)
      if client_id in self._keep_fraction:
        keep = min(len(x), max(_MIN_ROWS, math.ceil(self._keep_fraction[client_id] * len(x))))
        rng = np.random.default_rng([self.conditions.seed, _QUANTITY, client_index])
        x = x[np.sort(rng.choice(len(x), size=keep, replace=False))]
      self._train_rows[client_id] = self._condition_rows(
          x, self.device_of(client_id), (_SPLIT_CODES["client_train"], client_index))
    return self._train_rows[client_id]

  def num_train_examples(self, client_id) -> int:
    if not self._keep_fraction:
      return self._data.num_train_examples(client_id)
    return len(self.client_train_rows(client_id))

  def train_dataset(self, client_id, *, batch_size: int, shuffle_seed: int) -> tf.data.Dataset:
    if client_id not in self.client_ids:
      raise ConditionError(f"client {client_id!r} does not train (unseen device or unknown).")
    if not self.changes_training_rows:
      return self._data.train_dataset(client_id, batch_size=batch_size, shuffle_seed=shuffle_seed)
    x = self.client_train_rows(client_id)
    return tf.data.Dataset.from_tensor_slices(x).shuffle(max(len(x), 1), seed=shuffle_seed).batch(batch_size)

  def describe(self) -> dict:
    """Which devices/clients each condition touched, for results files."""
    return dict(conditions=dataclasses.asdict(self.conditions), training_clients=list(self.client_ids),
                evaluated_devices=list(self.devices), unseen_devices=list(self.unseen_devices),
                noisy_devices=list(self.noisy_devices), family_missing_devices=list(self.family_missing_devices),
                train_examples={c: int(self.num_train_examples(c)) for c in self.client_ids})


def apply_conditions(data, conditions: Optional[DataConditions]):
  """`data` itself when no condition is set, else `ConditionedData(data, conditions)`."""
  if conditions is None or conditions == DataConditions(seed=conditions.seed):
    return data
  return ConditionedData(data, conditions)
