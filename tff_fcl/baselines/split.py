"""The attack rows the supervised references train on, held out of every method's test set.

The supervised references (mlp, cnn1d, gnn, gat; the paper's Table 1 rows) need attack rows to
train on, and FederatedData keeps attack rows in the test split only. `HeldOutAttacks(data,
fraction, seed)` is a FederatedData view in which, per device, a seeded `fraction` of the test
split's attack rows (label 1) becomes supervised training material and is removed from the test
split; benign test rows, validation and training rows are unchanged. A comparison evaluates every
method, federated or not, on this same reduced test split, so all rows share one test set.
"""

import numpy as np


class HeldOutAttacks:
  """A FederatedData whose test split lacks the attack rows given to supervised training."""

  def __init__(self, data, fraction: float = 0.5, seed: int = 0):
    if not 0 < fraction < 1:
      raise ValueError(f"attack training fraction must be in (0, 1). Found {fraction}.")
    self.inner, self.fraction, self.seed = data, fraction, seed
    self.devices, self.client_ids, self.manifest = data.devices, data.client_ids, data.manifest
    self._test, self._attack_train = {}, {}
    for index, device in enumerate(data.devices):
      x, labels, kinds = data.split_arrays(device, "test")
      attacks = np.flatnonzero(labels == 1)
      rng = np.random.default_rng([seed, index])
      chosen = np.zeros(len(labels), bool)
      chosen[rng.choice(attacks, int(round(fraction * len(attacks))), replace=False)] = True
      self._attack_train[device] = (x[chosen], kinds[chosen])
      self._test[device] = (x[~chosen], labels[~chosen], kinds[~chosen])

  def device_of(self, client_id):
    return self.inner.device_of(client_id)

  def num_train_examples(self, client_id):
    return self.inner.num_train_examples(client_id)

  def train_dataset(self, client_id, *, batch_size: int, shuffle_seed: int):
    return self.inner.train_dataset(client_id, batch_size=batch_size, shuffle_seed=shuffle_seed)

  def split_arrays(self, device, split):
    return self._test[device] if split == "test" else self.inner.split_arrays(device, split)

  def attack_training_rows(self, device) -> tuple:
    """(x float32 [A, 115], kinds int32 [A]): the device's attack rows for supervised training."""
    return self._attack_train[device]
